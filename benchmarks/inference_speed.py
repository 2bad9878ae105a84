"""Box -> mask inference speed end to end, and the mask head's arithmetic rate vs peak.

Run from the repository root (a model dir, SavedModel, official folder or .tflite):

    .venv/bin/python benchmarks/inference_speed.py --model runs/deepmac \\
        --detections ../shared/data/camera_traps/cameratrapai_mdv5_detections.json \\
        --images ../shared/data/camera_traps/images --backend tf --image-px 1024

Measures (each after an untimed warm-up):
  1. end to end over the file's images (detections with conf >= --min-conf): JPEG decode,
     resize + backbone + mask head (``Predictor.predict_box_masks``), paste + label map
     + RLE (``iwildcam.instance_outputs``) and the atomic PNG/JSON writes, into a temp dir;
  2. cost vs boxes per image (1, 10, 100 random boxes on the first photo, no decode);
  3. the mask-head stage alone on 64 instances: FLOPs per instance counted by
     ``tf.compat.v1.profiler`` on its concrete function, divided by its run time
     (``--backend tflite``: the mask head converted alone to builtin-ops TFLite);
  4. this machine's float32 matmul peak: a 2048 x 2048 ``tf.matmul`` loop.

``--image-px`` sets the model's square input size for Deep-MAC model dirs (the network is
fully convolutional); a Deep-MARC model dir, SavedModel or .tflite keeps its own, and the
JSON reports the real one (Deep-MARC: no mask-head rate, its head takes RoI features).
``--backend tflite`` with a model dir (either architecture) exports a TFLite model
(``--max-boxes`` per call) first. The LAST line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from mask_head_speed import matmul_peak, profiled_flops, rate, tflite_runner

from deepmac_nb import loading
from deepmac_nb.deepmarc import export as marc_export
from deepmac_nb.deepmarc import predictor as marc
from deepmac_nb.inference import export, iwildcam, megadetector
from deepmac_nb.inference.predictor import Predictor

HEAD_BATCH = 64


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def load_backend(args, workdir: Path):
    """``(predictor, keras model or None, input side)`` for the chosen backend."""
    path = Path(args.model)
    if (path / export.PARAMS_FILE).is_file():
        if marc.is_deepmarc_params(marc.read_params(path)):
            return _deepmarc_backend(args, path, workdir)
        model = export.load_model_dir(path, input_px=args.image_px)
        if args.backend == "tflite":
            lite = export.export_tflite(model, workdir / "model.tflite", args.max_boxes)
            return Predictor.from_tflite(lite, os.cpu_count()), model, model.input_hw[0]
        return Predictor.from_model(model), model, model.input_hw[0]
    if args.backend == "tflite":
        predictor = Predictor.from_tflite(path, os.cpu_count())
        return predictor, None, predictor._box_mask_fn.input_hw[0]
    predictor = loading.load(path)
    side = predictor.model.input_hw[0] if predictor.model is not None else None
    return predictor, predictor.model, side


def _deepmarc_backend(args, path: Path, workdir: Path):
    """Deep-MARC model dir: its own input size (``--image-px`` is ignored), no head rate
    (Model Garden's mask head takes RoI features plus classes, not DeepMAC crops)."""
    model = marc.DeepMARCModel.from_model_dir(path)
    if args.backend == "tflite":
        lite = marc_export.export_tflite(model, workdir / "model.tflite", args.max_boxes)
        return Predictor.from_tflite(lite, os.cpu_count()), None, model.input_hw[0]
    return marc.as_predictor(model), None, model.input_hw[0]


def _one_image(predictor, entry, images_dir: Path, out_dir: Path, min_conf: float):
    """Runs one image through the segment pipeline; returns (boxes, per-stage seconds)."""
    image, t_decode = _timed(iwildcam.load_rgb, images_dir / entry.file)
    kept, _ = megadetector.select_detections(entry, min_conf)
    boxes = np.array([d.box for d in kept], np.float32).reshape(-1, 4)
    masks, t_model = _timed(predictor.predict_box_masks, image, boxes)
    (labels, anns), t_paste = _timed(iwildcam.instance_outputs, masks, kept, *image.shape[:2])
    record = {"image_id": entry.key, "annotations": anns}
    _, t_write = _timed(iwildcam.write_image_outputs, out_dir, entry.key, record, labels, None)
    return len(kept), (t_decode, t_model, t_paste, t_write)


def end_to_end(predictor, entries, images_dir: Path, out_dir: Path, min_conf: float) -> dict:
    """Per-stage seconds over all images, timed on a second pass.

    The untimed first pass pays tracing and oneDNN's per-shape kernel setup (each box
    bucket is a new shape), which a long segment run pays once.
    """
    for entry in entries:
        _one_image(predictor, entry, images_dir, out_dir, min_conf)
    stages = dict.fromkeys(("decode", "model", "paste_rle", "write"), 0.0)
    boxes_total = 0
    for entry in entries:
        boxes, times = _one_image(predictor, entry, images_dir, out_dir, min_conf)
        boxes_total += boxes
        for key, t in zip(stages, times, strict=True):
            stages[key] += t
    return {"stages_s": stages, "images": len(entries), "boxes": boxes_total}


def cost_vs_boxes(predictor, image: np.ndarray, out_dir: Path, counts=(1, 10, 100)) -> dict:
    """Median ms per image (model + paste + PNG) for ``n`` random boxes, no decode."""
    rng = np.random.default_rng(0)
    result = {}
    for n in counts:
        corner = rng.uniform(0.0, 0.7, (n, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(0.1, 0.3, (n, 2))], 1)
        kept = [megadetector.Detection(i, tuple(b), "animal", 0.5) for i, b in enumerate(boxes)]
        times = []
        for _ in range(4):
            start = time.perf_counter()
            masks = predictor.predict_box_masks(image, boxes.astype(np.float32))
            labels, _ = iwildcam.instance_outputs(masks, kept, *image.shape[:2])
            iwildcam.write_image_outputs(out_dir, f"cost_{n}", {}, labels, None)
            times.append(time.perf_counter() - start)
        result[str(n)] = round(1e3 * statistics.median(times[1:]), 2)  # [0]: warm-up
    return result


def mask_head_flops(model) -> tuple[int, list[int]]:
    """FLOPs of the mask head for one instance, and its input shape ``[1, S, S, C]``."""
    mcfg = model.config.mask
    channels = mcfg.head_input_channels()
    shape = [1, mcfg.mask_size, mcfg.mask_size, channels]
    # The public call wraps the head in tf.cond (for N = 0), and the v1 profiler does not
    # count ops inside cond branch functions; profile the unconditional body instead.
    body = getattr(model.mask_head, "_logits", None) or model.mask_head
    flops = profiled_flops(lambda x: body(x, training=False), tf.TensorSpec(shape, tf.float32))
    return flops, shape


def mask_head_rate(model, backend: str, workdir: Path) -> tuple[float, int]:
    """(GFLOP/s of the mask head on ``HEAD_BATCH`` instances, FLOPs per instance)."""
    flops, shape = mask_head_flops(model)
    batch = tf.random.normal([HEAD_BATCH, *shape[1:]])
    if backend == "tflite":
        body = lambda x: model.mask_head(x, training=False)  # noqa: E731
        spec = tf.TensorSpec(batch.shape, tf.float32, name="x")
        run = tflite_runner(model.mask_head, body, spec, batch.numpy(), workdir)
    else:
        fn = tf.function(lambda x: model.mask_head(x, training=False))
        run = lambda: fn(batch).numpy()  # noqa: E731
    return rate(run) * flops * HEAD_BATCH / 1e9, flops


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--detections", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--backend", choices=("tf", "tflite"), default="tf")
    parser.add_argument("--image-px", type=int, default=1024)
    parser.add_argument("--max-boxes", type=int, default=16, help="TFLite boxes per call")
    parser.add_argument("--min-conf", type=float, default=0.2)
    return parser.parse_args()


