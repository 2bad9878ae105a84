"""Per-box geometry of Deep-MAC: crops in, coordinate channels, centre embeddings, paste out.

This is the part of ``deepmac_meta_arch.py`` that turns a dense feature map plus boxes
into the mask head's input, and the head's box-frame masks back into image masks.

Frames: boxes are normalized ``[ymin, xmin, ymax, xmax]`` in the frame of the feature
map they are applied to (the padded model input when called from the model). Cropping
follows ``tf.image.crop_and_resize`` with bilinear, align-corners sampling: normalized
``y`` maps to pixel ``y * (H - 1)``, samples outside the map read 0.

Example:
    >>> feats = tf.ones([1, 32, 32, 16])
    >>> boxes = tf.constant([[[0.0, 0.0, 0.5, 0.5]]])
    >>> crop_and_resize(feats, boxes, 8).shape
    TensorShape([1, 1, 8, 8, 16])
"""

from __future__ import annotations

import tensorflow as tf


def sanitize_boxes(boxes: tf.Tensor) -> tf.Tensor:
    """Makes any box tensor safe to crop with: non-finite -> 0, corners ordered.

    Args:
      boxes: float ``[..., 4]`` normalized ``[ymin, xmin, ymax, xmax]``; may hold NaN,
        inf, swapped corners or values outside [0, 1].

    Returns:
      float32 ``[..., 4]``. Values outside [0, 1] are kept on purpose: crops then read
      the zero padding, exactly as the reference does for boxes partly off the map.
    """
    boxes = tf.cast(boxes, tf.float32)
    boxes = tf.where(tf.math.is_finite(boxes), boxes, tf.zeros_like(boxes))
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    return tf.stack(
        [tf.minimum(y1, y2), tf.minimum(x1, x2), tf.maximum(y1, y2), tf.maximum(x1, x2)], axis=-1
    )


def check_crop_context(context: float) -> float:
    """``context`` if it is a usable crop context, else a ValueError: past 0.5 the box
    would cover under half its crop's side, too few mask samples."""
    if not 0.0 <= context <= 0.5:
        raise ValueError(f"mask.crop_context must be in [0, 0.5], got {context}.")
    return context


def grow_boxes(boxes: tf.Tensor, context: float) -> tf.Tensor:
    """Boxes ``[..., 4]`` grown on every side by ``context`` times their height (top and
    bottom) and width (left and right). Not clipped: the model's crop past the map reads
    its zero padding (the parser zeroes the targets there to match). ``context = 0``
    returns ``boxes`` unchanged."""
    if not context:
        return boxes
    extent = boxes[..., 2:] - boxes[..., :2]
    return boxes + context * tf.concat([-extent, extent], axis=-1)


def boxes_in_crop_frame(boxes: tf.Tensor, crop_boxes: tf.Tensor) -> tf.Tensor:
    """``boxes [..., 4]`` expressed in the frame of their ``crop_boxes [..., 4]`` (both in
    one frame): ``[0, 0, 1, 1]`` is the whole crop."""
    origin = tf.concat([crop_boxes[..., :2], crop_boxes[..., :2]], axis=-1)
    extent = tf.maximum(crop_boxes[..., 2:] - crop_boxes[..., :2], 1e-6)
    return (boxes - origin) / tf.concat([extent, extent], axis=-1)


