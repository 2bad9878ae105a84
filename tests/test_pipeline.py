"""The Deep-MAC input pipeline: targets, split weights, augmentation consistency."""

import numpy as np
import pytest
import tensorflow as tf

from deepmac_nb.data import pipeline

SETTINGS = pipeline.ParserSettings(
    input_size=(64, 64), num_classes=8, max_num_instances=6, mask_size=16,
    allowed_mask_ids=(1, 2, 3, 4),
)  # fmt: skip


def _decoded(height=48, width=80, triangles=False):
    """Three rectangles (classes 1, 6 and a crowd 2) with pixel-exact masks.

    With ``triangles`` each mask is the lower-left triangle of its box, so flips and
    crops that go wrong change the targets (a filled box is flip-invariant).
    """
    rects = [(5, 10, 30, 40, 1), (20, 50, 44, 76, 6), (0, 0, 10, 10, 2)]
    masks = np.zeros((3, height, width), np.float32)
    boxes = []
    for i, (y0, x0, y1, x1, _) in enumerate(rects):
        masks[i, y0:y1, x0:x1] = 1.0
        if triangles:
            yy, xx = np.mgrid[y0:y1, x0:x1]
            masks[i, y0:y1, x0:x1] = (xx - x0) / (x1 - x0) <= (yy - y0) / (y1 - y0)
        boxes.append([y0 / height, x0 / width, y1 / height, x1 / width])
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = (masks.sum(0) * 200).clip(0, 255).astype(np.uint8)
    return {
        "image": tf.constant(image),
        "source_id": tf.constant("7"),
        "groundtruth_boxes": tf.constant(boxes, tf.float32),
        "groundtruth_classes": tf.constant([r[4] for r in rects], tf.int64),
        "groundtruth_is_crowd": tf.constant([False, False, True]),
        "groundtruth_instance_masks": tf.constant(masks),
    }


def test_eval_parse_shapes_weights_and_targets():
    parser = pipeline.DeepMACParser(SETTINGS)
    inputs, labels = parser.parse(_decoded(), is_training=False)
    assert inputs.shape == (64, 64, 3)
    assert int(labels["num_instances"]) == 2  # the crowd instance is dropped
    np.testing.assert_array_equal(labels["classes"].numpy(), [1, 6, 0, 0, 0, 0])
    np.testing.assert_array_equal(labels["box_weights"].numpy(), [1, 1, 0, 0, 0, 0])
    # Class 6 is outside the allowed split: box kept for detection, no mask loss.
    np.testing.assert_array_equal(labels["mask_weights"].numpy(), [1, 0, 0, 0, 0, 0])
    # Rectangles fill their boxes: targets are 1 inside; only the align-corners border
    # samples (the reference's crop convention) interpolate with the outside.
    targets = labels["mask_targets"].numpy()[:2]
    np.testing.assert_allclose(targets[:, 1:-1, 1:-1], 1.0, atol=1e-5)
    assert targets.mean() > 0.9
    np.testing.assert_allclose(labels["valid"].numpy(), [48 / 80, 1.0], atol=1e-6)
    # Image 48x80 -> window side 80 -> box y scales by 48/80.
    np.testing.assert_allclose(
        labels["boxes"].numpy()[0], [5 / 80, 10 / 80, 30 / 80, 40 / 80], atol=1e-6
    )
    heat = labels["ct_heatmaps"].numpy()
    assert heat.shape == (16, 16, 8) and heat[..., 0].max() == pytest.approx(1.0)
    assert heat[..., 5].max() == pytest.approx(1.0) and heat[..., 1].max() == 0.0


def _explicit_targets(decoded, labels, window, flipped, size):
    """Reference: transform the full masks like the image, then crop at the final boxes."""
    masks = decoded["groundtruth_instance_masks"]
    keep = ~decoded["groundtruth_is_crowd"].numpy()
    masks = tf.boolean_mask(masks, keep)
    if flipped:
        masks = tf.reverse(masks, axis=[2])
    n = int(labels["num_instances"])
    framed = tf.image.crop_and_resize(
        masks[..., None], tf.tile(window[None], [n, 1]), tf.range(n), [256, 256]
    )
    return tf.image.crop_and_resize(framed, labels["boxes"][:n], tf.range(n), [size, size])[..., 0]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_augmentation_keeps_masks_and_boxes_consistent(seed, monkeypatch):
    decoded = _decoded(triangles=True)
    window = tf.constant([-0.1, 0.05, 0.9, 0.7])  # partly outside the image: zero fill
    flipped = seed % 2 == 1
    monkeypatch.setattr(pipeline, "random_square_window", lambda *a: window)

    def fixed_flip(self, image, boxes, seed):
        image = tf.image.flip_left_right(image) if flipped else image
        boxes = pipeline.flip_boxes(boxes) if flipped else boxes
        return image, boxes, tf.constant(flipped)

    monkeypatch.setattr(pipeline.DeepMACParser, "_photometric_and_flip", fixed_flip)
    _, labels = pipeline.DeepMACParser(SETTINGS).parse(decoded, is_training=True)
    want = _explicit_targets(decoded, labels, window, flipped, 16).numpy()
    got = labels["mask_targets"].numpy()[: want.shape[0]]
    assert np.abs(got - want).mean() < 0.03
    # The check has teeth: a mirrored target would be far off.
    assert np.abs(got[:, :, ::-1] - want).mean() > 0.2


def test_fully_outside_boxes_dropped(monkeypatch):
    monkeypatch.setattr(
        pipeline, "random_square_window", lambda *a: tf.constant([0.0, 0.0, 0.3, 0.3])
    )
    settings = pipeline.ParserSettings(input_size=(64, 64), num_classes=8, aug_rand_hflip=False,
                                       aug_color=False, max_num_instances=4, mask_size=8)  # fmt: skip
    _, labels = pipeline.DeepMACParser(settings).parse(_decoded(), is_training=True)
    # Only the first rectangle reaches into the top-left 30 % window.
    assert int(labels["num_instances"]) == 1
    assert labels["classes"].numpy()[0] == 1
    assert (labels["boxes"].numpy()[0] <= 1.0).all()


def test_parse_inside_tf_data_map_and_empty_image():
    decoded = _decoded()
    empty = dict(decoded)
    empty["groundtruth_boxes"] = tf.zeros([0, 4])
    empty["groundtruth_classes"] = tf.zeros([0], tf.int64)
    empty["groundtruth_is_crowd"] = tf.zeros([0], tf.bool)
    empty["groundtruth_instance_masks"] = tf.zeros([0, 48, 80])
    parser = pipeline.DeepMACParser(SETTINGS)
    for example in (decoded, empty):
        ds = tf.data.Dataset.from_tensors(example).map(parser.parse_fn(is_training=True))
        inputs, labels = next(iter(ds))
        assert inputs.shape == (64, 64, 3)
        assert np.isfinite(inputs.numpy()).all()
        assert labels["mask_targets"].shape == (6, 16, 16)
    assert int(labels["num_instances"]) == 0
    assert float(tf.reduce_max(labels["ct_heatmaps"])) == 0.0


def test_too_many_instances_truncated_to_max():
    settings = pipeline.ParserSettings(
        input_size=(64, 64), num_classes=8, max_num_instances=2, mask_size=8
    )
    _, labels = pipeline.DeepMACParser(settings).parse(_decoded(), is_training=False)
    assert int(labels["num_instances"]) == 2 and labels["boxes"].shape == (2, 4)
