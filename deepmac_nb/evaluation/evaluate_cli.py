"""``deepmac-nb evaluate``: COCO mask (and box) AP split into seen / unseen classes.

Evaluates a trained model (``--model``) or a classical baseline (``--method``) on a
COCO-format set and writes one JSON (stable contract)::

    {"protocol": "box_prompted" | "detected", "model": path | "method": name,
     "flip_tta": true (only with --flip-tta), "mask": {split: {AP, AP50, AP75, APs, APm, APl}}, "box": {...} (detected only),
     "per_class": [...], "images", "instances", "notes", "seconds", "stats"}

Example:
    deepmac-nb evaluate --annotations ../shared/data/coco_mini/annotations/val_dev.json \\
        --images ../shared/data/coco_mini/images --method ellipse --out runs/eval/ellipse.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from deepmac_nb import _io
from deepmac_nb.errors import UserError
from deepmac_nb.evaluation import baselines, coco_eval, protocols

_NO_INFERENCE = "model evaluation needs deepmac_nb.inference (not available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``evaluate`` options to ``parser``."""
    parser.add_argument("--annotations", required=True, help="COCO annotation JSON")
    parser.add_argument("--images", required=True, help="folder of the images' file_name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="trained model: checkpoint folder or SavedModel")
    source.add_argument("--method", choices=sorted(baselines.BASELINES), help="baseline")
    parser.add_argument(
        "--boxes",
        choices=("gt", "detected"),
        default="gt",
        help="gt: GT boxes prompt the masks (default); detected: the model's own boxes",
    )
    parser.add_argument(
        "--splits",
        default=None,
        help="comma-separated split names (default voc,non_voc for COCO ids, "
        "seen,unseen for the shapes ids 1..8, else only all)",
    )
    parser.add_argument("--max-images", type=int, default=None, help="first N images by id")
    parser.add_argument("--skip-missing", action="store_true", help="skip absent image files")
    parser.add_argument("--workers", type=int, default=1, help="images processed in parallel")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--plots", default=None, help="folder for PNG plots (optional)")
    parser.add_argument(
        "--flip-tta", action="store_true", help="--model: average each mask with the mirror image's"
    )


def _load_predictor(path: str, flip_tta: bool = False) -> Any:
    if not Path(path).exists():
        raise FileNotFoundError(f"model not found: {path}")
    try:
        import deepmac_nb.inference.predictor  # noqa: F401 - the TF stack, checked here
        from deepmac_nb import loading
    except ImportError as exc:
        # The import's own message stays in the line: a missing package and a broken
        # import inside it need different fixes.
        raise UserError(f"{_NO_INFERENCE}: {exc}") from exc
    return loading.load(path, flip_tta=flip_tta)


def _check_args(args: argparse.Namespace) -> None:
    if args.flip_tta and args.model is None:
        raise UserError("--flip-tta needs --model (baselines are deterministic shapes)")
    if args.boxes == "detected" and args.model is None:
        raise UserError("--boxes detected needs --model (baselines only segment given boxes)")
    if args.max_images is not None and args.max_images < 1:
        raise UserError("--max-images must be at least 1")
    if args.workers < 1:
        raise UserError("--workers must be at least 1")


def _model(args: argparse.Namespace) -> Any:
    """The baseline's ``MaskFn`` or the loaded ``Predictor`` that ``--model`` names."""
    if args.model is None:
        return baselines.get_mask_fn(args.method)
    return _load_predictor(args.model, flip_tta=args.flip_tta)


def format_table(metrics: dict[str, Any]) -> str:
    """One-screen text table: rows are splits, columns AP/AP50/AP75/APs/APm/APl."""
    source = metrics.get("method") or metrics.get("model")
    lines = [
        f"{metrics['protocol']} | {source} | {metrics['images']} images | "
        f"{metrics['instances']} instances | {metrics['seconds']:.1f} s"
    ]
    for key in ("mask", "box"):
        if key not in metrics:
            continue
        header = f"{key + ' AP':<12}" + "".join(f"{m:>8}" for m in coco_eval.METRIC_NAMES)
        lines += ["", header]
        for split, stats in metrics[key].items():
            cells = "".join(
                f"{'-' if stats[m] is None else format(stats[m], '.2f'):>8}"
                for m in coco_eval.METRIC_NAMES
            )
            lines.append(f"{split:<12}{cells}")
    if metrics.get("stats", {}).get("skipped_missing"):
        lines.append(f"\nskipped {metrics['stats']['skipped_missing']} missing images")
    lines += [f"note: {note}" for note in metrics.get("notes", [])]
    return "\n".join(lines)


def _write_plots(metrics: dict[str, Any], folder: str) -> list[Path]:
    from deepmac_nb.evaluation import plots  # matplotlib only when asked

    return plots.save_all(metrics, folder)


def _overhead(seconds_model: float, loop: float, workers: int) -> float | None:
    """Share of the evaluation loop (predict + COCOeval) not spent in the model; model
    loading is setup, not overhead. None when threads overlap the model calls (their
    summed time is then not wall time)."""
    return round(1.0 - seconds_model / loop, 4) if workers == 1 and loop > 0 else None


def run(args: argparse.Namespace) -> int:
    """Runs the evaluation, writes ``--out`` (and ``--plots``), prints the table."""
    start = time.perf_counter()
    _check_args(args)
    coco = coco_eval.load_coco(args.annotations)
    coco_eval.resolve_eval_splits(coco, args.splits)  # bad names fail before inference
    detected = args.boxes == "detected"
    model = _model(args)
    run_start = time.perf_counter()
    # A backend without a detector (TFLite) raises one ValueError here: exit 2, one line.
    metrics = protocols.evaluate(
        model,
        coco,
        args.images,
        "detected" if detected else "box_prompted",
        splits=args.splits,
        max_images=args.max_images,
        skip_missing=args.skip_missing,
        workers=args.workers,
        progress=True,
        pr_curves=args.plots is not None,
    )
    stats = metrics.pop("stats")
    seconds_predict = stats.pop("seconds_total")
    seconds_eval = time.perf_counter() - run_start - seconds_predict
    total = time.perf_counter() - start
    stats.update(
        seconds_predict=seconds_predict,
        seconds_eval=round(seconds_eval, 3),
        seconds_total=round(total, 3),
        overhead_fraction=_overhead(
            stats["seconds_model"], seconds_predict + seconds_eval, args.workers
        ),
    )
    source = {"model": args.model} if args.model else {"method": args.method}
    if args.flip_tta:
        source["flip_tta"] = True
    out = {"protocol": "detected" if detected else "box_prompted", **source, **metrics}
    out.update(seconds=round(total, 3), stats=stats)
    _io.write_json(args.out, out)
    if args.plots:
        _write_plots(out, args.plots)
    print(format_table(out))
    return 0
