"""Bar and scatter charts of evaluation results: AP per split and method, instances per
class, AP against mask-head size. Every function returns a ``Figure`` and, given
``path``, also writes it as a PNG."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from deepmac_nb.viz.figures import save_figure

SPLIT_COLORS = {"seen": "C0", "voc": "C0", "unseen": "C1", "non_voc": "C1", "all": "C7"}


def plot_method_comparison(
    results: Mapping[str, Mapping],
    splits: Sequence[str] | None = None,
    metric: str = "AP",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Grouped bars of mask ``metric`` per split for several methods.

    ``results`` maps a method name to ``evaluate_predictions`` output (``["mask"][split]``).
    """
    names = list(results)
    first = next(iter(results.values()))["mask"]
    splits = list(splits or [s for s in first if s != "all"] or ["all"])
    fig = Figure(figsize=(max(5.0, 1.1 * len(names) + 2.0), 3.6))
    ax = fig.add_subplot()
    width = 0.8 / len(splits)
    for j, split in enumerate(splits):
        values = [results[n]["mask"].get(split, {}).get(metric) or 0.0 for n in names]
        xs = [i + (j - (len(splits) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, values, width, color=SPLIT_COLORS.get(split, f"C{2 + j}"), label=split)
        for x, v in zip(xs, values, strict=True):
            ax.text(x, v + 1, f"{v:.0f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel(f"mask {metric} (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title(f"mask {metric} by class split")
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_class_counts(
    rows: Sequence[Mapping], path: str | os.PathLike | None = None, title: str = ""
) -> Figure:
    """Bars of instances per class coloured by split: rows ``{name, split, instances}``."""
    fig = Figure(figsize=(max(5.0, 0.18 * len(rows) + 2.0), 3.4))
    ax = fig.add_subplot()
    colors = [SPLIT_COLORS.get(r["split"], "C7") for r in rows]
    ax.bar(range(len(rows)), [r["instances"] for r in rows], color=colors)
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("instances")
    # Explicit patches: empty bar containers give legend entries the cycle's colour.
    splits = dict.fromkeys(r["split"] for r in rows)
    handles = [Patch(color=SPLIT_COLORS.get(s, "C7"), label=s) for s in splits]
    ax.legend(handles=handles, fontsize=8)
    ax.set_title(title or "instances per class")
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_ap_vs_params(
    rows: Sequence[Mapping],
    ap_key: str,
    label_key: str = "head",
    params_key: str = "params",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Mask AP (``row[ap_key]``) against mask-head parameters (log x), one labelled point
    per row; rows with 0 or no parameters (baselines) become dashed horizontal lines."""
    fig = Figure(figsize=(6.0, 3.8))
    ax = fig.add_subplot()
    for i, row in enumerate(r for r in rows if r.get(ap_key) is not None):
        params, ap = row.get(params_key) or 0, row[ap_key]
        if params > 0:
            ax.scatter([params], [ap], color=f"C{i % 10}")
            ax.annotate(str(row[label_key]), (params, ap), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        else:
            ax.axhline(ap, color="C7", ls="--", lw=1)
            ax.text(1.0, ap, f" {row[label_key]}", transform=ax.get_yaxis_transform(), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("mask-head parameters")
    ax.set_ylabel(ap_key)
    ax.set_title(f"{ap_key} vs mask-head size")
    if path is not None:
        save_figure(fig, path)
    return fig
