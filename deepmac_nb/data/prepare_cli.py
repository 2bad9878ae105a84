"""``deepmac-nb prepare {coco,shapes}``: build the TFRecords that training reads.

``coco`` converts any COCO-format annotation file plus its image folder
(``deepmac_nb.data.coco_tfrecord``); ``shapes`` generates the synthetic teaching set
(``deepmac_nb.data.shapes``). Each dataset's module is imported only when that dataset
is chosen, so ``prepare coco`` never pays for the shapes generator and ``--help`` stays
instant (the arguments of ``shapes`` are added when its parser is first used).

Example:
    deepmac-nb prepare coco --annotations val.json --images images/ --out records/ --shards 4
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class _LazyArgumentParser(argparse.ArgumentParser):
    """A sub-parser that adds its arguments (importing their module) on first use."""

    def __init__(self, *args, populate: Callable | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._populate = populate

    def parse_known_args(self, args=None, namespace=None):
        if self._populate is not None:
            populate, self._populate = self._populate, None
            populate(self)
        return super().parse_known_args(args, namespace)


def _add_shapes_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        from deepmac_nb.data import shapes
    except ModuleNotFoundError as exc:
        if exc.name != "deepmac_nb.data.shapes":
            raise
        parser.error("the synthetic shapes generator is not installed in this build")
    shapes.add_prepare_shapes_arguments(parser)


def _add_coco_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="COCO-format annotation JSON")
    parser.add_argument("--images", required=True, help="folder the 'file_name' entries are in")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument(
        "--shards",
        type=_positive_int,
        default=None,
        help="number of shards (default: ~1000 images each)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: CPU count; 0 = none)"
    )
    parser.add_argument(
        "--prefix", default=None, help="shard name prefix (default: the annotation file's stem)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``coco`` and ``shapes`` sub-commands to the ``prepare`` parser."""
    sub = parser.add_subparsers(
        dest="dataset", metavar="DATASET", required=True, parser_class=_LazyArgumentParser
    )
    coco_help = "convert a COCO-format annotation file + images (polygons or RLE masks)"
    _add_coco_arguments(sub.add_parser("coco", help=coco_help, description=coco_help))
    shapes_help = "generate the synthetic shapes set (seen / unseen classes)"
    sub.add_parser(
        "shapes", help=shapes_help, description=shapes_help, populate=_add_shapes_arguments
    )


def _run_coco(args: argparse.Namespace) -> int:
    from deepmac_nb.data import coco_tfrecord

    summary = coco_tfrecord.convert_coco(
        args.annotations,
        args.images,
        args.out,
        shards=args.shards,
        workers=args.workers,
        prefix=args.prefix,
        progress=not args.no_progress,
    )
    print(f"prepare coco: {coco_tfrecord.format_summary(summary)}")
    if not summary["images_written"]:
        print("prepare coco: error: no image could be converted; nothing written", file=sys.stderr)
        return 1
    print(f"prepare coco: summary in {args.out}/{summary['prefix']}-summary.json")
    return 0


def run(args: argparse.Namespace) -> int:
    """Runs ``prepare coco`` or ``prepare shapes``; returns the exit code."""
    if args.dataset == "shapes":
        from deepmac_nb.data import shapes

        return int(shapes.run_prepare_shapes(args) or 0)
    return _run_coco(args)
