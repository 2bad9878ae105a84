"""The synthetic shapes set: a procedural, deterministic instance-segmentation dataset.

Eight shape classes (``SHAPE_CLASSES``; id = index + 1), several per image, occluding
each other. By default (``look="camouflage"``) objects and background are painted from
the same two colours with different spatial textures, so texture and outline, not
colour, separate an object from its surroundings; preset ``classic`` keeps the old
flat-colour look (``deepmac_nb.data.shapes_render``). Ids 1-4 (disc, square, triangle,
cross) form the ``seen`` split that keeps mask labels in partially supervised training;
ids 5-8 (star, ring, crescent, heart) are ``unseen`` and have holes, concavities or
spikes, so a mask head must really learn shape to segment them from boxes alone.

Output is COCO: ``<out>/<split>.json`` (RLE masks of the *visible* part of each object)
and ``<out>/images/<split>_NNNNNN.png``; optionally TFRecords via
``deepmac_nb.data.coco_tfrecord``. Image ``i`` of a split depends only on
``(seed, i, config)`` - its own ``PCG64`` stream - so parallel workers give the same bytes
as one (for a fixed numpy / OpenCV build).

Example:
    >>> from deepmac_nb.data.shapes import render_image, ShapesConfig
    >>> image, instances = render_image(0, seed=0, config=ShapesConfig(image_size=64))
    >>> image.shape, image.dtype
    ((64, 64, 3), dtype('uint8'))
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from deepmac_nb import _io
from deepmac_nb.data.shape_drawing import SHAPE_CLASSES
from deepmac_nb.data.shapes_render import (
    GENERATOR_VERSION,
    PRESETS,
    ShapesConfig,
    render,
    render_image,
)

__all__ = [
    "GENERATOR_VERSION",
    "SHAPE_CLASSES",
    "ShapesConfig",
    "ShapesPaths",
    "add_prepare_shapes_arguments",
    "ensure_shapes_dataset",
    "generate_shapes",
    "render_image",
    "run_prepare_shapes",
]

# Validation images use seed + this, far from any train seed a person would type.
VAL_SEED_OFFSET = 1_000_003
# Sensor noise makes PNG's match-finding useless: Huffman-only is faster *and* smaller
# (~112 KB vs ~127 KB at 256x256, flat look). Fixed params keep the bytes reproducible.
_PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
]


def _coco_annotation(category_id: int, mask: np.ndarray) -> dict[str, Any]:
    """COCO fields of one visible mask (bool [H, W]); ``bbox`` is the tight ``[x, y, w,
    h]`` box in absolute pixels, ``segmentation`` compressed RLE with str counts."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    return {
        "category_id": int(category_id),
        "bbox": [float(x), float(y), float(w), float(h)],
        "area": float(mask.sum()),
        "iscrowd": 0,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()},
    }


def _make_image(job: tuple[int, int, ShapesConfig, str, str]) -> tuple[dict, list[dict], int]:
    """Renders one image, writes its PNG atomically; returns COCO image entry, its
    annotations (ids not yet assigned) and the count of dropped objects."""
    index, seed, cfg, images_dir, split_name = job
    rendered = render(index, seed, cfg)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rendered.image, cv2.COLOR_RGB2BGR), _PNG_PARAMS)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for image {index}")
    file_name = f"{split_name}_{index:06d}.png"
    _io.write_bytes(Path(images_dir) / file_name, png.tobytes())
    size = cfg.image_size
    image = {"id": index + 1, "file_name": file_name, "width": size, "height": size}
    anns = [_coco_annotation(cid, mask) for cid, mask in rendered.instances]
    return image, anns, rendered.dropped


def _init_worker() -> None:
    # One process per core already; OpenCV's own threads would only oversubscribe.
    cv2.setNumThreads(1)


