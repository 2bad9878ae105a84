"""Adapt a Deep-MAC model to new photos with boxes only (MegaDetector output, no masks).

1. Confident detections (``conf >= min_conf``) become boxes-only training records in
   Model Garden's tf.Example layout (``data.coco_tfrecord``): the image (re-encoded at
   2 x the model input side when larger: camera-trap photos are far bigger than
   training ever samples), normalized boxes, class 1 for every box, and an all-zero mask per box, because
   ``TfExampleDecoder(include_mask=True)`` needs one. No class carries mask loss
   (``allowed_mask_classes="0"``, supervised mask weight 0), so those zero masks are
   never a target.
2. The mask head (and the pixel / instance embedding heads feeding it; with
   ``train_backbone`` also the backbone) is fine-tuned from the model with the weak
   losses only (``experiments.with_weak_losses``): box consistency on ROI-jittered crops
   and colour consistency. The detection losses are off: a camera-trap label set is not
   the model's.
3. Training runs in ``OUT.partial`` (rerun the same command to resume from its latest
   checkpoint); when it is done the records are deleted and the folder is renamed to
   ``OUT``, a model dir like ``train``'s (``segment --model OUT`` takes it).

Images without a confident detection are skipped, not used as negatives.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

from deepmac_nb import _io
from deepmac_nb.data import coco_tfrecord
from deepmac_nb.errors import UserError
from deepmac_nb.inference import megadetector

PARAMS_FILE = "params.yaml"
SUMMARY_FILE = "adapt_summary.json"
RECORDS_DIR = "adapt_records"
_LABEL = 1


@dataclasses.dataclass
class AdaptOptions:
    min_conf: float = 0.8
    steps: int = 300
    train_backbone: bool = False
    batch_size: int = 4
    learning_rate: float = 2e-4
    categories: tuple[str, ...] | None = None  # e.g. ("animal",); None = every category


def partial_dir(out: Path) -> Path:
    """Where an unfinished adaptation of ``out`` lives (and resumes from)."""
    return out.with_name(out.name + ".partial")


def read_model_params(model_dir: Path) -> dict:
    """The model dir's parsed ``params.yaml``; ``UserError`` for another family or no
    checkpoint."""
    from deepmac_nb.deepmarc import predictor as marc

    path = model_dir / PARAMS_FILE
    params = yaml.safe_load(path.read_text()) or {}
    if marc.is_deepmarc_params(params):
        raise UserError(
            f"{model_dir} is a Deep-MARC (Mask R-CNN) model dir; adapt fine-tunes Deep-MAC "
            "models only (Deep-MARC's mask head trains on sampled proposals inside Model "
            "Garden's Mask R-CNN, which has no hook for box-only losses)."
        )
    if not isinstance((params.get("task") or {}).get("model"), dict):
        raise UserError(f"{path} has no 'task: model:' block; is {model_dir} a model dir?")
    import tensorflow as tf

    if tf.train.latest_checkpoint(str(model_dir)) is None:
        raise UserError(f"{model_dir} has {PARAMS_FILE} but no checkpoint (ckpt-<step>).")
    return params


def confident_entries(detections_path: Path, images_dir: Path, options: AdaptOptions) -> list:
    """``(entry, detections)`` for every usable image with a detection >= ``min_conf``."""
    detections = megadetector.read_detections(detections_path, images_dir)
    wanted = set(options.categories) if options.categories else None
    out = []
    for entry in detections.images:
        if entry.failure:
            continue
        kept = [
            d
            for d in entry.detections
            if d.conf >= options.min_conf and (wanted is None or d.category in wanted)
        ]
        if kept:
            out.append((entry, kept))
    if not out:
        raise UserError(
            f"{detections_path}: no detection with confidence >= {options.min_conf}"
            + (f" in categories {sorted(wanted)}" if wanted else "")
            + "; lower --min-conf."
        )
    return out


def _shrunk(encoded: bytes, width: int, height: int, max_side: int) -> tuple[bytes, int, int]:
    """Re-encodes an image larger than ``max_side`` as a JPEG with that longest side, so
    each training step decodes (and the records store) no more pixels than it uses."""
    scale = max_side / max(width, height)
    if scale >= 1.0:
        return encoded, width, height
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    with Image.open(io.BytesIO(encoded)) as img:
        small = img.convert("RGB").resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=95)
    return buf.getvalue(), size[0], size[1]


def _image_result(
    path: Path, key: str, detections: list, max_side: int | None = None
) -> coco_tfrecord.ImageResult:
    """One boxes-only record; raises ``coco_tfrecord._Drop`` for an unreadable image."""
    encoded, fmt, width, height = coco_tfrecord._read_image(str(path))
    if max_side and max(width, height) > max_side:
        (encoded, width, height), fmt = _shrunk(encoded, width, height, max_side), "jpeg"
    result = coco_tfrecord.ImageResult(key, key, encoded=encoded, image_format=fmt)
    result.width, result.height = width, height
    ok, empty = cv2.imencode(".png", np.zeros((height, width), np.uint8))
    if not ok:
        raise coco_tfrecord._Drop("mask PNG encoding failed")
    for det in detections:
        ymin, xmin, ymax, xmax = det.box
        values = (ymin, xmin, ymax, xmax, _LABEL, 0, (ymax - ymin) * (xmax - xmin) * width * height)
        for name, value in zip(coco_tfrecord._OBJECT_KEYS, (*values, empty.tobytes()), strict=True):
            result.objects[name].append(value)
    return result


def write_records(
    entries: list, images_dir: Path, records_dir: Path, max_side: int | None = None
) -> dict:
    """Writes ``records_dir/adapt-00000-of-00001.tfrecord`` atomically; returns counts.

    Images whose longest side exceeds ``max_side`` are stored downscaled to it (boxes are
    normalized, so they do not change). Unreadable images are skipped and counted;
    ``UserError`` when none is readable.
    """
    import tensorflow as tf

    skipped: dict[str, list[str]] = {}
    examples, boxes = [], 0
    for entry, kept in entries:
        path = Path(entry.file) if Path(entry.file).is_absolute() else images_dir / entry.file
        try:
            result = _image_result(path, entry.key, kept, max_side)
        except coco_tfrecord._Drop as why:
            skipped.setdefault(str(why), []).append(entry.file)
            continue
        examples.append(coco_tfrecord._to_example(result, {_LABEL: "object"}))
        boxes += len(kept)
    if not examples:
        reasons = ", ".join(f"{k}: {len(v)}" for k, v in skipped.items())
        raise UserError(
            f"none of the {len(entries)} images with detections is readable ({reasons})"
        )
    shard = records_dir / coco_tfrecord.shard_names("adapt", 1)[0]
    with _io.atomic_path(shard) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for example in examples:
            writer.write(example)
    counts = {"images": len(examples), "boxes": boxes, "skipped": skipped}
    _io.write_json(records_dir / "summary.json", counts)
    return counts


def adapt_params(model_params: dict, model_dir: Path, records: str, options: AdaptOptions):
    """The fine-tuning ``ExperimentConfig``: the model of ``model_params``, weak losses
    only, restored from ``model_dir``."""
    from deepmac_nb.inference import export
    from deepmac_nb.train import experiments

    params = experiments.get_experiment("deepmac_shapes_quick")  # any Deep-MAC template
    params.task.model = export.model_config_from_params(model_params)
    warmup = max(1, min(50, options.steps // 10))
    log_every = max(1, min(25, options.steps))
    params.trainer = experiments.trainer(
        options.steps, options.learning_rate, warmup, options.learning_rate / 10,
        ckpt_every=max(1, min(100, options.steps)), log_every=log_every,
    )  # fmt: skip
    task = params.task
    task.dataset, task.annotation_file, task.validation_images = "", "", ""
    task.train_data.input_path = task.validation_data.input_path = records
    task.train_data.global_batch_size = task.validation_data.global_batch_size = options.batch_size
    task.train_data.shuffle_buffer_size = 100
    task.allowed_mask_classes = "0"  # no class id 0 exists: no instance carries mask loss
    task.init_checkpoint, task.init_checkpoint_modules = str(model_dir), "all"
    task.freeze_backbone = not options.train_backbone
    task.losses.override(
        {"object_center_weight": 0.0, "scale_weight": 0.0, "offset_weight": 0.0,
         "mask_weight": 0.0},
        is_strict=True,
    )  # fmt: skip
    experiments.with_weak_losses(params)
    params.validate()
    return params


def adapt(model_dir, detections, images_dir, out, options: AdaptOptions) -> dict:
    """Runs the whole adaptation (see the module docstring); returns the summary dict."""
    from deepmac_nb.train import runner

    model_dir, images_dir, out = Path(model_dir), Path(images_dir), Path(out)
    model_params = read_model_params(model_dir)
    entries = confident_entries(Path(detections), images_dir, options)
    work = partial_dir(out)
    records_dir = work / RECORDS_DIR
    if (records_dir / "summary.json").is_file():  # a rerun: resume with the same records
        counts = json.loads((records_dir / "summary.json").read_text())
    else:
        # The smallest training window (aug_scale_min 0.6 of the image) maps 1.7 x the
        # input side of image pixels onto the input; more are never seen.
        max_side = 2 * max(model_params["task"]["model"].get("input_size", [512])[:2])
        counts = write_records(entries, images_dir, records_dir, max_side)
    params = adapt_params(model_params, model_dir, str(records_dir / "adapt-*.tfrecord"), options)
    runner.train(params, work, mode="train")
    summary = {
        "source_model": str(model_dir.resolve()),
        "detections": str(Path(detections).resolve()),
        "min_conf": options.min_conf,
        "steps": options.steps,
        "train_backbone": options.train_backbone,
        **counts,
    }
    _io.write_json(work / SUMMARY_FILE, summary)
    shutil.rmtree(records_dir)
    os.replace(work, out)
    return summary


def format_summary(summary: dict, out: Path) -> str:
    skipped = sum(len(v) for v in summary.get("skipped", {}).values())
    return (
        f"adapted on {summary['images']} images, {summary['boxes']} boxes "
        f"(conf >= {summary['min_conf']}; {skipped} unreadable images skipped), "
        f"{summary['steps']} steps -> {out}"
    )