def _summary(args, predictor, side, e2e: dict, cost: dict, head, peak: float) -> dict:
    total = sum(e2e["stages_s"].values())
    per_image = {k: round(1e3 * v / max(e2e["images"], 1), 2) for k, v in e2e["stages_s"].items()}
    return {
        "backend": args.backend,
        "predictor": predictor.backend,
        "image_px": side,
        "images": e2e["images"],
        "boxes": e2e["boxes"],
        "images_per_s": round(e2e["images"] / total, 3) if total else None,
        "ms_per_box": round(1e3 * total / e2e["boxes"], 2) if e2e["boxes"] else None,
        "stage_ms_per_image": per_image,
        "ms_per_image_vs_boxes": cost,
        "mask_head_mflops_per_instance": round(head[1] / 1e6, 3) if head[1] else None,
        "mask_head_gflops_per_s": round(head[0], 2) if head[0] else None,
        "matmul_peak_gflops_per_s": round(peak, 2),
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    args = _parse_args()
    detections = megadetector.read_detections(args.detections, args.images)
    entries = [e for e in detections.images if e.failure is None]
    with tempfile.TemporaryDirectory(prefix="deepmac-speed-") as tmp:
        workdir = Path(tmp)
        predictor, model, side = load_backend(args, workdir)
        e2e = end_to_end(predictor, entries, Path(args.images), workdir, args.min_conf)
        first = iwildcam.load_rgb(Path(args.images) / entries[0].file)
        cost = cost_vs_boxes(predictor, first, workdir)
        head = mask_head_rate(model, args.backend, workdir) if model is not None else (None, None)
    peak = matmul_peak()
    print(json.dumps(_summary(args, predictor, side, e2e, cost, head, peak)))


if __name__ == "__main__":
    main()
