"""Ground truth of a COCO-format set as pictures: one image's instances, a sheet of
images with their masks, and a gallery of instance crops of chosen classes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from deepmac_nb.viz.figures import contact_sheet
from deepmac_nb.viz.overlays import crop_box, overlay_masks


def coco_instances(coco: Any, images_dir: str | os.PathLike, image_id: int):
    """One image of a COCO set and its non-crowd instances.

    Returns ``(image uint8 [H, W, 3], masks bool [N, H, W], boxes float32 [N, 4]
    normalized, category_ids int64 [N])``; ``coco`` is a ``COCO`` index or a JSON path.
    """
    from deepmac_nb.evaluation import load_coco
    from deepmac_nb.evaluation.runner import gt_box_prompts, load_image_rgb

    coco = load_coco(coco)
    info = coco.imgs[image_id]
    image = load_image_rgb(Path(images_dir) / info["file_name"])
    prompts = gt_box_prompts(coco, [image_id])[image_id]
    anns = [coco.anns[int(i)] for i in prompts.ann_ids]
    masks = np.array([coco.annToMask(a).astype(bool) for a in anns]).reshape(-1, *image.shape[:2])
    return image, masks, prompts.boxes, prompts.category_ids


def coco_image_sheet(
    coco: Any, images_dir: str | os.PathLike, count: int = 8, ncols: int = 4, title: str = ""
) -> Figure:
    """The first ``count`` images of a COCO set with their ground-truth masks drawn."""
    from deepmac_nb.evaluation import load_coco

    coco = load_coco(coco)
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    tiles, titles = [], []
    for image_id in sorted(coco.getImgIds())[:count]:
        image, masks, boxes, ids = coco_instances(coco, images_dir, image_id)
        tiles.append(overlay_masks(image, masks, boxes))
        titles.append(", ".join(names.get(int(i), str(i)) for i in ids)[:40])
    return contact_sheet(tiles, titles, ncols=ncols, title=title)


def instance_gallery(
    coco: Any,
    images_dir: str | os.PathLike,
    category_ids: Sequence[int],
    count: int = 8,
    title: str = "",
    min_area: float = 400.0,
) -> Figure:
    """Crops of the ``count`` first instances (image order, one class after another,
    area >= ``min_area`` px) of ``category_ids`` with their ground-truth masks."""
    from deepmac_nb.evaluation import load_coco

    coco = load_coco(coco)
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    wanted = set(int(i) for i in category_ids)
    anns = [
        a
        for a in sorted(coco.dataset["annotations"], key=lambda a: (a["image_id"], a["id"]))
        if a["category_id"] in wanted and not a.get("iscrowd", 0) and a["area"] >= min_area
    ]
    picked = _round_robin(anns, count)
    tiles = [_instance_tile(coco, images_dir, a) for a in picked]
    titles = [names.get(a["category_id"], str(a["category_id"])) for a in picked]
    return contact_sheet(tiles, titles, ncols=min(count, 8), tile=1.6, title=title)


def _round_robin(anns: list[dict], count: int) -> list[dict]:
    """Up to ``count`` annotations, taking classes in turn so every class shows."""
    by_class: dict[int, list[dict]] = {}
    for ann in anns:
        by_class.setdefault(ann["category_id"], []).append(ann)
    queues, picked = [list(v) for _, v in sorted(by_class.items())], []
    while queues and len(picked) < count:
        for queue in list(queues):
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
        queues = [q for q in queues if q]
    return picked


def _instance_tile(coco: Any, images_dir: str | os.PathLike, ann: dict) -> np.ndarray:
    from deepmac_nb.evaluation.runner import load_image_rgb

    info = coco.imgs[ann["image_id"]]
    image = load_image_rgb(Path(images_dir) / info["file_name"])
    x, y, bw, bh = ann["bbox"]
    h, w = image.shape[:2]
    box = [y / h, x / w, (y + bh) / h, (x + bw) / w]
    picture = overlay_masks(image, coco.annToMask(ann)[None].astype(bool), alpha=0.55)
    return crop_box(picture, box, context=0.2)
