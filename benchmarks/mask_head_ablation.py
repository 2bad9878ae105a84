"""Mask-head ablation: the same Deep-MAC detector, one run per head and seed.

Every run trains ``deepmac_shapes_quick`` (``--dataset shapes``: masks for the seen shapes
1-4 only) or ``deepmac_coco_mini_voc`` (``--dataset coco_mini``: masks for the 20 VOC
classes of both COCO-mini train files) with only ``task.model.mask.network_type`` changed,
then evaluates it with the evaluation package's Python API (what ``deepmac-nb evaluate``
runs): mask AP of both class splits with GT boxes as prompts and with the model's own
detections, plus the mask head's parameters, FLOPs per instance (counted as in
``inference_speed.py``) and ms per instance (64 instances per call). Classical
box-prompted baselines (box, ellipse, GrabCut) go into the same results.

Seeds: ``task.seed`` (what ``deepmac-nb train --seed`` sets): ``runner.train`` seeds the
weights, the data order and each example's augmentation with it (bit for bit only with
``task.deterministic``); the spread over seeds is reported. ``--steps`` also shortens the cosine
decay to the same length, so short runs end at a learning rate of 0.

Resumable: a run whose ``ablation_metrics.json`` exists is skipped, one with checkpoints
resumes from the latest. A progress line is printed per run; the results JSON is rewritten
atomically after each run, and ``--figures DIR`` draws AP vs head size and unseen masks.

Commands (from the repository root), times on a shared 2-vCPU CPU box (no GPU, load 2-7):

    .venv/bin/python benchmarks/mask_head_ablation.py --dataset shapes --steps 600 \\
        --heads conv4,resnet4,resnet8,resnet20,hourglass10,hourglass20,hourglass52 \\
        --seeds 0,1 --out runs/ablation/shapes.json     # 43 min (31 min of it training)
    .venv/bin/python benchmarks/mask_head_ablation.py --dataset shapes --steps 1500 \\
        --heads conv4,hourglass20,hourglass52 --seeds 0 \\
        --out runs/ablation/shapes_1500.json             # 14 min
    # figures only (all runs done, so all are skipped): ~35 s
    .venv/bin/python benchmarks/mask_head_ablation.py --dataset shapes --steps 600 \\
        --heads conv4,resnet4,resnet8,resnet20,hourglass10,hourglass20,hourglass52 \\
        --seeds 0,1 --out runs/ablation/shapes.json --figures docs \\
        --overlay runs/ablation/shapes_1500.json
    .venv/bin/python benchmarks/mask_head_ablation.py --dataset coco_mini --steps 800 \\
        --heads hourglass20,conv4 --seeds 0 --out runs/ablation/coco_mini.json   # 20 min

Measured numbers: docs/results.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepmac_nb import _io

METRICS_FILE = "ablation_metrics.json"
PROTOCOLS = ("gt", "detected")
SPEED_BATCH = 64
SPEED_REPEATS = 7
DEFAULT_HEADS = "conv4,resnet4,resnet8,resnet20,hourglass10,hourglass20,hourglass52"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """An experiment and its class splits (the mask-supervised one first)."""

    experiment: str
    seen: str
    unseen: str


DATASETS = {
    "shapes": DatasetSpec("deepmac_shapes_quick", "seen", "unseen"),
    "coco_mini": DatasetSpec("deepmac_coco_mini_voc", "voc", "non_voc"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="shapes")
    parser.add_argument("--heads", default=DEFAULT_HEADS, help="comma-separated head names")
    parser.add_argument("--seeds", default="0,1", help="comma-separated integer seeds")
    parser.add_argument("--steps", type=int, default=None, help="train steps (default: config)")
    parser.add_argument("--out", required=True, help="results JSON")
    parser.add_argument("--runs-dir", default=None, help="default: runs/ablation/<dataset>")
    parser.add_argument("--baselines", default="box,ellipse,grabcut", help="'' for none")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate first N images")
    parser.add_argument("--config-file", action="append", default=[], help="YAML overrides")
    parser.add_argument("--params-override", default="", help="as for deepmac-nb train")
    parser.add_argument("--figures", default=None, help="folder for the PNG figures")
    parser.add_argument(
        "--overlay", action="append", default=[], help="other results JSON for the AP plot"
    )
    args = parser.parse_args(argv)
    args.heads = [h for h in args.heads.split(",") if h]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.baselines = [b for b in args.baselines.split(",") if b]
    args.runs_dir = Path(args.runs_dir or Path("runs/ablation") / args.dataset)
    return args


# ---------------------------------------------------------------- training and evaluation


def run_params(args: argparse.Namespace, head: str, seed: int):
    """The experiment's config with ``head``, ``seed`` and the shared overrides applied."""
    from deepmac_nb.train import data_sources
    from deepmac_nb.train import params as train_params

    spec = DATASETS[args.dataset]
    params = train_params.build_params(
        spec.experiment,
        overrides=[*args.config_file, args.params_override],
        mask_head=head,
        steps=args.steps,
        seed=seed,
    )
    lr = params.trainer.optimizer_config.learning_rate
    if lr.type == "cosine":
        lr.cosine.decay_steps = params.trainer.train_steps
    params.validate()
    return data_sources.prepare_experiment_data(params)


