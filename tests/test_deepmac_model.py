"""The Deep-MAC model end to end at a tiny size: builds in seconds, shapes, frames."""

import numpy as np
import pytest
import tensorflow as tf

from deepmac_nb.modeling import config as cfg_lib
from deepmac_nb.modeling import deepmac_model, preprocess


@pytest.fixture(scope="module")
def model():
    return deepmac_model.build_deepmac_model(cfg_lib.tiny_model_config())


def test_forward_training_and_inference(model):
    images = tf.random.normal([2, 64, 64, 3])
    boxes = tf.constant([[[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.9, 0.8]]] * 2)
    out = model(images, boxes=boxes, training=True)
    assert set(out["raw_output"]) == {
        "ct_heatmaps", "ct_size", "ct_offset", "pixel_embedding", "instance_embedding"
    }  # fmt: skip
    assert out["raw_output"]["ct_heatmaps"][0].shape == (2, 16, 16, 8)  # stride 4
    assert [m.shape for m in out["mask_logits"]] == [(2, 2, 16, 16)]
    assert "detection_boxes" not in out
    out = model(images, training=False)
    assert out["detection_boxes"].shape == (2, 100, 4)
    classes = out["detection_classes"].numpy()
    assert classes.min() >= 1 and classes.max() <= 8  # 1-based ids


def test_heatmap_bias_init(model):
    out = model(tf.zeros([1, 64, 64, 3]), training=True)["raw_output"]
    # Untrained centre heatmaps start near sigmoid(-2.19) ~= 0.1, the CenterNet prior.
    assert abs(float(tf.reduce_mean(tf.sigmoid(out["ct_heatmaps"][0]))) - 0.1) < 0.05


def test_predict_masks_any_image_size_and_degenerate_boxes(model):
    boxes = np.array(
        [[[0.1, 0.1, 0.6, 0.4], [0.5, 0.5, 0.5, 0.5], [np.nan, 0, 1, 1], [-1, -1, 2, 2]]],
        np.float32,
    )
    for shape in [(50, 90, 3), (120, 40, 3)]:
        image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
        masks = model.predict_masks(image[None], boxes).numpy()
        assert masks.shape == (1, 4, 16, 16)
        assert np.isfinite(masks).all() and (masks >= 0).all() and (masks <= 1).all()


def test_predict_masks_zero_boxes(model):
    image = np.zeros((32, 32, 3), np.uint8)
    assert model.predict_masks(image[None], np.zeros((1, 0, 4), np.float32)).shape == (1, 0, 16, 16)


def test_detect_returns_image_frame_boxes(model):
    images = [np.zeros((40, 80, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)]
    dets = model.detect(images)
    assert dets["detection_masks"].shape == (2, 100, 16, 16)
    boxes = dets["detection_boxes"].numpy()
    assert (boxes >= 0).all() and (boxes <= 1).all()


def test_resize_and_pad_frames():
    image = np.full((50, 100, 3), 255, np.uint8)
    padded, valid = preprocess.resize_and_pad(image, (64, 64))
    np.testing.assert_allclose(valid.numpy(), [32 / 64, 1.0])
    assert padded.shape == (64, 64, 3)
    assert float(tf.reduce_max(tf.abs(padded[40:]))) == 0.0  # padding rows are zero
    box = tf.constant([[0.5, 0.5, 1.0, 1.0]])
    model_box = preprocess.image_to_model_boxes(box, valid)
    np.testing.assert_allclose(model_box.numpy(), [[0.25, 0.5, 0.5, 1.0]])
    np.testing.assert_allclose(preprocess.model_to_image_boxes(model_box, valid).numpy(), box)


def test_unknown_backbone_and_levels_fail_clearly():
    cfg = cfg_lib.tiny_model_config()
    cfg.head.input_levels = ["2_0", "2"]
    with pytest.raises(ValueError, match="input_levels"):
        deepmac_model.build_deepmac_model(cfg)
    cfg = cfg_lib.tiny_model_config()
    cfg.backbone.type = "resnet"
    with pytest.raises(ValueError, match="hourglass"):
        deepmac_model.build_deepmac_model(cfg)
