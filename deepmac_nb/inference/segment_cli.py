"""``deepmac-nb segment``: MegaDetector boxes -> iWildCam 2021-style DeepMAC instance masks.

    deepmac-nb segment --model MODEL --detections md.json --images DIR --out OUT \\
        [--min-conf 0.2] [--categories animal,person] [--overlays] [--max-images N] [--flip-tta]

``MODEL`` is anything ``Predictor.load`` takes (model dir, SavedModel, official folder or
``.tar.gz``, ``.tflite``). Writes ``OUT/instance_masks/<id>.png``, ``OUT/per_image/<id>.json``,
``OUT/masks_coco_rle.json`` (all images, COCO format with scores) and
``OUT/segment_summary.json``; see ``iwildcam`` for the formats. Reruns skip images whose
PNG exists (resume); they assume the same options.
"""

from __future__ import annotations

import collections
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from deepmac_nb import _io
from deepmac_nb.inference import iwildcam, megadetector

SUMMARY_FILE = "segment_summary.json"
RESULTS_FILE = "masks_coco_rle.json"


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model dir, SavedModel, .tar.gz or .tflite")
    parser.add_argument("--detections", required=True, help="MegaDetector batch output JSON")
    parser.add_argument("--images", required=True, help="folder the detections' files are in")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--min-conf", type=float, default=0.2, help="keep detections >= this")
    parser.add_argument("--categories", default=None, help="comma list, e.g. animal,person")
    parser.add_argument("--overlays", action="store_true", help="also write JPEG overlays")
    parser.add_argument("--max-images", type=int, default=None, help="first N images only")
    parser.add_argument(
        "--flip-tta",
        action="store_true",
        help="average each mask with the mirror image's (2x cost)",
    )
    parser.add_argument(
        "--detections-format", choices=megadetector.FORMATS, default=None, help="default: auto"
    )


def run(args) -> int:
    from deepmac_nb.inference.predictor import Predictor

    detections = megadetector.read_detections(args.detections, args.images, args.detections_format)
    categories = [c.strip() for c in args.categories.split(",")] if args.categories else None
    predictor = Predictor.load(args.model)
    predictor.flip_tta = args.flip_tta
    summary = segment(
        predictor,
        detections,
        args.images,
        args.out,
        min_conf=args.min_conf,
        categories=categories,
        overlays=args.overlays,
        max_images=args.max_images,
    )
    print(format_summary(summary))
    return 0


def segment(
    predictor,
    detections: megadetector.DetectionsFile,
    images_dir: str | Path,
    out_dir: str | Path,
    min_conf: float = 0.2,
    categories: list[str] | None = None,
    overlays: bool = False,
    max_images: int | None = None,
    progress: bool = True,
) -> dict:
    """Writes masks for every image of ``detections``; returns the summary dict."""
    from tqdm.auto import tqdm

    out_dir, images_dir = Path(out_dir), Path(images_dir)
    entries = detections.images[:max_images] if max_images is not None else detections.images
    tally = _Tally(len(detections.images), len(entries))
    todo = [e for e in entries if _wanted(e, out_dir, tally)]
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="img", disable=not progress, desc="segment")
    for entry, image in _prefetched(todo, images_dir):
        if isinstance(image, iwildcam.ImageReadError):
            tally.skipped[image.reason] += 1
        else:
            kept, dropped = megadetector.select_detections(entry, min_conf, categories)
            tally.add_image(entry, kept, dropped)
            segment_image(predictor, image, entry, kept, out_dir, overlays)
        bar.update(1)
    bar.close()
    tally.seconds = time.perf_counter() - start
    write_results(out_dir, detections, entries)
    summary = tally.as_dict(min_conf=min_conf, categories=categories, format=detections.format)
    _io.write_json(out_dir / SUMMARY_FILE, summary)
    return summary


def _wanted(entry: megadetector.ImageEntry, out_dir: Path, tally: _Tally) -> bool:
    if entry.failure is not None:
        tally.skipped[entry.failure] += 1
        return False
    done = iwildcam.png_path(out_dir, entry.key).is_file()
    if done and iwildcam.per_image_path(out_dir, entry.key).is_file():
        tally.skipped["already done (resume)"] += 1
        return False
    return True


def _prefetched(entries: list, images_dir: Path):
    """Yields ``(entry, image or ImageReadError)``, decoding the next image meanwhile."""

    def load(entry):
        try:
            return iwildcam.load_rgb(images_dir / entry.file)
        except iwildcam.ImageReadError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = collections.deque(pool.submit(load, e) for e in entries[:2])
        for i, entry in enumerate(entries):
            image = pending.popleft().result()
            if i + 2 < len(entries):
                pending.append(pool.submit(load, entries[i + 2]))
            yield entry, image


