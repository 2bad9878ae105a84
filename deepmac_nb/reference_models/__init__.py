"""Converged reference models of the shapes lesson, shipped with the package.

One folder per mask head (``conv2``: the shallow one, ``hourglass20``: the deep one), each
a model dir ``loading.from_model_dir`` loads: ``params.yaml`` of the
``deepmac_shapes_quick`` experiment, a weights-only ``ckpt-<step>`` and
``reference.json`` (seed, steps, the benchmark command that trained it and the
box-prompted mask AP it scores on the shapes val set). Notebook 05 shows them at once,
next to the heads it trains live in a few minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent
INFO_FILE = "reference.json"


def available() -> list[str]:
    """Heads with a shipped model, shallow first (by parameter count order of the sweep)."""
    heads = [p.name for p in sorted(ROOT.iterdir()) if (p / INFO_FILE).is_file()]
    return sorted(heads, key=lambda h: (not h.startswith("conv"), h))


def model_dir(head: str) -> Path:
    """The shipped model dir of ``head``; ``FileNotFoundError`` naming the ones there are."""
    path = ROOT / head
    if not (path / INFO_FILE).is_file():
        raise FileNotFoundError(f"no reference model for {head!r}; shipped: {available()}")
    return path


def info(head: str) -> dict:
    """``reference.json`` of ``head``: seed, steps, command and recorded AP."""
    return json.loads((model_dir(head) / INFO_FILE).read_text())


def evaluate(path: str | Path, max_images: int | None = None) -> dict[str, float]:
    """Box-prompted mask AP ``{"all", "seen", "unseen"}`` of the model dir ``path`` on the
    shapes val set of the quick experiment (generated into the cache on first use)."""
    from deepmac_nb import evaluation, loading, tutorial

    annotations, images = tutorial.quick_eval_set()
    predictor = loading.from_model_dir(path)
    metrics = evaluation.evaluate(predictor, annotations, images, max_images=max_images)
    return {s: round(v["AP"], 2) for s, v in metrics["mask"].items()}


def comparison_row(
    name: str,
    mask_fn,
    training: str = "",
    params: int = 0,
    *,
    annotations,
    images,
    max_images: int | None = None,
) -> dict:
    """One row of notebook 05's comparisons: box-prompted seen / unseen mask AP of
    ``mask_fn`` (a ``Predictor.predict`` or a baseline) and ``unseen/seen``, the paper's
    measure of how well masks transfer."""
    from deepmac_nb import evaluation

    metrics = evaluation.evaluate(mask_fn, annotations, images, max_images=max_images)
    seen, unseen = (metrics["mask"][s]["AP"] for s in ("seen", "unseen"))
    return {
        "head": name,
        "training": training,
        "params (quick width)": params,
        "seen AP": seen,
        "unseen AP": unseen,
        "unseen/seen": round(unseen / seen, 2) if seen else None,
    }