def flatten_boxes(boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``[B, N, 4]`` boxes -> ``([B * N, 4] boxes, [B * N] image indices)``; row ``b * N + n``."""
    shape = tf.shape(boxes)
    return tf.reshape(boxes, [-1, 4]), tf.repeat(tf.range(shape[0]), shape[1])


def crop_and_resize(
    features: tf.Tensor, boxes: tf.Tensor, size: int, method: str = "native"
) -> tf.Tensor:
    """Bilinear align-corners crops of ``size x size`` per box.

    Args:
      features: float32 ``[B, H, W, C]``.
      boxes: float32 ``[B, N, 4]`` normalized to the feature map.
      size: output side S.
      method: ``"native"`` (``tf.image.crop_and_resize``) or ``"matmul"`` (the same
        numbers from two interpolation matmuls: only builtin TFLite ops).

    Returns:
      float32 ``[B, N, S, S, C]``; samples outside the map are 0.
    """
    flat, indices = flatten_boxes(boxes)
    out = crop_and_resize_flat(features, flat, indices, size, method)
    shape = tf.shape(boxes)
    return tf.reshape(out, tf.concat([shape[:2], [size, size], tf.shape(features)[-1:]], 0))


def crop_and_resize_flat(
    features: tf.Tensor, boxes: tf.Tensor, indices: tf.Tensor, size: int, method: str = "native"
) -> tf.Tensor:
    """``crop_and_resize`` for a flat list of ``K`` boxes ``[K, 4]`` on images ``indices [K]``.

    Returns float32 ``[K, S, S, C]``.
    """
    if method == "matmul":
        height, width = tf.shape(features)[1], tf.shape(features)[2]
        ky = _interpolation_matrix(boxes[:, 0], boxes[:, 2], size, height)  # [K, S, H]
        kx = _interpolation_matrix(boxes[:, 1], boxes[:, 3], size, width)  # [K, S, W]
        rows = tf.einsum("ksh,khwc->kswc", ky, tf.gather(features, indices))
        return tf.einsum("ktw,kswc->kstc", kx, rows)
    if method != "native":
        raise ValueError(f"Unknown crop method {method!r}; use 'native' or 'matmul'.")
    return tf.image.crop_and_resize(
        features, boxes, indices, [size, size], method="bilinear", extrapolation_value=0.0
    )


def _interpolation_matrix(starts: tf.Tensor, ends: tf.Tensor, size: int, length) -> tf.Tensor:
    """``[K, size, length]`` bilinear weights sampling ``size`` points on [start, end].

    Point i sits at ``(start + i * (end - start) / (size - 1)) * (length - 1)`` pixels
    (one point at the box centre when ``size == 1``), matching crop_and_resize. Points
    outside ``[0, length - 1]`` get all-zero rows, i.e. extrapolation value 0.
    """
    length_f = tf.cast(length, tf.float32)
    if size == 1:
        steps = tf.constant([0.5])
    else:
        steps = tf.range(size, dtype=tf.float32) / float(size - 1)
    pos = (starts[..., None] + (ends - starts)[..., None] * steps) * (length_f - 1.0)
    grid = tf.range(length_f, dtype=tf.float32)
    weights = tf.maximum(0.0, 1.0 - tf.abs(pos[..., None] - grid))
    inside = tf.logical_and(pos >= 0.0, pos <= length_f - 1.0)
    return weights * tf.cast(inside, tf.float32)[..., None]


def coordinate_channels(num_boxes: tf.Tensor, size: int) -> tf.Tensor:
    """The two box-frame coordinate channels, identical for every box.

    Returns:
      float32 ``[num_boxes, S, S, 2]``: channel 0 is y, channel 1 is x, each
      ``linspace(-1, 1, S)`` along its axis.
    """
    line = tf.linspace(-1.0, 1.0, size)
    y_grid, x_grid = tf.meshgrid(line, line, indexing="ij")
    coords = tf.stack([y_grid, x_grid], axis=-1)
    return tf.tile(coords[None], [num_boxes, 1, 1, 1])


def center_embeddings(embedding: tf.Tensor, boxes: tf.Tensor, indices=None) -> tf.Tensor:
    """Reads each box's instance embedding at its centre pixel.

    The centre cell is ``int((ymin + ymax) / 2 * H)`` (same for x), as in the reference,
    but clipped into the map: the reference reads out of bounds for boxes past the
    border.

    Args:
      embedding: float32 ``[B, H, W, D]``.
      boxes: float32 ``[B, N, 4]`` normalized to the map, or ``[K, 4]`` with ``indices``.
      indices: int32 ``[K]`` image index of each flat box, or None for ``[B, N, 4]``.

    Returns:
      float32 ``[B, N, D]`` (or ``[K, D]`` for flat boxes).
    """
    if indices is None:
        flat, flat_idx = flatten_boxes(boxes)
        out = center_embeddings(embedding, flat, flat_idx)
        return tf.reshape(out, tf.concat([tf.shape(boxes)[:2], tf.shape(embedding)[-1:]], 0))
    height, width = tf.shape(embedding)[1], tf.shape(embedding)[2]
    y_c = (boxes[:, 0] + boxes[:, 2]) / 2.0 * tf.cast(height, tf.float32)
    x_c = (boxes[:, 1] + boxes[:, 3]) / 2.0 * tf.cast(width, tf.float32)
    # Clip in float before the cast: int32 casts of huge floats are undefined.
    y_i = tf.cast(tf.clip_by_value(y_c, 0.0, tf.cast(height - 1, tf.float32)), tf.int32)
    x_i = tf.cast(tf.clip_by_value(x_c, 0.0, tf.cast(width - 1, tf.float32)), tf.int32)
    return tf.gather_nd(embedding, tf.stack([indices, y_i, x_i], axis=-1))


def mask_head_inputs(
    pixel_embedding: tf.Tensor,
    instance_embedding: tf.Tensor | None,
    boxes: tf.Tensor,
    size: int,
    use_xy: bool = True,
    crop_method: str = "native",
    indices: tf.Tensor | None = None,
) -> tf.Tensor:
    """Builds the mask head input for every box: ``[coords | pixel crop | centre embedding]``.

    Args:
      pixel_embedding: float32 ``[B, H, W, P]``.
      instance_embedding: float32 ``[B, H, W, D]`` or None (no instance embedding).
      boxes: float32 ``[B, N, 4]`` normalized to the maps (already sanitized), or a flat
        ``[K, 4]`` list with ``indices``.
      size: crop side S.
      use_xy: prepend the two coordinate channels.
      crop_method: see ``crop_and_resize``.
      indices: int32 ``[K]`` image index per flat box; None for ``[B, N, 4]`` boxes.

    Returns:
      float32 ``[B * N (or K), S, S, 2 + P + D]`` (2 only with ``use_xy``, D only with an
      instance embedding); box ``n`` of image ``b`` is row ``b * N + n``.
    """
    if indices is None:
        boxes, indices = flatten_boxes(boxes)
    parts = [crop_and_resize_flat(pixel_embedding, boxes, indices, size, crop_method)]
    if use_xy:
        parts.insert(0, coordinate_channels(tf.shape(boxes)[0], size))
    if instance_embedding is not None:
        centers = center_embeddings(instance_embedding, boxes, indices)
        centers = tf.reshape(centers, [-1, 1, 1, instance_embedding.shape[-1]])
        parts.append(tf.tile(centers, [1, size, size, 1]))
    return tf.concat(parts, axis=-1)


def paste_masks(box_masks: tf.Tensor, boxes: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Pastes box-frame masks into the image: ``[N, S, S]`` -> ``[N, height, width]``.

    Crop-and-resize of the unit square expressed in each box's frame (the OD API's
    ``reframe_box_masks_to_image_masks``); box sizes are clamped to >= 1e-4 so
    degenerate boxes give empty, finite masks. Pixels outside a box read 0.

    Args:
      box_masks: float32 ``[N, S, S]`` probabilities (or logits) in each box's frame.
      boxes: float32 ``[N, 4]`` normalized to the target image.
      height, width: target image size in pixels.

    Returns:
      float32 ``[N, height, width]``; threshold at 0.5 for binary masks.
    """
    boxes = sanitize_boxes(boxes)
    num = tf.shape(box_masks)[0]
    origin, extent = boxes[:, :2], tf.maximum(boxes[:, 2:] - boxes[:, :2], 1e-4)
    reverse = tf.concat([-origin / extent, (1.0 - origin) / extent], axis=1)
    pasted = tf.image.crop_and_resize(
        tf.cast(box_masks, tf.float32)[..., None],
        reverse,
        tf.range(num),
        [height, width],
        method="bilinear",
        extrapolation_value=0.0,
    )
    return pasted[..., 0]
