"""The ``deepmac-nb`` command line.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. They are listed explicitly in ``COMMANDS`` (no registries that
depend on import side effects) and only the chosen one is imported, so ``--help`` and
``--version`` never pay TensorFlow's import time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from deepmac_nb import __version__
from deepmac_nb.errors import UserError

# name -> (module implementing it, one-line help). Order is the order in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "deepmac_nb.train.train_cli",
        "train Deep-MAC or Deep-MARC (partially supervised) on TPU, GPU(s) or CPU; rerun to resume",
    ),
    "prepare": (
        "deepmac_nb.data.prepare_cli",
        "convert COCO-format data or generate the synthetic shapes set into TFRecords",
    ),
    "evaluate": (
        "deepmac_nb.evaluation.evaluate_cli",
        "COCO mask/box AP split into seen and unseen classes, for a model or a classical baseline",
    ),
    "export": ("deepmac_nb.inference.export_cli", "model dir -> SavedModel or builtin TFLite"),
    "segment": ("deepmac_nb.inference.segment_cli", "MegaDetector boxes -> iWildCam masks"),
    "adapt": (
        "deepmac_nb.train.adapt_cli",
        "fine-tune a model's masks on your own photos from MegaDetector boxes only",
    ),
    "demo": (
        "deepmac_nb.demo",
        "run the tutorial notebooks end to end (QUICK mode) into --out, then print a summary",
    ),
}


# The command line's name for the package-level error (kept for existing callers).
CliError = UserError


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Builds the top-level parser; only ``selected``'s arguments are added."""
    parser = argparse.ArgumentParser(
        prog="deepmac-nb",
        description="DeepMAC / Deep-MARC: masks for novel classes from boxes.",
    )
    parser.add_argument("--version", action="version", version=f"deepmac-nb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            importlib.import_module(module_name).add_arguments(sp)
    return parser


def _selected_command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if a in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deepmac-nb`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # TensorFlow reads these once, at import: set them before any command imports it, so
    # no C++ log lines (CUDA probing, CPU feature notes) reach the command's output.
    # Level 3 also drops the CUDA probe's "failed call to cuInit" on CPU-only machines; TF errors
    # still reach the user as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    selected = _selected_command(argv)
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except (UserError, FileNotFoundError, ValueError) as exc:
        if os.environ.get("DEEPMAC_NB_DEBUG"):
            raise
        print(f"deepmac-nb {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
