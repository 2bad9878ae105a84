"""Task and data configs of Deep-MAC training (Model Garden ``hyperparams`` dataclasses)."""

from __future__ import annotations

import dataclasses

from official.core import config_definitions as cfg
from official.modeling import hyperparams

from deepmac_nb.modeling.config import DeepMACModelConfig
from deepmac_nb.train.weak_losses import WeakLossConfig


@dataclasses.dataclass
class ParserConfig(hyperparams.Config):
    """Augmentation of the training input (the paper's recipe by default)."""

    aug_rand_hflip: bool = True
    aug_color: bool = True
    aug_scale_min: float = 0.6
    aug_scale_max: float = 1.3
    gaussian_iou: float = 0.7
    # ROI jitter of the mask crops (the reference's max_roi_jitter_ratio / jitter_mode):
    # default, expand, shrink, expand_symmetric, shrink_symmetric, expand_symmetric_xy.
    max_roi_jitter_ratio: float = 0.0
    roi_jitter_mode: str = "default"


@dataclasses.dataclass
class DataConfig(cfg.DataConfig):
    """TFRecords written by ``deepmac-nb prepare``; ``input_path`` may be a glob."""

    input_path: str = ""
    global_batch_size: int = 8
    is_training: bool = True
    dtype: str = "float32"
    shuffle_buffer_size: int = 1000
    file_type: str = "tfrecord"
    drop_remainder: bool = True
    parser: ParserConfig = dataclasses.field(default_factory=ParserConfig)


@dataclasses.dataclass
class LossConfig(hyperparams.Config):
    """Loss weights (reference values) and the mask-branch sampling switch."""

    object_center_weight: float = 1.0
    scale_weight: float = 0.1
    offset_weight: float = 1.0
    mask_weight: float = 5.0
    # Run the mask head only on instances that carry mask loss (dynamic shapes).
    # Exactly the same loss and gradients; set False on TPUs.
    mask_valid_only: bool = True
    # Box consistency, colour consistency, augmented self-supervision (all off).
    weak: WeakLossConfig = dataclasses.field(default_factory=WeakLossConfig)


@dataclasses.dataclass
class DeepMACTaskConfig(cfg.TaskConfig):
    """Partially supervised Deep-MAC training.

    Attributes:
      allowed_mask_classes: the split with mask labels: a name of
        ``deepmac_nb.splits.SPLITS`` (``voc``, ``non_voc``, ``all``, ``seen``...) or
        comma-separated ids. Instances of other classes get boxes but no mask loss.
      dataset: ``shapes`` or ``coco_mini`` makes the ``train`` command prepare the
        TFRecords on first use and fill in the input paths; empty = use the paths.
      shapes_preset: the generator preset of a shapes ``dataset``
        (``ShapesConfig.preset``: ``default``, ``classic``, ...); each preset has its own
        cache folder.
      annotation_file: COCO JSON of the validation set (for mask AP evaluation).
      init_checkpoint_modules: ``backbone`` (fine-tuning: restores the backbone only,
        so a different class count never breaks the restore) or ``all``.
      seed: seeds Python, NumPy and TensorFlow (weights) before the model is built and,
        unless ``train_data.seed`` is set, the data order and the per-example
        augmentation. None: unseeded.
      deterministic: TensorFlow's deterministic kernels too (``runner.apply_seed``):
        then the same seed, data and machine give the same losses, bit for bit.
      precise_bn_batches: at the end of training, recompute every BatchNorm layer's
        statistics as their mean over this many training batches
        (``train.precise_bn``; the reference's momentum 0.1 leaves them mostly the last
        batch's). 0: off, as in the reference.
    """

    model: DeepMACModelConfig = dataclasses.field(default_factory=DeepMACModelConfig)
    train_data: DataConfig = dataclasses.field(default_factory=lambda: DataConfig(is_training=True))
    validation_data: DataConfig = dataclasses.field(
        default_factory=lambda: DataConfig(is_training=False, drop_remainder=False)
    )
    losses: LossConfig = dataclasses.field(default_factory=LossConfig)
    allowed_mask_classes: str = "all"
    dataset: str = ""
    shapes_preset: str = "default"
    annotation_file: str = ""
    validation_images: str = ""
    init_checkpoint: str = ""
    init_checkpoint_modules: str = "backbone"
    seed: int | None = 0
    deterministic: bool = False
    precise_bn_batches: int = 0
    # Keep the backbone's weights (and batch-norm statistics) fixed while training.
    freeze_backbone: bool = False
