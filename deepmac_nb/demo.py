"""``deepmac-nb demo``: the tutorial end to end, and the helpers its notebooks share.

    deepmac-nb demo --out runs/demo [--quick | --full] [--only 03_evaluate,...]

Runs the notebooks of ``notebooks/`` (Jupytext ``.py``, the source of truth) in order,
each in a fresh kernel with its ``parameters`` cell extended by ``QUICK`` and
``OUTPUT_DIR`` (nbclient), and writes under ``--out``: ``html/<notebook>.html`` (and the
executed ``.ipynb``), each notebook's own outputs in ``<notebook>/`` (metrics JSON, mask
overlays, iWildCam PNGs) and ``summary.json``; then prints seen/unseen mask AP, images/s
and per-head parameter counts. Reruns reuse the cached data and the trained quick model
(``$DEEPMAC_NB_CACHE``, default ``~/.cache/deepmac_nb``).

Notebook helpers (nothing here imports TensorFlow at import time):
  * ``require_path`` / ``MissingInput``: stop a notebook early with one line that names
    the setting to change;
  * ``ensure_quick_model`` / ``quick_model_dir``: the one quick model all notebooks share;
  * ``load_predictor``: ``"official"`` / ``"quick"`` / ``"auto"`` / a path -> ``Predictor``;
  * ``shapes_example``, ``unseen_examples``, ``iwildcam_inputs``,
    ``mask_head_parameter_counts``, ``find_results`` / ``ablation_table``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepmac_nb import _io, pretrained, viz

REPO_ROOT = Path(__file__).resolve().parents[1]
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
# Extra parameters the demo sets: the CPU demo never downloads the official checkpoint.
DEMO_PARAMETERS = {"00_quickstart": {"MODEL": "quick"}, "04_iwildcam_visualize": {"MODEL": "quick"}}
QUICK_EXPERIMENT = "deepmac_shapes_quick"
# ~2 min on 2 CPU cores. Box-prompted seen / unseen mask AP on 40 shapes val images was
# 27-45 / 13-25 over three trainings: CPU training is not bit-reproducible.
QUICK_STEPS = 300
OFFICIAL_HOST = "download.tensorflow.org"
KAGGLE_INPUT = Path("/kaggle/input")
# Ablation outputs of benchmarks/mask_head_ablation.py (another, longer run), if present.
RESULTS_CANDIDATES = (
    "runs/ablation/shapes.json",
    "runs/ablation/coco_mini.json",
    "docs/results.md",
    "docs/results.json",
)
ABLATION_COMMAND = (
    ".venv/bin/python benchmarks/mask_head_ablation.py --dataset shapes --steps 600 \\\n"
    "    --heads conv4,resnet4,resnet8,resnet20,hourglass10,hourglass20,hourglass52 \\\n"
    "    --seeds 0,1 --out runs/ablation/shapes.json --figures docs   # ~1 h on 2 CPU cores"
)


# --------------------------------------------------------------- input checks


class MissingInput(FileNotFoundError):
    """A notebook input is absent; the message names the setting to change.

    IPython prints ``_render_traceback_`` instead of a traceback, so a notebook stops
    with this one line.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def require_path(path: str | os.PathLike | None, setting: str, hint: str = "") -> Path:
    """``Path(path)`` if it exists; else ``MissingInput`` saying to set ``setting``."""
    if path is not None and Path(path).expanduser().exists():
        return Path(path).expanduser()
    where = "is not set" if path is None else f"= {str(path)!r} does not exist"
    raise MissingInput(f"{setting} {where}. Set {setting} in the parameters cell. {hint}".strip())


def cache_dir() -> Path:
    """``$DEEPMAC_NB_CACHE`` or ``~/.cache/deepmac_nb``: data, models, downloads."""
    return pretrained.default_cache_dir()


def repo_path(relative: str | os.PathLike) -> Path:
    """``relative`` from the current folder if it exists there, else from the repository."""
    path = Path(relative)
    return path if path.is_absolute() or path.exists() else REPO_ROOT / path


def quiet_tensorflow() -> None:
    """Keeps TensorFlow's deprecation and restore chatter out of notebook outputs
    (errors still show). Call it before importing the modules that import Model Garden."""
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)


# --------------------------------------------------------- the shared quick model


