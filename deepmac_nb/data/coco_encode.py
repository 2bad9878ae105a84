"""One image of a COCO-format set, checked and turned into a record's contents.

``encode_image`` is the per-image work of ``coco_tfrecord.convert_coco`` and runs in its
worker processes: it reads and verifies the image file, rasterizes every annotation
(polygons, uncompressed or compressed RLE) into an 8-bit 0/1 PNG, clips boxes to the
image and reports what it dropped or repaired. It imports no TensorFlow and returns
plain bytes and lists (``ImageResult``); the parent builds the protos.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

_CLIP_TOLERANCE_PX = 1e-3  # x + w float sums overshoot by ~1e-13; not worth reporting
_OBJECT_KEYS = ("ymin", "xmin", "ymax", "xmax", "label", "is_crowd", "area", "mask")


class _Drop(Exception):
    """An annotation (or image, in ``_read_image``) is unusable; ``args[0]`` is why."""


@dataclasses.dataclass(frozen=True)
class ImageTask:
    """One image's work order for a worker: its file, COCO record and annotations."""

    path: str
    image: dict
    annotations: list
    category_ids: frozenset


@dataclasses.dataclass
class ImageResult:
    """What a worker sends back: the encoded image and per-object lists, or a skip reason."""

    image_id: Any
    file_name: str
    skip_reason: str | None = None
    encoded: bytes = b""
    image_format: str = ""
    height: int = 0
    width: int = 0
    objects: dict = dataclasses.field(default_factory=lambda: {k: [] for k in _OBJECT_KEYS})
    # (kind, reason, name) with kind "dropped" (instance lost) or "repaired" (kept, fixed).
    issues: list = dataclasses.field(default_factory=list)


def _read_image(path: str) -> tuple[bytes, str, int, int]:
    """Returns (bytes to store, format, width, height); raises ``_Drop`` if undecodable."""
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise _Drop("missing file") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = (img.format or "").lower(), img.size
            fmt = "jpeg" if fmt == "mpo" else fmt  # phone/camera JPEGs with a preview frame
            # DCT scaling still walks all JPEG data (so truncation is caught) at ~1/3 cost.
            img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            img.load()
            if fmt not in ("jpeg", "png"):  # TF's decoders need one of these; PNG is lossless
                buf = io.BytesIO()
                img.convert("RGB").save(buf, format="PNG")
                data, fmt = buf.getvalue(), "png"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise _Drop("corrupt image") from None
    return data, fmt, width, height


def _valid_polygons(polygons: list, name: str, issues: list) -> list[list[float]]:
    """Keeps polygon parts with >= 3 finite points; the rest are reported and removed."""
    kept = []
    for poly in polygons:
        try:
            arr = np.asarray(poly, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            arr = np.zeros(0)
        if arr.size >= 6 and arr.size % 2 == 0 and np.isfinite(arr).all():
            kept.append(arr.tolist())
        else:
            issues.append(("repaired", "invalid polygon removed", name))
    if not kept:
        raise _Drop("invalid polygon")
    return kept


def _segmentation_rle(seg: Any, height: int, width: int, name: str, issues: list) -> dict:
    """Any COCO segmentation (polygons, uncompressed or compressed RLE) -> one RLE."""
    try:
        return _to_rle(seg, height, width, name, issues)
    except (TypeError, ValueError, KeyError, IndexError, OverflowError):
        raise _Drop("invalid segmentation") from None


def _to_rle(seg: Any, height: int, width: int, name: str, issues: list) -> dict:
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if [int(s) for s in seg["size"]] != [height, width]:
            raise _Drop("RLE size differs from image")
        if isinstance(seg["counts"], list):
            return mask_utils.frPyObjects(seg, height, width)
        counts = seg["counts"]
        return {
            "size": [height, width],
            "counts": counts.encode() if isinstance(counts, str) else counts,
        }
    if isinstance(seg, list) and seg and isinstance(seg[0], dict):
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if isinstance(seg, list) and seg:
        polygons = _valid_polygons(seg, name, issues)
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    raise _Drop("no segmentation")


def _mask_png(rle: dict) -> tuple[bytes, float]:
    """Decodes an RLE and encodes it as an 8-bit 0/1 PNG; returns (png, pixel area)."""
    try:
        area = float(mask_utils.area(rle))
        mask = np.ascontiguousarray(mask_utils.decode(rle))
    except (TypeError, ValueError, OverflowError):
        raise _Drop("invalid RLE") from None
    if area <= 0:
        raise _Drop("empty mask")
    ok, png = cv2.imencode(".png", mask)
    if not ok:
        raise _Drop("mask PNG encoding failed")
    return png.tobytes(), area


def _clipped_box(bbox: Any, width: int, height: int) -> tuple[list[float], bool]:
    """COCO ``[x, y, w, h]`` pixels -> clipped ``[x0, y0, x1, y1]`` and whether it moved."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise _Drop("invalid box") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise _Drop("invalid box")
    if w <= 0 or h <= 0:
        raise _Drop("zero-area box")
    raw = [x, y, x + w, y + h]
    box = [
        min(max(v, 0.0), lim) for v, lim in zip(raw, (width, height, width, height), strict=True)
    ]
    if box[2] <= box[0] or box[3] <= box[1]:
        raise _Drop("box outside image")
    return box, any(abs(a - b) > _CLIP_TOLERANCE_PX for a, b in zip(box, raw, strict=True))


def _add_object(ann: dict, task: ImageTask, result: ImageResult) -> None:
    """Validates one annotation and appends it to ``result.objects``; raises ``_Drop``."""
    name = f"{result.file_name}#{ann.get('id', '?')}"
    if ann.get("category_id") not in task.category_ids:
        raise _Drop("unknown category")
    (x0, y0, x1, y1), clipped = _clipped_box(ann.get("bbox"), result.width, result.height)
    rle = _segmentation_rle(
        ann.get("segmentation"), result.height, result.width, name, result.issues
    )
    png, mask_area = _mask_png(rle)
    if clipped:
        result.issues.append(("repaired", "box clipped to image", name))
    area = ann.get("area")
    area = float(area) if isinstance(area, (int, float)) and area > 0 else mask_area
    values = (y0 / result.height, x0 / result.width, y1 / result.height, x1 / result.width)
    values += (int(ann["category_id"]), int(bool(ann.get("iscrowd", 0))), area, png)
    for key, value in zip(_OBJECT_KEYS, values, strict=True):
        result.objects[key].append(value)


def encode_image(task: ImageTask) -> ImageResult:
    """Per-image work (runs in a worker): read, verify, check size, rasterize masks."""
    result = ImageResult(task.image.get("id"), str(task.image.get("file_name", "")))
    try:
        result.encoded, result.image_format, width, height = _read_image(task.path)
    except _Drop as why:
        result.skip_reason = str(why)
        return result
    json_size = (task.image.get("width"), task.image.get("height"))
    if json_size != (None, None) and json_size != (width, height):
        result.skip_reason = "size differs from JSON"
        return result
    result.width, result.height = width, height
    for ann in task.annotations:
        mark = len(result.issues)
        try:
            _add_object(ann, task, result)
        except _Drop as why:
            del result.issues[mark:]  # repairs to an instance that is dropped after all
            result.issues.append(("dropped", str(why), f"{result.file_name}#{ann.get('id', '?')}"))
    if task.annotations and not result.objects["label"]:
        # Kept, it would be a "negative" whose objects are really there, unlabeled.
        result.skip_reason = "all annotations invalid"
    return result
