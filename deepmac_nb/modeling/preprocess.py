"""Image preprocessing shared by training input, inference and export.

Any image is resized with its aspect ratio kept so that it fits the model input, then
padded at the bottom and right with zeros (after normalization), as CenterNet does. The
image then covers the top-left ``valid`` fraction of the padded input frame, so
normalized boxes map between the two frames by one per-axis scale.

Frames: "image frame" = normalized to the original image; "model frame" = normalized to
the padded ``[H_in, W_in]`` model input.
"""

from __future__ import annotations

import tensorflow as tf

# ImageNet RGB statistics on [0, 255]; the synthetic set and COCO both use them.
RGB_MEAN = (123.675, 116.28, 103.53)
RGB_STD = (58.395, 57.12, 57.375)


def normalize_image(image: tf.Tensor) -> tf.Tensor:
    """``uint8/float [..., 3]`` RGB in [0, 255] -> float32 zero-mean unit-variance."""
    image = tf.cast(image, tf.float32)
    return (image - tf.constant(RGB_MEAN)) / tf.constant(RGB_STD)


def resized_shape(height, width, target_height: int, target_width: int) -> tf.Tensor:
    """Size ``[h, w]`` (int32) of an ``height x width`` image scaled to fit the target."""
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    scale = tf.minimum(target_height / height, target_width / width)
    new_h = tf.clip_by_value(tf.round(height * scale), 1.0, float(target_height))
    new_w = tf.clip_by_value(tf.round(width * scale), 1.0, float(target_width))
    return tf.cast(tf.stack([new_h, new_w]), tf.int32)


def resize_and_pad(image: tf.Tensor, input_size) -> tuple[tf.Tensor, tf.Tensor]:
    """Fits one image into the model input.

    Args:
      image: ``uint8 [H, W, 3]`` RGB (any size).
      input_size: ``(H_in, W_in)`` or ``[H_in, W_in, 3]`` of the model input.

    Returns:
      ``(inputs, valid)``: ``float32 [H_in, W_in, 3]`` normalized and zero padded, and
      ``float32 [2]``, the fraction ``(h / H_in, w / W_in)`` of the input the image covers.
    """
    target_h, target_w = int(input_size[0]), int(input_size[1])
    shape = tf.shape(image)
    new_hw = resized_shape(shape[0], shape[1], target_h, target_w)
    resized = tf.image.resize(tf.cast(image, tf.float32), new_hw, method="bilinear")
    normalized = normalize_image(resized)
    padded = tf.image.pad_to_bounding_box(normalized, 0, 0, target_h, target_w)
    valid = tf.cast(new_hw, tf.float32) / tf.constant([target_h, target_w], tf.float32)
    return padded, valid


def image_to_model_boxes(boxes: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Image-frame normalized boxes ``[..., 4]`` -> model-frame; ``valid`` is ``[..., 2]``."""
    scale = tf.concat([valid, valid], axis=-1)
    return (
        boxes * scale[..., None, :] if boxes.shape.rank == valid.shape.rank + 1 else boxes * scale
    )


def model_to_image_boxes(boxes: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Model-frame normalized boxes ``[..., 4]`` -> image-frame, clipped to [0, 1]."""
    scale = tf.concat([valid, valid], axis=-1)
    scale = scale[..., None, :] if boxes.shape.rank == valid.shape.rank + 1 else scale
    return tf.clip_by_value(boxes / scale, 0.0, 1.0)
