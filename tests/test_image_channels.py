"""``mask.image_channels``: the box's crop of the input image joins the mask head's input,
in the model, in training, and in both exports."""

import numpy as np
import pytest
import tensorflow as tf

from deepmac_nb import loading
from deepmac_nb.inference import export
from deepmac_nb.modeling import config as cfg_lib
from deepmac_nb.modeling import crops

BOXES = np.array([[0.1, 0.2, 0.6, 0.7], [0.35, 0.05, 0.95, 0.55]], np.float32)


def _config(image_channels: bool):
    config = cfg_lib.tiny_model_config(image_size=64)
    config.mask.image_channels = image_channels
    return config


def _image(seed=0, height=48, width=80):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    return export._built(_config(True))


def _first_kernel_inputs(model) -> int:
    kernels = [w for w in model.mask_head.weights if len(w.shape) == 4]
    return int(kernels[0].shape[2])


def test_the_head_reads_three_more_channels():
    off, on = export._built(_config(False)), export._built(_config(True))
    assert _first_kernel_inputs(on) == _first_kernel_inputs(off) + 3


def test_the_pixels_under_the_box_reach_the_mask(model):
    """Same raw head outputs, other pixels in the ``IMAGE`` entry: only the crop differs,
    so the masks must differ; without the channels they could not."""
    inputs, _ = model.preprocess(_image()[None])
    raw = model.raw_outputs(inputs, training=False)
    boxes = crops.sanitize_boxes(tf.constant(BOXES[None]))
    stage = model.mask_stages(raw)[-1]
    base = model.stage_mask_logits(raw, stage, boxes, False).numpy()
    other = dict(raw, input_image=[tf.reverse(t, axis=[1]) for t in raw["input_image"]])
    changed = model.stage_mask_logits(other, stage, boxes, False).numpy()
    assert np.abs(base - changed).max() > 1e-4


def test_saved_model_and_tflite_carry_the_image_crop(model, tmp_path):
    image = _image(1)
    want = model.predict_masks(image[None], BOXES[None]).numpy()[0]
    saved = export.export_saved_model(model, tmp_path / "sm")
    np.testing.assert_allclose(loading.load(saved).predict_box_masks(image, BOXES), want, atol=1e-5)
    lite = export.export_tflite(model, tmp_path / "m.tflite", max_boxes=4)
    np.testing.assert_allclose(loading.load(lite).predict_box_masks(image, BOXES), want, atol=1e-3)


def test_head_input_channels_counts_what_the_model_feeds(model):
    inputs, _ = model.preprocess(_image()[None])
    raw = model.raw_outputs(inputs, training=False)
    flat, indices = crops.flatten_boxes(tf.constant(BOXES[None]))
    seen = {}
    head = model.mask_head
    model.mask_head = lambda x, training=None: seen.setdefault("shape", x.shape) and x[..., 0]
    try:
        model.flat_mask_logits(raw, 0, flat, indices)
    finally:
        model.mask_head = head
    assert seen["shape"][-1] == model.config.mask.head_input_channels()


def test_the_coco_mini_image_recipe_changes_only_the_input_the_schedule_and_the_bn():
    from deepmac_nb.train import experiments

    base = experiments.get_experiment("deepmac_coco_mini_voc").as_dict()
    img = experiments.get_experiment("deepmac_coco_mini_voc_img").as_dict()
    assert not base["task"]["model"]["mask"]["image_channels"]
    assert img["task"]["model"]["mask"]["image_channels"]
    assert (img["task"]["precise_bn_batches"], base["task"]["precise_bn_batches"]) == (100, 0)
    img["task"]["model"]["mask"]["image_channels"] = False
    img["task"]["precise_bn_batches"] = 0
    assert img["task"] == base["task"]  # same data, mask split, losses and model otherwise
    lr = img["trainer"]["optimizer_config"]["learning_rate"]["cosine"]
    assert img["trainer"]["train_steps"] == lr["decay_steps"] == 800
    warmup = img["trainer"]["optimizer_config"]["warmup"]["linear"]
    assert warmup == base["trainer"]["optimizer_config"]["warmup"]["linear"]
