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


def _was_flipped(inputs, decoded, window):
    """Whether the parser's input is the window of the mirrored image: the input is
    correlated with the unmirrored and the mirrored window crops (photometric jitter
    changes tones, not where the triangles are)."""
    image = tf.cast(decoded["image"], tf.float32)[None]

    def crop(picture):
        return tf.image.crop_and_resize(picture, window[None], [0], inputs.shape[:2]).numpy()

    inside = crop(tf.ones_like(image))[0, ..., 0] > 0.999  # pixels the window takes from the image
    got = inputs.numpy().sum(-1)[inside]
    corr = [
        np.corrcoef(got, crop(candidate)[0].sum(-1)[inside])[0, 1]
        for candidate in (image, image[:, :, ::-1])
    ]
    assert max(corr) > 0.9 and min(corr) < 0.7, corr  # one candidate clearly wins
    return bool(corr[1] > corr[0])


def test_augmentation_keeps_masks_and_boxes_consistent(monkeypatch):
    """The parser's own photometric + flip step (only the crop window is fixed): whether
    it mirrors the image or not, the boxes and mask targets follow the image."""
    decoded = _decoded(triangles=True)
    window = tf.constant([-0.1, 0.05, 0.9, 0.7])  # partly outside the image: zero fill
    monkeypatch.setattr(pipeline, "random_square_window", lambda *a: window)
    parser = pipeline.DeepMACParser(SETTINGS)
    assert SETTINGS.aug_rand_hflip and SETTINGS.aug_color
    seen = set()
    for seed in range(8):
        inputs, labels = parser.parse(decoded, is_training=True, seed=tf.constant([seed, 11]))
        flipped = _was_flipped(inputs, decoded, window)
        seen.add(flipped)
        # Boxes, by hand: mirror x (x -> 1 - x) when flipped, then into the window frame.
        boxes = decoded["groundtruth_boxes"].numpy()[:2].astype(np.float64)
        if flipped:
            boxes = np.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], 1)
        win = window.numpy().astype(np.float64)
        framed = np.clip((boxes - np.tile(win[:2], 2)) / np.tile(win[2:] - win[:2], 2), 0, 1)
        assert int(labels["num_instances"]) == 2
        np.testing.assert_allclose(labels["boxes"].numpy()[:2], framed, atol=1e-5)
        want = _explicit_targets(decoded, labels, window, flipped, 16).numpy()
        got = labels["mask_targets"].numpy()[:2]
        assert np.abs(got - want).mean() < 0.03, (seed, flipped)
        # The check has teeth: a mirrored target would be far off.
        assert np.abs(got[:, :, ::-1] - want).mean() > 0.2
    assert seen == {False, True}  # both branches of the real flip ran


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


@pytest.mark.parametrize("training", [True, False])
def test_parse_in_a_graph_needs_no_autograph_conversion(training):
    """AutoGraph runs a function it skipped or failed to convert as it is, and remembers
    that for the process; Model Garden's CenterNet assigner branches in Python on a
    tensor, which then raises OperatorNotAllowedInGraphError inside ``Dataset.map``. The
    parser must give the same labels in a graph whether or not AutoGraph converts it."""
    parser = pipeline.DeepMACParser(SETTINGS)
    unconverted = tf.autograph.experimental.do_not_convert(
        lambda decoded: parser.parse(decoded, training, tf.constant([3, 4]))
    )
    _, graph = next(iter(tf.data.Dataset.from_tensors(_decoded()).map(unconverted)))
    _, eager = parser.parse(_decoded(), training, tf.constant([3, 4]))
    assert int(graph["num_instances"]) == 2
    for key in ("ct_heatmaps", "ct_offset", "ct_size", "box_indices", "mask_targets"):
        np.testing.assert_allclose(graph[key], eager[key], atol=1e-6, err_msg=key)


def test_too_many_instances_truncated_to_max():
    settings = pipeline.ParserSettings(
        input_size=(64, 64), num_classes=8, max_num_instances=2, mask_size=8
    )
    _, labels = pipeline.DeepMACParser(settings).parse(_decoded(), is_training=False)
    assert int(labels["num_instances"]) == 2 and labels["boxes"].shape == (2, 4)
