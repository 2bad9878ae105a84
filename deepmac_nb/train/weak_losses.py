"""Deep-MAC's optional weak mask losses: they learn from boxes alone.

Mirrors the later ``deepmac_meta_arch.py`` of the TF OD API (all three are off, weight 0,
in the paper configs). Every function works on the flat list of ``K`` instances that go
through the mask head, in the frame of each instance's crop box (``S x S`` box-frame
logits, align-corners samples: sample ``i`` sits at ``i / (S - 1)`` of the crop box):

* box consistency (BoxInst): the max over rows and over columns of the predicted mask
  must match the same projections of the filled ground-truth box, sigmoid cross-entropy,
  normalised per instance by ``normalize_auto`` (mean), ``normalize_groundtruth_count``
  or ``normalize_balanced``; ``tightness`` takes the max inside the box only where the
  box is. The crop box is a jittered copy of the ground-truth box (``ROI jitter``,
  ``data.pipeline``), so the box does not fill the whole crop;
* colour consistency: neighbours at ``dilation`` 2 whose LAB colours are similar
  (``exp(-||a - b|| / 2) > 0.4``) should share a label: ``-log P(same)``, ``P(same)``
  clipped to [1e-3, 1], summed over the 8 neighbours of every pixel inside the box,
  divided by the number of box pixels, times a linear warm-up;
* augmented self-supervision: the masks predicted on a flipped / translated / scaled
  copy of the image, mapped back and stop-gradient, are the target of the masks on the
  original (dice on the binarised target, MSE or KL), inside the box, with warm-up.

Where this differs from the reference (docs/architecture.md, faithfulness): the
reference predicts these for full-resolution masks; here everything is computed on the
``S x S`` crop (the LAB colours are the image cropped the same way), the GT box is put
into the crop frame exactly instead of re-cropping the logits, the tightness max is a
masked max rather than ``max(logits * box)``, and neighbours outside the crop are left
out instead of compared with zero padding.

Shapes: ``K`` instances, ``S`` mask size; boxes normalized ``[ymin, xmin, ymax, xmax]``.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
from official.modeling import hyperparams

NORMALIZE_MODES = ("normalize_auto", "normalize_groundtruth_count", "normalize_balanced")
SELF_SUPERVISION_LOSSES = ("loss_dice", "loss_mse", "loss_kl_div")
# The 8 neighbour offsets of a pixel (before dilation), the reference's NEIGHBORS_2D.
NEIGHBORS_2D = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_MIN_SAME_PROB = 1e-3
_THETA = 2.0  # the reference's gaussian similarity denominator


@dataclasses.dataclass
class WeakLossConfig(hyperparams.Config):
    """Weights, warm-ups and options of the weak losses; the reference's defaults (all off).

    ``*_warmup_start`` / ``*_warmup_steps``: the weight ramps linearly from 0 at step
    ``start`` to 1 at ``start + steps`` (``steps`` 0: no warm-up).
    """

    box_consistency_weight: float = 0.0
    box_consistency_normalize: str = "normalize_auto"
    box_consistency_tightness: bool = False
    color_consistency_weight: float = 0.0
    color_consistency_threshold: float = 0.4
    color_consistency_dilation: int = 2
    color_consistency_warmup_start: int = 0
    color_consistency_warmup_steps: int = 0
    self_supervision_weight: float = 0.0
    self_supervision_loss: str = "loss_dice"
    self_supervision_max_translation: float = 0.0
    self_supervision_flip_probability: float = 0.0
    self_supervision_scale_min: float = 1.0
    self_supervision_scale_max: float = 1.0
    self_supervision_warmup_start: int = 0
    self_supervision_warmup_steps: int = 0


# loss term name -> weight field of ``WeakLossConfig``
TERMS = {
    "box_consistency_loss": "box_consistency_weight",
    "color_consistency_loss": "color_consistency_weight",
    "self_supervision_loss": "self_supervision_weight",
}


def active_terms(config: WeakLossConfig) -> tuple[str, ...]:
    """Names of the weak terms whose weight is > 0."""
    return tuple(name for name, field in TERMS.items() if getattr(config, field) > 0.0)


def validate(config: WeakLossConfig) -> None:
    """Raises ``ValueError`` for an unknown mode or an impossible range."""
    if config.box_consistency_normalize not in NORMALIZE_MODES:
        raise ValueError(
            f"box_consistency_normalize {config.box_consistency_normalize!r} is not one of "
            f"{NORMALIZE_MODES}."
        )
    if config.self_supervision_loss not in SELF_SUPERVISION_LOSSES:
        raise ValueError(
            f"self_supervision_loss {config.self_supervision_loss!r} is not one of "
            f"{SELF_SUPERVISION_LOSSES}."
        )
    if config.self_supervision_scale_min > config.self_supervision_scale_max:
        raise ValueError("self_supervision_scale_min must be <= self_supervision_scale_max.")


def warmup_weight(step, start: int, steps: int) -> tf.Tensor:
    """``clip((step - start) / steps, 0, 1)``; 1 when ``steps`` is 0 or ``step`` is None."""
    if steps == 0 or step is None:
        return tf.constant(1.0)
    ramp = (tf.cast(step, tf.float32) - float(start)) / float(steps)
    return tf.clip_by_value(ramp, 0.0, 1.0)


def box_axis_indicators(frame_boxes: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Which crop samples lie inside the box, per axis: ``([K, S] rows, [K, S] columns)``."""
    line = tf.linspace(0.0, 1.0, size)[None]
    rows = (line >= frame_boxes[:, 0:1]) & (line <= frame_boxes[:, 2:3])
    cols = (line >= frame_boxes[:, 1:2]) & (line <= frame_boxes[:, 3:4])
    return tf.cast(rows, tf.float32), tf.cast(cols, tf.float32)


