"""``deepmac-nb segment``: MegaDetector boxes -> iWildCam 2021-style DeepMAC instance masks.

    deepmac-nb segment --detections md.json --images DIR --out OUT [--model MODEL] \\
        [--min-conf 0.2] [--categories animal,person] [--overlays] [--max-images N] [--flip-tta]

``MODEL`` is ``official`` (the DeepMAC checkpoint, downloaded once), ``photo`` (the model
shipped in the package, ``deepmac_nb.photo_model``; mirror TTA always on), ``auto`` (the
default: ``official`` when its archive is already downloaded, else ``photo``, so a fresh
install segments offline) or anything ``loading.load`` takes (model dir, SavedModel,
Model Garden export, official folder or archive, ``.tflite``). Writes
``OUT/instance_masks/<id>.png`` (pixel k = the k-th detection of the image in the
MegaDetector file), ``OUT/per_image/<id>.json``,
``OUT/masks_coco_rle.json`` (all images, COCO format with scores), ``OUT/mask_areas.csv``
(one row per instance: pixels and fraction of its box) and ``OUT/segment_summary.json``;
see ``iwildcam`` for the formats. Reruns skip images whose PNG exists (resume); they assume
the same options.

Bad options, paths and category names are refused before TensorFlow is imported (one line,
exit 2); a run that wrote no image exits 1 after printing its summary.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import time
from pathlib import Path

from deepmac_nb import _io
from deepmac_nb.errors import UserError
from deepmac_nb.inference import megadetector

NAMED_MODELS = ("auto", "official", "photo")
SUMMARY_FILE = "segment_summary.json"
RESULTS_FILE = "masks_coco_rle.json"
AREAS_FILE = "mask_areas.csv"
AREA_COLUMNS = ("image_id", "file", "detection_index", "mask_id", "category", "score",
                "area_px", "box_px", "box_fraction")  # fmt: skip


def add_arguments(parser) -> None:
    parser.add_argument(
        "--model",
        default="auto",
        help="official, photo, auto (official if downloaded, else photo; the default), or a "
        "model dir, SavedModel, archive, .tflite",
    )
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


def check_args(args) -> None:
    """Refuses bad options and paths with one ``UserError`` line (no TensorFlow needed)."""
    from deepmac_nb import loading

    if not 0.0 <= args.min_conf <= 1.0:
        raise UserError(
            f"--min-conf must be in [0, 1] (a detector confidence), got {args.min_conf}"
        )
    if args.max_images is not None and args.max_images < 1:
        raise UserError(f"--max-images must be at least 1, got {args.max_images}")
    if not Path(args.detections).is_file():
        raise UserError(f"--detections: no such file: {args.detections}")
    if not Path(args.images).is_dir():
        raise UserError(f"--images: no such folder: {args.images}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out exists and is not a folder: {args.out}")
    if args.model in NAMED_MODELS:
        from deepmac_nb import photo_model

        if resolve_model(args.model) == "photo" and not photo_model.available():
            raise UserError("--model photo: this install has no shipped photo model")
        return
    try:
        loading.artifact_kind(args.model)
    except ValueError as exc:
        raise UserError(f"--model: {exc}") from exc


def resolve_model(name: str) -> str:
    """``auto`` -> ``official`` when the official archive is downloaded, else ``photo``;
    any other value unchanged."""
    from deepmac_nb import pretrained

    if name != "auto":
        return name
    return "official" if pretrained.is_cached("deepmac") else "photo"


def load_model(name: str, flip_tta: bool = False):
    """``(Predictor, description)`` for a ``--model`` value (see the module docstring)."""
    from deepmac_nb import loading, photo_model, pretrained

    name = resolve_model(name)
    if name == "official":
        return pretrained.load_official(flip_tta=flip_tta), "official DeepMAC checkpoint"
    if name == "photo":  # mirror TTA is part of its recipe
        return photo_model.load(flip_tta=True), f"{photo_model.DESCRIPTION} (flip TTA)"
    return loading.load(name, flip_tta=flip_tta), name


def parse_categories(text: str | None, detections: megadetector.DetectionsFile):
    """``--categories`` -> category names, or None for all; ``UserError`` naming the file's
    ``detection_categories`` for a name (or id) it does not have."""
    if not text:
        return None
    known = detections.categories
    names = []
    for item in (c.strip() for c in text.split(",")):
        if not item:
            continue
        name = known.get(item, item)  # ids ("1") are accepted too
        if name not in known.values():
            listed = ", ".join(f"{k}={v}" for k, v in sorted(known.items()))
            raise UserError(f"--categories: unknown category {item!r}; the file has {listed}")
        names.append(name)
    return names or None


def run(args) -> int:
    check_args(args)
    detections = megadetector.read_detections(args.detections, args.images, args.detections_format)
    categories = parse_categories(args.categories, detections)
    predictor, description = load_model(args.model, args.flip_tta)
    print(f"model: {description}")
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
    if summary["images_written"] == 0 and not summary["images_skipped"].get(_RESUMED):
        print("segment: error: no image was written (see the skipped images above)")
        return 1
    return 0


_RESUMED = "already done (resume)"


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

    from deepmac_nb.inference import iwildcam

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
    from deepmac_nb.inference import iwildcam

    if entry.failure is not None:
        tally.skipped[entry.failure] += 1
        return False
    done = iwildcam.png_path(out_dir, entry.key).is_file()
    if done and iwildcam.per_image_path(out_dir, entry.key).is_file():
        tally.skipped[_RESUMED] += 1
        return False
    return True


def _prefetched(entries: list, images_dir: Path):
    """Yields ``(entry, image or ImageReadError)``, decoding the next image meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    from deepmac_nb.inference import iwildcam

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


def segment_image(predictor, image, entry, kept: list, out_dir, overlays=False):
    """Predicts, pastes and writes the outputs of one image (``uint8 [H, W, 3]``);
    returns its record dict."""
    import numpy as np

    from deepmac_nb.inference import iwildcam

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
    """Gathers every written image's per-image JSON into ``masks_coco_rle.json`` and
    ``mask_areas.csv`` (columns ``AREA_COLUMNS``, one row per instance)."""
    from deepmac_nb.inference import iwildcam

    cat_ids = _category_ids(detections.categories)
    images, annotations, rows = [], [], []
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
            rows.append(_area_row(record, ann))
    categories = [{"id": i, "name": n} for n, i in sorted(cat_ids.items(), key=lambda x: x[1])]
    data = {"images": images, "annotations": annotations, "categories": categories}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(AREA_COLUMNS)
    writer.writerows(rows)
    _io.write_text(out_dir / AREAS_FILE, text.getvalue())
    return _io.write_json(out_dir / RESULTS_FILE, data, indent=None)


def _area_row(record: dict, ann: dict) -> list:
    box_px = ann["bbox"][2] * ann["bbox"][3]
    return [record["image_id"], record["file"], ann["detection_index"], ann["mask_id"],
            ann["category"], ann["score"], ann["area"], round(box_px, 2),
            ann.get("box_fraction", "")]  # fmt: skip


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
        from deepmac_nb.inference import iwildcam

        self.written += 1
        self.empty += not kept
        self.instances += len(kept)
        self.dropped.update(entry.dropped)
        self.dropped.update(dropped)
        if max((iwildcam.mask_id(d) for d in kept), default=0) > 255:
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
        lines.append(f"  16-bit PNGs (mask id > 255): {len(summary['images_16bit_png'])}: {names}")
    return "\n".join(lines)
