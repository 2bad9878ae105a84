"""The one quick model all notebooks share, and the shapes set it is evaluated on.

``quick_model_dir`` names one folder per (steps, mask head) under the cache;
``ensure_quick_model`` trains it there when its latest checkpoint is behind (a cut-short
run resumes), so every notebook that needs it gets the same model.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from deepmac_nb.errors import UserError
from deepmac_nb.tutorial.inputs import cache_dir, require_path

QUICK_EXPERIMENT = "deepmac_shapes_quick"
# The QUICK schedule's length; the test suite sets it lower to keep the notebook runs short.
QUICK_STEPS_ENV = "DEEPMAC_NB_QUICK_STEPS"


def _quick_steps(default: int = 600) -> int:
    text = os.environ.get(QUICK_STEPS_ENV, str(default)).strip()
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"${QUICK_STEPS_ENV} must be a positive number of steps, got {text!r}.")
    return int(text)


# ~4 min on 2 CPU cores. 600 steps, not fewer: at 300 the shallow head has not learned the
# seen shapes yet and the deep head's lead over it hangs on the seed (docs/results.md).
QUICK_STEPS = _quick_steps()


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
    set_aside_if_other_recipe(model_dir, params)
    if trained_step(model_dir) >= params.trainer.train_steps:
        return model_dir
    from deepmac_nb.train import params as train_params
    from deepmac_nb.train import runner

    train_params.claim_model_dir(model_dir, QUICK_EXPERIMENT)
    print(f"Training {model_dir.name} ({params.trainer.train_steps} steps) ...", flush=True)
    (train_fn or runner.train)(params, model_dir)
    return model_dir


def set_aside_if_other_recipe(model_dir: Path, params) -> None:
    """A cached quick model trained with another model config (an older recipe) is
    renamed to ``<name>.old-<n>``, so it is neither reused nor resumed (its weights may not
    even fit) and nothing is deleted."""
    import yaml

    saved = model_dir / "params.yaml"
    if not saved.is_file():
        return
    stored = (yaml.safe_load(saved.read_text()) or {}).get("task", {}).get("model")
    current = yaml.safe_load(yaml.safe_dump(params.as_dict()["task"]["model"]))
    if stored == current:
        return
    n = 1
    while model_dir.with_name(f"{model_dir.name}.old-{n}").exists():
        n += 1
    aside = model_dir.rename(model_dir.with_name(f"{model_dir.name}.old-{n}"))
    print(f"{model_dir.name} was trained with another model config; kept as {aside.name}.")


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
