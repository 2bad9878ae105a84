"""Plots of evaluation metrics: per-class AP, AP by object size, precision-recall curves.

Every function takes the dict of ``evaluate_predictions`` (or the ``evaluate`` command's
JSON), returns a ``matplotlib.figure.Figure`` and, given ``path``, also writes a PNG
atomically. Figures are built without ``pyplot``, so nothing depends on the backend or
leaks into pyplot's global figure list; in Jupyter a returned Figure still displays.

Example:
    >>> fig = plot_per_class_ap(metrics, path="runs/eval/per_class.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from deepmac_nb import _io

# Seen-like splits blue, unseen-like orange, the rest from matplotlib's cycle.
_SPLIT_COLORS = {"voc": "C0", "seen": "C0", "non_voc": "C1", "unseen": "C1", "all": "C7"}
_SIZES = (("APs", "small"), ("APm", "medium"), ("APl", "large"))


def _color(split: str, order: list[str]) -> str:
    return _SPLIT_COLORS.get(split, f"C{2 + order.index(split) % 8}" if split in order else "C7")


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Writes ``fig`` as a PNG at ``path`` atomically; returns the path."""
    with _io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_per_class_ap(
    metrics: dict[str, Any], iou: str = "mask", path: str | os.PathLike | None = None
) -> Figure:
    """Bars of each class's AP (classes with ground truth), coloured by split, sorted by
    split then AP; the dashed lines are the split means (COCO's split AP)."""
    rows = [r for r in metrics["per_class"] if r["instances"] and r.get(f"{iou}_AP") is not None]
    splits = [s for s in metrics[iou] if s != "all"]
    rank = {s: i for i, s in enumerate(splits)}
    rows.sort(key=lambda r: (rank.get(r["split"], len(rank)), -r[f"{iou}_AP"]))
    fig = Figure(figsize=(max(6.0, 0.16 * len(rows) + 2.0), 4.0))
    ax = fig.add_subplot()
    colors = [_color(r["split"], splits) for r in rows]
    ax.bar(range(len(rows)), [r[f"{iou}_AP"] for r in rows], color=colors, width=0.8)
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=90, fontsize=7)
    for split in splits or ["all"]:
        ap = metrics[iou][split]["AP"]
        if ap is not None:
            ax.axhline(ap, color=_color(split, splits), ls="--", lw=1, label=f"{split}: {ap:.1f}")
    ax.set_ylabel(f"{iou} AP (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.6, max(len(rows), 1) - 0.4)
    ax.set_title(_titled(f"Per-class {iou} AP", metrics))
    ax.legend(loc="upper right", fontsize=8)
    return _finish(fig, path)


def plot_ap_by_size(
    metrics: dict[str, Any], iou: str = "mask", path: str | os.PathLike | None = None
) -> Figure:
    """Grouped bars: AP on small / medium / large objects for each split (missing = no GT)."""
    splits = list(metrics[iou])
    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot()
    width = 0.8 / len(splits)
    for i, split in enumerate(splits):
        values = [metrics[iou][split][key] for key, _ in _SIZES]
        xs = [j + (i - (len(splits) - 1) / 2) * width for j in range(len(_SIZES))]
        ax.bar(xs, [v or 0.0 for v in values], width, color=_color(split, splits), label=split)
        for x, v in zip(xs, values, strict=True):
            ax.text(x, (v or 0.0) + 1, "-" if v is None else f"{v:.0f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(_SIZES)), [name for _, name in _SIZES])
    ax.set_ylabel(f"{iou} AP (%)")
    ax.set_ylim(0, 100)
    ax.set_title(_titled(f"{iou} AP by object size", metrics))
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_pr_curves(
    metrics: dict[str, Any], iou: str = "mask", path: str | os.PathLike | None = None
) -> Figure:
    """Class-averaged precision-recall per split at IoU .5 (solid) and .75 (dashed).

    Needs ``metrics["pr_curves"]`` (``evaluate_predictions(..., pr_curves=True)``).
    """
    curves = metrics.get("pr_curves", {}).get(iou)
    if curves is None:
        raise ValueError("metrics have no pr_curves; evaluate with pr_curves=True")
    splits = list(curves)
    fig = Figure(figsize=(5.0, 4.0))
    ax = fig.add_subplot()
    for split, curve in curves.items():
        if curve is None:
            continue
        for key, style in (("precision_50", "-"), ("precision_75", "--")):
            label = f"{split} IoU .{key[-2:]}"
            ax.plot(curve["recall"], curve[key], style, color=_color(split, splits), label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(_titled(f"{iou} precision-recall", metrics))
    ax.legend(fontsize=7, loc="lower left")
    return _finish(fig, path)


def _source(metrics: dict[str, Any]) -> str:
    return str(metrics.get("method") or Path(str(metrics.get("model", "predictions"))).name)


def _titled(text: str, metrics: dict[str, Any]) -> str:
    """``text (source)``, or ``text: source`` when the source has its own parentheses
    (``quick shapes model (deepmac_shapes_quick-300)``), so they never come doubled."""
    source = _source(metrics)
    return f"{text}: {source}" if "(" in source else f"{text} ({source})"


def save_all(metrics: dict[str, Any], folder: str | os.PathLike) -> list[Path]:
    """Writes every plot that ``metrics`` supports into ``folder``; returns the paths."""
    folder = Path(folder)
    paths = []
    for iou in ("mask", "box"):
        if iou not in metrics:
            continue
        plot_per_class_ap(metrics, iou, folder / f"{iou}_per_class_ap.png")
        plot_ap_by_size(metrics, iou, folder / f"{iou}_ap_by_size.png")
        paths += [folder / f"{iou}_per_class_ap.png", folder / f"{iou}_ap_by_size.png"]
        if metrics.get("pr_curves", {}).get(iou) is not None:
            plot_pr_curves(metrics, iou, folder / f"{iou}_pr_curves.png")
            paths.append(folder / f"{iou}_pr_curves.png")
    return paths
