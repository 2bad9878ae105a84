"""The mask branch of a Deep-MAC training step: which instances, which crops, which losses.

The supervised mask loss trains on the allowed split only (``mask_weights``); the weak
losses (``weak_losses``) train on every instance with a box (``box_weights``). With any
weak loss on, the mask head therefore also runs on the unseen-class instances, whose
supervised weight stays 0, so they still get no gradient from the supervised term.

Crops use ``labels['crop_boxes']`` (``data.pipeline``'s mask crops: ``labels['boxes']``,
ROI-jittered in training and grown by ``mask.crop_context`` when those are on), and
ground-truth boxes are put into that frame for the weak losses. Every term is averaged over the mask stages, as the
reference does.
"""

from __future__ import annotations

import tensorflow as tf

from deepmac_nb.modeling import crops, preprocess
from deepmac_nb.train import losses as loss_lib
from deepmac_nb.train import weak_losses as weak_lib


def transform_windows(tx, ty, sx, sy) -> tf.Tensor:
    """The reference's augmentation window per image, ``[B, 4]`` normalized: centred at
    ``0.5 - t * s`` with side ``s`` (translate, then scale about the centre)."""
    return tf.stack(
        [-ty * sy + 0.5 - sy / 2, -tx * sx + 0.5 - sx / 2,
         -ty * sy + 0.5 + sy / 2, -tx * sx + 0.5 + sx / 2], axis=1,
    )  # fmt: skip


