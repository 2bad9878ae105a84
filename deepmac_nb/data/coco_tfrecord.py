"""COCO-format annotations + images -> sharded TFRecords in Model Garden's tf.Example layout.

The records use the keys of ``official.vision.data.create_coco_tf_record`` and decode
with ``TfExampleDecoder(include_mask=True)`` unchanged: one 8-bit PNG per instance with
values 0/1 (what Model Garden's converter writes; the decoder casts it to a float32
``[N, H, W]`` 0/1 mask), boxes normalized ``[ymin, xmin, ymax, xmax]``, COCO's 1-based
category ids, and the original JPEG/PNG bytes (never re-encoded).

Why not call Model Garden's converter: it aborts on compressed RLE and on RLE for
non-crowd objects (both occur in real COCO-format files), silently drops boxes that
overhang the image, and crashes on a missing or corrupt image. Here bad input is
skipped or repaired and reported, shards appear atomically, and
``<prefix>-summary.json`` records the class names and counts the training pipeline
reads. Workers import no TensorFlow (they return plain bytes and lists; only the parent
builds protos), so any multiprocessing start method is cheap and safe.

Example:
    >>> summary = convert_coco("instances.json", "images/", "out/", shards=4)  # doctest: +SKIP
    >>> summary["images_written"], summary["instances"]                        # doctest: +SKIP
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import io
import json
import math
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from deepmac_nb import __version__, _io

MAX_EXAMPLES = 5  # names kept per reason in the summary; counts are always complete
IMAGES_PER_SHARD = 1000  # ~150 MB of COCO JPEGs, in TF's recommended 100-200 MB range
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


class Issues:
    """Counts per reason plus the first few names, for the summary and its one-liner."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)

    def add(self, reason: str, name: str) -> None:
        self.counts[reason] += 1
        if len(self.examples[reason]) < MAX_EXAMPLES:
            self.examples[reason].append(name)

    def as_dict(self) -> dict:
        return {r: {"count": n, "examples": self.examples[r]} for r, n in self.counts.items()}


def describe_issues(issues: dict) -> str:
    """``Issues.as_dict()`` as text: ``reason count (name, name, ...)``, most frequent first."""
    texts = []
    for reason, item in sorted(issues.items(), key=lambda kv: -kv[1]["count"]):
        more = ", ..." if item["count"] > len(item["examples"]) else ""
        texts.append(f"{reason} {item['count']} ({', '.join(item['examples'])}{more})")
    return "; ".join(texts)


# ---------------------------------------------------------------- annotation file


