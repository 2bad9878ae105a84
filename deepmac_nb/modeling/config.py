"""Model Garden-style configs for the Deep-MAC model (CenterNet + deep mask head).

The detector part reuses Model Garden's CenterNet config classes unchanged; Deep-MAC
adds the ``mask`` block (mask head, embeddings, crop size). These dataclasses are what
``deepmac_nb.train.experiments`` fills in and what ``--params-override`` edits.
"""

from __future__ import annotations

import dataclasses

from official.modeling import hyperparams
from official.projects.centernet.configs import backbones as cn_backbones
from official.projects.centernet.configs import centernet as cn_cfg
from official.vision.configs import common


@dataclasses.dataclass
class MaskConfig(hyperparams.Config):
    """The Deep-MAC mask branch.

    Attributes:
      network_type: mask-head name, see ``deepmac_nb.modeling.mask_heads.MASK_HEAD_NAMES``.
      num_init_channels: width ``nc`` of the mask head's first block.
      mask_size: crop side S; the head predicts ``S x S`` masks in each box's frame.
      pixel_embedding_dim: channels of the pixel-embedding head (cropped per box).
      instance_embedding_dim: channels of the instance-embedding head (read at the
        box centre and tiled over the crop); 0 disables it.
      use_xy: prepend the 2 box-frame coordinate channels to the crop.
      last_stage_only: predict masks from the last backbone stage only (the paper's
        512 px config); otherwise from every stage, losses averaged over stages.
      crop_method: ``native`` (tf.image.crop_and_resize) or ``matmul`` (builtin ops
        only, for TFLite export).
      image_channels: an extension of the reference (off in every paper config): the
        box's ``S x S`` crop of the normalized input image joins the head's input as 3
        more channels, so the head sees the pixels at input resolution, not only the
        stride-4 pixel embedding. A small backbone that has not yet learned texture
        leaves the head nothing to draw an outline from; these channels give it one.
      crop_context: an extension of the reference (0 in every paper config): the head
        reads each box grown by this fraction of its height and width on every side,
        in training and at inference alike, and the model resamples the logits to the
        box's own frame, so its outputs stay box-frame masks. The box then never fills
        its crop, which box consistency needs, without the train/test mismatch of
        ROI jitter (jittered crops in training, exact boxes at inference).
    """

    network_type: str = "hourglass100"
    num_init_channels: int = 64
    mask_size: int = 32
    pixel_embedding_dim: int = 16
    instance_embedding_dim: int = 32
    use_xy: bool = True
    last_stage_only: bool = False
    crop_method: str = "native"
    image_channels: bool = False
    crop_context: float = 0.0

    def head_input_channels(self) -> int:
        """Channels ``C`` of the ``[N, S, S, C]`` crops the mask head reads."""
        return (
            2 * self.use_xy
            + self.pixel_embedding_dim
            + self.instance_embedding_dim
            + 3 * self.image_channels
        )


@dataclasses.dataclass
class DeepMACModelConfig(hyperparams.Config):
    """CenterNet (Model Garden) + Deep-MAC mask branch.

    ``input_size`` is ``[H, W, 3]`` of the padded model input; ``num_classes`` counts
    class channels of the centre heatmap (COCO: 90, ids 1..90 map to channels 0..89).
    """

    num_classes: int = 90
    max_num_instances: int = 128
    input_size: list[int] = dataclasses.field(default_factory=lambda: [512, 512, 3])
    backbone: cn_backbones.Backbone = dataclasses.field(
        default_factory=lambda: cn_backbones.Backbone(
            type="hourglass", hourglass=cn_backbones.Hourglass(model_id=52)
        )
    )
    head: cn_cfg.CenterNetHead = dataclasses.field(default_factory=cn_cfg.CenterNetHead)
    detection_generator: cn_cfg.CenterNetDetectionGenerator = dataclasses.field(
        default_factory=cn_cfg.CenterNetDetectionGenerator
    )
    norm_activation: common.NormActivation = dataclasses.field(
        default_factory=lambda: common.NormActivation(
            norm_momentum=0.1, norm_epsilon=1e-5, use_sync_bn=False
        )
    )
    mask: MaskConfig = dataclasses.field(default_factory=MaskConfig)


def tiny_model_config(network_type: str = "resnet4", image_size: int = 64) -> DeepMACModelConfig:
    """A seconds-to-build config for tests and demos: HG-10 backbone, 8 channels."""
    return DeepMACModelConfig(
        num_classes=8,
        max_num_instances=8,
        input_size=[image_size, image_size, 3],
        backbone=cn_backbones.Backbone(
            type="hourglass",
            hourglass=cn_backbones.Hourglass(model_id=10, input_channel_dims=8, num_hourglasses=1),
        ),
        head=cn_cfg.CenterNetHead(input_levels=["2"]),
        mask=MaskConfig(
            network_type=network_type,
            num_init_channels=8,
            mask_size=16,
            pixel_embedding_dim=8,
            instance_embedding_dim=8,
        ),
    )
