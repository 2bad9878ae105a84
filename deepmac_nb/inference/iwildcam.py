"""iWildCam 2021-style instance-mask outputs for one image (docs/iwildcam2021_readme.md).

For one image and its selected detections (file order) this writes, each atomically:
  * ``instance_masks/<key>.png``: single channel, pixel k = the k-th detection of the
    image *in the MegaDetector file* (1-based, ``Detection.index + 1``: detections that
    were filtered out leave their id unused, as the iWildCam 2021 spec numbers them),
    0 = background; where masks overlap the higher ``conf`` wins (ties: the earlier
    detection). uint8, or uint16 when the largest id written exceeds 255;
  * ``per_image/<key>.json``: the image's COCO-RLE annotations (each instance's own full
    mask, overlaps kept, as COCO results are) with ``mask_id``, ``detection_index``
    (0-based, file order), ``area`` (pixels of that mask) and ``box_fraction`` (area over
    the box's pixel area: a size measure that does not depend on the box), gathered into
    ``masks_coco_rle.json`` and ``mask_areas.csv``;
  * optionally ``overlays/<key>.jpg``: the masks and boxes drawn over the photo, each
    box labelled ``#<mask id> <category> <conf>``.

The per-image JSON is written before the PNG, so an existing PNG means a complete image
(``deepmac-nb segment`` resumes on that).

Masks are pasted box by box into the pixels under the box only (``paste_region``), with
the same align-corners bilinear sampling as ``crops.paste_masks``: the cost follows the
box area, not the image area.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps
from pycocotools import mask as mask_util

from deepmac_nb import _io
from deepmac_nb.inference.megadetector import Detection

MASK_THRESHOLD = 0.5
_OVERLAY_ALPHA = 0.45
_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]],
    np.uint8,
)  # fmt: skip


class ImageReadError(Exception):
    """An image could not be read; ``reason`` is the summary's skip reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def load_rgb(path: str | Path) -> np.ndarray:
    """Decodes an image file to ``uint8 [H, W, 3]`` RGB, EXIF orientation applied.

    Raises ``ImageReadError`` with reason ``missing image`` or ``corrupt image``.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError("missing image", str(path))
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError("corrupt image", f"{path}: {exc}") from exc


def _axis_samples(start: float, extent: float, size: int, length: int):
    """Where the pixels of one image axis sample the box-frame mask, as ``paste_masks`` does.

    ``paste_masks`` crops the box-frame unit square ``[-start / extent, (1 - start) /
    extent]`` to ``length`` output pixels; this mirrors the crop_and_resize kernel's float32
    arithmetic so edge pixels agree. Returns ``(first, low, high, lerp)`` for the
    contiguous run of pixels whose sample lies inside the ``size``-long mask axis (int
    indices of the two neighbours and the float32 weight of ``high``), or None.
    """
    f32 = np.float32
    lo, hi = f32(-f32(start) / f32(extent)), f32((f32(1) - f32(start)) / f32(extent))
    scale = f32(size - 1)
    if length > 1:
        step = f32(f32(hi - lo) * scale / f32(length - 1))
        pos = lo * scale + np.arange(length, dtype=f32) * step
    else:
        pos = np.array([f32(0.5) * (lo + hi) * scale], f32)
    inside = np.flatnonzero((pos >= 0) & (pos <= scale))
    if inside.size == 0:
        return None
    pos = pos[inside[0] : inside[-1] + 1]
    low = np.floor(pos)
    return int(inside[0]), low.astype(np.intp), np.ceil(pos).astype(np.intp), pos - low


def paste_region(box_mask: np.ndarray, box, height: int, width: int):
    """One box-frame mask ``[S, S]`` -> ``(rows slice, cols slice, float32 region)``.

    ``box`` is normalized ``[ymin, xmin, ymax, xmax]``; the region holds the pasted values
    of the pixels under the box, everything else is 0 (as in ``crops.paste_masks``).
    Returns None when no pixel centre lies under the box.
    """
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    rows = _axis_samples(ymin, max(ymax - ymin, 1e-4), box_mask.shape[0], height)
    cols = _axis_samples(xmin, max(xmax - xmin, 1e-4), box_mask.shape[1], width)
    if rows is None or cols is None:
        return None
    (y0, top, bottom, y_lerp), (x0, left, right, x_lerp) = rows, cols
    # Gathers + lerps in the kernel's order, not interpolation matmuls: the bilinear
    # weights have 2 non-zeros per row, and small BLAS calls thrash on shared cores.
    mask = box_mask.astype(np.float32)
    top_rows, bottom_rows = mask[top], mask[bottom]
    top_v = top_rows[:, left] + (top_rows[:, right] - top_rows[:, left]) * x_lerp
    bottom_v = bottom_rows[:, left] + (bottom_rows[:, right] - bottom_rows[:, left]) * x_lerp
    region = top_v + (bottom_v - top_v) * y_lerp[:, None]
    return slice(y0, y0 + len(top)), slice(x0, x0 + len(left)), region


def label_dtype(max_id: int):
    """uint8 when the largest mask id is at most 255, else uint16 (iWildCam PNGs are uint8)."""
    return np.uint8 if max_id <= 255 else np.uint16


def mask_id(det: Detection) -> int:
    """The PNG value of a detection: its 1-based position in the MegaDetector file."""
    return det.index + 1


def instance_outputs(box_masks: np.ndarray, detections: list[Detection], height: int, width: int):
    """Label map and COCO-RLE annotations for one image.

    Args:
      box_masks: float32 ``[N, S, S]`` probabilities, row n for ``detections[n]``.
      detections: the written detections in file order (mask id = ``Detection.index + 1``).
      height, width: image size in pixels.

    Returns:
      ``(labels uint8/uint16 [H, W], annotations list of dicts in file order)``.
    """
    labels = np.zeros((height, width), label_dtype(max(map(mask_id, detections), default=0)))
    annotations = []
    scratch = np.zeros((height, width), np.uint8, order="F")
    order = sorted(range(len(detections)), key=lambda n: (detections[n].conf, -n))
    for n in order:  # ascending conf: later (higher conf) instances overwrite
        det = detections[n]
        pasted = paste_region(box_masks[n], det.box, height, width)
        binary = None if pasted is None else pasted[2] > MASK_THRESHOLD
        if binary is not None:
            labels[pasted[0], pasted[1]][binary] = mask_id(det)
            scratch[pasted[0], pasted[1]] = binary
        annotations.append(_annotation(det, scratch, height, width))
        if pasted is not None:
            scratch[pasted[0], pasted[1]] = 0
    annotations.sort(key=lambda a: a["mask_id"])
    return labels, annotations


def _annotation(det: Detection, mask: np.ndarray, height: int, width: int) -> dict:
    rle = mask_util.encode(mask)
    rle["counts"] = rle["counts"].decode("ascii")
    ymin, xmin, ymax, xmax = det.box
    bbox = [xmin * width, ymin * height, (xmax - xmin) * width, (ymax - ymin) * height]
    area = int(mask_util.area(rle))
    box_pixels = bbox[2] * bbox[3]
    return {
        "mask_id": mask_id(det),
        "detection_index": det.index,
        "category": det.category,
        "score": det.conf,
        "bbox": bbox,
        "area": area,
        "box_fraction": round(area / box_pixels, 6) if box_pixels > 0 else 0.0,
        "segmentation": rle,
    }


def encode_png(labels: np.ndarray) -> bytes:
    """Single-channel PNG bytes of a uint8 or uint16 label map."""
    ok, data = cv2.imencode(".png", labels)
    if not ok:
        raise ValueError(f"PNG encoding failed for a {labels.dtype} {labels.shape} label map.")
    return data.tobytes()


def overlay_label(det: Detection) -> str:
    """The text drawn over a box: ``#<mask id> <category> <conf>``."""
    return f"#{mask_id(det)} {det.category} {det.conf:.2f}"


