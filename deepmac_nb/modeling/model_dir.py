"""Deep-MAC model dirs: what Model Garden's train loop writes, read back as a model.

A *model dir* holds ``params.yaml`` (the experiment config; the model is under
``task.model``) and ``ckpt-<step>`` checkpoints whose item ``model`` is the Keras
``DeepMACModel``. ``load_model_dir`` builds and restores one, ``save_model_dir`` writes
one (tests, demos), ``rebuild`` copies a model with another crop method or input size.

A run trained with ``trainer.optimizer_config.ema`` (Model Garden's moving average of the
weights) also holds ``ema_checkpoints/average_weights-<step>``, the averaged model;
``weights_checkpoint`` picks it over ``ckpt-<step>`` when it is at least as new.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import yaml

from deepmac_nb import _io
from deepmac_nb.modeling.config import DeepMACModelConfig
from deepmac_nb.modeling.deepmac_model import DeepMACModel, build_deepmac_model

PARAMS_FILE = "params.yaml"
AVERAGED_DIR = "ema_checkpoints"  # where Model Garden's EMACheckpointing writes


def _step(checkpoint: str) -> int:
    return int(checkpoint.rsplit("-", 1)[1])


def weights_checkpoint(model_dir: str | Path) -> str | None:
    """The checkpoint a model dir's weights come from: the moving average of the weights
    (``ema_checkpoints/``) when it is at least as new as the latest ``ckpt-<step>``, else
    that latest checkpoint; None when there is neither. Both hold the model under the
    item ``model``. A stale average (training resumed later without ``ema``) loses."""
    latest = tf.train.latest_checkpoint(str(model_dir))
    averaged = tf.train.latest_checkpoint(str(Path(model_dir) / AVERAGED_DIR))
    if averaged and (latest is None or _step(averaged) >= _step(latest)):
        return averaged
    return latest


def model_config_from_params(params: dict) -> DeepMACModelConfig:
    """``DeepMACModelConfig`` from a parsed ``params.yaml`` (its ``task.model`` block)."""
    model_params = (params or {}).get("task", {}).get("model")
    if not isinstance(model_params, dict):
        raise ValueError(f"{PARAMS_FILE} has no 'task: model:' block with the model config.")
    config = DeepMACModelConfig()
    config.override(model_params, is_strict=False)
    return config


def _built(config: DeepMACModelConfig) -> DeepMACModel:
    """Builds a model and creates all its variables with one call on zeros (with a box)."""
    model = build_deepmac_model(config)
    height, width = model.input_hw
    model(tf.zeros([1, height, width, 3]), boxes=tf.zeros([1, 1, 4]), training=False)
    return model


def load_model_dir(
    model_dir: str | Path, crop_method: str | None = None, input_px: int | None = None
) -> DeepMACModel:
    """Builds the model of ``params.yaml`` and restores ``weights_checkpoint(model_dir)``.

    ``crop_method`` / ``input_px`` override ``mask.crop_method`` / the square input size
    (the network is fully convolutional, so the weights fit any input size).
    Raises ``ValueError`` when the folder, its config or a matching checkpoint is missing.
    """
    model_dir = Path(model_dir)
    params_path = model_dir / PARAMS_FILE
    if not params_path.is_file():
        raise ValueError(f"{model_dir} is not a model dir: no {PARAMS_FILE} in it.")
    config = model_config_from_params(yaml.safe_load(params_path.read_text()))
    _apply_overrides(config, crop_method, input_px)
    checkpoint = weights_checkpoint(model_dir)
    if checkpoint is None:
        raise ValueError(f"{model_dir} has {PARAMS_FILE} but no checkpoint (ckpt-<step>).")
    model = _built(config)
    try:
        status = tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as exc:  # missing variables / wrong shapes
        raise ValueError(f"{checkpoint} does not match the model of {params_path}: {exc}") from exc
    return model


def _apply_overrides(config, crop_method: str | None, input_px: int | None) -> None:
    if crop_method is not None:
        config.mask.crop_method = crop_method
    if input_px is not None:
        config.input_size = [int(input_px), int(input_px), 3]


def save_model_dir(model: DeepMACModel, model_dir: str | Path, step: int = 1) -> Path:
    """Writes ``model`` as a model dir (``params.yaml`` + ``ckpt-<step>``), as training does.

    For tests and demos; ``load_model_dir`` reads it back. The model must be built.
    """
    model_dir = Path(model_dir)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), str(model_dir), max_to_keep=1
    )
    manager.save(checkpoint_number=step)
    params = {"task": {"model": model.config.as_dict()}}
    _io.write_text(model_dir / PARAMS_FILE, yaml.safe_dump(params, sort_keys=False))
    return model_dir


def rebuild(model: DeepMACModel, crop_method: str | None = None, input_px: int | None = None):
    """A copy of ``model`` with the same weights and a different crop method / input size."""
    config = DeepMACModelConfig()
    config.override(model.config.as_dict(), is_strict=False)
    _apply_overrides(config, crop_method, input_px)
    clone = _built(config)
    weights = model.get_weights()
    if [w.shape for w in clone.get_weights()] != [w.shape for w in weights]:
        raise ValueError("rebuild: the model's weights do not fit its own config; call it once.")
    clone.set_weights(weights)
    return clone
