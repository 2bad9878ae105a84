"""Helpers the tutorial notebooks share (nothing here imports TensorFlow at import time).

  * ``inputs``: ``require_path`` / ``MissingInput`` stop a notebook early with one line
    that names the setting to change; ``coco_inputs``, ``iwildcam_inputs`` (Kaggle
    iWildCam paths or the camera-trap sample), ``cache_dir``, ``repo_path``;
  * ``quick_model``: ``ensure_quick_model`` / ``quick_model_dir``, the one quick model all
    notebooks share (``$DEEPMAC_NB_CACHE``, default ``~/.cache/deepmac_nb``), and
    ``eval_inputs`` / ``quick_eval_set``, the shapes set it is evaluated on;
  * ``lessons``: ``shapes_example``, ``unseen_examples``, ``mask_grid``,
    ``mask_head_parameter_counts``, ``training_batch_rows``, ``find_results`` /
    ``ablation_table``;
  * ``adapting``: ``adapted_model_dir``, notebook 04's boxes-only fine-tuning of a model
    dir on the camera-trap detections;
  * here: ``load_predictor``, ``"official"`` / ``"coco"`` / ``"quick"`` / ``"auto"`` / a
    path -> ``Predictor`` (``"auto"`` probes the network), and ``adaptable_model_dir``,
    the same setting -> a model dir ``adapt`` can fine-tune.

Every name is importable from ``deepmac_nb.tutorial``. ``deepmac_nb.demo`` runs the
notebooks themselves; ``deepmac_nb.evaluation.evaluate`` scores a model.
"""

from __future__ import annotations

import socket
from pathlib import Path

from deepmac_nb import photo_model, pretrained
from deepmac_nb.tutorial.adapting import adapted_model_dir
from deepmac_nb.tutorial.inputs import (
    KAGGLE_INPUT,
    REPO_ROOT,
    MissingInput,
    cache_dir,
    coco_inputs,
    find_kaggle_iwildcam,
    iwildcam_inputs,
    quiet_tensorflow,
    repo_path,
    require_path,
)
from deepmac_nb.tutorial.lessons import (
    ABLATION_COMMAND,
    RESULTS_CANDIDATES,
    ablation_table,
    embed_markdown_images,
    find_results,
    mask_grid,
    mask_head_parameter_counts,
    results_rows,
    shapes_example,
    training_batch_rows,
    unseen_examples,
)
from deepmac_nb.tutorial.quick_model import (
    QUICK_EXPERIMENT,
    QUICK_STEPS,
    ensure_quick_model,
    eval_inputs,
    quick_eval_set,
    quick_model_dir,
    quick_params,
    set_aside_if_other_recipe,
    trained_step,
)

# Real-photo model of the COCO-mini recipe; trained by the command in coco_model_dir's doc.
COCO_EXPERIMENT = "deepmac_coco_mini_voc"
OFFICIAL_HOST = "download.tensorflow.org"
COCO_LABEL, QUICK_LABEL = "COCO-mini model", "quick shapes model"  # descriptions start so
PHOTO_LABEL = photo_model.DESCRIPTION
# What the offline models are worth on photos, said wherever they segment one: non-VOC mask
# AP with GT boxes on COCO-mini val_dev (docs/results.md), where an inscribed ellipse gets
# 36.2 and the filled box 28.9.
PHOTO_CAVEATS = {
    COCO_LABEL: "on photos it only ties an inscribed ellipse (35.8 vs 36.2 mask AP on "
    "COCO-mini's unseen classes), it does not beat it. Use the official checkpoint when "
    "you can.",
    PHOTO_LABEL: "a small model trained on 2 CPU cores: on photos it beats an inscribed "
    "ellipse on classes it never saw a mask of (40.6 mask AP on COCO-mini's unseen "
    "classes, 41.9 +- 1.2 over 3 seeds of its recipe, against 36.2), but it is far below "
    "the official checkpoint. Use that when you can.",
    QUICK_LABEL: "it was trained on synthetic shapes and has never seen a photograph; on "
    "photos it is weaker than an inscribed ellipse (32.8 vs 36.2 mask AP on COCO-mini's "
    "unseen classes). Use the official checkpoint when you can.",
}