def segment_image(predictor, image: np.ndarray, entry, kept: list, out_dir, overlays=False):
    """Predicts, pastes and writes the outputs of one image; returns its record dict."""
    height, width = image.shape[:2]
    boxes = np.array([d.box for d in kept], np.float32).reshape(-1, 4)
    box_masks = predictor.predict_box_masks(image, boxes)
    labels, annotations = iwildcam.instance_outputs(box_masks, kept, height, width)
    record = {"image_id": entry.key, "file": entry.file, "height": height, "width": width}
    record |= {"png_dtype": labels.dtype.name, "annotations": annotations}
    drawn = iwildcam.overlay(image, labels, kept) if overlays else None
    iwildcam.write_image_outputs(Path(out_dir), entry.key, record, labels, drawn)
    return record


def write_results(out_dir: Path, detections: megadetector.DetectionsFile, entries) -> Path:
    """Gathers every written image's per-image JSON into ``masks_coco_rle.json``."""
    cat_ids = _category_ids(detections.categories)
    images, annotations = [], []
    for entry in entries:
        path = iwildcam.per_image_path(out_dir, entry.key)
        if entry.failure is not None or not path.is_file():
            continue
        record = json.loads(path.read_text())
        image_id = record["image_id"]
        images.append(
            {"id": image_id, "file_name": record["file"]}
            | {"height": record["height"], "width": record["width"]}
        )
        for ann in record["annotations"]:
            extra = {"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0}
            annotations.append(ann | extra | {"category_id": cat_ids.get(ann["category"], 0)})
    categories = [{"id": i, "name": n} for n, i in sorted(cat_ids.items(), key=lambda x: x[1])]
    data = {"images": images, "annotations": annotations, "categories": categories}
    return _io.write_json(out_dir / RESULTS_FILE, data, indent=None)


def _category_ids(categories: dict[str, str]) -> dict[str, int]:
    """Category name -> integer id (the MegaDetector id where it is numeric)."""
    ids: dict[str, int] = {}
    for key, name in categories.items():
        if name not in ids:
            ids[name] = int(key) if key.isdigit() else 1000 + len(ids)
    return ids


class _Tally:
    """Counts for the end-of-run summary."""

    def __init__(self, in_file: int, considered: int):
        self.in_file, self.considered, self.seconds = in_file, considered, 0.0
        self.skipped: collections.Counter = collections.Counter()
        self.dropped: collections.Counter = collections.Counter()
        self.written = self.empty = self.instances = 0
        self.sixteen_bit: list[str] = []

    def add_image(self, entry, kept: list, dropped: collections.Counter) -> None:
        self.written += 1
        self.empty += not kept
        self.instances += len(kept)
        self.dropped.update(entry.dropped)
        self.dropped.update(dropped)
        if iwildcam.label_dtype(len(kept)) != np.uint8:
            self.sixteen_bit.append(entry.key)

    def as_dict(self, **options) -> dict:
        clipped = self.dropped.pop("clipped box", 0)
        rate = round(self.written / self.seconds, 3) if self.seconds else None
        return {
            "images_in_file": self.in_file,
            "images_considered": self.considered,
            "images_written": self.written,
            "images_all_zero": self.empty,
            "instances_written": self.instances,
            "images_skipped": dict(self.skipped),
            "detections_dropped": dict(self.dropped),
            "boxes_clipped": clipped,
            "images_16bit_png": self.sixteen_bit,
            "seconds": round(self.seconds, 3),
            "images_per_s": rate,
            "options": options,
        }


def format_summary(summary: dict) -> str:
    """Human-readable lines of a ``segment`` summary."""
    lines = [
        f"segment: {summary['images_written']} images written "
        f"({summary['images_all_zero']} all-zero), {summary['instances_written']} instances, "
        f"{summary['images_per_s']} images/s",
    ]
    for title, key in [("skipped images", "images_skipped"), ("dropped", "detections_dropped")]:
        for reason, count in sorted(summary[key].items()):
            lines.append(f"  {title}: {reason}: {count}")
    if summary["boxes_clipped"]:
        lines.append(f"  boxes clipped to the image: {summary['boxes_clipped']}")
    if summary["images_16bit_png"]:
        names = ", ".join(summary["images_16bit_png"][:5])
        lines.append(
            f"  16-bit PNGs (> 255 instances): {len(summary['images_16bit_png'])}: {names}"
        )
    return "\n".join(lines)
