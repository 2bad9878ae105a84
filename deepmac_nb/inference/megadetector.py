"""MegaDetector batch output in its variants -> one record per image with normalized boxes.

Variants (``detect_format`` tells them apart):
  * ``md_1x``: format 1.x, ``images[].file``, detections ``category`` (string id), ``conf``,
    ``bbox`` normalized ``[x, y, w, h]`` (docs/megadetector_output_format.md);
  * ``iwildcam2021``: the same with ``images[].id`` (file ``<id>.jpg``) instead of ``file``;
  * ``iwildcam2020``: ``images[].id`` with absolute-pixel ``[x, y, w, h]`` boxes (told apart
    from 2021 by coordinates > 1.5); the image size comes from ``width``/``height`` in the
    entry or from the image file's header;
  * ``list_xyxy``: a top-level list, per image (``{"file", "detections": [...]}``) or one
    flat entry per detection (``{"file", "bbox", ...}``), with ``confidence`` and absolute
    ``[x1, y1, x2, y2]`` boxes.

Every detection becomes a ``Detection`` with a box normalized ``[ymin, xmin, ymax, xmax]``
clipped to [0, 1]; NaN, malformed and degenerate boxes and unknown categories are dropped
and counted per reason in ``ImageEntry.dropped`` (``Detection.index`` keeps file order).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

DEFAULT_CATEGORIES = {"1": "animal", "2": "person", "3": "vehicle"}
FORMATS = ("md_1x", "iwildcam2021", "iwildcam2020", "list_xyxy")
_FILE_KEYS = ("file", "image", "image_path", "file_name", "image_id", "id")
_ABSOLUTE_THRESHOLD = 1.5  # normalized coordinates never exceed 1 (+ rounding)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
SizeLookup = Callable[[str], "tuple[int, int] | None"]  # file -> (width, height)


@dataclasses.dataclass(frozen=True)
class Detection:
    """One detection: ``box`` normalized ``[ymin, xmin, ymax, xmax]`` to its image."""

    index: int  # position in the image's detection list in the file (0-based)
    box: tuple[float, float, float, float]
    category: str  # name, e.g. "animal"
    conf: float


@dataclasses.dataclass
class ImageEntry:
    """One image of a detections file.

    ``key`` names the outputs (``instance_masks/<key>.png``); ``file`` is relative to the
    images folder (or absolute); ``failure`` is set when the image cannot be processed.
    """

    key: str
    file: str
    detections: list[Detection] = dataclasses.field(default_factory=list)
    failure: str | None = None
    dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)


@dataclasses.dataclass
class DetectionsFile:
    format: str
    categories: dict[str, str]
    images: list[ImageEntry]


def read_detections(
    path: str | Path, images_dir: str | Path | None = None, fmt: str | None = None
) -> DetectionsFile:
    """Reads a MegaDetector-style JSON file (any variant) into ``ImageEntry`` records.

    ``images_dir`` is only used to read image sizes for pixel boxes without a size in the
    file. Raises ``ValueError`` for unreadable JSON or an unknown layout.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"Cannot read detections JSON {path}: {exc}") from exc
    return parse_detections(data, _size_lookup(images_dir), fmt)


def parse_detections(data, size_lookup: SizeLookup | None = None, fmt: str | None = None):
    """``read_detections`` on already-parsed JSON."""
    fmt = fmt or detect_format(data)
    if fmt not in FORMATS:
        raise ValueError(f"Unknown detections format {fmt!r}; choose from {FORMATS}.")
    categories = dict(DEFAULT_CATEGORIES)
    if isinstance(data, dict):
        categories.update({str(k): str(v) for k, v in data.get("detection_categories", {}).items()})
    raw_images = _group_flat(data) if fmt == "list_xyxy" else data["images"]
    entries, seen = [], set()
    for raw in raw_images:
        entry = _parse_image(raw, fmt, categories, size_lookup or (lambda _: None))
        if entry.key in seen and entry.failure is None:
            entry.failure = "duplicate image key"
        seen.add(entry.key)
        entries.append(entry)
    return DetectionsFile(fmt, categories, entries)


