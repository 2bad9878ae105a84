"""tf.data input for Deep-MAC: decoded COCO examples -> padded images + CenterNet/mask targets.

Per image (inside ``tf.data.Dataset.map``):

1. augment (training only, the paper's recipe): random horizontal flip; hue 0.02,
   contrast and saturation 0.8-1.25, brightness 0.2; a random square crop whose side is
   ``U(0.6, 1.3) * max(H, W)``, zero filled where it leaves the image;
2. resize that square window to the model input (aspect kept: evaluation uses the
   window ``[0, 0, side, side]`` with ``side = max(H, W)``, i.e. resize + pad bottom/right);
3. boxes re-framed to the window and clipped; boxes fully outside (or degenerate) dropped;
4. targets: Model Garden's CenterNet assigner (Gaussian centres, CenterNet radius rule
   with min overlap 0.7; size, offset, indices), and per instance an ``S x S`` mask
   target cropped with the same align-corners crop as the model, plus a mask weight
   that is 0 for classes outside the allowed split, crowd and padded instances. With
   ROI jitter (training only) the mask crop box is a jittered copy of the box
   (``crop_boxes``) and the target is cropped there; with the model's crop context
   every crop box (training and validation) is also grown by it, as the model does.

Mask targets are cropped from the *original* full-resolution masks using each final box
mapped back into the original image frame: flip, crop and resize are axis-aligned
affine maps, so this equals transforming the masks first (tested), at a fraction of the
cost.

Label dict (``M = max_num_instances``, ``S = mask_size``, ``h, w`` = input / stride):
  ``boxes [M, 4]`` model frame, ``crop_boxes [M, 4]`` (the mask crops: ``boxes``,
  ROI-jittered in training and grown by the crop context when those are on; not
  clipped), ``classes [M]`` int32 (1-based, 0 = pad),
  ``box_weights [M]``, ``mask_weights [M]``, ``mask_targets [M, S, S]`` float32 in the
  ``crop_boxes`` frame (0 where a crop reaches past the model input),
  ``num_instances`` int32, ``ct_heatmaps [h, w, K]``, ``ct_offset``, ``ct_size`` and
  ``box_indices [M, 2]``, ``valid [2]`` (image fraction of the input), ``image_hw [2]``,
  ``source_id`` (string).
"""

from __future__ import annotations

import dataclasses
import functools

import tensorflow as tf
from official.projects.centernet.ops import target_assigner

from deepmac_nb.modeling import crops, preprocess

# Boxes smaller than this (in input pixels) after re-framing carry no usable signal.
_MIN_BOX_PIXELS = 1.0


@dataclasses.dataclass(frozen=True)
class ParserSettings:
    """Everything the parser needs; built from the task config by ``train.task``."""

    input_size: tuple[int, int]
    num_classes: int
    max_num_instances: int = 32
    mask_size: int = 32
    output_stride: int = 4
    allowed_mask_ids: tuple[int, ...] = ()  # empty = every class has masks
    gaussian_iou: float = 0.7
    aug_rand_hflip: bool = True
    aug_color: bool = True
    aug_scale_min: float = 0.6
    aug_scale_max: float = 1.3
    max_roi_jitter_ratio: float = 0.0
    roi_jitter_mode: str = "default"
    crop_context: float = 0.0  # the model's ``mask.crop_context``

    def __post_init__(self):
        crops.check_crop_context(self.crop_context)


JITTER_MODES = (
    "default", "expand", "shrink", "expand_symmetric", "shrink_symmetric", "expand_symmetric_xy"
)  # fmt: skip


def jitter_boxes(
    boxes: tf.Tensor, ratio: float, mode: str = "default", seed: tf.Tensor | None = None
) -> tf.Tensor:
    """Random ROI jitter of ``boxes [N, 4]``, the OD API's ``random_jitter_boxes``.

    Each side moves outwards by ``u * extent`` (height for y, width for x) with ``u``
    uniform in ``[-ratio, ratio]`` (``default``), ``[0, ratio]`` (``expand*``) or
    ``[-ratio, 0]`` (``shrink*``); ``*_symmetric`` draws one ``u`` per axis, and
    ``expand_symmetric_xy`` one per box. Clipped to [0, 1]. ``seed``: stateless seed
    ``int [2]`` (None: a fresh one).
    """
    seed = _seed_or_fresh(seed)
    if mode not in JITTER_MODES:
        raise ValueError(f"Unknown roi_jitter_mode {mode!r}; use one of {JITTER_MODES}.")
    low = 0.0 if mode.startswith("expand") else -ratio
    high = 0.0 if mode.startswith("shrink") else ratio
    num = tf.shape(boxes)[0]
    if mode == "expand_symmetric_xy":
        u = tf.tile(tf.random.stateless_uniform([num, 1], seed, low, high), [1, 4])
    elif mode.endswith("symmetric"):
        u = tf.tile(tf.random.stateless_uniform([num, 2], seed, low, high), [1, 2])
    else:
        u = tf.random.stateless_uniform([num, 4], seed, low, high)
    extent = tf.maximum(boxes[:, 2:] - boxes[:, :2], 1e-6)
    extent = tf.concat([extent, extent], axis=1)
    sign = tf.constant([-1.0, -1.0, 1.0, 1.0])
    return tf.clip_by_value(boxes + sign * u * extent, 0.0, 1.0)