def _run_jobs(jobs: list, workers: int) -> list[tuple[dict, list[dict], int]]:
    """Runs ``_make_image`` over ``jobs`` in order, in ``workers`` processes if > 1."""
    if workers <= 1 or len(jobs) < 2:
        return [_make_image(job) for job in jobs]
    # spawn, not fork: the parent may have TensorFlow's threads running.
    ctx = multiprocessing.get_context("spawn")
    chunk = max(1, min(64, len(jobs) // (4 * workers)))
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        return list(pool.map(_make_image, jobs, chunksize=chunk))


def _categories() -> list[dict[str, Any]]:
    return [
        {"id": i + 1, "name": name, "supercategory": "shape"}
        for i, name in enumerate(SHAPE_CLASSES)
    ]


def _coco_dict(results: list, seed: int, cfg: ShapesConfig, split_name: str) -> dict:
    """Assembles the COCO dict; annotation ids run 1.. in image order."""
    images, annotations = [], []
    for image, anns, _ in results:
        images.append(image)
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], **ann})
    info = {
        "description": "deepmac_nb synthetic shapes",
        "split": split_name,
        "seed": int(seed),
        "generator_version": GENERATOR_VERSION,
        "config": dataclasses.asdict(cfg),
    }
    return {"info": info, "images": images, "annotations": annotations, "categories": _categories()}


def _write_tfrecords(json_path: Path, images_dir: Path, out_dir: Path, split: str, workers: int):
    # Imported here: the converter pulls in TensorFlow, which plain generation never needs.
    from deepmac_nb.data.coco_tfrecord import convert_coco

    # Our workers=1 means "in-process", which the converter spells 0; shards: its default.
    in_process = 0 if workers <= 1 else workers
    return convert_coco(
        json_path, images_dir, out_dir / "tfrecords", workers=in_process, prefix=split
    )


def generate_shapes(
    out_dir: str | Path,
    num_images: int = 1000,
    seed: int = 0,
    image_size: int | None = None,
    split_name: str = "train",
    config: ShapesConfig | None = None,
    workers: int = 1,
    tfrecords: bool = False,
) -> dict[str, Any]:
    """Generates one split: ``<out_dir>/<split_name>.json`` + ``<out_dir>/images/*.png``.

    Args:
      out_dir: output folder (created). Images of all splits share ``images/``; file names
        carry the split name so they never collide.
      num_images: number of images; image ids are ``1..num_images``.
      seed: stream seed; image ``i`` depends only on ``(seed, i, config)``.
      image_size: overrides ``config.image_size`` when given (default 128).
      split_name: name of the JSON file and the image-name prefix.
      config: difficulty knobs; ``ShapesConfig()`` when None.
      workers: processes rendering in parallel; output bytes do not depend on it.
      tfrecords: also write ``<out_dir>/tfrecords/<split_name>*`` via
        ``deepmac_nb.data.coco_tfrecord.convert_coco``.

    Returns:
      Summary dict: paths, ``num_images``, ``num_annotations``, ``per_class`` counts,
      ``dropped_occluded``, ``seconds``, ``images_per_s`` and ``tfrecords`` (converter's
      result or None).
    """
    cfg = config or ShapesConfig()
    if image_size is not None:
        cfg = dataclasses.replace(cfg, image_size=int(image_size))
    _validate(num_images, cfg)
    out, start = Path(out_dir), time.perf_counter()
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(i, int(seed), cfg, str(images_dir), split_name) for i in range(num_images)]
    results = _run_jobs(jobs, workers)
    coco = _coco_dict(results, seed, cfg, split_name)
    json_path = _io.write_json(out / f"{split_name}.json", coco, indent=None)
    seconds = time.perf_counter() - start
    records = (
        _write_tfrecords(json_path, images_dir, out, split_name, workers) if tfrecords else None
    )
    return _summary(coco, results, json_path, images_dir, seconds, records)


def _summary(coco, results, json_path, images_dir, seconds, records) -> dict[str, Any]:
    """The result dict of ``generate_shapes`` (see its docstring)."""
    counts = Counter(a["category_id"] for a in coco["annotations"])
    return {
        "split": coco["info"]["split"],
        "json": str(json_path),
        "images_dir": str(images_dir),
        "num_images": len(coco["images"]),
        "num_annotations": len(coco["annotations"]),
        "per_class": {name: counts.get(i + 1, 0) for i, name in enumerate(SHAPE_CLASSES)},
        "dropped_occluded": sum(r[2] for r in results),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(coco["images"]) / max(seconds, 1e-9), 1),
        "tfrecords": records,
    }


def _validate(num_images: int, cfg: ShapesConfig) -> None:
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    if cfg.image_size < 32:
        raise ValueError(f"image_size must be >= 32 pixels, got {cfg.image_size}")
    lo, hi = cfg.objects_per_image
    if not 0 <= lo <= hi:
        raise ValueError(f"objects_per_image must be 0 <= min <= max, got {(lo, hi)}")
    if not 0 < cfg.scale_range[0] <= cfg.scale_range[1]:
        raise ValueError(f"scale_range must be 0 < min <= max, got {cfg.scale_range}")