def run_dir_of(args: argparse.Namespace, head: str, seed: int, steps: int) -> Path:
    return args.runs_dir / f"{head}_seed{seed}_{steps}steps"


def train_run(params, run_dir: Path, seed: int) -> dict:
    """Trains (or resumes) one run in this process; returns its timing."""
    import tensorflow as tf
    import tf_keras

    from deepmac_nb.train import params as train_params
    from deepmac_nb.train import runner

    spec_name = params.task.model.mask.network_type
    train_params.claim_model_dir(run_dir, f"ablation:{spec_name}")
    latest = tf.train.latest_checkpoint(str(run_dir))
    resumed_from = int(latest.rsplit("-", 1)[1]) if latest else 0
    # runner.train seeds Python, NumPy and TensorFlow with task.seed (= seed).
    tf_keras.backend.clear_session()
    start = time.perf_counter()
    runner.train(params, run_dir, mode="train")
    return {"train_seconds": round(time.perf_counter() - start, 1), "resumed_from": resumed_from}


def evaluate_run(predictor, params, splits: list[str], max_images: int | None) -> dict:
    """Mask AP per split with GT boxes (``gt``) and with the model's detections (``detected``,
    which also reports box AP)."""
    from deepmac_nb.evaluation import coco_eval, evaluate

    coco = coco_eval.load_coco(params.task.annotation_file)
    protocols = {"gt": "box_prompted", "detected": "detected"}
    return {
        key: evaluate(
            predictor,
            coco,
            params.task.validation_images,
            protocol,
            splits=splits,
            max_images=max_images,
        )
        for key, protocol in protocols.items()
    }


def head_cost(model) -> dict:
    """Mask-head params, FLOPs per instance and ms per instance (``SPEED_BATCH`` per call)."""
    import tensorflow as tf

    from deepmac_nb.modeling import mask_heads

    flops, shape = _inference_speed().mask_head_flops(model)
    batch = tf.random.normal([SPEED_BATCH, *shape[1:]])
    fn = tf.function(lambda x: model.mask_head(x, training=False))
    fn(batch).numpy()
    times = []
    for _ in range(SPEED_REPEATS):
        start = time.perf_counter()
        fn(batch).numpy()
        times.append(time.perf_counter() - start)
    return {
        "params": mask_heads.count_params(model.mask_head),
        "mflops_per_instance": round(flops / 1e6, 3),
        "ms_per_instance": round(1e3 * statistics.median(times) / SPEED_BATCH, 4),
    }


def _inference_speed():
    """``benchmarks/inference_speed.py`` (the FLOP counter), imported from this folder."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import inference_speed

    return inference_speed


def one_run(args: argparse.Namespace, head: str, seed: int) -> tuple[dict, bool]:
    """Trains and evaluates one (head, seed) unless its metrics exist; (record, skipped)."""
    from deepmac_nb import loading

    params = run_params(args, head, seed)
    run_dir = run_dir_of(args, head, seed, params.trainer.train_steps)
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.exists():
        return json.loads(metrics_path.read_text()), True
    timing = train_run(params, run_dir, seed)
    predictor = loading.from_model_dir(run_dir)
    spec = DATASETS[args.dataset]
    record = {
        "head": head,
        "seed": seed,
        "steps": params.trainer.train_steps,
        "run_dir": str(run_dir),
        **timing,
        "cost": head_cost(predictor.model),
        "eval": evaluate_run(predictor, params, [spec.seen, spec.unseen], args.max_images),
    }
    _io.write_json(metrics_path, record)
    return record, False


def run_baselines(args: argparse.Namespace, eval_set: dict) -> dict:
    """Box-prompted classical baselines on the same evaluation set, cached in the runs dir."""
    from deepmac_nb.evaluation import baselines, evaluate

    spec = DATASETS[args.dataset]
    out = {}
    for method in args.baselines:
        path = args.runs_dir / "baselines" / f"{method}.json"
        if not path.exists():
            metrics = evaluate(
                baselines.get_mask_fn(method),
                eval_set["annotation_file"],
                eval_set["images"],
                splits=[spec.seen, spec.unseen],
                max_images=args.max_images,
            )
            _io.write_json(path, {"method": method, **metrics})
        out[method] = json.loads(path.read_text())
    return out


# ---------------------------------------------------------------- aggregation


def mean_spread(values: list[float]) -> dict:
    """Mean and spread (half the range: max - min over 2) of the seeds' values."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "spread": None, "values": []}
    spread = (max(values) - min(values)) / 2
    return {
        "mean": round(statistics.fmean(values), 2),
        "spread": round(spread, 2),
        "values": values,
    }


