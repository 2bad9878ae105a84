"""Lesson material: shapes examples, mask-head sizes, one training batch's loss weights,
and the ablation results tables (``benchmarks/mask_head_ablation.py``) notebook 05 shows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepmac_nb.tutorial.inputs import repo_path
from deepmac_nb.tutorial.quick_model import quick_params
from deepmac_nb.viz import overlays
from deepmac_nb.viz.figures import contact_sheet

# Ablation outputs of benchmarks/mask_head_ablation.py (another, longer run), if present.
RESULTS_CANDIDATES = (
    "runs/ablation/shapes.json",
    "runs/ablation/coco_mini.json",
    "docs/results.md",
    "docs/results.json",
)
ABLATION_COMMAND = (
    ".venv/bin/python benchmarks/mask_head_ablation.py --dataset shapes --steps 600 \\\n"
    "    --heads conv4,resnet4,resnet8,resnet20,hourglass10,hourglass20,hourglass52 \\\n"
    "    --seeds 0,1 --out runs/ablation/shapes.json --figures docs   # ~1 h on 2 CPU cores"
)


def shapes_example(index: int = 0, image_size: int = 128):
    """Validation image ``index`` of the shapes set (never trained on); the default size
    is the cached set's (``data_sources.SHAPES_IMAGE_SIZE``).

    Returns ``(image uint8 [S, S, 3], boxes float32 [N, 4] normalized, category_ids
    int64 [N], masks bool [N, S, S])``.
    """
    from deepmac_nb.data import shapes

    seed = shapes.VAL_SEED_OFFSET  # the val split of seed 0, as the cached dataset
    config = shapes.ShapesConfig(image_size=image_size)
    image, instances = shapes.render_image(index, seed, config)
    masks = np.stack([m for _, m in instances]) if instances else np.zeros((0, *image.shape[:2]))
    ids = np.array([c for c, _ in instances], np.int64)
    return image, overlays.boxes_from_masks(masks), ids, masks.astype(bool)


def unseen_examples(count: int = 6, seen: Iterable[int] | None = None, start: int = 0):
    """``count`` instances of classes outside ``seen`` from the shapes val images.

    Returns a list of ``(image, box [4], category_id, mask [S, S])``, one per instance,
    at most one per image (the largest), so the pictures vary.
    """
    from deepmac_nb import splits

    seen_ids = set(splits.SHAPES_SEEN_IDS if seen is None else seen)
    out, index = [], start
    while len(out) < count and index < start + 50 * count:
        image, boxes, ids, masks = shapes_example(index)
        candidates = [i for i in range(len(ids)) if int(ids[i]) not in seen_ids]
        if candidates:
            i = max(candidates, key=lambda k: int(masks[k].sum()))
            out.append((image, boxes[i], int(ids[i]), masks[i]))
        index += 1
    return out


def mask_grid(examples: Sequence, methods: Mapping[str, Any], title: str = "") -> Any:
    """Contact sheet: one row per example ``(image, box, ...)``, one column per method
    (``mask_fn(image, boxes) -> [N, H, W]``), each the box's neighbourhood with its mask."""
    from deepmac_nb import widgets

    tiles, titles = [], []
    for image, box, *_ in examples:
        for name, method in methods.items():
            mask = widgets.model_masks(method, image, np.asarray([box], np.float32))
            picture = overlays.overlay_masks(image, mask, alpha=0.55, colors=[(230, 0, 230)])
            tiles.append(overlays.crop_box(picture, box, context=0.25))
            titles.append(name)
    return contact_sheet(tiles, titles, ncols=len(methods), tile=1.9, title=title)


def mask_head_parameter_counts(
    heads: Sequence[str] | None = None,
    num_init_channels: int = 64,
    mask_size: int = 32,
    in_channels: int = 50,
) -> list[dict]:
    """``[{"head", "family", "params"}]``: weights (incl. BN statistics) of each mask head
    built on ``float32 [1, mask_size, mask_size, in_channels]`` crops. Defaults are the
    paper's: nc 64, S 32, 16 pixel + 32 instance embedding + 2 coordinate channels."""
    import tensorflow as tf

    from deepmac_nb.modeling import mask_heads

    rows = []
    for name in heads or mask_heads.MASK_HEAD_NAMES:
        head = mask_heads.build_mask_head(name, num_init_channels, mask_size=mask_size)
        head(tf.zeros([1, mask_size, mask_size, in_channels]))
        family = re.sub(r"\d+$", "", name)
        rows.append({"head": name, "family": family, "params": mask_heads.count_params(head)})
    return rows


