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

This module is the parent side: ordered results from the worker pool, tf.Example
protos, atomic shards and the summary. The annotation file is read and grouped per image
in ``data.coco_annotations``; one image's record contents are made (in a worker) by
``data.coco_encode.encode_image``.

Example:
    >>> summary = convert_coco("instances.json", "images/", "out/", shards=4)  # doctest: +SKIP
    >>> summary["images_written"], summary["instances"]                        # doctest: +SKIP
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import math
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from deepmac_nb import __version__, _io
from deepmac_nb.data.coco_annotations import (
    Issues,
    build_tasks,
    category_names,
    describe_issues,
    load_coco,
)

# Record contents (``train.adapt`` builds its boxes-only records from these too).
from deepmac_nb.data.coco_encode import (  # noqa: F401
    _OBJECT_KEYS,
    ImageResult,
    ImageTask,
    _Drop,
    _read_image,
    encode_image,
)

IMAGES_PER_SHARD = 1000  # ~150 MB of COCO JPEGs, in TF's recommended 100-200 MB range


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
    names, tally = category_names(coco), _Tally()
    tasks = build_tasks(coco, images_dir, tally.dropped)
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
