"""The Deep-MAC model: Model Garden CenterNet plus a deep, class-agnostic mask head.

Data flow for a batch of padded, normalized images ``float32 [B, H_in, W_in, 3]``:

1. backbone (Model Garden CenterNet Hourglass) -> one feature map per stage, stride 4;
2. CenterNet heads per stage: ``ct_heatmaps [B, h, w, K]`` (bias -2.19), ``ct_size``,
   ``ct_offset`` ``[B, h, w, 2]``, plus Deep-MAC's ``pixel_embedding [B, h, w, P]`` and
   ``instance_embedding [B, h, w, D]`` (each 3x3 conv + ReLU + 1x1 conv);
3. for given boxes ``[B, N, 4]`` (model frame), per stage: crop the pixel embedding to
   ``S x S``, add coordinate channels and the centre instance embedding
   (``crops.mask_head_inputs``), run the mask head -> ``mask_logits [B, N, S, S]``
   (with ``mask.crop_context`` the crop is the grown box and the logits are resampled
   to the box's frame);
4. at inference, CenterNet decoding (3x3 max-pool peaks, top-k) gives boxes, classes
   and scores, and masks are computed for those boxes from the last stage.

``predict_masks`` / ``detect`` wrap this for raw ``uint8`` images in their own frame.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras
from official.projects.centernet.modeling.backbones import hourglass as cn_hourglass
from official.projects.centernet.modeling.heads import centernet_head
from official.projects.centernet.modeling.layers import detection_generator as cn_detgen

from deepmac_nb.modeling import crops, mask_heads, preprocess
from deepmac_nb.modeling.config import DeepMACModelConfig

HEATMAP, SIZE, OFFSET = "ct_heatmaps", "ct_size", "ct_offset"
PIXEL_EMB, INSTANCE_EMB = "pixel_embedding", "instance_embedding"
# The normalized model input, one entry per stage like the heads' outputs, present in
# ``raw_output`` only when ``mask.image_channels`` is on (the mask head then crops it).
IMAGE = "input_image"


class DeepMACModel(tf_keras.Model):
    """CenterNet + Deep-MAC mask branch.

    Call: ``model(images, boxes=None, training=None)`` with ``images`` float32
    ``[B, H_in, W_in, 3]`` (see ``preprocess.resize_and_pad``) and optional ``boxes``
    float32 ``[B, N, 4]`` normalized to the model input. Returns a dict with
    ``raw_output`` (head outputs, each a list over stages), ``mask_logits`` (list over
    mask stages of ``[B, N, S, S]``, only with boxes) and, when not training, the
    decoded ``detection_boxes [B, K, 4]`` (model frame), ``detection_classes`` (1-based
    ids), ``detection_scores`` and ``num_detections``.

    Example:
        >>> model = build_deepmac_model(tiny_model_config())            # doctest: +SKIP
        >>> model.predict_masks(image_uint8, boxes).shape               # doctest: +SKIP
        TensorShape([1, 3, 16, 16])
    """

    def __init__(self, backbone, head, mask_head, detection_generator, config, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = head
        self.mask_head = mask_head
        self.detection_generator = detection_generator
        self._config = config
        self._mask_cfg = config.mask
        self.input_hw = tuple(int(v) for v in config.input_size[:2])

    @property
    def config(self) -> DeepMACModelConfig:
        return self._config

    @property
    def checkpoint_items(self) -> dict:
        """Sub-models checkpointed separately, so a backbone-only restore is possible."""
        return {"backbone": self.backbone, "head": self.head, "mask_head": self.mask_head}

    def raw_outputs(self, images, training=None) -> dict:
        """Backbone + heads for ``float32 [B, H_in, W_in, 3]`` inputs: a dict of lists over
        stages (``HEATMAP``, ``SIZE``, ``OFFSET``, ``PIXEL_EMB``, ``INSTANCE_EMB``, and
        ``IMAGE`` when ``mask.image_channels`` is on)."""
        raw = dict(self.head(self.backbone(images, training=training), training=training))
        if self._mask_cfg.image_channels:
            raw[IMAGE] = [images] * len(raw[PIXEL_EMB])
        return raw

    def call(self, images, boxes=None, training=None):
        raw = self.raw_outputs(images, training=training)
        outputs = {"raw_output": raw}
        if boxes is not None:
            outputs["mask_logits"] = self.mask_logits(raw, boxes, training=training)
        if not training:
            outputs.update(self.decode(raw))
        return outputs

    def mask_stages(self, raw: dict) -> list[int]:
        """Indices of the stages whose embeddings feed the mask head."""
        count = len(raw[PIXEL_EMB])
        return [count - 1] if self._mask_cfg.last_stage_only else list(range(count))

    def mask_logits(self, raw: dict, boxes, training=None) -> list[tf.Tensor]:
        """Mask logits ``[B, N, S, S]`` per mask stage for model-frame ``boxes [B, N, 4]``."""
        boxes = crops.sanitize_boxes(boxes)
        return [self.stage_mask_logits(raw, i, boxes, training) for i in self.mask_stages(raw)]

    def stage_mask_logits(self, raw: dict, stage: int, boxes, training=None) -> tf.Tensor:
        """Mask logits ``[B, N, S, S]`` of one stage for boxes ``[B, N, 4]``, in each box's
        frame. With ``mask.crop_context`` the head reads the grown box, as in training,
        and its logits are resampled to the box (bilinear, align corners)."""
        flat, indices = crops.flatten_boxes(boxes)
        context = self._mask_cfg.crop_context
        grown = crops.grow_boxes(flat, context)
        logits = self.flat_mask_logits(raw, stage, grown, indices, training)
        if context:
            frame = crops.boxes_in_crop_frame(flat, grown)
            logits = crops.crop_and_resize_flat(
                logits[..., None], frame, tf.range(tf.shape(flat)[0]),
                self._mask_cfg.mask_size, self._mask_cfg.crop_method,
            )[..., 0]  # fmt: skip
        shape = tf.shape(boxes)
        size = self._mask_cfg.mask_size
        return tf.reshape(logits, [shape[0], shape[1], size, size])

    def flat_mask_logits(self, raw: dict, stage: int, boxes, indices, training=None) -> tf.Tensor:
        """Mask logits ``[K, S, S]`` in the frame of the crop boxes ``[K, 4]`` (on images
        ``indices [K]``), as the head sees them: the caller passes boxes already grown by
        ``mask.crop_context``.

        Training uses this to run the mask head only on instances that carry mask loss,
        on the parser's ``crop_boxes``.
        """
        cfg = self._mask_cfg
        inst = raw[INSTANCE_EMB][stage] if cfg.instance_embedding_dim > 0 else None
        inputs = crops.mask_head_inputs(
            raw[PIXEL_EMB][stage], inst, boxes, cfg.mask_size, use_xy=cfg.use_xy,
            crop_method=cfg.crop_method, indices=indices,
        )  # fmt: skip
        if cfg.image_channels:
            pixels = crops.crop_and_resize_flat(
                raw[IMAGE][stage], boxes, indices, cfg.mask_size, cfg.crop_method
            )
            # Standardized per crop and channel: the head then sees the pattern's contrast
            # inside the box, whatever the scene's colours and light.
            mean, var = tf.nn.moments(pixels, axes=[1, 2], keepdims=True)
            inputs = tf.concat([inputs, (pixels - mean) * tf.math.rsqrt(var + 1e-4)], axis=-1)
        return self.mask_head(inputs, training=training)

    def decode(self, raw: dict) -> dict:
        """CenterNet decoding of the last stage: top-k peaks -> model-frame boxes."""
        dets = self.detection_generator(raw)
        scale = tf.constant(self.input_hw * 2, tf.float32)
        return {
            "detection_boxes": tf.clip_by_value(dets["boxes"] / scale, 0.0, 1.0),
            "detection_classes": tf.cast(dets["classes"], tf.int32),
            "detection_scores": dets["confidence"],
            "num_detections": dets["num_detections"],
        }

    def preprocess(self, images) -> tuple[tf.Tensor, tf.Tensor]:
        """``uint8 [B, H, W, 3]`` (or a list of differently sized images) -> padded inputs.

        Returns ``(inputs float32 [B, H_in, W_in, 3], valid float32 [B, 2])``.
        """
        pairs = [preprocess.resize_and_pad(img, self.input_hw) for img in images]
        return tf.stack([p[0] for p in pairs]), tf.stack([p[1] for p in pairs])

    def predict_masks(self, images, boxes) -> tf.Tensor:
        """Box-prompted masks: ``images uint8 [B, H, W, 3]``, ``boxes [B, N, 4]`` normalized
        to each original image -> mask probabilities ``float32 [B, N, S, S]`` in each box's
        frame (paste with ``crops.paste_masks``)."""
        inputs, valid = self.preprocess(images)
        model_boxes = preprocess.image_to_model_boxes(tf.cast(boxes, tf.float32), valid)
        raw = self.raw_outputs(inputs, training=False)
        last = self.mask_stages(raw)[-1]
        logits = self.stage_mask_logits(raw, last, crops.sanitize_boxes(model_boxes), False)
        return tf.sigmoid(logits)

    def detect(self, images) -> dict:
        """Detections with masks for ``uint8 [B, H, W, 3]`` images.

        Returns ``detection_boxes [B, K, 4]`` normalized to each original image,
        ``detection_classes [B, K]`` int32 1-based, ``detection_scores [B, K]``,
        ``num_detections [B]`` and ``detection_masks [B, K, S, S]`` (box frame).
        """
        inputs, valid = self.preprocess(images)
        raw = self.raw_outputs(inputs, training=False)
        dets = self.decode(raw)
        last = self.mask_stages(raw)[-1]
        logits = self.stage_mask_logits(raw, last, dets["detection_boxes"], False)
        dets["detection_masks"] = tf.sigmoid(logits)
        dets["detection_boxes"] = preprocess.model_to_image_boxes(dets["detection_boxes"], valid)
        return dets


def _build_backbone(config: DeepMACModelConfig) -> tf_keras.Model:
    if config.backbone.type != "hourglass":
        raise ValueError(
            f"Deep-MAC backbone {config.backbone.type!r} is not supported; use 'hourglass' "
            "(Model Garden CenterNet Hourglass; model_id 10..52, num_hourglasses 1 or 2)."
        )
    hg = config.backbone.hourglass
    norm = config.norm_activation
    return cn_hourglass.Hourglass(
        model_id=hg.model_id,
        input_channel_dims=hg.input_channel_dims,
        num_hourglasses=hg.num_hourglasses,
        initial_downsample=hg.initial_downsample,
        input_specs=tf_keras.layers.InputSpec(shape=[None, *config.input_size]),
        activation=norm.activation,
        use_sync_bn=norm.use_sync_bn,
        norm_momentum=norm.norm_momentum,
        norm_epsilon=norm.norm_epsilon,
    )


def _task_outputs(config: DeepMACModelConfig) -> dict[str, int]:
    outputs = {HEATMAP: config.num_classes, OFFSET: 2, SIZE: 2}
    outputs[PIXEL_EMB] = config.mask.pixel_embedding_dim
    if config.mask.instance_embedding_dim > 0:
        outputs[INSTANCE_EMB] = config.mask.instance_embedding_dim
    return outputs


def build_deepmac_model(config: DeepMACModelConfig) -> DeepMACModel:
    """Builds backbone, heads, mask head and decoder from a ``DeepMACModelConfig``."""
    backbone = _build_backbone(config)
    levels = list(config.head.input_levels)
    missing = sorted(set(levels) - set(backbone.output_specs))
    if missing:
        raise ValueError(
            f"head.input_levels {missing} are not backbone outputs "
            f"{sorted(backbone.output_specs)} (use ['2'] for 1 hourglass, ['2_0', '2'] for 2)."
        )
    head = centernet_head.CenterNetHead(
        input_specs=backbone.output_specs,
        task_outputs=_task_outputs(config),
        input_levels=levels,
        heatmap_bias=config.head.heatmap_bias,
    )
    out_h = backbone.output_specs[levels[-1]][1]
    dg = config.detection_generator
    detector = cn_detgen.CenterNetDetectionGenerator(
        input_image_dims=tuple(config.input_size[:2]),
        net_down_scale=int(config.input_size[0] // out_h),
        max_detections=dg.max_detections,
        peak_error=dg.peak_error,
        peak_extract_kernel_size=dg.peak_extract_kernel_size,
        class_offset=dg.class_offset,
        use_nms=dg.use_nms,
        nms_pre_thresh=dg.nms_pre_thresh,
        nms_thresh=dg.nms_thresh,
    )
    mcfg = config.mask
    crops.check_crop_context(mcfg.crop_context)
    head_net = mask_heads.build_mask_head(mcfg.network_type, mcfg.num_init_channels, mcfg.mask_size)
    return DeepMACModel(backbone, head, head_net, detector, config, name="deepmac")
