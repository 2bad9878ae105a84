"""What the official DeepMAC model costs on a CPU: seconds per camera-trap photo.

Our ``deepmac_hg104_1024_voc`` model is the graph of the official
``deepmac_1024x1024_coco17`` checkpoint (CenterNet Hourglass-104, 1024 px input, Hourglass-100
mask head on both stages); with random weights it costs the same arithmetic. This builds it,
exports it as a SavedModel with the official signature (the format the official checkpoint
ships in), loads it through ``deepmac_nb.loading.load`` and runs ``segment`` over the
camera-trap sample (MegaDetector v5 boxes, conf >= 0.2), one image untimed first:

    .venv/bin/python benchmarks/official_graph_cpu.py \\
        --detections ../shared/data/camera_traps/cameratrapai_mdv5_detections.json \\
        --images ../shared/data/camera_traps/images --export /tmp/deepmac_hg104_1024_sm

``--export`` is reused when it already holds a SavedModel (the export takes minutes).
The LAST line printed is one JSON object: build/export/load seconds, seconds per image
(mean, min, max over the photos with boxes, after the first one), the CPU seconds per
photo (all threads; unlike wall time, barely changed by other work on the cores), boxes,
and the machine's CPU count and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from deepmac_nb import loading
from deepmac_nb.inference import export, iwildcam, megadetector, segment_cli

EXPERIMENT = "deepmac_hg104_1024_voc"


def build_export(out: Path) -> dict:
    """Builds the random-weight model and writes its SavedModel; returns timings."""
    from deepmac_nb.train import experiments

    start = time.perf_counter()
    params = experiments.get_experiment(EXPERIMENT)
    model = export._built(
        export.model_config_from_params({"task": {"model": params.task.model.as_dict()}})
    )
    built = time.perf_counter()
    export.export_saved_model(model, out)
    return {
        "build_s": round(built - start, 1),
        "export_s": round(time.perf_counter() - built, 1),
        "parameters_m": round(model.count_params() / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--export", required=True, help="SavedModel folder (reused if there)")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--min-conf", type=float, default=0.2)
    args = parser.parse_args()
    out = Path(args.export)
    timings = {} if (out / "saved_model.pb").is_file() else build_export(out)
    start = time.perf_counter()
    predictor = loading.load(out)
    timings["load_s"] = round(time.perf_counter() - start, 1)
    detections = megadetector.read_detections(args.detections, args.images)
    entries = [e for e in detections.images if e.failure is None][: args.max_images]
    seconds, cpu_seconds, boxes, warmed = [], [], 0, False
    with tempfile.TemporaryDirectory(prefix="deepmac-official-cpu-") as tmp:
        for entry in entries:
            image = iwildcam.load_rgb(Path(args.images) / entry.file)
            kept, _ = megadetector.select_detections(entry, args.min_conf)
            t0, c0 = time.perf_counter(), time.process_time()
            segment_cli.segment_image(predictor, image, entry, kept, tmp)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"{entry.file}: {len(kept)} boxes, {elapsed:.2f} s, {cpu:.2f} CPU s", flush=True)
            if not kept:  # no box: the model does not run
                timings["images_without_boxes"] = timings.get("images_without_boxes", 0) + 1
            elif not warmed:  # the first model call pays tracing and kernel setup
                timings["first_image_s"], warmed = round(elapsed, 2), True
            else:
                seconds.append(elapsed)
                cpu_seconds.append(cpu)
                boxes += len(kept)
    print(
        json.dumps(
            timings
            | {
                "experiment": EXPERIMENT,
                "images_timed": len(seconds),
                "boxes_timed": boxes,
                "s_per_image_mean": round(statistics.mean(seconds), 2),
                "s_per_image_min": round(min(seconds), 2),
                "s_per_image_max": round(max(seconds), 2),
                # All cores' CPU time: wall time on idle cores ~ this / cores used.
                "cpu_s_per_image_mean": round(statistics.mean(cpu_seconds), 2),
                "cpu_count": os.cpu_count(),
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