def training_batch_rows(params=None, max_rows: int = 12) -> list[dict]:
    """What partial supervision means to the loss, for one training batch of ``params``
    (default: the quick experiment): ``[{image, class, split, box_weight, mask_weight}]``
    per instance, as the input pipeline labels them."""
    from official.core import task_factory

    from deepmac_nb import splits
    from deepmac_nb.train import data_sources

    params = data_sources.prepare_experiment_data(params or quick_params())
    task = task_factory.get_task(params.task)
    _, labels = next(iter(task.build_inputs(params.task.train_data)))
    names = _class_names(params.task.dataset)
    allowed = set(splits.resolve_split(params.task.allowed_mask_classes))
    rows = []
    for b, count in enumerate(labels["num_instances"].numpy()):
        for n in range(int(count)):
            cid = int(labels["classes"][b, n])
            rows.append(
                {
                    "image": b,
                    "class": names.get(cid, str(cid)),
                    "split": "seen" if cid in allowed else "unseen",
                    "box_weight": float(labels["box_weights"][b, n]),
                    "mask_weight": float(labels["mask_weights"][b, n]),
                }
            )
    return rows[:max_rows]


def _class_names(dataset: str) -> dict[int, str]:
    if dataset == "shapes":
        from deepmac_nb.data.shape_drawing import SHAPE_CLASSES

        return {i + 1: name for i, name in enumerate(SHAPE_CLASSES)}
    return {}


def embed_markdown_images(text: str, folder: str | os.PathLike) -> str:
    """``text`` with every relative PNG link ``![alt](name.png)`` replaced by a base64
    ``data:`` URI of ``folder / name.png``, so the figures survive the notebook's HTML
    export wherever it is opened; links to missing files are left as they are."""
    import base64

    def inline(match: re.Match) -> str:
        path = Path(folder) / match.group(2)
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    return re.sub(r"!\[([^\]]*)\]\((?!\w+:)([^)\s]+\.png)\)", inline, text)


def find_results(candidates: Sequence[str] = RESULTS_CANDIDATES) -> list[Path]:
    """The ablation results files that exist (``repo_path`` of each candidate)."""
    return [repo_path(c) for c in candidates if repo_path(c).is_file()]


def ablation_table(results: Mapping) -> list[dict]:
    """Rows of a ``benchmarks/mask_head_ablation.py`` results JSON: one per head (mean over
    seeds) and one per baseline, with ``params``, ``seen AP`` / ``unseen AP`` (GT-box
    prompts) and ``unseen AP (detected)``; seen / unseen are the file's ``splits`` (e.g.
    ``voc`` / ``non_voc``). Other JSON layouts fall back to ``results_rows``."""
    if not isinstance(results.get("heads"), Mapping) or len(results.get("splits", ())) != 2:
        return results_rows(results)
    seen, unseen = results["splits"]
    rows = []
    for head, s in results["heads"].items():
        gt, detected = s.get("gt", {}), s.get("detected", {})
        rows.append(
            {
                "head": head,
                "params": s.get("params"),
                "seen AP": gt.get(seen, {}).get("mean"),
                "unseen AP": gt.get(unseen, {}).get("mean"),
                "unseen AP (detected)": detected.get(unseen, {}).get("mean"),
            }
        )
    for method, b in (results.get("baselines") or {}).items():
        row = {"head": f"{method} (baseline)", "params": 0, "seen AP": b[seen]["AP"]}
        rows.append(row | {"unseen AP": b[unseen]["AP"], "unseen AP (detected)": None})
    return rows


def results_rows(data: Any) -> list[dict]:
    """Rows of a results JSON: a list of dicts, ``{"rows"|"results": [...]}``, or a
    mapping name -> dict (the name becomes column ``name``); nested dicts are flattened
    with ``/`` (``{"mask": {"unseen": {"AP": 1}}}`` -> ``mask/unseen/AP``)."""
    if isinstance(data, Mapping):
        listed = next((data[k] for k in ("rows", "results") if isinstance(data.get(k), list)), None)
        if listed is None:
            listed = [{"name": k, **v} for k, v in data.items() if isinstance(v, Mapping)]
        data = listed
    return [_flatten(row) for row in data if isinstance(row, Mapping)]


def _flatten(row: Mapping, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}/"))
        elif not isinstance(value, list):
            out[f"{prefix}{key}"] = value
    return out
