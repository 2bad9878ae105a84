"""Deep-MAC as a Model Garden ``Task``: inputs, model, losses, train and validation steps.

Runs under any ``tf.distribute`` strategy through ``official.core.train_lib``: the
per-replica loss is divided by the number of replicas before the gradient, as Model
Garden's own tasks do. Register it (and the experiments) with
``deepmac_nb.train.experiments.register()``; nothing is registered on import.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from absl import logging
from official.core import base_task, input_reader
from official.vision.dataloaders import tf_example_decoder

from deepmac_nb import splits
from deepmac_nb.data import pipeline
from deepmac_nb.modeling import deepmac_model
from deepmac_nb.modeling import model_dir as model_dir_lib
from deepmac_nb.train import losses as loss_lib
from deepmac_nb.train import mask_branch
from deepmac_nb.train import weak_losses as weak_lib
from deepmac_nb.train.config import DataConfig, DeepMACTaskConfig

LOSS_NAMES = ("total_loss", "center_loss", "scale_loss", "offset_loss", "mask_loss")


class DeepMACTask(base_task.Task):
    """Partially supervised Deep-MAC (CenterNet + deep mask head) training task."""

    def __init__(self, params: DeepMACTaskConfig, logging_dir: str | None = None, name=None):
        super().__init__(params, logging_dir=logging_dir, name=name)
        self._allowed_ids = allowed_mask_ids(params.allowed_mask_classes)
        weak_lib.validate(params.losses.weak)

    def build_model(self) -> tf_keras.Model:
        model = deepmac_model.build_deepmac_model(self.task_config.model)
        size = self.task_config.model.input_size
        # Create every variable (the mask head's too) before any checkpoint restore, so
        # restores match eagerly instead of relying on deferred restoration.
        model(tf.zeros([1, *size]), boxes=tf.zeros([1, 1, 4]), training=False)
        if self.task_config.freeze_backbone:
            model.backbone.trainable = False
        return model

    def parser_settings(self, params: DataConfig) -> pipeline.ParserSettings:
        model = self.task_config.model
        p = params.parser
        return pipeline.ParserSettings(
            input_size=tuple(model.input_size[:2]),
            num_classes=model.num_classes,
            max_num_instances=model.max_num_instances,
            mask_size=model.mask.mask_size,
            allowed_mask_ids=self._allowed_ids,
            gaussian_iou=p.gaussian_iou,
            aug_rand_hflip=p.aug_rand_hflip,
            aug_color=p.aug_color,
            aug_scale_min=p.aug_scale_min,
            aug_scale_max=p.aug_scale_max,
            max_roi_jitter_ratio=p.max_roi_jitter_ratio,
            roi_jitter_mode=p.roi_jitter_mode,
            crop_context=model.mask.crop_context,
        )

    def build_inputs(self, params: DataConfig, input_context=None) -> tf.data.Dataset:
        if not params.input_path:
            raise ValueError(
                "No input_path: set train_data.input_path / validation_data.input_path to "
                "TFRecords from `deepmac-nb prepare`, or use an experiment with `dataset`."
            )
        decoder = tf_example_decoder.TfExampleDecoder(include_mask=True)
        parser = pipeline.DeepMACParser(self.parser_settings(params))
        reader = input_reader.InputReader(
            params,
            dataset_fn=tf.data.TFRecordDataset,
            decoder_fn=decoder.decode,
            sample_fn=example_seeds(params, input_context) if params.is_training else None,
            parser_fn=parser.parse_fn(params.is_training),
        )
        return reader.read(input_context=input_context)

    def initialize(self, model: tf_keras.Model):
        """Restores ``init_checkpoint`` (a training checkpoint or model dir; of a model dir,
        its averaged weights when it has them, as ``model_dir.weights_checkpoint``).

        ``backbone`` restores the backbone only, so a different class count or mask head
        never breaks the restore; ``all`` restores backbone, heads and mask head.
        """
        path = self.task_config.init_checkpoint
        if not path:
            return
        if tf.io.gfile.isdir(path):
            path = model_dir_lib.weights_checkpoint(path)
        if not path:
            raise ValueError(
                f"No checkpoint found at init_checkpoint={self.task_config.init_checkpoint!r}"
            )
        items = model.checkpoint_items
        if self.task_config.init_checkpoint_modules != "all":
            items = {"backbone": items["backbone"]}
        # Training checkpoints hold the Keras model under the key "model".
        status = tf.train.Checkpoint(model=tf.train.Checkpoint(**items)).read(path)
        status.expect_partial().assert_existing_objects_matched()
        logging.info("Initialized %s from %s", self.task_config.init_checkpoint_modules, path)

    def build_losses(
        self, outputs: dict, labels: dict, model=None, training=None, images=None, step=None
    ) -> dict:
        """All loss terms; ``model`` is needed for the mask branch (it runs on GT boxes),
        ``images`` for the colour and self-supervision terms, ``step`` for warm-ups."""
        raw = outputs["raw_output"]
        weights = self.task_config.losses
        terms = {
            "center_loss": loss_lib.center_loss(raw["ct_heatmaps"], labels),
            "scale_loss": loss_lib.regression_loss(raw["ct_size"], labels["ct_size"], labels),
            "offset_loss": loss_lib.regression_loss(raw["ct_offset"], labels["ct_offset"], labels),
        }
        terms.update(mask_branch.mask_terms(model, raw, labels, images, weights, training, step))
        terms["total_loss"] = (
            weights.object_center_weight * terms["center_loss"]
            + weights.scale_weight * terms["scale_loss"]
            + weights.offset_weight * terms["offset_loss"]
            + weights.mask_weight * terms["mask_loss"]
            + mask_branch.weighted_total(terms, weights.weak)
        )
        return terms

    def loss_names(self) -> tuple[str, ...]:
        """The logged loss terms: ``LOSS_NAMES`` plus the active weak terms."""
        return LOSS_NAMES + weak_lib.active_terms(self.task_config.losses.weak)

    def build_metrics(self, training: bool = True):
        return [tf_keras.metrics.Mean(name, dtype=tf.float32) for name in self.loss_names()]

    @classmethod
    def create_optimizer(cls, optimizer_config, runtime_config=None, dp_config=None):
        """Model Garden's optimizer with its step counter created at once: the warm-ups
        read ``optimizer.iterations`` inside the replica function, and a counter created
        lazily there breaks ``MirroredStrategy``'s first trace (unfed placeholders)."""
        optimizer = super().create_optimizer(optimizer_config, runtime_config, dp_config)
        _ = optimizer.iterations
        return optimizer

    def train_step(self, inputs, model, optimizer, metrics=None):
        images, labels = inputs
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            terms = self.build_losses(
                outputs, labels, model=model, training=True, images=images,
                step=optimizer.iterations,
            )  # fmt: skip
            total = terms["total_loss"] + tf.add_n(model.losses or [tf.constant(0.0)])
            scaled = total / replicas
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables, strict=True))
        return self._logs(terms, metrics)

    def validation_step(self, inputs, model, metrics=None):
        images, labels = inputs
        outputs = model(images, training=False)
        terms = self.build_losses(outputs, labels, model=model, training=False, images=images)
        return self._logs(terms, metrics)

    def _logs(self, terms: dict, metrics) -> dict:
        logs = {self.loss: terms["total_loss"]}
        for metric in metrics or []:
            metric.update_state(terms[metric.name])
        return logs


def example_seeds(params: DataConfig, input_context=None):
    """A ``sample_fn`` for ``InputReader`` that pairs each decoded (shuffled) example with
    its own stateless augmentation seed ``int64 [2]``, drawn in order from
    ``Dataset.random(params.seed)``: the parser's map stays parallel, yet one seed gives
    the same augmentation of the same example on every run (None: a fresh stream)."""
    seed = params.seed
    if seed is not None and input_context is not None:
        seed += 1_000_003 * input_context.input_pipeline_id  # each host its own stream

    def pair(dataset: tf.data.Dataset) -> tf.data.Dataset:
        return tf.data.Dataset.zip((dataset, tf.data.Dataset.random(seed=seed).batch(2)))

    return pair


def allowed_mask_ids(spec: str) -> tuple[int, ...]:
    """Resolves ``allowed_mask_classes``; ``all`` (or empty) means no restriction: ``()``."""
    if not spec or spec == "all":
        return ()
    return splits.resolve_split(spec)
