"""Speed of ``deepmac-nb prepare coco`` vs Model Garden's ``create_coco_tf_record``.

Run from the repository root (needs the sample data in ../shared/data):

    .venv/bin/python benchmarks/prepare_speed.py [--workers 2] [--repeats 3] [--e2e]

Both converters run in this process after their imports (TensorFlow start-up is not
what is compared), with the same number of worker processes, masks included, on
COCO-mini ``val_dev`` (48 images, 443 instances) and ``train_exhaustive`` (86 images,
841 instances); the best of ``--repeats`` runs is reported as images/s. ``--e2e`` also
times each converter once as a fresh command, imports included.

Model Garden's converter aborts on compressed RLE and on RLE masks of non-crowd
objects, which ``val_dev`` has; it is given an equivalent JSON with uncompressed RLE
(non-crowd RLE wrapped in a list, the form it accepts), so both rasterize the same masks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from deepmac_nb.data import coco_tfrecord, samples

SPLITS = ("val_dev", "train_exhaustive")


def model_garden_json(src: Path, dst: Path) -> Path:
    """Rewrites every RLE as uncompressed counts, the only form Model Garden's converter reads."""
    coco = json.loads(src.read_text())
    for ann in coco["annotations"]:
        seg = ann["segmentation"]
        if isinstance(seg, dict) and isinstance(seg["counts"], str):
            flat = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
            flat = flat.flatten(order="F")
            bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
            seg = {
                "size": seg["size"],
                "counts": ([0] if flat[0] else []) + np.diff(bounds).tolist(),
            }
        if isinstance(seg, dict) and not ann["iscrowd"]:
            seg = [seg]
        ann["segmentation"] = seg
    dst.write_text(json.dumps(coco))
    return dst


def run_ours(ann: Path, images: Path, out: Path, workers: int) -> None:
    coco_tfrecord.convert_coco(ann, images, out, shards=4, workers=workers, progress=False)


def run_model_garden(ann: Path, images: Path, out: Path, workers: int) -> None:
    from absl import flags
    from official.vision.data import create_coco_tf_record as mg

    flags.FLAGS([sys.argv[0], f"--num_processes={workers}"])
    out.mkdir(parents=True, exist_ok=True)
    mg._create_tf_record_from_coco_annotations(
        str(ann), [str(images)], str(out / "mg"), 4, str(ann), include_masks=True
    )


def best_of(fn, repeats: int, *args) -> tuple[float, float, int]:
    """(best seconds, median seconds, output bytes) over fresh output folders."""
    times, size = [], 0
    for _ in range(repeats):
        out = Path(tempfile.mkdtemp(prefix="prepare_speed-"))
        start = time.perf_counter()
        fn(*args[:2], out, *args[2:])
        times.append(time.perf_counter() - start)
        size = sum(p.stat().st_size for p in out.glob("*.tfrecord"))
        shutil.rmtree(out)
    return min(times), statistics.median(times), size


def end_to_end(ann: Path, mg_ann: Path, images: Path, workers: int) -> tuple[float, float]:
    """Wall seconds of each converter as a fresh command (TensorFlow import included)."""
    out = Path(tempfile.mkdtemp(prefix="prepare_speed-"))
    ours = [sys.executable, "-m", "deepmac_nb.cli", "prepare", "coco", "--annotations", str(ann)]
    ours += ["--images", str(images), "--out", str(out / "ours"), "--shards", "4"]
    ours += ["--workers", str(workers), "--no-progress"]
    mg = [sys.executable, "-m", "official.vision.data.create_coco_tf_record"]
    mg += [f"--image_dir={images}", f"--object_annotations_file={mg_ann}", "--include_masks"]
    mg += [f"--output_file_prefix={out}/mg/mg", "--num_shards=4", f"--num_processes={workers}"]
    seconds = []
    for cmd in (ours, mg):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    shutil.rmtree(out)
    return seconds[0], seconds[1]


def compare(split: str, tmp: Path, args: argparse.Namespace) -> None:
    """Times both converters on one COCO-mini split and prints one line (two with --e2e)."""
    ds = samples.coco_mini(split)
    n = len(json.loads(ds.annotations.read_text())["images"])
    mg_ann = model_garden_json(ds.annotations, tmp / f"{split}.json")
    ours = best_of(run_ours, args.repeats, ds.annotations, ds.images, args.workers)
    mg = best_of(run_model_garden, args.repeats, mg_ann, ds.images, args.workers)
    print(
        f"{split:17s} {n:3d} images | ours {n / ours[0]:6.1f} img/s ({ours[0]:.2f} / "
        f"{ours[1]:.2f} s, {ours[2] / 1e6:.1f} MB) | Model Garden {n / mg[0]:6.1f} img/s "
        f"({mg[0]:.2f} / {mg[1]:.2f} s, {mg[2] / 1e6:.1f} MB) | ours/MG {mg[0] / ours[0]:.2f}x"
    )
    if args.e2e:
        e2e = end_to_end(ds.annotations, mg_ann, ds.images, args.workers)
        print(f"{'':17s} as commands: ours {e2e[0]:.1f} s, Model Garden {e2e[1]:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=coco_tfrecord.default_workers())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--e2e", action="store_true", help="also time both as fresh commands")
    args = parser.parse_args()
    if not samples.available():
        print(f"sample data not found at {samples.data_root()}", file=sys.stderr)
        return 1
    import official.vision.data.create_coco_tf_record  # noqa: F401  (imports outside timing)

    tmp = Path(tempfile.mkdtemp(prefix="prepare_speed-json-"))
    print(f"workers={args.workers} repeats={args.repeats} (best / median seconds)")
    for split in SPLITS:
        compare(split, tmp, args)
    shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