def detect_format(data) -> str:
    """Names the variant of parsed MegaDetector JSON (see the module docstring)."""
    if isinstance(data, list):
        return "list_xyxy"
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError("Not MegaDetector output: expected a list or a dict with 'images'.")
    images = [im for im in data["images"] if isinstance(im, dict)]
    if not images or any("file" in im for im in images):
        return "md_1x"
    if not all("id" in im for im in images):
        raise ValueError("MegaDetector 'images' entries need a 'file' or an 'id'.")
    boxes = (d.get("bbox") for im in images for d in (im.get("detections") or []))
    return "iwildcam2020" if _any_absolute(boxes) else "iwildcam2021"


def _any_absolute(boxes: Iterable) -> bool:
    for box in boxes:
        if isinstance(box, list) and any(_finite(v) and v > _ABSOLUTE_THRESHOLD for v in box):
            return True
    return False


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _group_flat(data: list) -> list[dict]:
    """List-style output: per-image entries pass through, flat detections are grouped."""
    grouped: dict[str, dict] = {}
    out = []
    for item in data:
        if not isinstance(item, dict) or "bbox" not in item:
            out.append(item)
            continue
        name = str(next((item[k] for k in _FILE_KEYS if k in item), ""))
        if name not in grouped:
            grouped[name] = {"file": name, "detections": []}
            out.append(grouped[name])
        grouped[name]["detections"].append(item)
    return out


def image_key(file: str) -> str:
    """Output name for an image file: its path without extension, made relative and safe.

    Backslashes become ``/``; root, drive, ``.`` and ``..`` components are dropped, so a
    key can never point outside the output folder.
    """
    parts = [p for p in PurePosixPath(str(file).replace("\\", "/")).parts]
    parts = [p for p in parts if p not in ("/", ".", "..", "") and not p.endswith(":")]
    if not parts:
        return "_"
    parts[-1] = PurePosixPath(parts[-1]).stem if parts[-1].endswith(_IMAGE_SUFFIXES) else parts[-1]
    return "/".join(parts)


def _parse_image(raw, fmt: str, categories: dict, size_lookup: SizeLookup) -> ImageEntry:
    if not isinstance(raw, dict):
        return ImageEntry("_", "", failure="malformed image entry")
    if fmt in ("iwildcam2021", "iwildcam2020"):
        ident = str(raw.get("id", ""))
        file = ident if ident.endswith(_IMAGE_SUFFIXES) else f"{ident}.jpg"
    else:
        file = str(next((raw[k] for k in _FILE_KEYS if k in raw), ""))
    entry = ImageEntry(image_key(file), file)
    if not file:
        entry.failure = "malformed image entry"
    elif raw.get("failure"):
        entry.failure = "detector failure"
    elif "frame_rate" in raw:
        entry.failure = "video (not supported)"
    elif not isinstance(raw.get("detections"), list):
        entry.failure = "no detections list"
    if entry.failure is None:
        _parse_detections(entry, raw, fmt, categories, size_lookup)
    return entry


def _parse_detections(entry, raw, fmt, categories, size_lookup) -> None:
    size = None
    if fmt in ("iwildcam2020", "list_xyxy"):
        size = _entry_size(raw) or size_lookup(entry.file)
        if size is None:
            entry.failure = "missing image"  # pixel boxes cannot be normalized without it
            return
    for index, det in enumerate(raw["detections"]):
        detection, reason = _parse_one(index, det, fmt, categories, size)
        if reason is not None:
            entry.dropped[reason] += 1
        if detection is not None:
            entry.detections.append(detection)


