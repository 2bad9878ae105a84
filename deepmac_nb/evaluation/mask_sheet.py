"""Mask comparison sheets: one row per object, one column per method, IoU per tile.

Each tile is the object's box neighbourhood, enlarged with nearest-neighbour sampling so
pixels stay visible. The method's mask is tinted in whichever of a few strong colours is
farthest from the tile's own colours (a camouflaged object can be any colour, so no
fixed tint is safe) and outlined in the same colour; the ground-truth outline is drawn on
top as a black-and-white line that shows on every background. The tile title is the
method and its IoU with the ground truth; the row starts with the image and the class
name; a legend under the sheet says which line is which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

# Candidate tints (RGB); each tile takes the one farthest from its mean colour.
TINTS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 0),
    (0, 90, 255),
    (255, 60, 0),
)
TILE_PX = 112


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one shape (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def pick_tint(pixels: np.ndarray) -> tuple[int, int, int]:
    """The ``TINTS`` colour farthest (RGB Euclidean) from the mean of ``pixels`` [..., 3]."""
    mean = np.asarray(pixels, np.float32).reshape(-1, 3).mean(axis=0)
    return max(TINTS, key=lambda t: float(np.linalg.norm(np.asarray(t, np.float32) - mean)))


def _window(box: Sequence[float], h: int, w: int, context: float) -> tuple[int, int, int, int]:
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    dy, dx = (ymax - ymin) * context, (xmax - xmin) * context
    y0, y1 = max(int((ymin - dy) * h), 0), min(int(np.ceil((ymax + dy) * h)), h)
    x0, x1 = max(int((xmin - dx) * w), 0), min(int(np.ceil((xmax + dx) * w)), w)
    return y0, max(y1, y0 + 1), x0, max(x1, x0 + 1)


def _outline(out: np.ndarray, mask: np.ndarray, color, thickness: int = 1) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, color, thickness, lineType=cv2.LINE_8)


def tile(
    image: np.ndarray, box, gt: np.ndarray, mask: np.ndarray | None, context: float = 0.25
) -> np.ndarray:
    """``uint8 [TILE_PX, TILE_PX', 3]``: the box neighbourhood of ``image`` enlarged, with
    ``mask`` (bool [H, W] or None) tinted and the ``gt`` outline drawn over it."""
    h, w = image.shape[:2]
    y0, y1, x0, x1 = _window(box, h, w, context)
    scale = TILE_PX / max(y1 - y0, x1 - x0)
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))

    def up(a):
        return cv2.resize(np.ascontiguousarray(a[y0:y1, x0:x1]), size, cv2.INTER_NEAREST)

    out = up(np.asarray(image, np.uint8)).astype(np.float32)
    g = up(gt.astype(np.uint8)) > 0
    if mask is not None:
        m = up(mask.astype(np.uint8)) > 0
        tint = pick_tint(out[g] if g.any() else out)
        out[m] = 0.5 * out[m] + 0.5 * np.asarray(tint, np.float32)
        out = np.ascontiguousarray(out.astype(np.uint8))
        _outline(out, m, tint, 2)
    out = np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))
    _outline(out, g, (0, 0, 0), 3)
    _outline(out, g, (255, 255, 255), 1)
    return out


def mask_sheet(
    examples: Sequence,
    methods: Mapping[str, Any],
    class_names: Mapping[int, str],
    title: str = "",
) -> tuple[Figure, list[dict]]:
    """The comparison sheet and its numbers.

    Args:
      examples: ``(image uint8 [H, W, 3], box [4] normalized, category_id, gt bool [H, W])``.
      methods: name -> ``mask_fn(image, boxes [N, 4]) -> [N, H, W]`` or a Predictor.
      class_names: category id -> name (row labels).

    Returns:
      ``(figure, rows)``: rows ``{"class", <method>: IoU, ...}``, one per example.
    """
    from deepmac_nb import widgets

    ncols = len(methods) + 1
    fig = Figure(figsize=(1.55 * ncols, 1.65 * len(examples) + 0.6))
    rows = []
    for r, (image, box, cid, gt) in enumerate(examples):
        name = class_names.get(int(cid), str(cid))
        ax = fig.add_subplot(len(examples), ncols, r * ncols + 1)
        ax.imshow(tile(image, box, gt, None))
        ax.set_title(f"{name}\nimage + GT outline", fontsize=7, pad=2)
        ax.axis("off")
        row: dict[str, Any] = {"class": name}
        boxes = np.asarray([box], np.float32)
        for c, (method, fn) in enumerate(methods.items(), start=2):
            mask = widgets.model_masks(fn, image, boxes)[0]
            row[method] = round(iou(mask, gt), 3)
            ax = fig.add_subplot(len(examples), ncols, r * ncols + c)
            ax.imshow(tile(image, box, gt, mask))
            ax.set_title(f"{method}\nIoU {row[method]:.2f}", fontsize=7, pad=2)
            ax.axis("off")
        rows.append(row)
    handles = [
        Patch(facecolor=(0.8, 0.3, 0.8), edgecolor="k", label="predicted mask (tint varies)"),
        Line2D([], [], color="k", lw=2.5, label="ground-truth outline (black/white)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(bottom=0.6 / fig.get_figheight(), hspace=0.45, wspace=0.08)
    return fig, rows


def _val_images(start: int, count: int):
    """Yields ``(image, instances)`` of shapes val images ``start .. start + count - 1``:
    the val split of seed 0 at the cached set's size, as the quick experiment has it."""
    from deepmac_nb.data import shapes
    from deepmac_nb.train import data_sources

    config = shapes.ShapesConfig(image_size=data_sources.SHAPES_IMAGE_SIZE)
    for index in range(start, start + count):
        yield shapes.render_image(index, shapes.VAL_SEED_OFFSET, config)


def examples_by_class(
    class_ids: Sequence[int],
    min_area: int = 400,
    start: int = 0,
    max_images: int = 40,
    pick: str = "largest",
) -> list[tuple]:
    """One shapes val instance per id of ``class_ids`` (in that order), among images
    ``start .. start + max_images - 1`` and with at least ``min_area`` visible pixels:
    the one with the most visible pixels (``pick="largest"``: the least occluded, where
    a shape's holes and spikes show most, chosen without looking at any method's
    masks) or the first found (``pick="first"``). Returns ``(image, box [4]
    normalized, category_id, mask bool [H, W])`` tuples for ``mask_sheet``."""
    from deepmac_nb import viz

    if pick not in ("largest", "first"):
        raise ValueError(f"pick must be 'largest' or 'first', got {pick!r}")
    found: dict[int, tuple] = {}
    for image, instances in _val_images(start, max_images):
        for cid, mask in instances:
            area = int(mask.sum())
            if cid not in class_ids or area < min_area:
                continue
            if cid in found and (pick == "first" or area <= found[cid][0]):
                continue
            found[cid] = (area, (image, viz.boxes_from_masks(mask[None])[0], cid, mask))
        if pick == "first" and len(found) == len(set(class_ids)):
            break
    return [found[c][1] for c in class_ids if c in found]


def class_mean_iou(
    methods: Mapping[str, Any],
    class_ids: Sequence[int],
    class_names: Mapping[int, str],
    num_images: int = 40,
    min_area: int = 100,
) -> list[dict]:
    """Mean IoU per class and method over *every* instance of ``class_ids`` with at least
    ``min_area`` visible pixels in the first ``num_images`` shapes val images - the
    numbers behind a sheet whose few rows may be atypical. Rows: ``{"class",
    "instances", <method>: mean IoU, ...}``."""
    from deepmac_nb import viz, widgets

    scores: dict[int, dict[str, list[float]]] = {c: {m: [] for m in methods} for c in class_ids}
    for image, instances in _val_images(0, num_images):
        kept = [(c, m) for c, m in instances if c in scores and m.sum() >= min_area]
        if not kept:
            continue
        boxes = viz.boxes_from_masks(np.stack([m for _, m in kept])).astype(np.float32)
        for method, fn in methods.items():
            for (cid, gt), mask in zip(kept, widgets.model_masks(fn, image, boxes), strict=True):
                scores[cid][method].append(iou(mask, gt))
    return [
        {"class": class_names.get(c, str(c)), "instances": len(scores[c][next(iter(methods))])}
        | {m: round(float(np.mean(v)), 3) if v else None for m, v in scores[c].items()}
        for c in class_ids
    ]


def mean_iou(rows: Sequence[Mapping], methods: Sequence[str]) -> dict[str, float]:
    """Mean IoU per method over the sheet's rows."""
    return {m: round(float(np.mean([r[m] for r in rows])), 3) for m in methods if rows}


__all__ = [
    "TINTS",
    "class_mean_iou",
    "examples_by_class",
    "iou",
    "mask_sheet",
    "mean_iou",
    "pick_tint",
    "tile",
]
