"""Masks and boxes drawn on images, and the crops and resizes that frame them.

Images are ``uint8 [H, W, 3]`` RGB; masks ``[N, H, W]`` bool, or float probabilities
where ``> threshold`` is foreground; boxes are normalized ``[ymin, xmin, ymax, xmax]`` to
the image they are drawn on.

Example:
    >>> import numpy as np
    >>> image = np.zeros((4, 4, 3), np.uint8)
    >>> masks = np.zeros((1, 4, 4), bool); masks[0, 1:3, 1:3] = True
    >>> overlay_masks(image, masks).shape
    (4, 4, 3)
    >>> boxes_from_masks(masks).tolist()
    [[0.25, 0.25, 0.75, 0.75]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

# Tab10-like colours (RGB), distinguishable on photos and on the shapes backgrounds.
PALETTE = np.array(
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
     [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]],
    np.uint8,
)  # fmt: skip


def color(index: int) -> tuple[int, int, int]:
    """RGB colour number ``index`` of ``PALETTE`` (cycles)."""
    return tuple(int(c) for c in PALETTE[index % len(PALETTE)])


def binary_masks(masks: Any, threshold: float = 0.5) -> np.ndarray:
    """``[N, H, W]`` bool or probabilities -> bool ``[N, H, W]`` (``> threshold``)."""
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    return masks.astype(bool) if masks.dtype == bool else masks > threshold


def boxes_from_masks(masks: Any) -> np.ndarray:
    """Tight boxes of bool masks ``[N, H, W]``: float32 ``[N, 4]`` normalized
    ``[ymin, xmin, ymax, xmax]`` (pixel edges; an empty mask gives zeros)."""
    masks = binary_masks(masks)
    n, h, w = masks.shape
    out = np.zeros((n, 4), np.float32)
    for i, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rows.size:
            out[i] = [rows[0] / h, cols[0] / w, (rows[-1] + 1) / h, (cols[-1] + 1) / w]
    return out


def _pixel_box(box: Sequence[float], h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    top_left = (round(xmin * w), round(ymin * h))
    bottom_right = (max(round(xmax * w) - 1, 0), max(round(ymax * h) - 1, 0))
    return top_left, bottom_right


def draw_boxes(
    image: np.ndarray,
    boxes: Any,
    colors: Sequence[tuple[int, int, int]] | None = None,
    labels: Sequence[str] | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """Copy of ``image`` (uint8 [H, W, 3]) with boxes ([N, 4] normalized) outlined and
    optional text labels above their top-left corners."""
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    thickness = thickness or max(1, round(max(h, w) / 400))
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    for i, box in enumerate(boxes):
        c = colors[i] if colors is not None else color(i)
        top_left, bottom_right = _pixel_box(box, h, w)
        cv2.rectangle(out, top_left, bottom_right, c, thickness)
        if labels is not None and labels[i]:
            scale = max(0.35, max(h, w) / 900)
            origin = (top_left[0], max(top_left[1] - 3, int(12 * scale)))
            cv2.putText(out, str(labels[i]), origin, cv2.FONT_HERSHEY_SIMPLEX, scale, c, 1)
    return out


def overlay_masks(
    image: np.ndarray,
    masks: Any,
    boxes: Any = None,
    alpha: float = 0.5,
    threshold: float = 0.5,
    labels: Sequence[str] | None = None,
    colors: Sequence[tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """``uint8 [H, W, 3]``: each mask ([N, H, W], image frame) tinted with opacity
    ``alpha`` and outlined, in order (later masks on top); boxes and labels drawn too."""
    out = np.asarray(image, np.uint8).astype(np.float32)
    masks = binary_masks(masks, threshold)
    colors = list(colors) if colors is not None else [color(i) for i in range(len(masks))]
    for mask, c in zip(masks, colors, strict=False):
        out[mask] = (1.0 - alpha) * out[mask] + alpha * np.asarray(c, np.float32)
    out = np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))
    for mask, c in zip(masks, colors, strict=False):
        contours, _ = cv2.findContours(
            mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(out, contours, -1, c, 1)
    if boxes is not None:
        out = draw_boxes(out, boxes, colors, labels)
    return out


def crop_box(image: np.ndarray, box: Sequence[float], context: float = 0.15) -> np.ndarray:
    """The pixels of ``image`` under ``box`` (normalized) grown by ``context`` of its side."""
    h, w = image.shape[:2]
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    dy, dx = (ymax - ymin) * context, (xmax - xmin) * context
    y0, y1 = max(int((ymin - dy) * h), 0), min(int(np.ceil((ymax + dy) * h)), h)
    x0, x1 = max(int((xmin - dx) * w), 0), min(int(np.ceil((xmax + dx) * w)), w)
    return image[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]


def resize_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` scaled down (area interpolation) so its longer side is <= ``max_side``."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