def fill_boxes(frame_boxes: tf.Tensor, size: int) -> tf.Tensor:
    """The filled box on the ``S x S`` crop grid: float32 ``[K, S, S]`` of 0/1."""
    rows, cols = box_axis_indicators(frame_boxes, size)
    return rows[:, :, None] * cols[:, None, :]


def _aggregate(loss: tf.Tensor, target: tf.Tensor, method: str) -> tf.Tensor:
    """Per-instance reduction of ``[K, S]`` losses against 0/1 ``target [K, S]``."""
    if method == "normalize_auto":
        return tf.reduce_mean(loss, axis=1)
    if method == "normalize_groundtruth_count":
        return tf.reduce_sum(loss, axis=1) / tf.maximum(tf.reduce_sum(target, axis=1), 1.0)
    if method == "normalize_balanced":
        positives = tf.reduce_sum(target, axis=1, keepdims=True)
        negatives = tf.reduce_sum(1.0 - target, axis=1, keepdims=True)
        norm = target * positives + (1.0 - target) * negatives
        return tf.reduce_sum(loss / tf.maximum(norm, 1.0), axis=1)
    raise ValueError(f"Unknown normalization {method!r}; use one of {NORMALIZE_MODES}.")


def box_consistency_loss(
    logits: tf.Tensor, frame_boxes: tf.Tensor, normalize="normalize_auto", tightness=False
) -> tf.Tensor:
    """BoxInst projection loss per instance.

    Args:
      logits: float32 ``[K, S, S]`` mask logits in each crop box's frame.
      frame_boxes: float32 ``[K, 4]`` ground-truth boxes in the crop frame
        (``crops.boxes_in_crop_frame``).
      normalize: one of ``NORMALIZE_MODES``.
      tightness: take each row's (column's) max inside the box only, where the box is.

    Returns:
      float32 ``[K]``: the sum of the row- and column-projection losses.
    """
    size = logits.shape[-1] or tf.shape(logits)[-1]
    rows, cols = box_axis_indicators(frame_boxes, size)
    box = rows[:, :, None] * cols[:, None, :]
    total = 0.0
    # Max over columns gives the row profile, which must equal the box's row indicator.
    for axis, target in ((2, rows), (1, cols)):
        pred_max = tf.reduce_max(logits, axis=axis)
        if tightness:
            inside = tf.reduce_max(tf.where(box > 0, logits, tf.fill(tf.shape(logits), -1e9)), axis)
            pred_max = target * inside + (1.0 - target) * pred_max
        loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=pred_max)
        total += _aggregate(loss, target, normalize)
    return total


