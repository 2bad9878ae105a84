"""``deepmac-nb demo``: the tutorial end to end (the project's main job).

    deepmac-nb demo --out runs/demo [--quick | --full] [--only 03_evaluate,...]

Runs the notebooks of ``notebooks/`` (Jupytext ``.py``, the source of truth) in order,
each in a fresh kernel with its ``parameters`` cell extended by ``QUICK`` and
``OUTPUT_DIR`` (nbclient), and writes under ``--out``: ``html/<notebook>.html`` (and the
executed ``.ipynb``), each notebook's own outputs in ``<notebook>/`` (metrics JSON, mask
overlays, iWildCam PNGs) and ``summary.json``; then prints the quick model's seen/unseen
mask AP beside every classical baseline's, seen/unseen AP and unseen/seen per mask head
(trained here and shipped reference models), images/s and per-head parameter counts.
Reruns reuse the cached data and the trained quick model (``$DEEPMAC_NB_CACHE``,
default ``~/.cache/deepmac_nb``).


The helpers the notebooks share live in ``deepmac_nb.tutorial``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepmac_nb import _io
from deepmac_nb.tutorial import REPO_ROOT, find_kaggle_iwildcam

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# Run order: 02 trains the shared quick model (with its live curve) before the others
# use it; each notebook also trains it on its own when it is missing.
NOTEBOOKS = (
    "01_data_prep",
    "02_train",
    "00_quickstart",
    "03_evaluate",
    "04_iwildcam_visualize",
    "05_partial_supervision",
)
# Extra parameters the demo sets: the CPU demo never downloads the official checkpoint; the
# camera traps get the shipped photo model, the shapes the quick model.
DEMO_PARAMETERS = {"00_quickstart": {"MODEL": "quick"}, "04_iwildcam_visualize": {"MODEL": "photo"}}

# ------------------------------------------------------------ notebook running


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the message is the notebook, cell and error line.

    ``nb`` is the notebook as executed up to and including the failing cell.
    """

    def __init__(self, message: str, nb=None):
        super().__init__(message)
        self.nb = nb


def notebook_path(name: str) -> Path:
    """``notebooks/<name>.py`` of the repository checkout."""
    path = NOTEBOOK_DIR / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the demo runs the notebooks of a repository checkout."
        )
    return path


def inject_parameters(nb, params: Mapping[str, Any]):
    """Replaces the ``parameters``-tagged cell by its defaults followed by ``params``
    (``NAME = repr(value)`` lines), as papermill's injected cell does. Returns ``nb``."""
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ValueError("notebook has no cell tagged 'parameters'")
    lines = [f"{name} = {value!r}" for name, value in params.items()]
    cells[0].source = cells[0].source.rstrip() + "\n\n# Injected parameters\n" + "\n".join(lines)
    return nb


def execute_notebook(
    path: str | os.PathLike,
    params: Mapping[str, Any],
    cwd: str | os.PathLike = REPO_ROOT,
    timeout: int = 900,
    kernel_log: str | os.PathLike | None = None,
):
    """Runs a Jupytext notebook in a fresh ``python3`` kernel; returns the executed
    ``NotebookNode``. ``timeout`` bounds each cell (seconds); the kernel process's own
    stdout/stderr (C++ logs) are appended to ``kernel_log`` (default: discarded). A
    failing cell raises ``NotebookFailed`` naming the notebook, the cell and the error."""
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = inject_parameters(jupytext.read(path), params)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        # TensorFlow's C++ log lines go to the kernel log, not into the notebook.
        extra_arguments=["--IPKernelApp.capture_fd_output=False"],
    )
    log_path = Path(kernel_log) if kernel_log else Path(os.devnull)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            client.execute(stdout=log, stderr=log)
        except CellExecutionError as exc:
            raise NotebookFailed(f"{Path(path).stem}: {_failure_line(nb, exc)}", nb) from exc
    return nb


