"""The weak mask losses (box consistency, colour consistency, augmented self-supervision),
ROI jitter, and the mask branch that applies them to every instance with a box."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import tensorflow as tf

from deepmac_nb.data import pipeline
from deepmac_nb.modeling import crops, deepmac_model
from deepmac_nb.modeling.config import tiny_model_config
from deepmac_nb.train import mask_branch
from deepmac_nb.train import weak_losses as weak
from deepmac_nb.train.config import LossConfig


def sp(x: float) -> float:
    """softplus: the sigmoid cross-entropy of logit x against target 0."""
    return math.log1p(math.exp(x))


# An 8 x 8 crop whose box covers rows 2..5 and columns 1..6 (samples at i / 7).
FRAME = tf.constant([[0.2, 0.1, 0.75, 0.9]])
L = 3.0


def _box_logits(inside=L, outside=-L) -> np.ndarray:
    logits = np.full((1, 8, 8), outside, np.float32)
    logits[0, 2:6, 1:7] = inside
    return logits


def test_fill_boxes_on_crop_grid():
    filled = weak.fill_boxes(FRAME, 8).numpy()[0]
    expected = np.zeros((8, 8))
    expected[2:6, 1:7] = 1
    np.testing.assert_array_equal(filled, expected)


def test_perfect_mask_gives_zero_box_consistency_loss():
    logits = _box_logits(1e4, -1e4)
    for mode in weak.NORMALIZE_MODES:
        for tight in (False, True):
            loss = weak.box_consistency_loss(tf.constant(logits), FRAME, mode, tight)
            assert float(loss[0]) == pytest.approx(0.0, abs=1e-6)


def test_box_consistency_hand_values_and_leak_penalty():
    exact = float(weak.box_consistency_loss(tf.constant(_box_logits()), FRAME)[0])
    # Every row and column projection is right with margin 3: 16 * sp(-3) / 8.
    assert exact == pytest.approx(2 * sp(-L), rel=1e-5)
    leaking = _box_logits()
    leaking[0, 0, 3] = L  # one pixel above the box
    leak = float(weak.box_consistency_loss(tf.constant(leaking), FRAME)[0])
    # Row 0's max turns positive against target 0: sp(3) instead of sp(-3), mean of 8.
    assert leak == pytest.approx((15 * sp(-L) + sp(L)) / 8, rel=1e-5)
    assert leak > exact + 0.3


def test_box_consistency_groundtruth_count_and_tightness():
    strip = np.full((1, 8, 8), -L, np.float32)
    strip[0, 2:6, 0] = L  # positive beside the box, in its rows, empty inside it
    plain = float(weak.box_consistency_loss(tf.constant(strip), FRAME)[0])
    assert plain == pytest.approx(sp(-L) + (7 * sp(L) + sp(-L)) / 8, rel=1e-5)
    tight = float(weak.box_consistency_loss(tf.constant(strip), FRAME, tightness=True)[0])
    # The rows' max is now taken inside the box: 4 rows wrong instead of 0.
    assert tight == pytest.approx((4 * sp(L) + 4 * sp(-L)) / 8 + (7 * sp(L) + sp(-L)) / 8)
    count = weak.box_consistency_loss(
        tf.constant(_box_logits()), FRAME, "normalize_groundtruth_count"
    )
    # Sums divided by the positive count: 4 rows, 6 columns.
    assert float(count[0]) == pytest.approx(8 * sp(-L) / 4 + 8 * sp(-L) / 6, rel=1e-5)


def test_rgb_to_lab_reference_points():
    lab = weak.rgb_to_lab(tf.constant([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=0.05)
    np.testing.assert_allclose(lab[1], [0.0, 0.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.1)


def test_uniform_colour_gives_the_colour_term_its_maximum_pull():
    lab = tf.fill([1, 4, 4, 3], 50.0)
    full = tf.constant([[0.0, 0.0, 1.0, 1.0]])
    undecided = weak.color_consistency_loss(tf.zeros([1, 4, 4]), lab, full, 0.4, 2)
    # On a 4 x 4 grid at dilation 2 every pixel has 3 neighbours inside the grid; all
    # are similar, P(same) = 0.5 for each pair: 3 log 2 per box pixel.
    assert float(undecided[0]) == pytest.approx(3 * math.log(2.0), rel=1e-6)
    decided = weak.color_consistency_loss(tf.fill([1, 4, 4], 20.0), lab, full, 0.4, 2)
    assert float(decided[0]) == pytest.approx(0.0, abs=1e-6)
    # A split mask costs -log(1e-3) (the clip) per similar pair across the split.
    split = np.full((1, 4, 4), -50.0, np.float32)
    split[0, :, :2] = 50.0
    cut = float(weak.color_consistency_loss(tf.constant(split), lab, full, 0.4, 2)[0])
    assert cut > 3 * math.log(2.0)


def test_dissimilar_colours_switch_the_colour_term_off():
    rng = np.random.default_rng(0)
    lab = tf.constant(rng.uniform(0, 100, (1, 6, 6, 3)), tf.float32)
    loss = weak.color_consistency_loss(tf.zeros([1, 6, 6]), lab, tf.constant([[0, 0, 1, 1.0]]))
    assert float(loss[0]) == pytest.approx(0.0, abs=1e-6)


def test_colour_term_normalised_by_box_pixels_only():
    lab = tf.fill([1, 8, 8, 3], 10.0)
    loss = weak.color_consistency_loss(tf.zeros([1, 8, 8]), lab, FRAME, 0.4, 2)
    grid = np.ones((8, 8))
    pairs = 0
    for y, x in zip(*np.nonzero(weak.fill_boxes(FRAME, 8).numpy()[0]), strict=True):
        for dy, dx in weak.NEIGHBORS_2D:
            pairs += 0 <= y + 2 * dy < 8 and 0 <= x + 2 * dx < 8 and grid[y, x] > 0
    assert float(loss[0]) == pytest.approx(pairs * math.log(2.0) / 24, rel=1e-6)


def test_self_supervision_losses():
    box = tf.constant([[0.0, 0.0, 1.0, 1.0]])
    big = tf.constant(np.where(np.eye(8) > 0, 1e4, -1e4)[None], tf.float32)
    for kind in weak.SELF_SUPERVISION_LOSSES:
        assert float(weak.self_supervision_loss(big, big, box, kind)[0]) == pytest.approx(
            0.0, abs=1e-5
        )
    pred, target = tf.zeros([1, 8, 8]), tf.ones([1, 8, 8])
    mse = weak.self_supervision_loss(pred, target, FRAME, "loss_mse")
    assert float(mse[0]) == pytest.approx((1 / (1 + math.exp(-1)) - 0.5) ** 2, rel=1e-5)
    # Dice against the binarised target: p = 0.5 everywhere inside: 1 - 2*12/(12+24).
    dice = weak.self_supervision_loss(pred, target, FRAME, "loss_dice")
    assert float(dice[0]) == pytest.approx(1 - 24 / 36, rel=1e-5)
    kl = weak.self_supervision_loss(pred, tf.fill([1, 8, 8], math.log(1 / 3)), FRAME, "loss_kl_div")
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert float(kl[0]) == pytest.approx(expected, rel=1e-4)


def test_warmup_schedule():
    values = [float(weak.warmup_weight(s, 10, 40)) for s in (0, 5, 10, 20, 50, 100)]
    assert values == pytest.approx([0.0, 0.0, 0.0, 0.25, 1.0, 1.0])
    assert float(weak.warmup_weight(3, 10, 0)) == 1.0
    assert float(weak.warmup_weight(None, 10, 40)) == 1.0


def test_augmentation_maps_back_to_the_same_scene_points():
    # A linear image: bilinear resampling reproduces it exactly, so any misplacement shows.
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    image = (xx + 0.3 * yy)[None, ..., None]
    box = tf.constant([[0.2, 0.1, 0.7, 0.5]])
    windows = mask_branch.transform_windows(
        tf.constant([-0.02]), tf.constant([-0.05]), tf.constant([0.9]), tf.constant([1.1])
    )
    flip = tf.constant([True])
    aug = mask_branch.augment_images(tf.constant(image), windows, flip)
    aug_box = mask_branch.augment_boxes(box, windows, flip)
    before = tf.image.crop_and_resize(image, box, [0], [9, 9])
    after = tf.image.crop_and_resize(aug, aug_box, [0], [9, 9])
    np.testing.assert_allclose(tf.reverse(after, [2]).numpy(), before.numpy(), atol=1e-3)
    assert float(tf.reduce_max(tf.abs(after - before))) > 2.0  # the flip is real


@pytest.mark.parametrize("mode", pipeline.JITTER_MODES)
def test_roi_jitter_modes(mode):
    tf.random.set_seed(0)
    boxes = tf.tile(tf.constant([[0.3, 0.2, 0.6, 0.8]]), [200, 1])
    out = pipeline.jitter_boxes(boxes, 0.1, mode).numpy()
    grow = np.concatenate([boxes[:, :2] - out[:, :2], out[:, 2:] - boxes[:, 2:]], 1)
    extent = np.array([0.3, 0.6, 0.3, 0.6])
    assert np.all(np.abs(grow) <= 0.1 * extent + 1e-6)
    if mode.startswith("expand"):
        assert grow.min() >= -1e-6 and grow.max() > 0.01
    if mode.startswith("shrink"):
        assert grow.max() <= 1e-6 and grow.min() < -0.01
    if mode.endswith("symmetric"):
        np.testing.assert_allclose(grow[:, :2], grow[:, 2:], atol=1e-6)
    if mode == "expand_symmetric_xy":
        np.testing.assert_allclose(grow[:, 0] / 0.3, grow[:, 1] / 0.6, atol=1e-5)


@functools.cache
def _mask_branch_fixture():
    """Built once: a tiny model, near-uniform images and one seen + one unseen instance.

    Two images, the second without any weighted instance: with TensorFlow 2.20's oneDNN
    kernels, the backward pass of this model on a batch of one corrupts the heap on some
    AVX-512 CPUs (AMD EPYC here: "double free or corruption", then abort) even outside
    this code; batches of two or more, and ``TF_ENABLE_ONEDNN_OPTS=0``, are fine."""
    tf.random.set_seed(1)
    model = deepmac_model.build_deepmac_model(tiny_model_config("resnet4", 64))
    images = 0.01 * tf.random.normal([2, 64, 64, 3])  # near-uniform colour
    model(images, boxes=tf.zeros([2, 1, 4]), training=False)
    boxes = tf.constant(
        [[[0.1, 0.1, 0.5, 0.5], [0.4, 0.3, 0.9, 0.8], [0, 0, 0, 0]],
         [[0.2, 0.2, 0.6, 0.6], [0, 0, 0, 0], [0, 0, 0, 0]]]
    )  # fmt: skip
    labels = {
        "boxes": boxes,
        "crop_boxes": boxes + tf.constant([-0.05, -0.05, 0.05, 0.05]),
        # instance 1 of image 0 is an unseen class; image 1 carries no weight at all
        "mask_weights": tf.constant([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
        "box_weights": tf.constant([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]),
        "mask_targets": tf.random.uniform([2, 3, 16, 16]),
    }
    return model, images, labels


def _head_grads(model, images, labels, cfg, name):
    with tf.GradientTape() as tape:
        raw = model(images, training=True)["raw_output"]
        terms = mask_branch.mask_terms(model, raw, labels, images, cfg, training=True, step=100)
    grads = tape.gradient(terms[name], model.mask_head.trainable_variables)
    return terms, [np.zeros(v.shape) if g is None else g.numpy() for g, v in
                   zip(grads, model.mask_head.trainable_variables, strict=True)]  # fmt: skip


def _weak_config(**weights) -> LossConfig:
    cfg = LossConfig()
    cfg.weak.override(weights, is_strict=True)
    return cfg


@pytest.mark.large
def test_weak_losses_reach_the_mask_head_for_unseen_instances():
    model, images, labels = _mask_branch_fixture()
    unseen_only = dict(labels, mask_weights=tf.zeros([2, 3]))
    unseen_only["box_weights"] = tf.constant([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    cfg = _weak_config(
        box_consistency_weight=1.0, color_consistency_weight=1.0, self_supervision_weight=1.0,
        self_supervision_flip_probability=0.5, self_supervision_max_translation=0.1,
    )  # fmt: skip
    for name in weak.TERMS:
        terms, grads = _head_grads(model, images, unseen_only, cfg, name)
        assert np.isfinite(float(terms[name]))
        assert max(np.abs(g).max() for g in grads) > 0, name
    # ...while the supervised term gets nothing from the unseen instance.
    terms, grads = _head_grads(model, images, unseen_only, cfg, "mask_loss")
    assert float(terms["mask_loss"]) == 0.0
    assert max(np.abs(g).max() for g in grads) == 0.0


def test_supervised_mask_loss_unchanged_by_weak_losses():
    model, images, labels = _mask_branch_fixture()
    raw = model(images, training=False)["raw_output"]
    off = mask_branch.mask_terms(model, raw, labels, images, LossConfig(), training=False)
    on = mask_branch.mask_terms(
        model, raw, labels, images, _weak_config(box_consistency_weight=1.0), training=False
    )
    assert set(off) == {"mask_loss"}
    assert set(on) == {"mask_loss", "box_consistency_loss"}
    assert float(on["mask_loss"]) == pytest.approx(float(off["mask_loss"]), rel=1e-6)


def test_warmup_scales_the_training_loss():
    model, images, labels = _mask_branch_fixture()
    cfg = _weak_config(color_consistency_weight=1.0, color_consistency_warmup_steps=10)
    raw = model(images, training=False)["raw_output"]
    full = mask_branch.mask_terms(model, raw, labels, images, cfg, training=True, step=50)
    half = mask_branch.mask_terms(model, raw, labels, images, cfg, training=True, step=5)
    evaluation = mask_branch.mask_terms(model, raw, labels, images, cfg, training=False, step=0)
    assert float(evaluation["color_consistency_loss"]) > 0
    assert float(full["color_consistency_loss"]) > 0
    assert float(half["color_consistency_loss"]) == pytest.approx(
        0.5 * float(full["color_consistency_loss"]), rel=1e-5
    )


def test_invalid_weak_options_are_refused():
    with pytest.raises(ValueError, match="box_consistency_normalize"):
        weak.validate(weak.WeakLossConfig(box_consistency_normalize="mean"))
    with pytest.raises(ValueError, match="self_supervision_loss"):
        weak.validate(weak.WeakLossConfig(self_supervision_loss="l2"))


def test_weak_experiments_are_registered_and_switch_only_the_weak_parts():
    from deepmac_nb.train import experiments

    base, weak_quick = (
        experiments.get_experiment(n) for n in ("deepmac_shapes_quick", "deepmac_shapes_quick_weak")
    )
    assert weak.active_terms(base.task.losses.weak) == ()
    assert weak.active_terms(weak_quick.task.losses.weak) == (
        "box_consistency_loss", "color_consistency_loss",
    )  # fmt: skip
    assert weak_quick.task.train_data.parser.max_roi_jitter_ratio > 0
    assert weak_quick.task.model.as_dict() == base.task.model.as_dict()
    assert weak_quick.trainer.train_steps == base.trainer.train_steps
    assert weak_quick.task.allowed_mask_classes == base.task.allowed_mask_classes == "seen"
    for name, split in (
        ("deepmac_coco_mini_voc_weak", "voc"),
        ("deepmac_coco_mini_non_voc", "non_voc"),
        ("deepmac_coco_mini_non_voc_weak", "non_voc"),
    ):
        params = experiments.get_experiment(name)
        assert params.task.allowed_mask_classes == split
        assert bool(weak.active_terms(params.task.losses.weak)) == name.endswith("_weak")


@pytest.mark.large
def test_train_step_with_every_weak_loss(tiny_shapes):
    from conftest import tiny_params
    from official.core import task_factory

    params = tiny_params(tiny_shapes)
    params.task.train_data.parser.max_roi_jitter_ratio = 0.2
    params.task.train_data.parser.roi_jitter_mode = "expand"
    params.task.losses.weak.override(
        {"box_consistency_weight": 1.0, "color_consistency_weight": 1.0,
         "self_supervision_weight": 1.0, "self_supervision_flip_probability": 0.5},
        is_strict=True,
    )  # fmt: skip
    task = task_factory.get_task(params.task)
    model = task.build_model()
    import tf_keras

    optimizer = tf_keras.optimizers.SGD(0.01)
    metrics = task.build_metrics()
    inputs = next(iter(task.build_inputs(params.task.train_data)))
    labels = inputs[1]
    assert bool(tf.reduce_any(labels["crop_boxes"] != labels["boxes"]))  # jitter is on
    logs = task.train_step(inputs, model, optimizer, metrics)
    assert np.isfinite(float(logs["loss"]))
    values = {m.name: float(m.result()) for m in metrics}
    for name in weak.TERMS:
        assert np.isfinite(values[name]) and values[name] > 0, name


def test_jittered_targets_and_the_crop_frame_box_agree():
    """The parser crops the target at the jittered box; the weak losses' box in that
    crop's frame must cover the same samples as the filled-box target."""
    tf.random.set_seed(3)
    mask = np.zeros((1, 100, 100), np.uint8)
    mask[0, 20:60, 30:90] = 1  # a mask that fills its box
    decoded = {
        "image": tf.zeros([100, 100, 3], tf.uint8),
        "groundtruth_boxes": tf.constant([[0.2, 0.3, 0.6, 0.9]]),
        "groundtruth_classes": tf.constant([1]),
        "groundtruth_is_crowd": tf.constant([False]),
        "groundtruth_instance_masks": tf.constant(mask, tf.float32),
        "source_id": tf.constant("a"),
    }
    settings = pipeline.ParserSettings(
        input_size=(64, 64), num_classes=8, max_num_instances=4, mask_size=16,
        aug_rand_hflip=False, aug_color=False, aug_scale_min=1.0, aug_scale_max=1.0,
        max_roi_jitter_ratio=0.3, roi_jitter_mode="expand",
    )  # fmt: skip
    parser = pipeline.DeepMACParser(settings)
    _, train = parser.parse(decoded, is_training=True)
    _, val = parser.parse(decoded, is_training=False)
    np.testing.assert_array_equal(val["crop_boxes"].numpy(), val["boxes"].numpy())
    box, crop = train["boxes"][:1], train["crop_boxes"][:1]
    assert np.all(crop[:, :2] <= box[:, :2] + 1e-6) and np.all(crop[:, 2:] >= box[:, 2:] - 1e-6)
    assert float(tf.reduce_sum(tf.abs(crop - box))) > 0.05
    filled = weak.fill_boxes(crops.boxes_in_crop_frame(box, crop), 16).numpy()[0]
    target = train["mask_targets"][0].numpy()
    # Bilinear targets are soft at the box edge: compare away from it.
    assert np.all(target[filled > 0] > 0.2) and np.all(target[filled == 0] < 0.8)
    assert 0 < filled.sum() < 256
