"""Runs a mask predictor over a COCO set and collects COCO results for ``coco_eval``.

Two protocols:
  * box-prompted (DeepMAC's headline): every non-crowd GT box is a prompt with score 1.0
    and the GT category; ``mask_fn(image, boxes) -> masks`` only has to segment it. The
    classical baselines (``baselines.py``) and ``Predictor.predict`` share this interface.
  * detected: ``detect_fn(image)`` finds boxes, classes, scores and masks itself.

Model time (inside ``mask_fn`` / ``detect_fn``) is timed apart from everything else
(image decoding, RLE encoding) so the evaluation overhead can be checked.

Example:
    >>> from deepmac_nb.evaluation import baselines
    >>> preds, stats = run_box_prompted("val.json", "images/", baselines.box_masks)
    ...                                                          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from deepmac_nb.evaluation.coco_eval import load_coco

# (image uint8 [H, W, 3] RGB, boxes float32 [N, 4] normalized [ymin, xmin, ymax, xmax])
#   -> masks [N, H, W], bool or float probabilities (binarised at > 0.5).
MaskFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
# image -> {"boxes" [N, 4] normalized, "classes" [N] 1-based COCO ids, "scores" [N],
#           "masks" [N, H, W]}.
DetectFn = Callable[[np.ndarray], dict]


@dataclasses.dataclass(frozen=True)
class BoxPrompts:
    """GT boxes of one image used as prompts.

    Attributes:
      boxes: float32 [N, 4], normalized [ymin, xmin, ymax, xmax] in [0, 1].
      category_ids: int64 [N], COCO 1-based category ids.
      ann_ids: int64 [N], the GT annotation ids.
      height, width: image size in pixels (from the GT image record).
    """

    boxes: np.ndarray
    category_ids: np.ndarray
    ann_ids: np.ndarray
    height: int
    width: int


def gt_box_prompts(coco_gt: COCO | str, image_ids: Sequence[int] | None = None) -> dict:
    """Returns ``{image_id: BoxPrompts}`` for every non-crowd GT instance of the images."""
    coco = load_coco(coco_gt)
    ids = sorted(coco.getImgIds()) if image_ids is None else list(image_ids)
    out = {}
    for image_id in ids:
        info = coco.imgs[image_id]
        h, w = int(info["height"]), int(info["width"])
        anns = [a for a in coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        boxes = np.stack(
            [
                xywh[:, 1] / h,
                xywh[:, 0] / w,
                (xywh[:, 1] + xywh[:, 3]) / h,
                (xywh[:, 0] + xywh[:, 2]) / w,
            ],
            axis=1,
        )
        out[image_id] = BoxPrompts(
            boxes=np.clip(boxes, 0.0, 1.0).astype(np.float32),
            category_ids=np.array([a["category_id"] for a in anns], np.int64),
            ann_ids=np.array([a["id"] for a in anns], np.int64),
            height=h,
            width=w,
        )
    return out


def load_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Reads an image as uint8 [H, W, 3] RGB in its stored pixel order.

    EXIF orientation is ignored on purpose: COCO's annotations (and TF's JPEG decoder)
    use the raw pixel grid.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def select_images(
    coco: COCO,
    images_dir: str | os.PathLike,
    image_ids: Sequence[int] | None = None,
    max_images: int | None = None,
    skip_missing: bool = False,
) -> tuple[list[int], list[str]]:
    """Picks the images to run on (sorted ids, first ``max_images``) and checks the files.

    Returns:
      (image ids whose files exist, file names that are missing).

    Raises:
      FileNotFoundError: files are missing and ``skip_missing`` is False (names the first few).
    """
    ids = sorted(coco.getImgIds()) if image_ids is None else list(image_ids)
    ids = ids[:max_images] if max_images is not None else ids
    bad = [i for i in ids if not {"file_name", "height", "width"} <= set(coco.imgs[i])]
    if bad:
        raise ValueError(f"image record {bad[0]} lacks file_name, height or width")
    root = Path(images_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"images folder not found: {root}")
    exists = {i: (root / coco.imgs[i]["file_name"]).is_file() for i in ids}
    present = [i for i in ids if exists[i]]
    missing = [coco.imgs[i]["file_name"] for i in ids if not exists[i]]
    if missing and not skip_missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(ids)} images missing under {root}: "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} "
            "(--skip-missing evaluates the rest)"
        )
    return present, missing


def binarize(masks: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """Masks (bool, or probabilities thresholded at > 0.5) as bool [N, H, W]; checks shape."""
    masks = np.asarray(masks)
    if masks.shape != shape:
        raise ValueError(f"mask function returned shape {masks.shape}, expected {shape}")
    return masks if masks.dtype == bool else masks > 0.5


def encode_masks(masks: np.ndarray) -> list[dict]:
    """bool [N, H, W] -> N COCO RLEs with str counts (JSON-serialisable)."""
    if not len(masks):
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def _box_prompted_one(coco, images_dir, prompts, mask_fn) -> Callable[[int], tuple]:
    def one(image_id: int) -> tuple[list[dict], float]:
        p = prompts[image_id]
        if not len(p.boxes):
            return [], 0.0
        image = _image_of(coco, images_dir, image_id)
        start = time.perf_counter()
        masks = mask_fn(image, p.boxes)
        seconds = time.perf_counter() - start
        rles = encode_masks(binarize(masks, (len(p.boxes), p.height, p.width)))
        preds = [
            {"image_id": image_id, "category_id": int(c), "score": 1.0, "segmentation": r}
            for c, r in zip(p.category_ids, rles, strict=True)
        ]
        return preds, seconds

    return one


def _detected_one(coco, images_dir, detect_fn) -> Callable[[int], tuple]:
    def one(image_id: int) -> tuple[list[dict], float]:
        image = _image_of(coco, images_dir, image_id)
        h, w = image.shape[:2]
        start = time.perf_counter()
        out = detect_fn(image)
        seconds = time.perf_counter() - start
        boxes = np.asarray(out["boxes"], np.float64).reshape(-1, 4) * [h, w, h, w]
        rles = encode_masks(binarize(out["masks"], (len(boxes), h, w)))
        preds = [
            {
                "image_id": image_id,
                "category_id": int(c),
                "score": float(s),
                "segmentation": r,
                "bbox": [float(b[1]), float(b[0]), float(b[3] - b[1]), float(b[2] - b[0])],
            }
            for b, c, s, r in zip(boxes, out["classes"], out["scores"], rles, strict=True)
        ]
        return preds, seconds

    return one


def _image_of(coco: COCO, images_dir, image_id: int) -> np.ndarray:
    info = coco.imgs[image_id]
    image = load_image_rgb(Path(images_dir) / info["file_name"])
    if image.shape[:2] != (info["height"], info["width"]):
        raise ValueError(
            f"{info['file_name']} is {image.shape[1]}x{image.shape[0]} but the annotations "
            f"say {info['width']}x{info['height']}"
        )
    return image


def _map_images(one, ids: list[int], workers: int, progress: bool) -> list[tuple]:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress is cosmetic
        tqdm = None
    bar = tqdm(total=len(ids), disable=not progress, file=sys.stderr, unit="img") if tqdm else None
    results = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for result in map(one, ids) if workers <= 1 else pool.map(one, ids):
            results.append(result)
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return results


def _run(coco_gt, images_dir, make_one, max_images, skip_missing, workers, progress):
    start = time.perf_counter()
    coco = load_coco(coco_gt)
    ids, missing = select_images(coco, images_dir, None, max_images, skip_missing)
    results = _map_images(make_one(coco, ids), ids, workers, progress)
    predictions = [p for preds, _ in results for p in preds]
    stats = {
        "images": len(ids),
        "image_ids": ids,
        "skipped_missing": len(missing),
        "predictions": len(predictions),
        "workers": workers,
        # Summed over calls: with workers > 1 it can exceed the wall-clock total.
        "seconds_model": round(sum(s for _, s in results), 3),
        "seconds_total": round(time.perf_counter() - start, 3),
    }
    return predictions, stats


def run_box_prompted(
    coco_gt: COCO | str,
    images_dir: str | os.PathLike,
    mask_fn: MaskFn,
    max_images: int | None = None,
    skip_missing: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Segments every non-crowd GT box of each image with ``mask_fn``.

    Images are taken in id order (first ``max_images``); ``workers`` > 1 runs images on
    that many threads. Returns (COCO results with score 1.0 and the GT category, stats
    ``{images, image_ids, skipped_missing, predictions, workers, seconds_model,
    seconds_total}``).
    """

    def make_one(coco, ids):
        return _box_prompted_one(coco, images_dir, gt_box_prompts(coco, ids), mask_fn)

    return _run(coco_gt, images_dir, make_one, max_images, skip_missing, workers, progress)


def run_detected(
    coco_gt: COCO | str,
    images_dir: str | os.PathLike,
    detect_fn: DetectFn,
    max_images: int | None = None,
    skip_missing: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Like ``run_box_prompted`` but the model finds the objects (``DetectFn``); the
    results carry pixel ``bbox`` [x, y, w, h] so box AP can be reported too."""

    def make_one(coco, ids):
        return _detected_one(coco, images_dir, detect_fn)

    return _run(coco_gt, images_dir, make_one, max_images, skip_missing, workers, progress)
