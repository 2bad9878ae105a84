"""Throughput of the synthetic shapes generator on one CPU core.

Run from the repository root:

    .venv/bin/python benchmarks/shapes_speed.py --num-images 200 --image-size 256

It pins OpenCV to one thread and renders in-process (``workers=1``), so the result is
images per second per core. It prints two numbers: rendering alone (``render_image``)
and the full ``generate_shapes`` path (render + PNG encode + RLE + atomic writes + JSON)
into a temporary folder. The target is >= 50 images/s per core at 256x256.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cv2

from deepmac_nb.data.shapes import ShapesConfig, generate_shapes, render_image


def _render_rate(num_images: int, cfg: ShapesConfig) -> float:
    start = time.perf_counter()
    for i in range(num_images):
        render_image(i, seed=0, config=cfg)
    return num_images / (time.perf_counter() - start)


def _generate_rate(num_images: int, cfg: ShapesConfig) -> float:
    with tempfile.TemporaryDirectory(prefix="shapes-bench-") as out:
        start = time.perf_counter()
        generate_shapes(out, num_images=num_images, seed=0, config=cfg, workers=1)
        return num_images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--difficulty", default="default", choices=("easy", "default", "hard"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    cfg = ShapesConfig.preset(args.difficulty, image_size=args.image_size)
    render_image(0, seed=0, config=cfg)  # warm-up: imports, first-call allocations
    print(f"render only:         {_render_rate(args.num_images, cfg):7.1f} images/s per core")
    print(f"generate (to disk):  {_generate_rate(args.num_images, cfg):7.1f} images/s per core")


if __name__ == "__main__":
    main()