def overlay(image: np.ndarray, labels: np.ndarray, detections: list[Detection]) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB: each instance tinted in its palette colour (by mask id),
    boxes outlined and labelled with ``overlay_label``."""
    max_id = max(map(mask_id, detections), default=0)
    colors = _PALETTE[(np.arange(max_id + 1) - 1) % len(_PALETTE)]
    tinted = image.astype(np.float32)
    fg = labels > 0
    tinted[fg] = (1 - _OVERLAY_ALPHA) * tinted[fg] + _OVERLAY_ALPHA * colors[labels[fg]]
    out = np.ascontiguousarray(tinted.astype(np.uint8))
    height, width = labels.shape
    thickness = max(1, round(max(height, width) / 500))
    scale = max(0.4, max(height, width) / 1500)
    for det in detections:
        ymin, xmin, ymax, xmax = det.box
        top_left = (round(xmin * (width - 1)), round(ymin * (height - 1)))
        bottom_right = (round(xmax * (width - 1)), round(ymax * (height - 1)))
        color = tuple(int(c) for c in colors[mask_id(det)])
        cv2.rectangle(out, top_left, bottom_right, color, thickness)
        text = overlay_label(det)
        (text_w, text_h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        x, y = top_left[0], max(top_left[1], text_h + base)  # inside the photo at the top
        cv2.rectangle(out, (x, y - text_h - base), (x + text_w, y), color, cv2.FILLED)
        cv2.putText(out, text, (x, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)  # fmt: skip
    return out


def write_image_outputs(
    out_dir: Path, key: str, record: dict, labels: np.ndarray, overlay_rgb: np.ndarray | None
) -> None:
    """Writes per-image JSON, then the PNG (the resume marker), then the overlay."""
    _io.write_json(per_image_path(out_dir, key), record, indent=None)
    _io.write_bytes(png_path(out_dir, key), encode_png(labels))
    if overlay_rgb is not None:
        ok, data = cv2.imencode(".jpg", overlay_rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        if ok:
            _io.write_bytes(Path(out_dir) / "overlays" / f"{key}.jpg", data.tobytes())


def png_path(out_dir: str | Path, key: str) -> Path:
    return Path(out_dir) / "instance_masks" / f"{key}.png"


def per_image_path(out_dir: str | Path, key: str) -> Path:
    return Path(out_dir) / "per_image" / f"{key}.json"