def _entry_size(raw: dict) -> tuple[int, int] | None:
    width, height = raw.get("width"), raw.get("height")
    if _finite(width) and _finite(height) and width > 0 and height > 0:
        return int(width), int(height)
    return None


def _parse_one(index, det, fmt, categories, size) -> tuple[Detection | None, str | None]:
    """One raw detection -> ``(Detection or None, reason it was dropped/clipped or None)``."""
    bbox = det.get("bbox") if isinstance(det, dict) else None
    conf = det.get("conf", det.get("confidence")) if isinstance(det, dict) else None
    if not isinstance(bbox, list) or len(bbox) != 4 or not _finite(conf):
        return None, "malformed detection"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        return None, "malformed detection"
    if not all(math.isfinite(v) for v in bbox):
        return None, "nan box"
    category = _category_name(det, categories)
    if category is None:
        return None, "unknown category"
    box = _normalized_box(bbox, fmt, size)
    clipped = tuple(min(max(v, 0.0), 1.0) for v in box)
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return None, "degenerate box"
    reason = "clipped box" if clipped != box else None
    return Detection(index, clipped, category, float(conf)), reason


def _category_name(det: dict, categories: dict[str, str]) -> str | None:
    value = next((det[k] for k in ("category", "class", "label") if k in det), None)
    if value is None:
        return None
    value = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if value in categories:
        return categories[value]
    return value if value in categories.values() else None


def _normalized_box(bbox: list, fmt: str, size) -> tuple[float, float, float, float]:
    """``[ymin, xmin, ymax, xmax]`` normalized from the variant's box layout."""
    if fmt == "list_xyxy":
        width, height = size
        x1, y1, x2, y2 = (float(v) for v in bbox)
        return (y1 / height, x1 / width, y2 / height, x2 / width)
    x, y, w, h = (float(v) for v in bbox)
    if fmt == "iwildcam2020":
        width, height = size
        x, y, w, h = x / width, y / height, w / width, h / height
    return (y, x, y + h, x + w)


def xywh_to_yxyx(boxes_xywh, width: float | None = None, height: float | None = None):
    """MegaDetector/COCO ``[x, y, w, h]`` boxes -> ``float32 [N, 4]`` normalized
    ``[ymin, xmin, ymax, xmax]``, the order ``Predictor.predict`` takes.

    ``boxes_xywh``: ``[N, 4]`` (or one box), normalized as MegaDetector writes them, or
    absolute pixels when ``width`` and ``height`` (the image size) are given.
    """
    import numpy as np

    xywh = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    x, y, w, h = xywh.T
    if width is not None and height is not None:
        x, w, y, h = x / width, w / width, y / height, h / height
    return np.stack([y, x, y + h, x + w], axis=1).astype(np.float32)


def _size_lookup(images_dir: str | Path | None) -> SizeLookup:
    """Reads ``(width, height)`` from an image header (no decoding); None if unreadable."""

    def lookup(file: str) -> tuple[int, int] | None:
        if images_dir is None:
            return None
        from PIL import Image

        try:
            with Image.open(Path(images_dir) / file) as image:
                width, height = image.size
                # EXIF orientations 5-8 swap the axes; decoding honours them (load_rgb).
                rotated = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        except (OSError, ValueError):
            return None
        return (height, width) if rotated else (width, height)

    return lookup


def select_detections(
    entry: ImageEntry, min_conf: float = 0.0, categories: Iterable[str] | None = None
) -> tuple[list[Detection], collections.Counter]:
    """Detections of ``entry`` with ``conf >= min_conf`` and (if given) a wanted category
    name, in file order; plus the count of the others per reason."""
    wanted = None if categories is None else set(categories)
    kept, dropped = [], collections.Counter()
    for det in entry.detections:
        if det.conf < min_conf:
            dropped["below min conf"] += 1
        elif wanted is not None and det.category not in wanted:
            dropped["category not selected"] += 1
        else:
            kept.append(det)
    return kept, dropped
