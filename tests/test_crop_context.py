"""``mask.crop_context``: the head reads each box grown by a margin, in training and at
inference alike, and the model's outputs stay masks in the box's own frame."""

import numpy as np
import pytest
import tensorflow as tf

from deepmac_nb import loading
from deepmac_nb.data import pipeline
from deepmac_nb.inference import export
from deepmac_nb.modeling import config as cfg_lib
from deepmac_nb.modeling import crops

BOXES = np.array([[0.2, 0.25, 0.6, 0.7], [0.35, 0.3, 0.75, 0.55]], np.float32)


@pytest.mark.parametrize(
    "box, context, grown",
    [
        ([0.2, 0.2, 0.6, 0.4], 0.25, [0.1, 0.15, 0.7, 0.45]),
        ([0.0, 0.5, 1.0, 1.0], 0.1, [-0.1, 0.45, 1.1, 1.05]),  # not clipped
        ([0.3, 0.3, 0.3, 0.3], 0.5, [0.3, 0.3, 0.3, 0.3]),  # degenerate stays put
        ([0.2, 0.2, 0.6, 0.4], 0.0, [0.2, 0.2, 0.6, 0.4]),
    ],
)
def test_grow_boxes_golden(box, context, grown):
    out = crops.grow_boxes(tf.constant([box]), context).numpy()[0]
    np.testing.assert_allclose(out, grown, atol=1e-6)


def test_the_box_sits_in_the_middle_of_its_grown_crop():
    box = tf.constant([[0.2, 0.1, 0.6, 0.9]])
    frame = crops.boxes_in_crop_frame(box, crops.grow_boxes(box, 0.2)).numpy()[0]
    lo, hi = 0.2 / 1.4, 1.2 / 1.4
    np.testing.assert_allclose(frame, [lo, lo, hi, hi], atol=1e-6)


def _model(context: float, crop_method: str = "native"):
    config = cfg_lib.tiny_model_config(image_size=64)
    config.mask.crop_context = context
    config.mask.crop_method = crop_method
    return export._built(config)


@pytest.mark.parametrize("crop_method", ["native", "matmul"])
def test_outputs_are_resampled_to_the_box_frame(crop_method):
    """A stand-in head that returns its crop of a linear ramp: the box-frame output must
    be the ramp's crop at the box itself (bilinear resampling is exact on a linear
    function), whatever the context. Forgetting the resampling, resampling the wrong
    window or cropping the ungrown box all change it."""
    model = _model(0.25, crop_method)
    size = model.config.mask.mask_size
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    ramp = tf.constant((3.0 * yy - 2.0 * xx)[None, ..., None] / 64.0)
    seen = []

    def head_of_ramp(raw, stage, boxes, indices, training=None):
        seen.append(boxes)
        return crops.crop_and_resize_flat(ramp, boxes, indices * 0, size)[..., 0]

    model.flat_mask_logits = head_of_ramp
    boxes = tf.constant(BOXES[None])
    out = model.stage_mask_logits({}, 0, boxes, False).numpy()[0]
    want = crops.crop_and_resize_flat(ramp, BOXES, tf.zeros([2], tf.int32), size).numpy()
    np.testing.assert_allclose(out, want[..., 0], atol=1e-4)
    np.testing.assert_allclose(seen[0], crops.grow_boxes(BOXES, 0.25), atol=1e-6)


def test_no_context_crops_the_box_itself():
    model = _model(0.0)
    seen = []
    model.flat_mask_logits = lambda raw, stage, boxes, indices, training=None: (
        seen.append(boxes) or tf.zeros([tf.shape(boxes)[0], 16, 16])
    )
    model.stage_mask_logits({}, 0, tf.constant(BOXES[None]), False)
    np.testing.assert_allclose(seen[0], BOXES, atol=0)


def _decoded():
    """One 40 x 60 rectangle (class 1) at rows 10..30, columns 15..45 of a 48 x 80 image."""
    masks = np.zeros((1, 48, 80), np.float32)
    masks[0, 10:30, 15:45] = 1.0
    return {
        "image": tf.zeros([48, 80, 3], tf.uint8),
        "source_id": tf.constant("1"),
        "groundtruth_boxes": tf.constant([[10 / 48, 15 / 80, 30 / 48, 45 / 80]]),
        "groundtruth_classes": tf.constant([1], tf.int64),
        "groundtruth_is_crowd": tf.constant([False]),
        "groundtruth_instance_masks": tf.constant(masks),
    }


def _labels(context: float, training: bool):
    settings = pipeline.ParserSettings(
        input_size=(64, 64), num_classes=8, max_num_instances=2, mask_size=32,
        crop_context=context,
    )  # fmt: skip
    return pipeline.DeepMACParser(settings).parse(_decoded(), training, tf.constant([5, 6]))[1]


@pytest.mark.parametrize("training", [False, True])
def test_parser_crops_targets_where_the_model_crops(training):
    """Crop boxes are the grown boxes, and the target in that frame, resampled to the box
    as the model resamples its logits, is the box-frame target without context."""
    plain, grown = _labels(0.0, training), _labels(0.2, training)
    box = grown["boxes"][:1]
    np.testing.assert_allclose(grown["boxes"], plain["boxes"], atol=1e-6)
    np.testing.assert_allclose(grown["crop_boxes"][:1], crops.grow_boxes(box, 0.2), atol=1e-6)
    frame = crops.boxes_in_crop_frame(box, grown["crop_boxes"][:1])
    back = crops.crop_and_resize_flat(
        grown["mask_targets"][:1, ..., None], frame, tf.zeros([1], tf.int32), 32
    ).numpy()[0, ..., 0]
    target = plain["mask_targets"].numpy()[0]
    inter = np.logical_and(back > 0.5, target > 0.5).sum()
    union = np.logical_or(back > 0.5, target > 0.5).sum()
    assert inter / union > 0.93  # edge rows: the grown crop samples the box more coarsely
    # Outside the box the grown target is empty: the margin is background to learn.
    lo, hi = int(np.ceil(frame.numpy()[0, 0] * 31)), int(np.floor(frame.numpy()[0, 2] * 31))
    assert grown["mask_targets"].numpy()[0, : lo - 1].max() == 0.0
    assert grown["mask_targets"].numpy()[0, hi + 2 :].max() == 0.0


def test_negative_context_is_refused():
    with pytest.raises(ValueError, match="crop_context"):
        _model(-0.1)


@pytest.mark.large
def test_saved_model_and_tflite_carry_the_context(tmp_path):
    model = _model(0.2)
    image = np.random.default_rng(3).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    want = model.predict_masks(image[None], BOXES[None]).numpy()[0]
    saved = export.export_saved_model(model, tmp_path / "sm")
    np.testing.assert_allclose(loading.load(saved).predict_box_masks(image, BOXES), want, atol=1e-5)
    lite = export.export_tflite(model, tmp_path / "m.tflite", max_boxes=4)
    np.testing.assert_allclose(loading.load(lite).predict_box_masks(image, BOXES), want, atol=1e-3)
