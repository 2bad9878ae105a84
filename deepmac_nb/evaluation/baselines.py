"""Classical box-prompted mask baselines: filled box, inscribed ellipse, GrabCut.

Each baseline is a ``MaskFn``: ``(image uint8 [H, W, 3], boxes float32 [N, 4] normalized
[ymin, xmin, ymax, xmax]) -> bool [N, H, W]``, the interface of the model's
``Predictor.predict``, so they run through the same evaluation as a trained model and
give the floor any learned mask head has to beat on unseen classes.

Rasterisation rule shared by all three: pixel (r, c) covers [r, r+1) x [c, c+1); it
belongs to a box when its centre (r + 0.5, c + 0.5) lies in [ymin*H, ymax*H) x
[xmin*W, xmax*W), so touching boxes never share a pixel and a box of integer pixel
coordinates covers exactly its pixels.

Example:
    >>> image = np.zeros((4, 6, 3), np.uint8)
    >>> box_masks(image, np.array([[0.25, 0.0, 0.75, 0.5]], np.float32))[0].astype(int)
    array([[0, 0, 0, 0, 0, 0],
           [1, 1, 1, 0, 0, 0],
           [1, 1, 1, 0, 0, 0],
           [0, 0, 0, 0, 0, 0]])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

GRABCUT_ITERATIONS = 5
# Context around the box given to GrabCut, as a fraction of the box side: enough
# background pixels to fit its background colour model, small enough to stay fast.
GRABCUT_CONTEXT = 0.15
# Below this side (pixels) GrabCut's 5-component GMMs have too few samples; use the box.
GRABCUT_MIN_SIDE = 4
GRABCUT_SEED = 0


def _abs_boxes(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Normalized [N, 4] -> float64 pixel [N, 4] (ymin, xmin, ymax, xmax)."""
    h, w = image.shape[:2]
    return np.asarray(boxes, np.float64).reshape(-1, 4) * np.array([h, w, h, w], np.float64)


def _inside(size: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """bool [N, size]: pixel centres i + 0.5 in [lo, hi) per box."""
    centres = np.arange(size, dtype=np.float64) + 0.5
    return (centres[None, :] >= lo[:, None]) & (centres[None, :] < hi[:, None])


def box_masks(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Filled boxes: bool [N, H, W] (pixel-centre rule, see module docstring)."""
    b = _abs_boxes(image, boxes)
    h, w = image.shape[:2]
    rows = _inside(h, b[:, 0], b[:, 2])
    cols = _inside(w, b[:, 1], b[:, 3])
    return rows[:, :, None] & cols[:, None, :]


def ellipse_masks(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Ellipses inscribed in the boxes: bool [N, H, W]; pixel centres with
    ((y - cy) / ry)^2 + ((x - cx) / rx)^2 <= 1."""
    b = _abs_boxes(image, boxes)
    h, w = image.shape[:2]
    cy, cx = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    ry = np.maximum((b[:, 2] - b[:, 0]) / 2, 1e-9)
    rx = np.maximum((b[:, 3] - b[:, 1]) / 2, 1e-9)
    dy2 = ((np.arange(h) + 0.5)[None, :] - cy[:, None]) ** 2 / ry[:, None] ** 2  # [N, H]
    dx2 = ((np.arange(w) + 0.5)[None, :] - cx[:, None]) ** 2 / rx[:, None] ** 2  # [N, W]
    out = np.zeros((len(b), h, w), bool)
    for i in range(len(b)):  # per box: a float [N, H, W] temporary can be 100+ MB
        out[i] = dy2[i][:, None] + dx2[i][None, :] <= 1.0
    return out


def _pixel_span(lo: float, hi: float) -> tuple[int, int]:
    """[first, end) pixel indices whose centres lie in [lo, hi) (same rule as ``_inside``)."""
    return math.ceil(lo - 0.5), math.ceil(hi - 0.5)


def grabcut_mask(
    image: np.ndarray,
    box_abs: np.ndarray,
    iterations: int = GRABCUT_ITERATIONS,
    context: float = GRABCUT_CONTEXT,
) -> np.ndarray:
    """GrabCut of one box: bool [H, W], a subset of the filled box.

    Args:
      image: uint8 [H, W, 3] (channel order does not matter to GrabCut's GMMs).
      box_abs: pixel (ymin, xmin, ymax, xmax).
      iterations: GrabCut iterations.
      context: margin of the crop around the box, as a fraction of its side.

    Falls back to the filled box when the box is tiny, GrabCut fails (e.g. the box
    covers the whole crop, so there is no background to model) or it returns nothing.
    """
    h, w = image.shape[:2]
    r0, r1 = (max(0, min(h, v)) for v in _pixel_span(box_abs[0], box_abs[2]))
    c0, c1 = (max(0, min(w, v)) for v in _pixel_span(box_abs[1], box_abs[3]))
    fallback = np.zeros((h, w), bool)
    fallback[r0:r1, c0:c1] = True
    if r1 - r0 < GRABCUT_MIN_SIDE or c1 - c0 < GRABCUT_MIN_SIDE:
        return fallback
    pad_y, pad_x = math.ceil(context * (r1 - r0)), math.ceil(context * (c1 - c0))
    y0, y1 = max(0, r0 - pad_y), min(h, r1 + pad_y)
    x0, x1 = max(0, c0 - pad_x), min(w, c1 + pad_x)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1, :3], dtype=np.uint8)
    labels = np.zeros(crop.shape[:2], np.uint8)
    rect = (c0 - x0, r0 - y0, c1 - c0, r1 - r0)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(GRABCUT_SEED)  # per call: OpenCV's RNG is per thread, so threads agree
    try:
        cv2.grabCut(crop, labels, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        return fallback
    fg = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if not fg.any():
        return fallback
    out = np.zeros((h, w), bool)
    out[y0:y1, x0:x1] = fg
    return out


def grabcut_masks(image: np.ndarray, boxes: np.ndarray, workers: int = 1) -> np.ndarray:
    """GrabCut per box: bool [N, H, W]; ``workers`` > 1 runs boxes on threads (OpenCV
    releases the GIL). Deterministic for any ``workers``."""
    b = _abs_boxes(image, boxes)
    h, w = image.shape[:2]
    if not len(b):
        return np.zeros((0, h, w), bool)
    one = functools.partial(grabcut_mask, image)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            return np.stack(list(pool.map(one, b)))
    return np.stack([one(box) for box in b])


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "box": box_masks,
    "ellipse": ellipse_masks,
    "grabcut": grabcut_masks,
}


def get_mask_fn(method: str, workers: int = 1) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The ``MaskFn`` of a baseline by name; ``workers`` threads over boxes (GrabCut only)."""
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; choose from {', '.join(BASELINES)}")
    if method == "grabcut" and workers > 1:
        return functools.partial(grabcut_masks, workers=workers)
    return BASELINES[method]