def rgb_to_lab(rgb: tf.Tensor) -> tf.Tensor:
    """sRGB in [0, 1] ``[..., 3]`` -> CIE LAB (D65, 2 degree observer), L in [0, 100].

    The conversion ``tfio.experimental.color.rgb_to_lab`` (the reference's) computes.
    """
    rgb = tf.clip_by_value(tf.cast(rgb, tf.float32), 0.0, 1.0)
    linear = tf.where(rgb > 0.04045, tf.pow((rgb + 0.055) / 1.055, 2.4), rgb / 12.92)
    to_xyz = tf.constant(
        [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
         [0.019334, 0.119193, 0.950227]]
    )  # fmt: skip
    xyz = tf.einsum("...c,xc->...x", linear, to_xyz) / tf.constant([0.950456, 1.0, 1.088754])
    f = tf.where(xyz > 0.008856, tf.pow(tf.maximum(xyz, 1e-12), 1.0 / 3.0), 7.787 * xyz + 4 / 29)
    fx, fy, fz = tf.unstack(f, axis=-1)
    return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def neighbors(grid: tf.Tensor, dilation: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The 8 dilated neighbours of every pixel of ``grid [K, S, S, C]``.

    Returns ``(values [8, K, S, S, C], valid [8, 1, S, S, 1])``; ``valid`` is 0 where the
    neighbour falls outside the grid.
    """
    d = int(dilation)
    size = tf.shape(grid)[1]
    padded = tf.pad(grid, [[0, 0], [d, d], [d, d], [0, 0]])
    inside = tf.pad(tf.ones_like(grid[:1, :, :, :1]), [[0, 0], [d, d], [d, d], [0, 0]])
    values, valid = [], []
    for dy, dx in NEIGHBORS_2D:
        y0, x0 = d + dy * d, d + dx * d
        values.append(padded[:, y0 : y0 + size, x0 : x0 + size])
        valid.append(inside[:, y0 : y0 + size, x0 : x0 + size])
    return tf.stack(values), tf.stack(valid)


def color_consistency_loss(
    logits: tf.Tensor, lab: tf.Tensor, frame_boxes: tf.Tensor, threshold=0.4, dilation=2
) -> tf.Tensor:
    """Pairwise colour-affinity loss per instance.

    Args:
      logits: float32 ``[K, S, S]`` box-frame mask logits.
      lab: float32 ``[K, S, S, 3]`` LAB colours of the image on the same crop grid.
      frame_boxes: float32 ``[K, 4]`` ground-truth boxes in the crop frame.
      threshold: pairs with ``exp(-||lab_a - lab_b|| / 2)`` above it count.
      dilation: neighbour distance in crop samples.

    Returns:
      float32 ``[K]``: ``sum over box pixels and similar neighbours of -log P(same)``
      divided by ``max(number of box pixels, 1)``.
    """
    lab = tf.stop_gradient(lab)
    lab_n, valid = neighbors(lab, dilation)
    similarity = tf.exp(-tf.norm(lab[None] - lab_n, axis=-1) / _THETA)  # [8, K, S, S]
    similar = tf.cast(similarity > threshold, tf.float32) * valid[..., 0]
    probs = tf.sigmoid(logits)[..., None]
    probs_n, _ = neighbors(probs, dilation)
    same = probs[None] * probs_n + (1.0 - probs[None]) * (1.0 - probs_n)
    same = tf.clip_by_value(same[..., 0], _MIN_SAME_PROB, 1.0)
    box = fill_boxes(frame_boxes, logits.shape[-1] or tf.shape(logits)[-1])
    per_pixel = -similar * tf.math.log(same) * box[None]
    box_pixels = tf.maximum(tf.reduce_sum(box, axis=[1, 2]), 1.0)
    return tf.reduce_sum(per_pixel, axis=[0, 2, 3]) / box_pixels


def self_supervision_loss(
    logits: tf.Tensor, target_logits: tf.Tensor, frame_boxes: tf.Tensor, kind="loss_dice"
) -> tf.Tensor:
    """Consistency of ``logits [K, S, S]`` with stop-gradient ``target_logits`` inside the box.

    ``loss_dice``: ``1 - 2 sum(p t) / max(sum p + sum t, 1)`` with ``t = target > 0``
    (weighted dice, the reference's ``WeightedDiceClassificationLoss``); ``loss_mse``:
    mean squared difference of the probabilities; ``loss_kl_div``: KL(target || pred) of
    the two-class distributions. Both means run over box pixels. Returns ``[K]``.
    """
    box = fill_boxes(frame_boxes, logits.shape[-1] or tf.shape(logits)[-1])
    target_logits = tf.stop_gradient(target_logits)
    probs, target = tf.sigmoid(logits), tf.sigmoid(target_logits)
    box_pixels = tf.maximum(tf.reduce_sum(box, axis=[1, 2]), 1.0)
    if kind == "loss_dice":
        binary = tf.cast(target_logits > 0.0, tf.float32) * box
        weighted = probs * box
        intersection = tf.reduce_sum(weighted * binary, axis=[1, 2])
        area = tf.reduce_sum(weighted, axis=[1, 2]) + tf.reduce_sum(binary, axis=[1, 2])
        return 1.0 - 2.0 * intersection / tf.maximum(area, 1.0)
    if kind == "loss_mse":
        return tf.reduce_sum(tf.square(target - probs) * box, axis=[1, 2]) / box_pixels
    if kind == "loss_kl_div":
        eps = 1e-7  # Keras' KLDivergence clipping
        p_true = tf.clip_by_value(tf.stack([target, 1.0 - target], -1), eps, 1.0)
        p_pred = tf.clip_by_value(tf.stack([probs, 1.0 - probs], -1), eps, 1.0)
        kl = tf.reduce_sum(p_true * tf.math.log(p_true / p_pred), axis=-1)
        return tf.reduce_sum(kl * box, axis=[1, 2]) / box_pixels
    raise ValueError(f"Unknown self-supervision loss {kind!r}; use {SELF_SUPERVISION_LOSSES}.")


def weighted_mean(per_instance: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """``sum_k w_k l_k / max(sum_k w_k, 1)``, the reference's normalisation of every term."""
    return tf.reduce_sum(per_instance * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)