def load_coco(path: str | os.PathLike) -> dict:
    """Reads and sanity-checks a COCO JSON; errors are one-line, user-facing messages."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with path.open("rb") as f:
            coco = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: not UTF-8 text ({exc.reason})") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise ValueError(f"{path} is not a COCO annotation file: no 'images' list")
    if not isinstance(coco.get("categories"), list):
        raise ValueError(f"{path} is not a COCO annotation file: no 'categories' list")
    return coco


def _category_names(coco: dict) -> dict[int, str]:
    try:
        return {int(c["id"]): str(c.get("name", c["id"])) for c in coco["categories"]}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValueError("every COCO 'categories' entry needs an integer 'id'") from None


def _build_tasks(coco: dict, images_dir: Path, issues: Issues) -> list[ImageTask]:
    """Groups annotations by image; duplicate ids and orphan annotations are reported."""
    by_image = collections.defaultdict(list)
    for ann in coco.get("annotations") or []:
        by_image[ann.get("image_id")].append(ann)
    category_ids = frozenset(_category_names(coco))
    tasks, seen = [], set()
    for image in coco["images"]:
        if image.get("id") in seen:
            issues.add("duplicate image id", str(image.get("file_name")))
            continue
        seen.add(image.get("id"))
        path = str(images_dir / str(image.get("file_name", "")))
        tasks.append(ImageTask(path, image, by_image.pop(image.get("id"), []), category_ids))
    for anns in by_image.values():
        for ann in anns:
            issues.add("annotation for unknown image", f"image_id={ann.get('image_id')}")
    return tasks


# ---------------------------------------------------------------- worker side


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


# ---------------------------------------------------------------- parent side


class _OrderedResults:
    """``encode_image`` over the tasks, yielded in input order, with at most ``4 * workers``
    images in flight so memory stays bounded however far workers get ahead of the writer.

    The first batch is submitted on construction: the pool forks before the parent
    imports TensorFlow (clean children) and works while that import runs.
    """

    def __init__(self, tasks: list[ImageTask], workers: int) -> None:
        self._tasks = iter(tasks)
        self._window = 4 * workers
        self._pool = concurrent.futures.ProcessPoolExecutor(workers) if workers > 0 else None
        self._pending: collections.deque = collections.deque()
        self._fill()

    def _fill(self) -> None:
        while self._pool is not None and len(self._pending) < self._window:
            task = next(self._tasks, None)
            if task is None:
                return
            self._pending.append(self._pool.submit(encode_image, task))

    def __iter__(self) -> _OrderedResults:
        return self

    def __next__(self) -> ImageResult:
        if self._pool is None:
            return encode_image(next(self._tasks))
        if not self._pending:
            raise StopIteration
        result = self._pending.popleft().result()
        self._fill()
        return result

    def __enter__(self) -> _OrderedResults:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _to_example(result: ImageResult, names: dict[int, str]) -> bytes:
    """Builds the serialized tf.Example with Model Garden's own feature helpers."""
    import tensorflow as tf
    from official.vision.data import tfrecord_lib

    feature = tfrecord_lib.convert_to_feature
    objects = result.objects
    features = tfrecord_lib.image_info_to_feature_dict(
        result.height,
        result.width,
        result.file_name,
        result.image_id,
        result.encoded,
        result.image_format,
    )
    for key in ("ymin", "xmin", "ymax", "xmax"):
        features[f"image/object/bbox/{key}"] = feature(objects[key], "float_list")
    texts = [names[label].encode("utf8") for label in objects["label"]]
    features["image/object/class/label"] = feature(objects["label"], "int64_list")
    features["image/object/class/text"] = feature(texts, "bytes_list")
    features["image/object/is_crowd"] = feature(objects["is_crowd"], "int64_list")
    features["image/object/area"] = feature(objects["area"], "float_list")
    features["image/object/mask"] = feature(objects["mask"], "bytes_list")
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def shard_names(prefix: str, shards: int) -> list[str]:
    """File names of a ``shards``-way split, Model Garden's ``-%05d-of-%05d`` pattern."""
    return [f"{prefix}-{i:05d}-of-{shards:05d}.tfrecord" for i in range(shards)]


class _NothingWritten(Exception):
    """Every image failed: abandon the temp shards instead of publishing empty ones."""


@dataclasses.dataclass
class _Tally:
    images_written: int = 0
    instances: int = 0
    negatives: int = 0
    per_class: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    skipped: Issues = dataclasses.field(default_factory=Issues)
    dropped: Issues = dataclasses.field(default_factory=Issues)
    repaired: Issues = dataclasses.field(default_factory=Issues)

    def record(self, result: ImageResult) -> None:
        for kind, reason, name in result.issues:
            (self.dropped if kind == "dropped" else self.repaired).add(reason, name)
        if result.skip_reason:
            self.skipped.add(result.skip_reason, result.file_name)
            return
        labels = result.objects["label"]
        self.images_written += 1
        self.instances += len(labels)
        self.negatives += not labels
        self.per_class.update(labels)


def _write_shards(
    results: Iterable[ImageResult], paths: list[Path], names: dict, tally: _Tally
) -> None:
    """Round-robins examples over temp shards; they get their final names only if every
    write succeeded and at least one image was written (``atomic_path``)."""
    import tensorflow as tf

    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(_io.atomic_path(p)) for p in paths]
        writers = [stack.enter_context(tf.io.TFRecordWriter(str(t))) for t in tmps]
        for result in results:
            tally.record(result)
            if not result.skip_reason:
                writers[(tally.images_written - 1) % len(writers)].write(_to_example(result, names))
        # No explicit close: the ExitStack unwinds LIFO, closing writers before the renames.
        if tally.images_written == 0:
            raise _NothingWritten


def _remove_stale_shards(out_dir: Path, prefix: str, keep: list[str]) -> list[str]:
    """A rerun with another ``--shards`` would otherwise leave old shards that a
    ``<prefix>-*.tfrecord`` glob picks up twice."""
    stale = [p for p in out_dir.glob(f"{prefix}-?????-of-?????.tfrecord") if p.name not in keep]
    for path in stale:
        path.unlink()
    return sorted(p.name for p in stale)


