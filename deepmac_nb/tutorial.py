"""Helpers the tutorial notebooks share (nothing here imports TensorFlow at import time).

  * ``require_path`` / ``MissingInput``: stop a notebook early with one line that names
    the setting to change;
  * ``ensure_quick_model`` / ``quick_model_dir``: the one quick model all notebooks share
    (``$DEEPMAC_NB_CACHE``, default ``~/.cache/deepmac_nb``);
  * ``load_predictor``: ``"official"`` / ``"quick"`` / ``"auto"`` / a path -> ``Predictor``;
  * ``shapes_example``, ``unseen_examples``, ``iwildcam_inputs`` (Kaggle iWildCam paths
    or the camera-trap sample), ``mask_head_parameter_counts``, ``find_results`` /
    ``ablation_table``.

``deepmac_nb.demo`` runs the notebooks themselves.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepmac_nb import pretrained, viz
from deepmac_nb.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK_EXPERIMENT = "deepmac_shapes_quick"
# ~2 min on 2 CPU cores. Box-prompted seen / unseen mask AP on 40 shapes val images was
# 27-45 / 13-25 over three unseeded trainings: the seed (task.seed) matters that much.
QUICK_STEPS = 300
# Real-photo model of the COCO-mini recipe; trained by the command in coco_model_dir's doc.
COCO_EXPERIMENT = "deepmac_coco_mini_voc"
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
    from deepmac_nb.train import params as train_params

    return train_params.build_params(QUICK_EXPERIMENT, mask_head=head, steps=steps)


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
    from deepmac_nb.train import params as train_params
    from deepmac_nb.train import runner

    train_params.claim_model_dir(model_dir, QUICK_EXPERIMENT)
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


def coco_model_dir() -> Path:
    """``<cache>/models/deepmac_coco_mini_voc``, where notebooks look for the model trained
    on the COCO-mini photos (VOC masks only). Too long to train inside a notebook (about
    45 min on 2 CPU cores); make it once with::

        deepmac-nb train --experiment deepmac_coco_mini_voc \\
            --model-dir ~/.cache/deepmac_nb/models/deepmac_coco_mini_voc
    """
    return cache_dir() / "models" / COCO_EXPERIMENT


def load_predictor(model: str = "auto", steps: int | None = QUICK_STEPS, photos: bool = False):
    """``(Predictor, description)`` for ``model``.

    ``"official"``: the DeepMAC COCO checkpoint (``pretrained.load_official``, downloaded
    once); ``"coco"``: the COCO-mini model in ``coco_model_dir()``; ``"quick"``: the shared
    quick shapes model, trained now if missing; ``"auto"``: the official one when it is
    cached or ``download.tensorflow.org`` answers, else (for ``photos``) the COCO-mini model
    when it has been trained, else quick. Anything else is a path ``loading.load`` takes.
    """
    from deepmac_nb import loading

    if model == "auto":
        model = _auto_model(photos)
    if model == "official":
        return pretrained.load_official(), f"official {pretrained.MODEL_NAME} (COCO)"
    if model == "coco":
        path = coco_model_dir()
        if not trained_step(path):
            raise MissingInput(f"No trained COCO-mini model in {path}. {coco_model_dir.__doc__}")
        # Flip TTA is part of the recipe: 35.8 non-VOC AP over 2 seeds.
        predictor = loading.from_model_dir(path, flip_tta=True)
        return predictor, f"COCO-mini model ({COCO_EXPERIMENT}, flip TTA)"
    if model == "quick":
        model_dir = ensure_quick_model(steps)
        return loading.from_model_dir(model_dir), f"quick shapes model ({model_dir.name})"
    path = require_path(model, "MODEL", "Use 'auto', 'official', 'coco', 'quick' or a path.")
    return loading.load(path), f"model at {path}"


def _auto_model(photos: bool) -> str:
    if pretrained.is_cached("deepmac") or online():
        return "official"
    return "coco" if photos and trained_step(coco_model_dir()) else "quick"


# ------------------------------------------------------------------- examples


def shapes_example(index: int = 0, image_size: int = 128):
    """Validation image ``index`` of the shapes set (never trained on); the default size
    is the cached set's (``data_sources.SHAPES_IMAGE_SIZE``).

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
        # Without the sample data folder: the package's detections + photos downloaded.
        sample = samples.camera_traps("mdv5", download=True)
    except (samples.SampleDataMissing, UserError) as exc:
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


def embed_markdown_images(text: str, folder: str | os.PathLike) -> str:
    """``text`` with every relative PNG link ``![alt](name.png)`` replaced by a base64
    ``data:`` URI of ``folder / name.png``, so the figures survive the notebook's HTML
    export wherever it is opened; links to missing files are left as they are."""
    import base64

    def inline(match: re.Match) -> str:
        path = Path(folder) / match.group(2)
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    return re.sub(r"!\[([^\]]*)\]\((?!\w+:)([^)\s]+\.png)\)", inline, text)


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
