"""Deep-MAC losses: CenterNet box losses plus the partially supervised mask loss.

Reference: TF OD API ``center_net_meta_arch.py`` / ``deepmac_meta_arch.py``.

* object centre: penalty-reduced focal loss (alpha 2, beta 4, sigmoid clipped to
  [1e-4, 1 - 1e-4]; Model Garden's implementation) summed over pixels, divided by the
  number of boxes and averaged over backbone stages, as the reference code does;
* size (weight 0.1) and offset (1.0): L1 at each box's centre cell, same normalization;
* mask (weight 5.0), on ground-truth boxes only: sigmoid cross-entropy of the ``S x S``
  logits against soft targets, mean over pixels per instance, times the instance's
  mask weight (0 for classes outside the allowed split), summed, divided by
  ``max(sum of weights, 1)``, averaged over the mask stages;
* the optional weak mask losses, on every instance with a box: ``weak_losses``.

Shapes: ``B`` images, ``M`` padded instances, ``S`` mask size, ``h x w`` output map.
"""

from __future__ import annotations

import tensorflow as tf
from official.projects.centernet.losses import centernet_losses
from official.projects.centernet.ops import loss_ops

_FOCAL = centernet_losses.PenaltyReducedLogisticFocalLoss(alpha=2.0, beta=4.0)
_L1 = centernet_losses.L1LocalizationLoss()


def num_boxes(labels: dict) -> tf.Tensor:
    """Number of real boxes in the batch, at least 1 (the normalizer)."""
    return tf.maximum(tf.reduce_sum(labels["box_weights"]), 1.0)


def center_loss(heatmap_logits: list[tf.Tensor], labels: dict) -> tf.Tensor:
    """Focal loss of ``[B, h, w, K]`` centre logits per stage vs ``labels['ct_heatmaps']``."""
    target = loss_ops.flatten_spatial_dimensions(tf.cast(labels["ct_heatmaps"], tf.float32))
    total = 0.0
    for logits in heatmap_logits:
        pred = loss_ops.flatten_spatial_dimensions(tf.cast(logits, tf.float32))
        total += tf.reduce_sum(_FOCAL(prediction_tensor=pred, target_tensor=target))
    return total / (float(len(heatmap_logits)) * num_boxes(labels))


def regression_loss(maps: list[tf.Tensor], target: tf.Tensor, labels: dict) -> tf.Tensor:
    """L1 between ``[B, h, w, 2]`` maps read at box centres and ``target [B, M, 2]``."""
    indices = loss_ops.add_batch_to_indices(labels["box_indices"])
    total = 0.0
    for value_map in maps:
        pred = loss_ops.get_batch_predictions_from_indices(tf.cast(value_map, tf.float32), indices)
        per_box = tf.reduce_sum(_L1(prediction_tensor=pred, target_tensor=target), axis=-1)
        total += tf.reduce_sum(per_box * labels["box_weights"])
    return total / (float(len(maps)) * num_boxes(labels))


def mask_loss(logits: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Weighted per-instance mean sigmoid cross-entropy.

    Args:
      logits: float32 ``[K, S, S]`` mask logits in each box's frame.
      targets: float32 ``[K, S, S]`` soft targets in [0, 1].
      weights: float32 ``[K]``; 0 for instances without mask supervision.

    Returns:
      Scalar ``sum_k w_k * mean_pixels(CE_k) / max(sum_k w_k, 1)``.
    """
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    per_instance = tf.reduce_mean(ce, axis=[1, 2])
    return tf.reduce_sum(per_instance * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def supervised_instances(
    labels: dict, valid_only: bool, select_by_boxes: bool = False
) -> tuple[tf.Tensor, tf.Tensor]:
    """Which padded instances go through the mask head in training.

    Returns ``(indices [K, 2] (image, slot) int32, mask weights [K])``. With
    ``valid_only`` only instances whose mask weight is > 0 are kept: unseen-class and
    padded instances carry zero loss anyway, and skipping them saves most of the mask
    head's cost (dynamic K; turn it off on TPUs, which want static shapes). With
    ``select_by_boxes`` (weak losses on) every instance with a box is kept instead; the
    returned mask weights stay 0 for the unseen ones.
    """
    weights = labels["mask_weights"]
    if valid_only:
        keep = labels["box_weights"] if select_by_boxes else weights
        indices = tf.cast(tf.where(keep > 0), tf.int32)
    else:
        shape = tf.shape(weights)
        grid = tf.meshgrid(tf.range(shape[0]), tf.range(shape[1]), indexing="ij")
        indices = tf.reshape(tf.stack(grid, axis=-1), [-1, 2])
    return indices, tf.gather_nd(weights, indices)
