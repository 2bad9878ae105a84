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
    """One L-shaped object (class 1) in a 48 x 80 image: its box is rows 10..30, columns
    15..45; the mask fills the left 10 columns and the bottom 6 rows of the box."""
    masks = np.zeros((1, 48, 80), np.float32)
    masks[0, 10:30, 15:25] = 1.0
    masks[0, 24:30, 15:45] = 1.0
    return {
        "image": tf.zeros([48, 80, 3], tf.uint8),
        "source_id": tf.constant("1"),
        "groundtruth_boxes": tf.constant([[10 / 48, 15 / 80, 30 / 48, 45 / 80]]),
        "groundtruth_classes": tf.constant([1], tf.int64),
        "groundtruth_is_crowd": tf.constant([False]),
        "groundtruth_instance_masks": tf.constant(masks),
    }


def _parser(context: float):
    settings = pipeline.ParserSettings(
        input_size=(64, 64), num_classes=8, max_num_instances=2, mask_size=32,
        aug_rand_hflip=False, crop_context=context,
    )  # fmt: skip
    return pipeline.DeepMACParser(settings)


def _back_to_box(labels):
    """The first instance's target, resampled from its crop frame to its box's frame as
    the model resamples its logits."""
    box = labels["boxes"][:1]
    frame = crops.boxes_in_crop_frame(box, labels["crop_boxes"][:1])
    back = crops.crop_and_resize_flat(
        labels["mask_targets"][:1, ..., None], frame, tf.zeros([1], tf.int32), 32
    )
    return back.numpy()[0, ..., 0], frame.numpy()[0]


def test_parser_crops_targets_where_the_model_crops():
    """Crop boxes are the grown boxes; the L-shaped target in that frame, resampled to
    the box, is the box-frame target without context; the margin is background."""
    plain = _parser(0.0).parse(_decoded(), False)[1]
    grown = _parser(0.2).parse(_decoded(), False)[1]
    box = grown["boxes"][:1]
    np.testing.assert_allclose(grown["boxes"], plain["boxes"], atol=1e-6)
    np.testing.assert_allclose(grown["crop_boxes"][:1], crops.grow_boxes(box, 0.2), atol=1e-6)
    back, frame = _back_to_box(grown)
    target = plain["mask_targets"].numpy()[0]
    inter = np.logical_and(back > 0.5, target > 0.5).sum()
    union = np.logical_or(back > 0.5, target > 0.5).sum()
    assert inter / union > 0.9  # edge samples: the grown crop samples the box more coarsely
    lo = np.ceil(frame[:2] * 31).astype(int)
    hi = np.floor(frame[2:] * 31).astype(int)
    t = grown["mask_targets"].numpy()[0]
    for margin in (t[: lo[0] - 1], t[hi[0] + 2 :], t[:, : lo[1] - 1], t[:, hi[1] + 2 :]):
        assert margin.size and margin.max() == 0.0


def test_targets_are_background_where_the_crop_leaves_the_window():
    """A training window that cuts the object through its left arm: the grown crop
    reaches past the window, where the model reads zero padding, so the target must be
    0 there even though the original mask goes on."""
    parser = _parser(0.25)
    decoded = _decoded()
    boxes = decoded["groundtruth_boxes"]
    window = tf.constant([0.0, 20 / 80, 1.0, 68 / 80])  # 48 x 48 px, cuts columns < 20
    labels = parser._instance_labels(decoded, boxes, window, tf.constant(False))
    crop = labels["crop_boxes"].numpy()[0]
    assert crop[1] < 0.0  # the grown crop starts left of the window
    t = labels["mask_targets"].numpy()[0]
    xs = crop[1] + np.linspace(0.0, 1.0, 32) * (crop[3] - crop[1])
    assert t[:, xs < -1e-6].max() == 0.0
    assert t[:, xs >= 0.0].max() > 0.5  # the object inside the window is still there
    without = _parser(0.0)._instance_labels(decoded, boxes, window, tf.constant(False))
    assert without["mask_targets"].numpy()[0].max() > 0.5


@pytest.mark.parametrize("context", [-0.1, 0.6])
def test_context_out_of_range_is_refused(context):
    with pytest.raises(ValueError, match="crop_context"):
        _model(context)
    with pytest.raises(ValueError, match="crop_context"):
        _parser(context)


@pytest.mark.large
def test_saved_model_and_tflite_carry_the_context(tmp_path):
    model = _model(0.2)
    image = np.random.default_rng(3).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    want = model.predict_masks(image[None], BOXES[None]).numpy()[0]
    twin = _model(0.0)  # the same weights without the context: other masks
    twin.set_weights(model.get_weights())
    assert np.abs(twin.predict_masks(image[None], BOXES[None]).numpy()[0] - want).max() > 1e-3
    saved = export.export_saved_model(model, tmp_path / "sm")
    np.testing.assert_allclose(loading.load(saved).predict_box_masks(image, BOXES), want, atol=1e-5)
    lite = export.export_tflite(model, tmp_path / "m.tflite", max_boxes=4)
    np.testing.assert_allclose(loading.load(lite).predict_box_masks(image, BOXES), want, atol=1e-3)