def augment_images(images: tf.Tensor, windows: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    """Flips (``flip [B]`` bool), then samples ``windows [B, 4]`` of ``images [B, H, W, C]``
    back to ``H x W``; samples outside the image read 0 (the normalized padding value)."""
    flipped = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    size = tf.shape(images)[1:3]
    return tf.image.crop_and_resize(
        flipped, windows, tf.range(tf.shape(images)[0]), size, extrapolation_value=0.0
    )


def augment_boxes(boxes: tf.Tensor, windows: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    """Boxes ``[K, 4]`` under their image's flip and window (``windows``/``flip`` gathered
    per box, ``[K, 4]`` / ``[K]``), not clipped: the crop reads padding where they leave."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
    mirrored = tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=1)
    boxes = tf.where(flip[:, None], mirrored, boxes)
    return crops.boxes_in_crop_frame(boxes, windows)


def augmented_target_logits(model, images, boxes, image_idx, weak, training) -> list:
    """Stop-gradient box-frame logits predicted on an augmented copy, mapped back.

    The crop box moves with the image, so box-frame sample ``(i, j)`` of the augmented
    prediction sees the same scene point as in the original; only a flip needs undoing
    (columns reversed). Returns one ``[K, S, S]`` tensor per mask stage.
    """
    batch = tf.shape(images)[0]
    max_t = weak.self_supervision_max_translation
    lo, hi = weak.self_supervision_scale_min, weak.self_supervision_scale_max
    tx, ty = (tf.random.uniform([batch], -max_t, max_t) for _ in range(2))
    sx, sy = (tf.random.uniform([batch], lo, hi) for _ in range(2))
    flip = tf.random.uniform([batch]) < weak.self_supervision_flip_probability
    windows = transform_windows(tx, ty, sx, sy)
    box_flip = tf.gather(flip, image_idx)
    aug_boxes = augment_boxes(boxes, tf.gather(windows, image_idx), box_flip)
    aug_images = augment_images(images, windows, flip)
    raw = model.raw_outputs(aug_images, training=training)
    out = []
    for stage in model.mask_stages(raw):
        logits = model.flat_mask_logits(raw, stage, aug_boxes, image_idx, training)
        logits = tf.where(box_flip[:, None, None], tf.reverse(logits, axis=[2]), logits)
        out.append(tf.stop_gradient(logits))
    return out


def lab_crops(images: tf.Tensor, boxes, image_idx, size: int) -> tf.Tensor:
    """LAB colours ``[K, S, S, 3]`` of normalized model inputs on each crop's grid."""
    rgb = (images * tf.constant(preprocess.RGB_STD) + tf.constant(preprocess.RGB_MEAN)) / 255.0
    crop = crops.crop_and_resize_flat(rgb, boxes, image_idx, size)
    return tf.stop_gradient(weak_lib.rgb_to_lab(crop))


def mask_terms(model, raw, labels, images, losses_cfg, training=None, step=None) -> dict:
    """``mask_loss`` plus each active weak term (unweighted, warm-up applied in training).

    Args:
      model: the ``DeepMACModel``.
      raw: its ``raw_output`` for ``images``.
      labels: the parser's label dict (``boxes``, ``crop_boxes``, weights, targets).
      images: float32 ``[B, H, W, 3]`` normalized inputs (colour term, self-supervision).
      losses_cfg: the task's ``LossConfig`` (``mask_valid_only``, ``weak``).
      training: the Keras training flag.
      step: the optimizer's step (warm-ups), or None (weight 1).

    Returns:
      ``{"mask_loss": scalar, <weak term>: scalar, ...}``.
    """
    weak = losses_cfg.weak
    active = weak_lib.active_terms(weak)
    indices, mask_w = loss_lib.supervised_instances(
        labels, losses_cfg.mask_valid_only, select_by_boxes=bool(active)
    )
    image_idx = indices[:, 0]
    crop = tf.gather_nd(labels.get("crop_boxes", labels["boxes"]), indices)
    targets = tf.gather_nd(labels["mask_targets"], indices)
    if active:  # the paper's configs (no weak term) skip the weak inputs entirely
        box_w = tf.gather_nd(labels["box_weights"], indices)
        frame = crops.boxes_in_crop_frame(tf.gather_nd(labels["boxes"], indices), crop)
    stages = model.mask_stages(raw)
    size = model.config.mask.mask_size
    lab = lab_crops(images, crop, image_idx, size) if "color_consistency_loss" in active else None
    augmented = None
    if "self_supervision_loss" in active:
        augmented = augmented_target_logits(model, images, crop, image_idx, weak, training)
    terms = dict.fromkeys(("mask_loss", *active), 0.0)
    for i, stage in enumerate(stages):
        logits = model.flat_mask_logits(raw, stage, crop, image_idx, training)
        terms["mask_loss"] += loss_lib.mask_loss(logits, targets, mask_w)
        per_instance = {}
        if "box_consistency_loss" in active:
            per_instance["box_consistency_loss"] = weak_lib.box_consistency_loss(
                logits, frame, weak.box_consistency_normalize, weak.box_consistency_tightness
            )
        if lab is not None:
            per_instance["color_consistency_loss"] = weak_lib.color_consistency_loss(
                logits, lab, frame, weak.color_consistency_threshold,
                weak.color_consistency_dilation,
            )  # fmt: skip
        if augmented is not None:
            per_instance["self_supervision_loss"] = weak_lib.self_supervision_loss(
                logits, augmented[i], frame, weak.self_supervision_loss
            )
        for name, value in per_instance.items():
            terms[name] += weak_lib.weighted_mean(value, box_w)
    terms = {name: value / float(len(stages)) for name, value in terms.items()}
    if training:
        for name, prefix in (("color_consistency_loss", "color_consistency"),
                             ("self_supervision_loss", "self_supervision")):  # fmt: skip
            if name in terms:
                start = getattr(weak, f"{prefix}_warmup_start")
                steps = getattr(weak, f"{prefix}_warmup_steps")
                terms[name] *= weak_lib.warmup_weight(step, start, steps)
    return terms


def weighted_total(terms: dict, weak) -> tf.Tensor:
    """``sum of weight * term`` over the weak terms present in ``terms``."""
    total = 0.0
    for name, field in weak_lib.TERMS.items():
        if name in terms:
            total += getattr(weak, field) * terms[name]
    return total
