"""``deepmac-nb adapt``: fine-tune a Deep-MAC model's masks on your own photos, boxes only.

    deepmac-nb adapt --model MODEL_DIR --detections md.json --images DIR --out NEW_DIR \\
        [--min-conf 0.8] [--steps 300] [--train-backbone] [--categories animal]

Confident MegaDetector detections become boxes-only training records and the mask head
is fine-tuned from ``MODEL_DIR`` with the weak losses (``deepmac_nb.train.adapt``).
Rerun the same command to resume an interrupted run (it lives in ``NEW_DIR.partial``);
``NEW_DIR`` appears only when training is done, and ``segment --model NEW_DIR`` uses it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepmac_nb.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a Deep-MAC model dir (from train)")
    parser.add_argument("--detections", required=True, help="MegaDetector batch output JSON")
    parser.add_argument("--images", required=True, help="folder the detections' files are in")
    parser.add_argument("--out", required=True, help="the adapted model dir (must not exist)")
    parser.add_argument("--min-conf", type=float, default=0.8, help="keep detections >= this")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps")
    parser.add_argument("--batch-size", type=int, default=4, help="images per step")
    parser.add_argument("--categories", default=None, help="comma list, e.g. animal,person")
    parser.add_argument(
        "--train-backbone", action="store_true", help="also fine-tune the backbone (slower)"
    )


def check_args(args: argparse.Namespace) -> None:
    """Every check that needs no TensorFlow; raises ``UserError``."""
    model = Path(args.model)
    if not (model / "params.yaml").is_file():
        raise UserError(f"{model} is not a model dir: no params.yaml in it")
    if not Path(args.detections).is_file():
        raise UserError(f"detections file not found: {args.detections}")
    if not Path(args.images).is_dir():
        raise UserError(f"image folder not found: {args.images}")
    if Path(args.out).exists():
        raise UserError(f"{args.out} exists; choose a new --out (an unfinished run resumes "
                        f"from {args.out}.partial)")  # fmt: skip
    if not 0.0 <= args.min_conf <= 1.0:
        raise UserError(f"--min-conf must be in [0, 1], not {args.min_conf}")
    if args.steps < 1 or args.batch_size < 1:
        raise UserError("--steps and --batch-size must be at least 1")


def run(args: argparse.Namespace) -> int:
    check_args(args)
    from absl import logging

    from deepmac_nb.train import adapt

    logging.set_verbosity(logging.INFO)
    categories = tuple(c.strip() for c in args.categories.split(",")) if args.categories else None
    options = adapt.AdaptOptions(
        min_conf=args.min_conf,
        steps=args.steps,
        train_backbone=args.train_backbone,
        batch_size=args.batch_size,
        categories=categories,
    )
    summary = adapt.adapt(args.model, args.detections, args.images, args.out, options)
    print(adapt.format_summary(summary, Path(args.out)))
    return 0
