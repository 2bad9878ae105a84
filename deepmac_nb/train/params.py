"""Building an experiment's config and checking its model dir: the library side of
``deepmac-nb train`` (the CLI, the tutorial notebooks and the benchmarks all call these).

Example:
    >>> from deepmac_nb.train import params as train_params
    >>> p = train_params.build_params("deepmac_shapes_quick", steps=300, seed=1)  # doctest: +SKIP
    >>> train_params.check_model_dir("runs/quick", "deepmac_shapes_quick")       # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from deepmac_nb.errors import UserError

# Written into a model dir on the first training; names the experiment that owns it.
MARKER = "deepmac_experiment.json"


def build_params(
    experiment: str,
    overrides: Iterable[str | dict] = (),
    mask_head: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
):
    """The experiment's config with ``overrides``, then the shortcuts, applied; validated.

    Args:
      experiment: a registered experiment name (``experiments.EXPERIMENTS`` or Deep-MARC's).
      overrides: applied in order, each a dict, a YAML file path or a ``key=value,...``
        string (``trainer.train_steps=200,task.model.mask.mask_size=16``); unknown keys
        fail.
      mask_head: a mask head by name (``set_mask_head``); None keeps the experiment's.
      steps: ``trainer.train_steps``, with the LR decay stretched to it (``set_train_steps``).
      seed: ``task.seed`` (weights, data order, augmentation); None keeps the experiment's
        (0 for every experiment here).
      deterministic: ``task.deterministic`` (TensorFlow's deterministic kernels, so a run
        repeats bit for bit); None keeps the experiment's (off).

    Raises ``UserError`` for an unknown experiment or mask head, a negative seed or steps.
    """
    from official.modeling import hyperparams

    from deepmac_nb.train import experiments

    try:
        params = experiments.get_experiment(experiment)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    for override in overrides:
        if override:
            params = hyperparams.override_params_dict(params, override, is_strict=True)
    if mask_head:
        set_mask_head(params, mask_head)
    if steps is not None:
        set_train_steps(params, steps)
    if seed is not None:
        set_seed(params, seed)
    if deterministic is not None:
        params.task.deterministic = deterministic
    params.validate()
    return params


def set_mask_head(params, name: str) -> None:
    """Model Garden's variants for Deep-MARC configs, else Deep-MAC's heads (in place)."""
    from deepmac_nb.deepmarc import experiments as deepmarc
    from deepmac_nb.modeling import mask_heads

    if deepmarc.is_deepmarc(params):
        try:
            deepmarc.set_mask_head(params, name)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        return
    if name not in mask_heads.MASK_HEAD_NAMES:
        raise UserError(
            f"unknown mask head {name!r}; valid: {', '.join(mask_heads.MASK_HEAD_NAMES)}"
        )
    params.task.model.mask.network_type = name


def set_train_steps(params, steps: int) -> None:
    """Sets ``train_steps`` and stretches a cosine / polynomial decay to end with it, so a
    shorter run still anneals its learning rate (warm-up steps are kept)."""
    if steps < 1:
        raise UserError(f"steps must be at least 1, not {steps}")
    params.trainer.train_steps = steps
    lr = params.trainer.optimizer_config.learning_rate
    schedule = lr.get() if lr.type else None
    if schedule is not None and hasattr(schedule, "decay_steps"):
        schedule.decay_steps = steps


def set_seed(params, seed: int) -> None:
    """Sets ``task.seed`` (``runner.apply_seed`` applies it when training starts)."""
    if seed < 0:
        raise UserError(f"seed must be a non-negative integer, not {seed}")
    if not hasattr(params.task, "seed"):
        raise UserError(f"{type(params.task).__name__} has no seed field")
    params.task.seed = seed


def check_model_dir(model_dir: str | os.PathLike, experiment: str) -> None:
    """Refuses (``UserError``) a model dir that holds another experiment's checkpoints."""
    marker = Path(model_dir) / MARKER
    if marker.exists():
        previous = json.loads(marker.read_text()).get("experiment")
        if previous != experiment:
            raise UserError(
                f"{model_dir} holds checkpoints of experiment {previous!r}, not {experiment!r}. "
                "Use a new model dir; to fine-tune from it, set task.init_checkpoint "
                "(restores the backbone only by default)."
            )


def mark_model_dir(model_dir: str | os.PathLike, experiment: str) -> None:
    """Records (once, atomically) which experiment owns ``model_dir``."""
    from deepmac_nb import _io

    if not (Path(model_dir) / MARKER).exists():
        _io.write_json(Path(model_dir) / MARKER, {"experiment": experiment})


def claim_model_dir(model_dir: str | os.PathLike, experiment: str) -> Path:
    """``check_model_dir`` then ``mark_model_dir``; returns ``Path(model_dir)``."""
    check_model_dir(model_dir, experiment)
    mark_model_dir(model_dir, experiment)
    return Path(model_dir)
