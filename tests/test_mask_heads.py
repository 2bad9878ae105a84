"""Tests for deepmac_nb.modeling.mask_heads: shapes, reference parameter counts, config."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf

from deepmac_nb.modeling.mask_heads import (
    MASK_HEAD_NAMES,
    MaskHead,
    build_mask_head,
    count_params,
)

NC = 8
IN_CHANNELS = 5
# hourglass52/100 downsample 5 times, so they need crops divisible by 32.
_BIG_CROP_HEADS = ("hourglass52", "hourglass100")


# The deepest hourglasses take most of this module's time: their cases run in `make test`.
_SLOW_HEADS = ("hourglass32", "hourglass52", "hourglass100")


def _heads(names) -> list:
    """``names`` as parameters, the slow heads marked ``large``."""
    return [pytest.param(n, marks=pytest.mark.large) if n in _SLOW_HEADS else n for n in names]


def _size(name: str) -> int:
    return 32 if name in _BIG_CROP_HEADS else 16


def _features(n: int, size: int, channels: int = IN_CHANNELS, seed: int = 0) -> tf.Tensor:
    return tf.random.stateless_normal([n, size, size, channels], seed=[seed, 1])


@functools.cache
def _built_head(name: str) -> MaskHead:
    """A small head (nc=8), built on a 2-instance batch; shared across tests to save CPU."""
    head = build_mask_head(name, NC, mask_size=_size(name))
    head(_features(2, _size(name)))
    return head


def test_names_are_a_tuple_of_all_families():
    assert isinstance(MASK_HEAD_NAMES, tuple)
    assert len(MASK_HEAD_NAMES) == len(set(MASK_HEAD_NAMES)) == 13
    for name in ("hourglass10", "hourglass100", "resnet4", "resnet20", "conv2", "conv4"):
        assert name in MASK_HEAD_NAMES
    assert "fully_connected" in MASK_HEAD_NAMES


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown_head.*hourglass10.*resnet4.*fully_connected"):
        build_mask_head("unknown_head", NC)


def test_resnet4_matches_reference_trainable_count():
    head = build_mask_head("resnet4", num_init_channels=8, mask_size=32)
    out = head(tf.zeros([1, 32, 32, 32]))
    assert out.shape == (1, 32, 32)
    # 264 input conv + 3680 first block (1x1 shortcut) + 4704 second block + 17 projection.
    trainable = sum(int(np.prod(w.shape)) for w in head.trainable_weights)
    assert trainable == 8665
    # Non-trainable = BN moving mean/variance: (8 + 16 + 16) + (16 + 16 + 16) channels.
    assert count_params(head) == 8665 + 2 * 88


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hourglass10", 1_608_705),
        ("hourglass20", 5_539_585),
        pytest.param("hourglass32", 10_455_553, marks=pytest.mark.large),
        pytest.param("hourglass52", 23_483_905, marks=pytest.mark.large),
        pytest.param("hourglass100", 47_276_545, marks=pytest.mark.large),
    ],
)
def test_hourglass_total_counts_match_reference(name, expected):
    head = build_mask_head(name, num_init_channels=64, mask_size=32)
    head(tf.zeros([1, 32, 32, 50]))
    assert count_params(head) == expected
    assert head.count_params() == expected


@pytest.mark.parametrize("name", _heads(MASK_HEAD_NAMES))
@pytest.mark.parametrize("training", [False, True])
def test_every_head_keeps_crop_size(name, training):
    size = _size(name)
    out = _built_head(name)(_features(3, size, seed=1), training=training)
    assert out.shape == (3, size, size)
    assert out.dtype == tf.float32
    assert np.all(np.isfinite(out.numpy()))


@pytest.mark.parametrize("name", _heads(MASK_HEAD_NAMES))
def test_zero_instances_gives_empty_logits(name):
    size = _size(name)
    out = _built_head(name)(tf.zeros([0, size, size, IN_CHANNELS]), training=True)
    assert out.shape == (0, size, size)
    assert out.dtype == tf.float32


@pytest.mark.parametrize("name", ["resnet4", "hourglass10", "fully_connected"])
def test_first_call_with_zero_instances_still_creates_all_weights(name):
    head = build_mask_head(name, NC, mask_size=16)
    assert head(tf.zeros([0, 16, 16, IN_CHANNELS])).shape == (0, 16, 16)
    assert count_params(head) == count_params(_built_head(name))


@pytest.mark.parametrize("name", _heads(MASK_HEAD_NAMES))
def test_config_round_trip_reproduces_outputs(name):
    head = _built_head(name)
    config = head.get_config()
    assert config["network_type"] == name
    assert config["num_init_channels"] == NC
    assert config["mask_size"] == _size(name)

    clone = MaskHead.from_config(config)
    features = _features(2, _size(name), seed=2)
    assert clone(features).shape == head(features).shape
    clone.set_weights(head.get_weights())
    np.testing.assert_allclose(
        clone(features, training=False).numpy(),
        head(features, training=False).numpy(),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("name", ["conv2", "resnet4", "hourglass10", "fully_connected"])
def test_every_trainable_weight_receives_a_gradient(name):
    head = _built_head(name)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(head(_features(2, 16, seed=3), training=True) ** 2)
    grads = tape.gradient(loss, head.trainable_weights)
    assert all(g is not None for g in grads)


def test_traced_function_handles_dynamic_instance_count():
    head = _built_head("resnet4")
    spec = tf.TensorSpec([None, 16, 16, IN_CHANNELS], tf.float32)
    fn = tf.function(lambda x: head(x, training=False), input_signature=[spec])
    assert fn(_features(4, 16)).shape == (4, 16, 16)
    assert fn(tf.zeros([0, 16, 16, IN_CHANNELS])).shape == (0, 16, 16)


def test_hourglass_rejects_indivisible_crop_size():
    head = build_mask_head("hourglass20", NC)
    with pytest.raises(ValueError, match="divisible by 4"):
        head(tf.zeros([1, 18, 18, IN_CHANNELS]))


def test_count_params_needs_a_built_layer():
    with pytest.raises(ValueError, match="not built"):
        count_params(build_mask_head("conv2", NC))