def _seed_or_fresh(seed: tf.Tensor | None) -> tf.Tensor:
    """``seed`` (stateless, ``int [2]``), or a fresh one drawn from the global RNG.

    Every random op of the parser is stateless and takes its seed from the element's own
    seed, so a parallel ``Dataset.map`` gives the same augmentation whatever order its
    threads run in (stateful ops would share one state between the threads).
    """
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    return seed


def color_jitter(image: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Photometric jitter of ``float32 [H, W, 3]`` RGB in [0, 1] (the paper's ranges);
    ``seed``: stateless seed ``int [2]`` (None: a fresh one)."""
    hue, contrast, saturation, brightness = tf.unstack(
        tf.random.experimental.stateless_split(_seed_or_fresh(seed), 4)
    )
    image = tf.image.stateless_random_hue(image, 0.02, hue)
    image = tf.image.stateless_random_contrast(image, 0.8, 1.25, contrast)
    image = tf.image.stateless_random_saturation(image, 0.8, 1.25, saturation)
    image = tf.image.stateless_random_brightness(image, 0.2, brightness)
    return tf.clip_by_value(image, 0.0, 1.0)


def random_square_window(
    height, width, scale_min: float, scale_max: float, seed: tf.Tensor | None = None
) -> tf.Tensor:
    """A random square crop window, normalized to the image: ``float32 [4]``.

    Side ``U(scale_min, scale_max) * max(H, W)`` pixels; the offset is uniform over all
    positions where the window stays inside the image along an axis, or contains it
    when it is larger than the image there. ``seed``: stateless seed ``int [2]``.
    """
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    u = tf.random.stateless_uniform([3], _seed_or_fresh(seed))
    side = (scale_min + (scale_max - scale_min) * u[0]) * tf.maximum(h, w)
    y0 = _lerp(tf.minimum(0.0, h - side), tf.maximum(0.0, h - side) + 1e-6, u[1])
    x0 = _lerp(tf.minimum(0.0, w - side), tf.maximum(0.0, w - side) + 1e-6, u[2])
    return tf.stack([y0 / h, x0 / w, (y0 + side) / h, (x0 + side) / w])


def _lerp(low: tf.Tensor, high: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    return low + (high - low) * u


def full_window(height, width) -> tf.Tensor:
    """The deterministic window ``[0, 0, side, side]``, ``side = max(H, W)``: resize + pad."""
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    side = tf.maximum(h, w)
    return tf.stack([0.0, 0.0, side / h, side / w])


def crop_window(image: tf.Tensor, window: tf.Tensor, input_size) -> tf.Tensor:
    """Normalizes ``image [H, W, 3]`` (uint8, or float32 on [0, 255]) and samples ``window``
    to the input size.

    Normalizing first makes the area outside the image exactly 0, the same padding
    value ``preprocess.resize_and_pad`` uses at inference.
    """
    normalized = preprocess.normalize_image(image)[None]
    out = tf.image.crop_and_resize(
        normalized, window[None], [0], list(input_size), extrapolation_value=0.0
    )
    return out[0]


def reframe_boxes(boxes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Image-frame boxes ``[N, 4]`` -> window frame, clipped to [0, 1]."""
    origin, extent = window[:2], window[2:] - window[:2]
    shifted = (boxes - tf.concat([origin, origin], 0)) / tf.concat([extent, extent], 0)
    return tf.clip_by_value(shifted, 0.0, 1.0)


def unframe_boxes(boxes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Window-frame boxes ``[N, 4]`` -> image frame (inverse of ``reframe_boxes``)."""
    origin, extent = window[:2], window[2:] - window[:2]
    return boxes * tf.concat([extent, extent], 0) + tf.concat([origin, origin], 0)


def flip_boxes(boxes: tf.Tensor) -> tf.Tensor:
    """Horizontal flip of normalized boxes ``[N, 4]``."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def mask_targets(masks: tf.Tensor, boxes_image: tf.Tensor, size: int, flipped) -> tf.Tensor:
    """Soft ``S x S`` targets: ``masks [N, H, W]`` cropped at image-frame ``boxes [N, 4]``.

    ``boxes_image`` are in the frame of the (possibly flipped) image; masks are the
    unflipped originals, so a flipped box is unflipped, cropped, and the crop mirrored.
    """
    boxes = tf.cond(flipped, lambda: flip_boxes(boxes_image), lambda: boxes_image)
    num = tf.shape(masks)[0]
    cut = tf.image.crop_and_resize(
        tf.cast(masks, tf.float32)[..., None], boxes, tf.range(num), [size, size]
    )[..., 0]
    return tf.cond(flipped, lambda: tf.reverse(cut, axis=[2]), lambda: cut)


def inside_window(crop_boxes: tf.Tensor, size: int) -> tf.Tensor:
    """``float32 [N, S, S]``: 1 where a sample of the ``S x S`` crop grid of model-frame
    ``crop_boxes [N, 4]`` lies inside the model input (``[0, 1]`` on both axes), else 0.

    A grown crop can reach past the augmentation window, where the model reads zero
    padding while the original mask may go on; the target there must be background.
    """
    line = tf.linspace(0.0, 1.0, size)[None]
    ys = crop_boxes[:, 0:1] + line * (crop_boxes[:, 2:3] - crop_boxes[:, 0:1])
    xs = crop_boxes[:, 1:2] + line * (crop_boxes[:, 3:4] - crop_boxes[:, 1:2])
    eps = 1e-6
    rows = tf.cast((ys >= -eps) & (ys <= 1.0 + eps), tf.float32)
    cols = tf.cast((xs >= -eps) & (xs <= 1.0 + eps), tf.float32)
    return rows[:, :, None] * cols[:, None, :]


def _pad(tensor: tf.Tensor, length: int) -> tf.Tensor:
    """Pads/truncates the first axis to ``length`` with zeros."""
    tensor = tensor[:length]
    pad = [[0, length - tf.shape(tensor)[0]]] + [[0, 0]] * (tensor.shape.rank - 1)
    return tf.pad(tensor, pad)


@functools.cache
def _assign_centernet_targets():
    """Model Garden's ``assign_centernet_targets``, converted by AutoGraph on purpose.

    It branches in Python on a tensor (``if num_objects > 0``), so in a graph it needs
    AutoGraph. Left to ``Dataset.map``'s implicit, recursive conversion, it works only as
    long as every caller on the way is converted too: AutoGraph silently runs a function
    it skipped or failed to convert as it is, and remembers that for the process, and the
    branch then fails deep in the input pipeline with ``OperatorNotAllowedInGraphError``
    (seen once in a notebook kernel). ``to_graph`` converts it here and raises if it
    cannot."""
    return tf.autograph.to_graph(target_assigner.assign_centernet_targets)


class DeepMACParser:
    """Turns ``TfExampleDecoder(include_mask=True)`` outputs into model inputs and labels.

    Example:
        >>> parser = DeepMACParser(ParserSettings(input_size=(128, 128), num_classes=8))
        >>> ds = ds.map(decoder.decode).map(parser.parse_fn(is_training=True))  # doctest: +SKIP
    """

    def __init__(self, settings: ParserSettings):
        self.s = settings

    def parse_fn(self, is_training: bool):
        """``parse`` as a ``Dataset.map`` function ``(decoded, seed=None) -> (inputs, labels)``.

        Not converted by AutoGraph: the parser is plain graph code (``tf.cond``, no Python
        branches on tensors), so what runs inside ``map`` is what runs eagerly in the tests,
        whether or not AutoGraph would have converted it."""
        return tf.autograph.experimental.do_not_convert(
            lambda decoded, seed=None: self.parse(decoded, is_training, seed)
        )

    def parse(self, decoded: dict, is_training: bool, seed=None) -> tuple[tf.Tensor, dict]:
        """``seed``: this example's stateless augmentation seed ``int [2]`` (training;
        None: a fresh one). The same seed gives the same flip, jitter and crop."""
        image = decoded["image"]
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        boxes = tf.reshape(tf.cast(decoded["groundtruth_boxes"], tf.float32), [-1, 4])
        flipped = tf.constant(False)
        if is_training:
            seeds = tf.unstack(tf.random.experimental.stateless_split(_seed_or_fresh(seed), 3))
            image, boxes, flipped = self._photometric_and_flip(image, boxes, seeds[0])
            window = random_square_window(
                height, width, self.s.aug_scale_min, self.s.aug_scale_max, seeds[1]
            )
        else:
            window = full_window(height, width)
        inputs = crop_window(image, window, self.s.input_size)
        jitter_seed = seeds[2] if is_training else None
        labels = self._instance_labels(decoded, boxes, window, flipped, is_training, jitter_seed)
        labels.update(self._centernet_targets(labels))
        labels["valid"] = tf.minimum(1.0, 1.0 / (window[2:] - window[:2]))
        labels["image_hw"] = tf.stack([height, width])
        labels["source_id"] = decoded["source_id"]
        return inputs, labels

    def _photometric_and_flip(self, image, boxes, seed):
        color_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        image = tf.image.convert_image_dtype(image, tf.float32)
        if self.s.aug_color:
            image = color_jitter(image, color_seed)
        flipped = tf.constant(False)
        if self.s.aug_rand_hflip:
            flipped = tf.random.stateless_uniform([], flip_seed) < 0.5
            image = tf.cond(flipped, lambda: tf.image.flip_left_right(image), lambda: image)
            boxes = tf.cond(flipped, lambda: flip_boxes(boxes), lambda: boxes)
        # Stay in float: crop_window normalizes from the [0, 255] scale anyway.
        return image * 255.0, boxes, flipped

    def _instance_labels(self, decoded, boxes, window, flipped, jitter=False, seed=None) -> dict:
        framed = reframe_boxes(boxes, window)
        hw = tf.constant(self.s.input_size, tf.float32)
        size_px = (framed[:, 2:] - framed[:, :2]) * hw
        keep = tf.reduce_all(size_px >= _MIN_BOX_PIXELS, axis=1)
        classes = tf.cast(decoded["groundtruth_classes"], tf.int32)
        crowd = tf.cast(decoded["groundtruth_is_crowd"], tf.bool)
        keep = tf.logical_and(keep, tf.logical_not(crowd))
        keep = tf.logical_and(keep, (classes >= 1) & (classes <= self.s.num_classes))
        framed, classes = tf.boolean_mask(framed, keep), tf.boolean_mask(classes, keep)
        masks = tf.boolean_mask(decoded["groundtruth_instance_masks"], keep)
        crop = framed
        if jitter and self.s.max_roi_jitter_ratio > 0:
            crop = jitter_boxes(framed, self.s.max_roi_jitter_ratio, self.s.roi_jitter_mode, seed)
        # The model grows every box it crops by the same context at inference.
        crop = crops.grow_boxes(crop, self.s.crop_context)
        targets = mask_targets(masks, unframe_boxes(crop, window), self.s.mask_size, flipped)
        if self.s.crop_context:
            targets *= inside_window(crop, self.s.mask_size)
        m = self.s.max_num_instances
        count = tf.minimum(tf.shape(classes)[0], m)
        ones = tf.ones_like(classes, tf.float32)
        return {
            "boxes": _pad(framed, m),
            "crop_boxes": _pad(crop, m),
            "classes": _pad(classes, m),
            "box_weights": _pad(ones, m),
            "mask_weights": _pad(ones * self._allowed(classes), m),
            "mask_targets": _pad(targets, m),
            "num_instances": count,
        }

    def _allowed(self, classes: tf.Tensor) -> tf.Tensor:
        if not self.s.allowed_mask_ids:
            return tf.ones_like(classes, tf.float32)
        allowed = tf.constant(self.s.allowed_mask_ids, tf.int32)
        hit = tf.reduce_any(classes[:, None] == allowed[None, :], axis=1)
        return tf.cast(hit, tf.float32)

    def _centernet_targets(self, labels: dict) -> dict:
        in_h, in_w = self.s.input_size
        out_hw = [in_h // self.s.output_stride, in_w // self.s.output_stride]
        scale = tf.constant([in_h, in_w, in_h, in_w], tf.float32)
        targets = _assign_centernet_targets()(
            labels={
                "boxes": labels["boxes"] * scale,
                "classes": labels["classes"],
                "groundtruths": {"num_detections": labels["num_instances"]},
            },
            output_size=out_hw,
            input_size=[in_h, in_w],
            num_classes=self.s.num_classes,
            max_num_instances=self.s.max_num_instances,
            gaussian_iou=self.s.gaussian_iou,
            class_offset=1,
        )
        return {
            "ct_heatmaps": targets["ct_heatmaps"],
            "ct_offset": targets["ct_offset"],
            "ct_size": targets["size"],
            "box_indices": targets["box_indices"],
        }