def quick_model_dir(steps: int | None = QUICK_STEPS, head: str | None = None) -> Path:
    """``<cache>/models/deepmac_shapes_quick[-<head>]-<steps>``: one folder per setting."""
    name = QUICK_EXPERIMENT + (f"-{head}" if head else "") + f"-{steps or 'full'}"
    return cache_dir() / "models" / name


def trained_step(model_dir: str | os.PathLike) -> int:
    """Step of the latest ``ckpt-<step>`` in ``model_dir`` (from its ``checkpoint`` file)."""
    try:
        text = (Path(model_dir) / "checkpoint").read_text()
    except OSError:
        return 0
    match = re.search(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"', text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def quick_params(steps: int | None = QUICK_STEPS, head: str | None = None):
    """The ``deepmac_shapes_quick`` config with ``steps`` (None: its own) and mask ``head``
    (None: its own), built and validated as ``deepmac-nb train`` does."""
    from deepmac_nb.train import train_cli

    args = argparse.Namespace(
        experiment=QUICK_EXPERIMENT, config_file=[], params_override="", mask_head=head, steps=steps
    )
    return train_cli.build_params(args)


def ensure_quick_model(
    steps: int | None = QUICK_STEPS, head: str | None = None, train_fn=None
) -> Path:
    """The quick model's dir (``quick_model_dir``), trained here first if its latest
    checkpoint is behind ``steps`` (a cut-short run resumes).

    ``train_fn(params, model_dir)`` defaults to ``runner.train``; 02_train passes one that
    draws a live loss curve.
    """
    model_dir = quick_model_dir(steps, head)
    params = quick_params(steps, head)
    if trained_step(model_dir) >= params.trainer.train_steps:
        return model_dir
    from deepmac_nb.train import runner, train_cli

    train_cli.check_model_dir(model_dir, QUICK_EXPERIMENT)
    train_cli.mark_model_dir(model_dir, QUICK_EXPERIMENT)
    print(f"Training {model_dir.name} ({params.trainer.train_steps} steps) ...", flush=True)
    (train_fn or runner.train)(params, model_dir)
    return model_dir


def quick_eval_set() -> tuple[Path, Path]:
    """``(val annotations JSON, images folder)`` of the shapes set the quick experiment
    uses (generated into the cache on first use, exactly as training does)."""
    from deepmac_nb.train import data_sources

    params = data_sources.prepare_experiment_data(quick_params())
    return Path(params.task.annotation_file), Path(params.task.validation_images)


def eval_inputs(annotations=None, images=None) -> tuple[Path, Path]:
    """``(annotations, images)`` for 03_evaluate: the given paths (both must exist) or,
    with neither, the shapes validation set (``quick_eval_set``)."""
    if annotations is None and images is None:
        return quick_eval_set()
    hint = "Set both ANNOTATIONS (COCO JSON) and IMAGES, or neither (shapes val set)."
    return require_path(annotations, "ANNOTATIONS", hint), require_path(images, "IMAGES", hint)


def online(host: str = OFFICIAL_HOST, timeout: float = 3.0) -> bool:
    """True when ``host:80`` accepts a TCP connection within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, 80), timeout=timeout):
            return True
    except OSError:
        return False


def load_predictor(model: str = "auto", steps: int | None = QUICK_STEPS):
    """``(Predictor, description)`` for ``model``.

    ``"official"``: the DeepMAC COCO checkpoint (``pretrained.load_official``, downloaded
    once); ``"quick"``: the shared quick model, trained now if missing; ``"auto"``: the
    official one when it is cached or ``download.tensorflow.org`` answers, else quick;
    anything else is a path ``Predictor.load`` takes.
    """
    from deepmac_nb.inference.predictor import Predictor

    official_cached = (cache_dir() / pretrained.MODEL_NAME).is_dir()
    if model == "auto":
        model = "official" if official_cached or online() else "quick"
    if model == "official":
        return pretrained.load_official(), f"official {pretrained.MODEL_NAME} (COCO)"
    if model == "quick":
        model_dir = ensure_quick_model(steps)
        return Predictor.from_model_dir(model_dir), f"quick shapes model ({model_dir.name})"
    path = require_path(model, "MODEL", "Use 'auto', 'official', 'quick' or a model path.")
    return Predictor.load(path), f"model at {path}"


# ------------------------------------------------------------------- examples


def shapes_example(index: int = 0, image_size: int = 256):
    """Validation image ``index`` of the shapes set (never trained on).

    Returns ``(image uint8 [S, S, 3], boxes float32 [N, 4] normalized, category_ids
    int64 [N], masks bool [N, S, S])``.
    """
    from deepmac_nb.data import shapes

    seed = shapes.VAL_SEED_OFFSET  # the val split of seed 0, as the cached dataset
    config = shapes.ShapesConfig(image_size=image_size)
    image, instances = shapes.render_image(index, seed, config)
    masks = np.stack([m for _, m in instances]) if instances else np.zeros((0, *image.shape[:2]))
    ids = np.array([c for c, _ in instances], np.int64)
    return image, viz.boxes_from_masks(masks), ids, masks.astype(bool)


def unseen_examples(count: int = 6, seen: Iterable[int] | None = None, start: int = 0):
    """``count`` instances of classes outside ``seen`` from the shapes val images.

    Returns a list of ``(image, box [4], category_id, mask [S, S])``, one per instance,
    at most one per image (the largest), so the pictures vary.
    """
    from deepmac_nb import splits

    seen_ids = set(splits.SHAPES_SEEN_IDS if seen is None else seen)
    out, index = [], start
    while len(out) < count and index < start + 50 * count:
        image, boxes, ids, masks = shapes_example(index)
        candidates = [i for i in range(len(ids)) if int(ids[i]) not in seen_ids]
        if candidates:
            i = max(candidates, key=lambda k: int(masks[k].sum()))
            out.append((image, boxes[i], int(ids[i]), masks[i]))
        index += 1
    return out


def mask_grid(examples: Sequence, methods: Mapping[str, Any], title: str = "") -> Any:
    """Contact sheet: one row per example ``(image, box, ...)``, one column per method
    (``mask_fn(image, boxes) -> [N, H, W]``), each the box's neighbourhood with its mask."""
    from deepmac_nb import widgets

    tiles, titles = [], []
    for image, box, *_ in examples:
        for name, method in methods.items():
            mask = widgets.model_masks(method, image, np.asarray([box], np.float32))
            picture = viz.overlay_masks(image, mask, alpha=0.55, colors=[(230, 0, 230)])
            tiles.append(viz.crop_box(picture, box, context=0.25))
            titles.append(name)
    return viz.contact_sheet(tiles, titles, ncols=len(methods), tile=1.9, title=title)


def coco_inputs(annotations=None, images=None, names: Sequence[str] = ("val_dev",)) -> list:
    """``[(name, annotations JSON, images folder)]`` of the COCO sets 01_data_prep converts.

    Given paths must both exist (else ``MissingInput``); without them the COCO-mini sample
    files ``names`` are used, or ``[]`` when the sample data is absent.
    """
    from deepmac_nb.data import samples

    if annotations is not None or images is not None:
        hint = "Set both COCO_ANNOTATIONS and COCO_IMAGES, or neither (COCO-mini sample)."
        ann = require_path(annotations, "COCO_ANNOTATIONS", hint)
        return [(ann.stem, ann, require_path(images, "COCO_IMAGES", hint))]
    if not samples.available():
        return []
    return [(n, samples.coco_mini(n).annotations, samples.coco_mini(n).images) for n in names]


# ---------------------------------------------------------------- camera traps


def _walk_json(root: Path, depth: int = 3) -> list[Path]:
    """JSON files up to ``depth`` folders below ``root``, not descending into image folders."""
    found, frontier = [], [root]
    for _ in range(depth + 1):
        next_frontier = []
        for folder in frontier:
            try:
                children = sorted(folder.iterdir())
            except OSError:
                continue
            found += [c for c in children if c.suffix == ".json"]
            skip = {"train", "test", "instance_masks", "images"}
            next_frontier += [c for c in children if c.is_dir() and c.name not in skip]
        frontier = next_frontier
    return found


def _image_folders(root: Path) -> list[Path]:
    """Where a competition's photos may be: ``train``, ``test``, ``images`` (also nested
    once, as Kaggle unpacks some archives), or the root when file names carry the folder."""
    names = ("train", "test", "images")
    candidates = [root / n for n in names] + [root / n / n for n in names] + [root]
    return [p for p in candidates if p.is_dir()]


def find_kaggle_iwildcam(root: str | os.PathLike = KAGGLE_INPUT) -> tuple[Path, Path] | None:
    """``(MegaDetector JSON, images folder)`` of an iWildCam competition attached in a
    Kaggle notebook (``/kaggle/input/iwildcam*``), or None. The images folder is the
    ``train``/``test`` folder holding the first detection's file."""
    from deepmac_nb.inference import megadetector

    for competition in sorted(Path(root).glob("iwildcam*")):
        keys = ("megadetector", "detections", "mdv")
        for path in _walk_json(competition):
            if not any(k in path.name.lower() for k in keys):
                continue
            entries = megadetector.read_detections(path).images
            first = next((e.file for e in entries if e.failure is None), None)
            for folder in _image_folders(competition):
                if first and (folder / first).is_file():
                    return path, folder
    return None


def iwildcam_inputs(detections=None, images=None) -> tuple[Path, Path, str]:
    """``(detections JSON, images folder, where from)`` for 04_iwildcam_visualize.

    Given paths must exist. Without them: a Kaggle iWildCam competition, else the
    camera-trap sample set (``deepmac_nb.data.samples``), else ``MissingInput``.
    """
    from deepmac_nb.data import samples

    if detections is not None or images is not None:
        hint = "Set both DETECTIONS (MegaDetector JSON) and IMAGES_DIR, or neither."
        det = require_path(detections, "DETECTIONS", hint)
        return det, require_path(images, "IMAGES_DIR", hint), "given paths"
    kaggle = find_kaggle_iwildcam()
    if kaggle is not None:
        return kaggle[0], kaggle[1], "Kaggle iWildCam competition data"
    try:
        sample = samples.camera_traps("mdv5")
    except samples.SampleDataMissing as exc:
        raise MissingInput(
            "No camera-trap data: set DETECTIONS and IMAGES_DIR in the parameters cell, "
            f"attach an iWildCam competition on Kaggle, or set {samples.ENV_VAR}. ({exc})"
        ) from None
    return sample.detections, sample.images, "camera-trap sample set (MegaDetector v5)"


# ------------------------------------------------------------ lesson material


def mask_head_parameter_counts(
    heads: Sequence[str] | None = None,
    num_init_channels: int = 64,
    mask_size: int = 32,
    in_channels: int = 50,
) -> list[dict]:
    """``[{"head", "family", "params"}]``: weights (incl. BN statistics) of each mask head
    built on ``float32 [1, mask_size, mask_size, in_channels]`` crops. Defaults are the
    paper's: nc 64, S 32, 16 pixel + 32 instance embedding + 2 coordinate channels."""
    import tensorflow as tf

    from deepmac_nb.modeling import mask_heads

    rows = []
    for name in heads or mask_heads.MASK_HEAD_NAMES:
        head = mask_heads.build_mask_head(name, num_init_channels, mask_size=mask_size)
        head(tf.zeros([1, mask_size, mask_size, in_channels]))
        family = re.sub(r"\d+$", "", name)
        rows.append({"head": name, "family": family, "params": mask_heads.count_params(head)})
    return rows


def box_prompted_metrics(mask_fn, annotations, images, max_images: int | None = None) -> dict:
    """``evaluate_predictions`` output (mask AP per split) of ``mask_fn`` under the
    box-prompted protocol, plus ``stats`` of the run (``run_box_prompted``)."""
    from deepmac_nb.evaluation import evaluate_predictions, run_box_prompted

    predictions, stats = run_box_prompted(
        annotations, images, mask_fn, max_images=max_images, progress=False
    )
    metrics = evaluate_predictions(annotations, predictions, image_ids=stats.pop("image_ids"))
    return {**metrics, "stats": stats}


def training_batch_rows(params=None, max_rows: int = 12) -> list[dict]:
    """What partial supervision means to the loss, for one training batch of ``params``
    (default: the quick experiment): ``[{image, class, split, box_weight, mask_weight}]``
    per instance, as the input pipeline labels them."""
    from official.core import task_factory

    from deepmac_nb import splits
    from deepmac_nb.train import data_sources

    params = data_sources.prepare_experiment_data(params or quick_params())
    task = task_factory.get_task(params.task)
    _, labels = next(iter(task.build_inputs(params.task.train_data)))
    names = _class_names(params.task.dataset)
    allowed = set(splits.resolve_split(params.task.allowed_mask_classes))
    rows = []
    for b, count in enumerate(labels["num_instances"].numpy()):
        for n in range(int(count)):
            cid = int(labels["classes"][b, n])
            rows.append(
                {
                    "image": b,
                    "class": names.get(cid, str(cid)),
                    "split": "seen" if cid in allowed else "unseen",
                    "box_weight": float(labels["box_weights"][b, n]),
                    "mask_weight": float(labels["mask_weights"][b, n]),
                }
            )
    return rows[:max_rows]


def _class_names(dataset: str) -> dict[int, str]:
    if dataset == "shapes":
        from deepmac_nb.data.shape_drawing import SHAPE_CLASSES

        return {i + 1: name for i, name in enumerate(SHAPE_CLASSES)}
    return {}


def find_results(candidates: Sequence[str] = RESULTS_CANDIDATES) -> list[Path]:
    """The ablation results files that exist (``repo_path`` of each candidate)."""
    return [repo_path(c) for c in candidates if repo_path(c).is_file()]


def ablation_table(results: Mapping) -> list[dict]:
    """Rows of a ``benchmarks/mask_head_ablation.py`` results JSON: one per head (mean over
    seeds) and one per baseline, with ``params``, ``seen AP`` / ``unseen AP`` (GT-box
    prompts) and ``unseen AP (detected)``; seen / unseen are the file's ``splits`` (e.g.
    ``voc`` / ``non_voc``). Other JSON layouts fall back to ``results_rows``."""
    if not isinstance(results.get("heads"), Mapping) or len(results.get("splits", ())) != 2:
        return results_rows(results)
    seen, unseen = results["splits"]
    rows = []
    for head, s in results["heads"].items():
        gt, detected = s.get("gt", {}), s.get("detected", {})
        rows.append(
            {
                "head": head,
                "params": s.get("params"),
                "seen AP": gt.get(seen, {}).get("mean"),
                "unseen AP": gt.get(unseen, {}).get("mean"),
                "unseen AP (detected)": detected.get(unseen, {}).get("mean"),
            }
        )
    for method, b in (results.get("baselines") or {}).items():
        row = {"head": f"{method} (baseline)", "params": 0, "seen AP": b[seen]["AP"]}
        rows.append(row | {"unseen AP": b[unseen]["AP"], "unseen AP (detected)": None})
    return rows


def results_rows(data: Any) -> list[dict]:
    """Rows of a results JSON: a list of dicts, ``{"rows"|"results": [...]}``, or a
    mapping name -> dict (the name becomes column ``name``); nested dicts are flattened
    with ``/`` (``{"mask": {"unseen": {"AP": 1}}}`` -> ``mask/unseen/AP``)."""
    if isinstance(data, Mapping):
        listed = next((data[k] for k in ("rows", "results") if isinstance(data.get(k), list)), None)
        if listed is None:
            listed = [{"name": k, **v} for k, v in data.items() if isinstance(v, Mapping)]
        data = listed
    return [_flatten(row) for row in data if isinstance(row, Mapping)]


def _flatten(row: Mapping, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}/"))
        elif not isinstance(value, list):
            out[f"{prefix}{key}"] = value
    return out


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


def summarize(out: Path, stages: list[dict]) -> dict:
    """Reads the notebooks' outputs into the summary dict (missing parts are None)."""
    metrics = _read_json(out / "03_evaluate" / "metrics.json") or {}
    heads = _read_json(out / "05_partial_supervision" / "head_params.json")
    segment = _read_json(out / "04_iwildcam_visualize" / "iwildcam" / "segment_summary.json")
    box_prompted = (metrics.get("protocols") or {}).get("box_prompted") or {}
    return {
        "stages": stages,
        "mask_AP": {s: v.get("AP") for s, v in box_prompted.get("mask", {}).items()},
        "baselines": {
            name: {s: v.get("AP") for s, v in m.get("mask", {}).items()}
            for name, m in (metrics.get("baselines") or {}).items()
        },
        "images_per_s": (metrics.get("speed") or {}).get("images_per_s"),
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


def format_summary(summary: dict) -> str:
    """The few lines printed at the end of the demo."""
    ap = summary["mask_AP"]
    lines = [
        f"mask AP (box-prompted, quick model): seen {_fmt_ap(ap.get('seen'))} | "
        f"unseen {_fmt_ap(ap.get('unseen'))} | {summary['images_per_s'] or '-'} images/s"
    ]
    for name, values in summary["baselines"].items():
        lines.append(
            f"  baseline {name:<8} seen {_fmt_ap(values.get('seen'))} | "
            f"unseen {_fmt_ap(values.get('unseen'))}"
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
