"""Precise BatchNorm: a trained model's BatchNorm statistics recomputed over many batches.

The reference's Hourglass backbone and Model Garden's Hourglass mask heads create their
BatchNorm layers with ``momentum=0.1``. The value comes from PyTorch, where the moving
statistics keep 90 % of the *old* value. Keras uses the opposite convention and keeps 10 %
of it: after training, the statistics that inference uses are about 90 % those of the
last batch. On a TPU batch of 128 images that is harmless. On a CPU batch of 8 photos,
the mask head's statistics come from a few dozen box crops that happened to be last, and
the trained model's quality depends on them. On COCO-mini, one seed in three lost 10 AP
this way (docs/results.md).

``recompute_batch_norm`` replaces every moving mean and variance with its mean over
``batches`` training batches. It runs the training step's forward pass, mask head on
the batch's box crops included, in training mode and without gradients. It changes
nothing else; this is detectron2's ``PreciseBN`` hook. ``task.precise_bn_batches`` runs
it at the end of ``deepmac-nb train``, before the last checkpoint is written
(``PreciseBatchNormAction``).

    >>> from deepmac_nb.train import precise_bn                       # doctest: +SKIP
    >>> precise_bn.recompute_batch_norm(model, task, dataset, 100)    # doctest: +SKIP
    44
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from absl import logging

_PAST_EVERY_WARMUP = 10**9


def batch_norm_layers(model) -> list:
    """Every BatchNorm layer of ``model``, nested ones included. Model Garden's hourglass
    mask heads use ``SyncBatchNormalization``, a sibling of ``BatchNormalization`` (not a
    subclass), so both public classes are matched."""
    kinds = (
        tf_keras.layers.BatchNormalization,
        tf_keras.layers.experimental.SyncBatchNormalization,
    )
    layers = model._flatten_layers(include_self=False, recursive=True)
    return [layer for layer in layers if isinstance(layer, kinds)]


def recompute_batch_norm(model, task, dataset: tf.data.Dataset, batches: int) -> int:
    """Sets each BatchNorm layer's moving mean and variance of ``model`` to their mean
    over the first ``batches`` ``(images, labels)`` of ``dataset`` (a Deep-MAC task's
    training input), computed by ``task``'s forward pass and losses in training mode.

    With momentum ``i / (i + 1)`` at batch ``i``, the moving value is the running mean
    of the batch values, and the first batch replaces what was there. The layers'
    momenta are restored afterwards. Returns the number of batches used. Raises
    ``ValueError`` for ``batches < 1`` or an empty dataset.
    """
    if batches < 1:
        raise ValueError(f"precise BatchNorm needs at least 1 batch, got {batches}")
    norms = batch_norm_layers(model)
    momenta = [layer.momentum for layer in norms]
    step = tf.constant(_PAST_EVERY_WARMUP, tf.int64)
    used = 0
    try:
        for images, labels in dataset.take(batches):
            for layer in norms:
                layer.momentum = used / (used + 1.0)
            outputs = model(images, training=True)
            task.build_losses(outputs, labels, model=model, training=True, images=images, step=step)
            used += 1
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    if used == 0:
        raise ValueError("precise BatchNorm: the training data gave no batch")
    logging.info("Precise BatchNorm: %d layers over %d batches", len(norms), used)
    return used


def recompute_model_dir(model_dir, batches: int):
    """The model of a Deep-MAC training run's ``model_dir`` (its weights checkpoint) after
    ``recompute_batch_norm`` over ``batches`` batches of the run's own training data,
    read through the ``task`` block of its ``params.yaml`` (data prepared on first use,
    as ``train`` does). What ``task.precise_bn_batches`` would have given that run."""
    from pathlib import Path

    import yaml
    from official.core import config_definitions as cfg

    from deepmac_nb.modeling import model_dir as md
    from deepmac_nb.train import data_sources, experiments
    from deepmac_nb.train.config import DeepMACTaskConfig
    from deepmac_nb.train.task import DeepMACTask

    experiments.register()
    recorded = yaml.safe_load((Path(model_dir) / md.PARAMS_FILE).read_text()) or {}
    if not isinstance(recorded.get("task"), dict) or "train_data" not in recorded["task"]:
        raise ValueError(f"{model_dir}/{md.PARAMS_FILE} has no training data config")
    params = cfg.ExperimentConfig(task=DeepMACTaskConfig())
    params.override({"task": recorded["task"]}, is_strict=False)
    params = data_sources.prepare_experiment_data(params)
    task = DeepMACTask(params.task)
    model = md.load_model_dir(model_dir)
    recompute_batch_norm(model, task, task.build_inputs(params.task.train_data), batches)
    return model


class PreciseBatchNormAction:
    """Orbit train action: after the loop that reaches ``train_steps``, recomputes the
    model's BatchNorm statistics over ``batches`` fresh training batches. Train actions
    run before the controller writes that step's checkpoint, so the final ``ckpt-*``
    holds them. A run resumed after it finished runs no loop, so it is not redone.
    Bound to the trainer once it exists (``bind``)."""

    def __init__(self, task, train_data, train_steps: int, batches: int):
        self._task, self._train_data = task, train_data
        self._train_steps, self._batches = int(train_steps), int(batches)
        self._trainer = None

    def bind(self, trainer) -> None:
        self._trainer = trainer if self._batches > 0 else None
        if self._trainer is not None and trainer.strategy.num_replicas_in_sync > 1:
            # The eager passes run outside the replicas; synchronised BatchNorm needs them.
            logging.warning("Precise BatchNorm runs on one device only; skipped here.")
            self._trainer = None

    def __call__(self, output) -> None:
        if self._trainer is None:
            return
        if int(self._trainer.global_step.numpy()) < self._train_steps:
            return
        dataset = self._task.build_inputs(self._train_data)
        recompute_batch_norm(self._trainer.model, self._task, dataset, self._batches)
