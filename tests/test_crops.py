"""Golden geometry of Deep-MAC's per-box crops, centre embeddings and mask pasting."""

import numpy as np
import pytest
import tensorflow as tf

from deepmac_nb.modeling import crops


def _embedding_map(height=32, width=32):
    """A map whose value at (y, x) is (y, x): reads reveal exactly which cell was used."""
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return tf.constant(np.stack([yy, xx], -1)[None].astype(np.float32))


@pytest.mark.parametrize(
    ("box", "cell"),
    [
        ([0.0, 0.0, 0.5, 0.5], (8, 8)),
        ([0.5, 0.0, 1.0, 1.0], (24, 16)),
        ([0.0, 0.0, 1.0, 1.0], (16, 16)),
        ([0.9, 0.9, 1.5, 1.5], (31, 31)),  # centre past the border: clipped, not out of bounds
        ([-1.0, -1.0, -0.5, -0.5], (0, 0)),
    ],
)
def test_center_embedding_cell(box, cell):
    got = crops.center_embeddings(_embedding_map(), tf.constant([[box]], tf.float32))
    np.testing.assert_array_equal(got.numpy()[0, 0], cell)


def test_constant_region_crops_to_constant():
    feats = tf.fill([1, 20, 20, 3], 7.0)
    boxes = tf.constant([[[0.1, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0]]])
    out = crops.crop_and_resize(feats, boxes, 8)
    np.testing.assert_allclose(out.numpy(), 7.0, rtol=1e-6)


def test_outside_samples_are_zero_and_align_corners():
    feats = _embedding_map(5, 5)
    # Box [0, 0, 1, 1] samples exactly the pixel centres 0..4 with S = 5 (align corners).
    full = crops.crop_and_resize(feats, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), 5)
    np.testing.assert_allclose(full.numpy()[0, 0, :, 0, 0], [0, 1, 2, 3, 4], atol=1e-6)
    outside = crops.crop_and_resize(feats + 1.0, tf.constant([[[1.5, 1.5, 2.0, 2.0]]]), 4)
    np.testing.assert_array_equal(outside.numpy(), 0.0)


@pytest.mark.parametrize("size", [1, 7, 32])
def test_matmul_crop_matches_native(size):
    rng = np.random.default_rng(size)
    feats = tf.constant(rng.normal(size=(2, 17, 23, 3)).astype(np.float32))
    boxes = crops.sanitize_boxes(tf.constant(rng.uniform(-0.3, 1.3, (2, 5, 4)).astype(np.float32)))
    native = crops.crop_and_resize(feats, boxes, size)
    matmul = crops.crop_and_resize(feats, boxes, size, method="matmul")
    np.testing.assert_allclose(matmul.numpy(), native.numpy(), atol=1e-4)


def test_mask_head_inputs_layout():
    pixel = tf.fill([2, 16, 16, 5], 3.0)
    inst = tf.tile(_embedding_map(16, 16), [2, 1, 1, 1])
    boxes = tf.constant([[[0.0, 0.0, 0.5, 0.5]], [[0.5, 0.0, 1.0, 1.0]]])
    out = crops.mask_head_inputs(pixel, inst, boxes, size=8).numpy()
    assert out.shape == (2, 8, 8, 2 + 5 + 2)
    np.testing.assert_allclose(out[0, :, 0, 0], np.linspace(-1, 1, 8), atol=1e-6)  # y channel
    np.testing.assert_allclose(out[0, 0, :, 1], np.linspace(-1, 1, 8), atol=1e-6)  # x channel
    np.testing.assert_array_equal(out[1, :, :, :2], out[0, :, :, :2])  # same for every box
    np.testing.assert_allclose(out[..., 2:7], 3.0)
    np.testing.assert_array_equal(out[0, 3, 5, 7:], [4, 4])
    np.testing.assert_array_equal(out[1, 0, 0, 7:], [12, 8])


def test_degenerate_boxes_give_finite_inputs():
    pixel = tf.random.normal([1, 16, 16, 4])
    boxes = tf.constant([[[0.3, 0.3, 0.3, 0.3], [np.nan, 0.1, 0.5, np.inf], [-2, -2, 3, 3],
                          [0.8, 0.9, 0.2, 0.1]]], tf.float32)  # fmt: skip
    out = crops.mask_head_inputs(pixel, pixel, crops.sanitize_boxes(boxes), size=8)
    assert np.isfinite(out.numpy()).all()


def test_sanitize_orders_corners_and_zeroes_nan():
    out = crops.sanitize_boxes(tf.constant([[0.8, np.nan, 0.2, 0.5]])).numpy()
    np.testing.assert_allclose(out, [[0.2, 0.0, 0.8, 0.5]])


def test_paste_full_image_box_is_resize_and_outside_is_zero():
    mask = tf.ones([1, 4, 4])
    full = crops.paste_masks(mask, tf.constant([[0.0, 0.0, 1.0, 1.0]]), 10, 10).numpy()
    np.testing.assert_allclose(full, 1.0, atol=1e-6)
    half = crops.paste_masks(mask, tf.constant([[0.0, 0.0, 0.5, 1.0]]), 10, 10).numpy()[0]
    assert (half[:4] > 0.5).all() and (half[6:] == 0).all()


def test_paste_round_trips_a_crop():
    """crop(image mask, box) then paste(box) gives back the image mask inside the box."""
    img = np.zeros((40, 40), np.float32)
    img[10:30, 12:20] = 1.0
    box = tf.constant([[0.2, 0.25, 0.8, 0.6]])
    crop = crops.crop_and_resize(tf.constant(img)[None, ..., None], box[None], 32)[0, :, :, :, 0]
    pasted = crops.paste_masks(crop, box, 40, 40).numpy()[0] > 0.5
    inside = np.zeros_like(img, bool)
    inside[9:31, 11:23] = True  # the box's pixel span, plus a pixel of interpolation slack
    agree = (pasted == (img > 0.5))[inside]
    assert agree.mean() > 0.95


@pytest.mark.parametrize("box", [[0.5, 0.5, 0.5, 0.5], [np.nan] * 4, [-3.0, -3.0, -2.0, -2.0]])
def test_paste_degenerate_boxes_finite(box):
    out = crops.paste_masks(tf.ones([1, 8, 8]), tf.constant([box], tf.float32), 12, 12).numpy()
    assert np.isfinite(out).all()


def test_paste_zero_instances():
    assert crops.paste_masks(tf.zeros([0, 8, 8]), tf.zeros([0, 4]), 5, 7).shape == (0, 5, 7)