__all__ = [
    "ABLATION_COMMAND",
    "COCO_EXPERIMENT",
    "COCO_LABEL",
    "KAGGLE_INPUT",
    "OFFICIAL_HOST",
    "PHOTO_CAVEATS",
    "PHOTO_LABEL",
    "QUICK_EXPERIMENT",
    "QUICK_LABEL",
    "QUICK_STEPS",
    "REPO_ROOT",
    "RESULTS_CANDIDATES",
    "MissingInput",
    "ablation_table",
    "adaptable_model_dir",
    "adapted_model_dir",
    "cache_dir",
    "coco_inputs",
    "coco_model_dir",
    "embed_markdown_images",
    "ensure_quick_model",
    "eval_inputs",
    "find_kaggle_iwildcam",
    "find_results",
    "iwildcam_inputs",
    "load_predictor",
    "mask_grid",
    "mask_head_parameter_counts",
    "model_banner",
    "online",
    "quick_eval_set",
    "quick_model_dir",
    "quick_params",
    "quiet_tensorflow",
    "repo_path",
    "require_path",
    "results_rows",
    "set_aside_if_other_recipe",
    "shapes_example",
    "trained_step",
    "training_batch_rows",
    "unseen_examples",
]


# ------------------------------------------------------------- model choice


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
    once); ``"photo"``: the real-photo model shipped in the package (``photo_model``);
    ``"coco"``: the COCO-mini model you trained into ``coco_model_dir()``; ``"quick"``: the
    shared quick shapes model, trained now if missing; ``"auto"``: the official one when it
    is cached or ``download.tensorflow.org`` answers, else (for ``photos``) the shipped
    photo model, else quick. Anything else is a path ``loading.load`` takes.
    """
    from deepmac_nb import loading

    if model == "auto":
        model = _auto_model(photos)
    if model == "official":
        return pretrained.load_official(), f"official {pretrained.MODEL_NAME} (COCO)"
    if model == "photo":  # flip TTA is part of its recipe
        return photo_model.load(), f"{PHOTO_LABEL} ({photo_model.info()['experiment']}, flip TTA)"
    if model == "coco":
        path = _trained_coco_dir()
        # Flip TTA is part of the recipe: 35.8 non-VOC AP over 2 seeds.
        predictor = loading.from_model_dir(path, flip_tta=True)
        return predictor, f"{COCO_LABEL} ({COCO_EXPERIMENT}, flip TTA)"
    if model == "quick":
        model_dir = ensure_quick_model(steps)
        return loading.from_model_dir(model_dir), f"{QUICK_LABEL} ({model_dir.name})"
    path = require_path(
        model, "MODEL", "Use 'auto', 'official', 'photo', 'coco', 'quick' or a path."
    )
    return loading.load(path), f"model at {path}"


def model_banner(description: str, photos: bool = False) -> str:
    """The Markdown line a notebook shows above its masks: the model ``load_predictor``
    described, and for ``photos`` what an offline model is worth there (``PHOTO_CAVEATS``)."""
    line = f"> **Model used for the masks below:** {description}"
    caveat = next((c for k, c in PHOTO_CAVEATS.items() if description.startswith(k)), None)
    return f"{line}\n>\n> **Note:** {caveat}" if photos and caveat else line


def _trained_coco_dir() -> Path:
    path = coco_model_dir()
    if not trained_step(path):
        raise MissingInput(f"No trained COCO-mini model in {path}. {coco_model_dir.__doc__}")
    return path


def _auto_model(photos: bool) -> str:
    if pretrained.is_cached("deepmac") or online():
        return "official"
    if photos and photo_model.available():
        return "photo"
    return "coco" if photos and trained_step(coco_model_dir()) else "quick"


def adaptable_model_dir(model: str = "auto", steps: int | None = QUICK_STEPS) -> tuple[Path, str]:
    """``(model dir, description)`` that ``adapt`` can start from for ``model``.

    ``"auto"`` and ``"official"`` (a SavedModel, which cannot be trained further) take the
    shipped photo model, else the COCO-mini model when it is trained, else the quick
    shapes model (trained now if missing); ``"photo"``, ``"coco"`` and ``"quick"`` take
    those; a path must be a Deep-MAC model dir (``params.yaml`` and a checkpoint).
    """
    if model in ("auto", "official"):
        model = "photo" if photo_model.available() else "coco"
        if model == "coco" and not trained_step(coco_model_dir()):
            model = "quick"
    if model == "photo":
        return photo_model.model_dir(), f"{PHOTO_LABEL} ({photo_model.info()['experiment']})"
    if model == "coco":
        return _trained_coco_dir(), f"{COCO_LABEL} ({COCO_EXPERIMENT})"
    if model == "quick":
        model_dir = ensure_quick_model(steps)
        return model_dir, f"{QUICK_LABEL} ({model_dir.name})"
    path = require_path(model, "MODEL")
    if not ((path / "params.yaml").is_file() and trained_step(path)):
        raise MissingInput(
            f"MODEL={path} is not a trained model dir (params.yaml and ckpt-<step>); adapt "
            "fine-tunes model dirs, not exported SavedModels or TFLite files."
        )
    return path, f"model at {path}"
