"""Notebook 04's adaptation step: fine-tune a model dir's masks on the camera-trap boxes.

``adapted_model_dir`` runs ``train.adapt.adapt`` once into a folder named after the source
model and the steps, and reuses it on reruns while it is newer than its source.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path


def adapted_model_dir(
    source: str | os.PathLike,
    detections: str | os.PathLike,
    images: str | os.PathLike,
    out_root: str | os.PathLike,
    steps: int = 100,
    min_conf: float = 0.8,
    categories: Sequence[str] | None = None,
) -> Path:
    """``out_root/<source name>-adapted-<steps>``: ``source`` fine-tuned with the weak
    losses on the boxes of ``detections`` (conf >= ``min_conf``, ``categories`` or all)
    by ``train.adapt.adapt``. An existing result is reused while it is newer than the
    source's checkpoint and was adapted on the same detections file and threshold;
    otherwise (the source was retrained, other photos) it is adapted again."""
    from deepmac_nb.train import adapt

    source = Path(source)
    out = Path(out_root) / f"{source.name}-adapted-{steps}"
    if _reusable(out / adapt.SUMMARY_FILE, source / "checkpoint", Path(detections), min_conf):
        print(f"{out.name}: adapted before, reused")
        return out
    stale = out.with_name(out.name + ".stale")
    if out.exists():
        shutil.rmtree(stale, ignore_errors=True)
        out.rename(stale)  # adapt refuses an existing --out; the old one goes once replaced
    options = adapt.AdaptOptions(
        min_conf=min_conf, steps=steps, categories=tuple(categories) if categories else None
    )
    done = adapt.adapt(source, detections, images, out, options)
    print(adapt.format_summary(done, out))
    shutil.rmtree(stale, ignore_errors=True)
    return out


def _reusable(summary: Path, source_ckpt: Path, detections: Path, min_conf: float) -> bool:
    if not summary.is_file() or summary.stat().st_mtime < source_ckpt.stat().st_mtime:
        return False
    done = json.loads(summary.read_text())
    same_input = done.get("detections") == str(detections.resolve())
    return same_input and done.get("min_conf") == min_conf