def summarize_head(records: list[dict], splits: list[str]) -> dict:
    """Per-head means over seeds: mask AP per protocol and split, cost, train time."""
    summary: dict[str, Any] = {"seeds": [r["seed"] for r in records]}
    for protocol in PROTOCOLS:
        summary[protocol] = {
            split: mean_spread([r["eval"][protocol]["mask"][split]["AP"] for r in records])
            for split in splits
        }
    summary["detected_box_AP"] = mean_spread(
        [r["eval"]["detected"]["box"]["all"]["AP"] for r in records]
    )
    costs = [r["cost"] for r in records]
    summary["params"] = costs[0]["params"]
    summary["mflops_per_instance"] = costs[0]["mflops_per_instance"]
    summary["ms_per_instance"] = round(statistics.median(c["ms_per_instance"] for c in costs), 4)
    summary["train_seconds"] = mean_spread([r["train_seconds"] for r in records])
    return summary


def build_results(args, runs: list[dict], base: dict, eval_set: dict, wall: float) -> dict:
    spec = DATASETS[args.dataset]
    splits = [spec.seen, spec.unseen]
    heads = {}
    for head in args.heads:
        records = [r for r in runs if r["head"] == head]
        if records:
            heads[head] = summarize_head(records, splits)
    return {
        "dataset": args.dataset,
        "experiment": spec.experiment,
        "splits": splits,
        "steps": runs[0]["steps"] if runs else args.steps,
        "seeds": args.seeds,
        **eval_set,
        "heads": heads,
        "baselines": {m: {s: b["mask"][s] for s in splits} for m, b in base.items()},
        "runs": runs,
        "hardware": hardware(),
        "train_seconds_total": round(sum(r["train_seconds"] for r in runs), 1),
        "wall_seconds_this_call": round(wall, 1),
    }