@dataclasses.dataclass(frozen=True)
class ShapesPaths:
    """Where a generated shapes dataset lives (``ensure_shapes_dataset``'s result)."""

    root: Path
    train_json: Path
    val_json: Path
    images_dir: Path
    tfrecords_dir: Path | None


_MANIFEST = "manifest.json"


def _manifest(num_train: int, num_val: int, seed: int, cfg: ShapesConfig, tfrecords: bool):
    params = {
        "generator_version": GENERATOR_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "seed": int(seed),
        "val_seed": int(seed) + VAL_SEED_OFFSET,
        "tfrecords": bool(tfrecords),
        "config": dataclasses.asdict(cfg),
    }
    return json.loads(json.dumps(params))  # tuples -> lists, as read back from disk


def _cache_is_valid(paths: ShapesPaths, expected: dict) -> bool:
    try:
        found = json.loads((paths.root / _MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return found == expected and paths.train_json.is_file() and paths.val_json.is_file()


def _clear_stale(root: Path) -> None:
    """Removes only files this module writes, so a shared folder loses nothing else."""
    (root / _MANIFEST).unlink(missing_ok=True)
    for pattern in ("train_*.png", "val_*.png"):
        for png in (root / "images").glob(pattern):
            png.unlink()


def ensure_shapes_dataset(
    cache_dir: str | Path,
    num_train: int = 1000,
    num_val: int = 200,
    seed: int = 0,
    image_size: int = 128,
    config: ShapesConfig | None = None,
    workers: int = 1,
    tfrecords: bool = False,
) -> ShapesPaths:
    """Generates ``train`` + ``val`` into ``cache_dir`` once; later calls reuse them.

    ``cache_dir/manifest.json`` records every parameter and is written last, so a run cut
    short or a change of any parameter regenerates. Not safe for two processes filling
    the same ``cache_dir`` at once.
    """
    cfg = dataclasses.replace(config or ShapesConfig(), image_size=int(image_size))
    root = Path(cache_dir)
    paths = ShapesPaths(
        root,
        root / "train.json",
        root / "val.json",
        root / "images",
        root / "tfrecords" if tfrecords else None,
    )
    expected = _manifest(num_train, num_val, seed, cfg, tfrecords)
    if _cache_is_valid(paths, expected):
        return paths
    _clear_stale(root)
    common = dict(config=cfg, workers=workers, tfrecords=tfrecords)
    generate_shapes(root, num_train, seed, split_name="train", **common)
    generate_shapes(root, num_val, seed + VAL_SEED_OFFSET, split_name="val", **common)
    _io.write_json(root / _MANIFEST, expected)
    return paths


def add_prepare_shapes_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``deepmac-nb prepare shapes`` options to ``parser``."""
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-train", type=int, default=1000, help="training images")
    parser.add_argument("--num-val", type=int, default=200, help="validation images")
    parser.add_argument("--seed", type=int, default=0, help="seed (val uses a derived seed)")
    parser.add_argument(
        "--image-size", type=int, default=None, help="square image side (default: preset's)"
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument(
        "--difficulty",
        choices=PRESETS,
        default="default",
        help="preset of the knobs (see ShapesConfig); classic: the flat-colour look",
    )
    parser.add_argument("--tfrecords", action="store_true", help="also write TFRecords")


def run_prepare_shapes(args: argparse.Namespace) -> int:
    """Writes ``train.json`` and ``val.json`` (+ images, + TFRecords) under ``args.out``."""
    cfg = ShapesConfig.preset(getattr(args, "difficulty", "default"))
    if args.image_size is not None:
        cfg = dataclasses.replace(cfg, image_size=args.image_size)
    splits = (
        ("train", args.num_train, args.seed),
        ("val", args.num_val, args.seed + VAL_SEED_OFFSET),
    )
    for split, num, seed in splits:
        summary = generate_shapes(
            args.out,
            num,
            seed,
            split_name=split,
            config=cfg,
            workers=args.workers,
            tfrecords=args.tfrecords,
        )
        print(
            f"shapes {split}: {summary['num_images']} images, {summary['num_annotations']} "
            f"instances ({summary['dropped_occluded']} dropped as occluded) -> "
            f"{summary['json']} [{summary['images_per_s']} images/s]"
        )
    return 0