def failed_cell(nb) -> int | None:
    """Index of the first code cell whose outputs hold an error, or None."""
    for index, cell in enumerate(nb.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index
    return None


def _failure_line(nb, exc) -> str:
    index = failed_cell(nb)
    where = f"cell {index}" if index is not None else "a cell"
    return f"{where} raised {exc.ename}: {exc.evalue}"


def write_html(nb, path: str | os.PathLike) -> Path:
    """The executed notebook as standalone HTML (nbconvert), written atomically."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    return _io.write_text(path, body)


# ------------------------------------------------------------------ the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        dest="quick",
        action="store_true",
        default=True,
        help="QUICK mode (default): few training steps, the first images only (~10 min)",
    )
    mode.add_argument(
        "--full",
        dest="quick",
        action="store_false",
        help="the experiments' full schedules and all images (about half an hour on 2 CPU cores)",
    )
    parser.add_argument("--only", default=None, help="comma list of notebooks, e.g. 03_evaluate")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per notebook cell")


def _selected(only: str | None) -> list[str]:
    if not only:
        return list(NOTEBOOKS)
    names = [n.strip().removesuffix(".py") for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebooks {unknown}; choose from {', '.join(NOTEBOOKS)}")
    return names


def _skip_reason(name: str) -> str | None:
    """Why a notebook cannot run here (no camera-trap data), or None."""
    from deepmac_nb.data import samples

    if name != "04_iwildcam_visualize" or find_kaggle_iwildcam() is not None:
        return None
    try:
        samples.camera_traps("mdv5")
    except samples.SampleDataMissing:
        return f"no camera-trap sample data (set {samples.ENV_VAR})"
    return None


def run_stage(name: str, out: Path, quick: bool, timeout: int) -> dict:
    """Executes one notebook into ``out/<name>/``; writes its HTML and executed ipynb."""
    import nbformat

    start = time.perf_counter()
    params = {"QUICK": quick, "OUTPUT_DIR": str((out / name).resolve())}
    params.update(DEMO_PARAMETERS.get(name, {}))
    status, error, nb = "ok", None, None
    try:
        log = out / "logs" / f"{name}.kernel.log"
        nb = execute_notebook(notebook_path(name), params, timeout=timeout, kernel_log=log)
    except NotebookFailed as exc:
        status, error, nb = "failed", str(exc), exc.nb
    if nb is not None:
        write_html(nb, out / "html" / f"{name}.html")
        _io.write_text(out / "html" / f"{name}.ipynb", nbformat.writes(nb))
    seconds = round(time.perf_counter() - start, 1)
    return {"notebook": name, "status": status, "seconds": seconds, "error": error}


def _fmt_ap(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(seen: Any, unseen: Any) -> float | None:
    """unseen AP / seen AP, the paper's measure of how well masks transfer."""
    return round(unseen / seen, 2) if seen and unseen is not None else None


def _head_rows(rows: Any) -> list[dict] | None:
    """05's head-comparison rows with ``unseen/seen`` added (None when absent)."""
    if not isinstance(rows, list):
        return None
    return [r | {"unseen/seen": _ratio(r.get("seen AP"), r.get("unseen AP"))} for r in rows]


def summarize(out: Path, stages: list[dict]) -> dict:
    """Reads the notebooks' outputs into the summary dict (missing parts are None).

    ``mask_AP`` is the quick model's box-prompted AP per split (03), ``baselines`` the
    classical methods' on the same images, ``unseen_margin`` the model's unseen AP minus
    each baseline's, ``head_comparison`` (05, trained live) and ``reference_heads`` (05,
    the shipped converged models) list seen / unseen AP and ``unseen/seen`` per head.
    """
    metrics = _read_json(out / "03_evaluate" / "metrics.json") or {}
    heads = _read_json(out / "05_partial_supervision" / "head_params.json")
    part = out / "05_partial_supervision"
    segment = _read_json(out / "04_iwildcam_visualize" / "iwildcam" / "segment_summary.json")
    box_prompted = (metrics.get("protocols") or {}).get("box_prompted") or {}
    mask_ap = {s: v.get("AP") for s, v in box_prompted.get("mask", {}).items()}
    baselines = {
        name: {s: v.get("AP") for s, v in m.get("mask", {}).items()}
        for name, m in (metrics.get("baselines") or {}).items()
    }
    unseen = mask_ap.get("unseen")
    return {
        "stages": stages,
        "mask_AP": mask_ap,
        "unseen_over_seen": _ratio(mask_ap.get("seen"), unseen),
        "baselines": baselines,
        "unseen_margin": {
            name: round(unseen - b["unseen"], 2)
            for name, b in baselines.items()
            if unseen is not None and b.get("unseen") is not None
        },
        "images_per_s": (metrics.get("speed") or {}).get("images_per_s"),
        "head_comparison": _head_rows(_read_json(part / "head_comparison.json")),
        "reference_heads": _head_rows(_read_json(part / "reference_comparison.json")),
        "head_params": heads,
        "iwildcam_pngs": sorted(
            str(p) for p in (out / "04_iwildcam_visualize" / "iwildcam").rglob("*.png")
        )
        if segment
        else [],
        "iwildcam_images_per_s": (segment or {}).get("images_per_s"),
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _head_lines(label: str, rows: list[dict] | None) -> list[str]:
    if not rows:
        return []
    lines = [label]
    for r in rows:
        ratio = r.get("unseen/seen")
        lines.append(
            f"  {r['head']:<24} seen {_fmt_ap(r.get('seen AP'))} | unseen "
            f"{_fmt_ap(r.get('unseen AP'))} | unseen/seen {'-' if ratio is None else ratio}"
        )
    return lines


def format_summary(summary: dict) -> str:
    """The few lines printed at the end of the demo."""
    ap, ratio = summary["mask_AP"], summary.get("unseen_over_seen")
    lines = [
        f"mask AP (box-prompted, quick model): seen {_fmt_ap(ap.get('seen'))} | "
        f"unseen {_fmt_ap(ap.get('unseen'))} | unseen/seen {'-' if ratio is None else ratio}"
        f" | {summary['images_per_s'] or '-'} images/s"
    ]
    margins = summary.get("unseen_margin") or {}
    for name, values in summary["baselines"].items():
        margin = margins.get(name)
        vs = "" if margin is None else f" | model unseen {margin:+.1f} vs this"
        lines.append(
            f"  baseline {name:<8} seen {_fmt_ap(values.get('seen'))} | "
            f"unseen {_fmt_ap(values.get('unseen'))}{vs}"
        )
    lines += _head_lines("mask heads trained here (QUICK, 05):", summary.get("head_comparison"))
    lines += _head_lines(
        "shipped reference models (05, see reference_models):", summary.get("reference_heads")
    )
    if summary["head_params"]:
        counts = ", ".join(f"{r['head']} {r['params']:,}" for r in summary["head_params"])
        lines.append(f"mask-head parameters (nc=64, S=32): {counts}")
    if summary["iwildcam_pngs"]:
        rate = summary["iwildcam_images_per_s"]
        speed = f"{rate} images/s" if rate else "all written by an earlier run"
        lines.append(f"iWildCam PNGs: {len(summary['iwildcam_pngs'])} ({speed})")
    failed = [s["notebook"] for s in summary["stages"] if s["status"] == "failed"]
    if failed:
        lines.append(f"FAILED: {', '.join(failed)} (see the HTML files)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Runs the selected notebooks in order, one progress line per stage, then the summary."""
    out = Path(args.out)
    names, stages = _selected(args.only), []
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    total_start = time.perf_counter()
    print(f"demo: {len(names)} notebooks, {'QUICK' if args.quick else 'FULL'} mode -> {out}")
    for k, name in enumerate(names, 1):
        reason = _skip_reason(name)
        if reason:
            stages.append({"notebook": name, "status": "skipped", "seconds": 0.0, "error": reason})
            print(f"[{k}/{len(names)}] {name}: skipped ({reason})", flush=True)
            continue
        print(f"[{k}/{len(names)}] {name}: running ...", flush=True)
        stage = run_stage(name, out, args.quick, args.timeout)
        stages.append(stage)
        detail = f" - {stage['error']}" if stage["error"] else ""
        print(f"[{k}/{len(names)}] {name}: {stage['status']} in {stage['seconds']} s{detail}")
    summary = summarize(out, stages)
    summary["seconds"] = round(time.perf_counter() - total_start, 1)
    _io.write_json(out / "summary.json", summary)
    print(format_summary(summary))
    print(f"demo: done in {summary['seconds']} s; HTML in {out / 'html'}", file=sys.stdout)
    return 1 if any(s["status"] == "failed" for s in stages) else 0