def hardware() -> dict:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "gpus": len(gpus),
        "tensorflow": tf.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def progress_line(i: int, n: int, record: dict, skipped: bool, unseen: str) -> str:
    gt = record["eval"]["gt"]["mask"]
    det = record["eval"]["detected"]["mask"]
    state = "skipped (done)" if skipped else f"trained in {record['train_seconds']:.0f} s"
    return (
        f"[{i}/{n}] {record['head']} seed {record['seed']}: {state}; mask AP gt "
        f"{_fmt(gt['all']['AP'])} | {unseen} gt {_fmt(gt[unseen]['AP'])} | "
        f"{unseen} detected {_fmt(det[unseen]['AP'])}"
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pm(stat: dict) -> str:
    """``mean ± spread`` over several seeds, the bare value for one, ``-`` for none."""
    if stat["mean"] is None:
        return "-"
    if len(stat["values"]) == 1:
        return f"{stat['mean']:.1f}"
    return f"{stat['mean']:.1f} ± {stat['spread']:.1f}"


def markdown_tables(results: dict) -> str:
    """The heads table (mean ± half-range over seeds) and the baselines rows."""
    seen, unseen = results["splits"]
    lines = [
        f"| head | params | MFLOPs/inst | ms/inst | {seen} AP (GT boxes) | {unseen} AP "
        f"(GT boxes) | {seen} AP (detected) | {unseen} AP (detected) | seeds | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for head, s in results["heads"].items():
        lines.append(
            f"| `{head}` | {s['params']:,} | {s['mflops_per_instance']:.1f} | "
            f"{s['ms_per_instance']:.3f} | {_pm(s['gt'][seen])} | **{_pm(s['gt'][unseen])}** | "
            f"{_pm(s['detected'][seen])} | {_pm(s['detected'][unseen])} | "
            f"{len(s['seeds'])} | {s['train_seconds']['mean']:.0f} |"
        )
    for method, b in results["baselines"].items():
        lines.append(
            f"| `{method}` baseline | 0 | - | - | {_fmt(b[seen]['AP'])} | "
            f"**{_fmt(b[unseen]['AP'])}** | - | - | - | - |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- figures


def _draw_heads(ax, results: dict, key: str, style: str, color: str) -> None:
    """One schedule's heads: mean unseen AP with the seeds' half-range as error bars."""
    unseen, heads = results["splits"][1], results["heads"]
    x = [heads[h][key] for h in heads]
    y = [heads[h]["gt"][unseen]["mean"] for h in heads]
    err = [heads[h]["gt"][unseen]["spread"] for h in heads]
    label = f"heads, {results['steps']} steps ({len(results['seeds'])} seed(s))"
    ax.errorbar(x, y, yerr=err, fmt=style, color=color, capsize=3, label=label)
    for name, xi, yi in zip(heads, x, y, strict=True):
        ax.annotate(name, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")


def plot_ap_vs_cost(results: dict, path: Path, overlays: list[dict] = ()) -> None:
    """Unseen AP (GT boxes) vs head params and FLOPs; ``overlays``: more results, new markers."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    from deepmac_nb.evaluation import plots

    unseen = results["splits"][1]
    fig = Figure(figsize=(9.0, 3.6))
    for k, (key, label) in enumerate((("params", "params"), ("mflops_per_instance", "MFLOPs"))):
        ax = fig.add_subplot(1, 2, k + 1)
        for i, res in enumerate([results, *overlays]):
            _draw_heads(ax, res, key, "os^D"[i % 4], ("C1", "C0", "C4", "C5")[i % 4])
        for i, (method, b) in enumerate(results["baselines"].items()):
            ax.axhline(b[unseen]["AP"], color=f"C{i + 2}", ls="--", lw=1, label=f"{method}")
        ax.set_xscale("log")
        ax.margins(x=0.15)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"mask head {label} per instance (log)" if k else "mask head params (log)")
        ax.set_ylabel(f"{unseen} mask AP, GT boxes")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7)
    fig.suptitle(f"{results['dataset']}: masks for {results['splits'][0]} classes only")
    fig.subplots_adjust(bottom=0.24, wspace=0.25)
    plots.save_figure(fig, path, dpi=90)


def unseen_samples(results: dict, min_area: float) -> list[tuple[dict, dict, np.ndarray]]:
    """Per unseen class, its first GT instance (by image id) of at least ``min_area`` pixels,
    else its largest one: ``(image record, annotation, mask bool [H, W])``."""
    from deepmac_nb import splits as splits_lib
    from deepmac_nb.evaluation import coco_eval

    coco = coco_eval.load_coco(results["annotation_file"])
    samples = []
    for cat in splits_lib.resolve_split(results["splits"][1]):
        anns = coco.loadAnns(coco.getAnnIds(catIds=[cat], iscrowd=False))
        if anns:
            a = min(anns, key=lambda a: (a["area"] < min_area, a["image_id"], -a["area"]))
            samples.append((coco.imgs[a["image_id"]], a, coco.annToMask(a) > 0))
    return samples


def predict_samples(run_dir: str, samples: list, images_dir: str) -> list[np.ndarray]:
    """Each sample's mask (bool [H, W]) from the model of ``run_dir``, its GT box the prompt."""
    from deepmac_nb import loading
    from deepmac_nb.evaluation.runner import load_image_rgb

    predictor = loading.from_model_dir(run_dir)
    masks = []
    for info, ann, _ in samples:
        image = load_image_rgb(Path(images_dir) / info["file_name"])
        x, y, w, h = ann["bbox"]
        hw = np.array([info["height"], info["width"]] * 2, np.float32)
        box = np.array([[y, x, y + h, x + w]], np.float32) / hw
        masks.append(predictor.predict(image, box)[0] > 0.5)
    return masks


def _crop(array: np.ndarray, bbox: list[float], side: int = 96) -> np.ndarray:
    """The box with a 25 % margin, resized to ``side`` x ``side`` (nearest neighbour)."""
    import cv2

    x, y, w, h = bbox
    x0, y0 = max(int(x - 0.25 * w), 0), max(int(y - 0.25 * h), 0)
    x1, y1 = int(np.ceil(x + 1.25 * w)), int(np.ceil(y + 1.25 * h))
    window = np.ascontiguousarray(array[y0:y1, x0:x1]).astype(np.uint8)
    return cv2.resize(window, (side, side), interpolation=cv2.INTER_NEAREST)


def _overlay(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    out = image.astype(np.float32)
    out[mask > 0] = 0.45 * out[mask > 0] + 0.55 * np.array(color, np.float32)
    return out.astype(np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _first_seed_runs(results: dict, overlays: list[dict]) -> dict[str, str]:
    """Caption -> run dir of each head's first seed; overlays' heads get their step count."""
    runs = {}
    for res in [results, *overlays]:
        suffix = f"\n{res['steps']} steps" if res is not results else ""
        for run in res["runs"]:
            runs.setdefault(f"{run['head']}{suffix}", run["run_dir"])
    return runs


def mask_grid(results: dict, path: Path, overlays: list[dict] = (), min_area=600.0) -> None:
    """Rows: one unseen instance per class; columns: the image, GT, each head (first seed),
    then the heads of ``overlays`` (captioned with their step count)."""
    from deepmac_nb.evaluation.runner import load_image_rgb

    samples = unseen_samples(results, min_area)
    runs = _first_seed_runs(results, list(overlays))
    preds = {name: predict_samples(d, samples, results["images"]) for name, d in runs.items()}
    cells = []
    for k, (info, ann, gt) in enumerate(samples):
        image = _crop(load_image_rgb(Path(results["images"]) / info["file_name"]), ann["bbox"])
        row = [(image, "image"), (_overlay(image, _crop(gt, ann["bbox"]), (0, 200, 0)), "GT")]
        for name, masks in preds.items():
            shown = _overlay(image, _crop(masks[k], ann["bbox"]), (255, 120, 0))
            row.append((shown, f"{name}\nIoU {_iou(masks[k], gt):.2f}"))
        cells.append(row)
    _save_grid(cells, path)


def _save_grid(cells: list[list[tuple[np.ndarray, str]]], path: Path) -> None:
    """Draws the cells with their captions and writes a palette PNG (small) atomically."""
    import io

    from matplotlib.figure import Figure
    from PIL import Image

    rows, cols = len(cells), len(cells[0])
    fig = Figure(figsize=(1.1 * cols, 1.5 * rows))
    for r, row in enumerate(cells):
        for c, (picture, caption) in enumerate(row):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            ax.imshow(picture)
            ax.set_title(caption, fontsize=6, pad=2)
            ax.axis("off")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    picture = Image.open(buffer).convert("RGB").quantize(colors=128)
    with _io.atomic_path(path) as tmp:
        picture.save(tmp, format="png", optimize=True)


def draw_figures(results: dict, folder: Path, overlays: list[str]) -> list[Path]:
    name = results["dataset"]
    paths = [folder / f"ablation_{name}_ap_vs_cost.png", folder / f"ablation_{name}_masks.png"]
    others = [json.loads(Path(p).read_text()) for p in overlays]
    plot_ap_vs_cost(results, paths[0], others)
    mask_grid(results, paths[1], others)
    return paths


# ---------------------------------------------------------------- main


def eval_set_of(args: argparse.Namespace) -> dict:
    """The evaluation annotations and images (preparing the data on first use)."""
    params = run_params(args, args.heads[0], args.seeds[0])
    return {
        "annotation_file": params.task.annotation_file,
        "images": params.task.validation_images,
    }


def main(argv: list[str] | None = None) -> int:
    from absl import logging

    args = parse_args(argv)
    logging.set_verbosity(logging.INFO)  # Model Garden's "train | step: N | steps/sec" lines
    start = time.perf_counter()
    eval_set = eval_set_of(args)
    base = run_baselines(args, eval_set)
    plan = [(head, seed) for seed in args.seeds for head in args.heads]
    unseen = DATASETS[args.dataset].unseen
    runs = []
    for i, (head, seed) in enumerate(plan, 1):
        print(f"[{i}/{len(plan)}] {head} seed {seed}: starting", flush=True)
        record, skipped = one_run(args, head, seed)
        runs.append(record)
        print(progress_line(i, len(plan), record, skipped, unseen), flush=True)
        results = build_results(args, runs, base, eval_set, time.perf_counter() - start)
        _io.write_json(args.out, results)
        gc.collect()
    if args.figures:
        for path in draw_figures(results, Path(args.figures), args.overlay):
            print(f"wrote {path}")
    print(markdown_tables(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