def _summary(coco_path: Path, images_dir: Path, names: dict, tally: _Tally, **extra) -> dict:
    return {
        "created_by": f"deepmac_nb {__version__} (deepmac_nb.data.coco_tfrecord)",
        "source_annotations": str(coco_path.resolve()),
        "images_dir": str(images_dir.resolve()),
        **extra,
        "images_written": tally.images_written,
        "instances": tally.instances,
        "negatives": tally.negatives,
        "images_skipped": tally.skipped.as_dict(),
        "instances_dropped": tally.dropped.as_dict(),
        "instances_repaired": tally.repaired.as_dict(),
        "categories": [
            {"id": cid, "name": name, "instances": tally.per_class[cid]}
            for cid, name in sorted(names.items())
        ],
    }


def default_workers() -> int:
    """The CPUs this process may use (a container's quota, not the host's core count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_shards(num_images: int) -> int:
    """About ``IMAGES_PER_SHARD`` images per shard, between 1 and 256 shards."""
    return min(256, max(1, math.ceil(num_images / IMAGES_PER_SHARD)))


def convert_coco(
    annotations: str | os.PathLike,
    images: str | os.PathLike,
    out_dir: str | os.PathLike,
    shards: int | None = None,
    workers: int | None = None,
    prefix: str | None = None,
    progress: bool = True,
) -> dict:
    """Converts a COCO-format set to ``<out_dir>/<prefix>-NNNNN-of-NNNNN.tfrecord``.

    Args:
      annotations: the COCO JSON (polygons, uncompressed or compressed RLE).
      images: folder that the ``file_name`` entries are relative to.
      out_dir: output folder (created). Also receives ``<prefix>-summary.json``.
      shards: number of shards; default ``default_shards(number of images)``.
      workers: worker processes; default ``default_workers()``; 0 runs in-process.
      prefix: shard name prefix; default the annotation file's stem.
      progress: show a tqdm bar on stderr.

    Returns:
      The summary dict (also written to ``<prefix>-summary.json`` unless no image could
      be converted, in which case no file is written and ``images_written`` is 0).

    Raises:
      FileNotFoundError / ValueError: missing or malformed annotation file, missing
        image folder, no images listed.
    """
    start, coco_path, images_dir = time.perf_counter(), Path(annotations), Path(images)
    coco = load_coco(coco_path)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {images_dir}")
    names, tally = _category_names(coco), _Tally()
    tasks = _build_tasks(coco, images_dir, tally.dropped)
    if not tasks:
        raise ValueError(f"{coco_path} lists no images")
    prefix = prefix or coco_path.stem
    file_names = shard_names(prefix, shards or default_shards(len(tasks)))
    workers = min(len(tasks), default_workers() if workers is None else workers)
    paths = [Path(out_dir) / name for name in file_names]
    _encode_and_write(tasks, workers, paths, names, tally, progress and f"prepare {prefix}")
    written = file_names if tally.images_written else []
    extra = {"prefix": prefix, "images_total": len(coco["images"]), "shards": written}
    summary = _summary(coco_path, images_dir, names, tally, **extra)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    if tally.images_written:
        summary["stale_shards_removed"] = _remove_stale_shards(Path(out_dir), prefix, written)
        _io.write_json(Path(out_dir) / f"{prefix}-summary.json", summary)
    return summary


def _encode_and_write(
    tasks: list[ImageTask],
    workers: int,
    paths: list[Path],
    names: dict,
    tally: _Tally,
    progress: str | bool,
) -> None:
    """Workers encode, the parent writes; ``progress`` is the bar's label or False."""
    from tqdm import tqdm

    with contextlib.suppress(_NothingWritten), _OrderedResults(tasks, workers) as results:
        import official.vision.data.tfrecord_lib  # noqa: F401  (slow: TF, while workers run)

        bar = tqdm(
            results,
            total=len(tasks),
            unit="img",
            file=sys.stderr,
            disable=not progress,
            desc=progress or None,
        )
        with bar:
            _write_shards(bar, paths, names, tally)


def format_summary(summary: dict) -> str:
    """The one-line (plus detail) report printed by ``deepmac-nb prepare coco``."""
    parts = [
        f"wrote {summary['images_written']} images ({summary['instances']} instances, "
        f"{summary['negatives']} negatives) to {len(summary['shards'])} shard(s)"
    ]
    for key, label in (
        ("images_skipped", "skipped images"),
        ("instances_dropped", "dropped instances"),
        ("instances_repaired", "repaired instances"),
    ):
        if summary[key]:
            parts.append(f"{label}: {describe_issues(summary[key])}")
    return "\n  ".join(parts)
