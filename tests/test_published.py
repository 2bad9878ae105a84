"""The two published box-prompted models, as fakes built the way their exporters build them.

* Official DeepMAC (``deepmac_1024x1024_coco17.tar.gz``): the TF OD API's
  ``exporter_lib_v2.DetectionFromImageAndBoxModule`` over our tiny Deep-MAC model:
  unnamed ``TensorSpec``s (input names from the arguments ``input_tensor``, ``boxes``),
  every output cast to float32, classes + 1, the ``shape_utils.assert_box_normalized``
  check (min >= 0, max <= 1.1) on the boxes, a mask output of unknown static size and
  CenterNet's own 100 detections, unrelated to the given boxes.
* Deep-MARC (``deepmarc_spinenet.zip``): written by Model Garden's own
  ``export_saved_model_lib.export_inference_graph`` with the ``deepmac_maskrcnn`` serving
  ``DetectionModule`` (``image_and_boxes_tensor``: inputs ``images``, ``boxes``, output
  ``detection_masks`` only), as an export folder and zipped as ``deepmarc_spinenet/``.
"""

from __future__ import annotations

import os
import tarfile
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from conftest import DEEPMARC_TINY_MODEL

from deepmac_nb import loading, pretrained
from deepmac_nb.inference import export
from deepmac_nb.modeling import config as cfg_lib
from deepmac_nb.modeling import preprocess

MAX_DETECTIONS = 100  # CenterNet's max_box_predictions in the official pipeline.config
CLIPPED_CASES = [  # (box as given, the same box clipped to the image)
    ([-0.1, -0.1, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]),
    ([0.2, -0.002, 0.7, 0.6], [0.2, 0.0, 0.7, 0.6]),  # a MegaDetector rounding
    ([0.4, 0.3, 1.2, 1.05], [0.4, 0.3, 1.0, 1.0]),
]


def _image(height=48, width=80, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def _assert_box_normalized(boxes, maximum_normalized_coordinate=1.1):
    """The OD API's ``shape_utils.assert_box_normalized``."""
    return tf.Assert(
        tf.logical_and(
            tf.less_equal(tf.reduce_max(boxes), maximum_normalized_coordinate),
            tf.greater_equal(tf.reduce_min(boxes), 0),
        ),
        [boxes],
    )


class _OfficialStyleModule(tf.Module):
    """``DetectionFromImageAndBoxModule`` around a Deep-MAC model (module docstring)."""

    def __init__(self, model):
        super().__init__()
        self._model = model
        self._variables = list(model.variables)

    @tf.function(
        input_signature=[
            tf.TensorSpec(shape=[1, None, None, 3], dtype=tf.uint8),
            tf.TensorSpec(shape=[1, None, 4], dtype=tf.float32),
        ]
    )
    def __call__(self, input_tensor, boxes):
        with tf.control_dependencies([_assert_box_normalized(boxes)]):
            boxes = tf.identity(boxes)
        masks, raw, valid = export.image_masks_and_raw(self._model, input_tensor[0], boxes[0])
        # The OD API graph gives the mask output no static size.
        masks = tf.raw_ops.PlaceholderWithDefault(input=masks, shape=[None, None, None])
        dets = self._model.decode(raw)
        count = tf.shape(dets["detection_scores"])[1]
        pad = tf.maximum(MAX_DETECTIONS - count, 0)
        detections = {
            "detection_masks": masks[None],
            "detection_boxes": tf.pad(
                preprocess.model_to_image_boxes(dets["detection_boxes"], valid),
                [[0, 0], [0, pad], [0, 0]],
            )[:, :MAX_DETECTIONS],
            "detection_scores": tf.pad(dets["detection_scores"], [[0, 0], [0, pad]])[
                :, :MAX_DETECTIONS
            ],
            # 0-based class ids + label_id_offset 1, as the exporter adds it.
            "detection_classes": tf.pad(dets["detection_classes"] - 1, [[0, 0], [0, pad]])[
                :, :MAX_DETECTIONS
            ]
            + 1,
            "num_detections": tf.minimum(dets["num_detections"], MAX_DETECTIONS),
        }
        return {key: tf.cast(value, tf.float32) for key, value in detections.items()}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """(model, official folder, its .tar.gz) of a tiny random Deep-MAC model."""
    root = tmp_path_factory.mktemp("official")
    model = export._built(cfg_lib.tiny_model_config(image_size=64))
    folder = root / pretrained.MODEL_NAME
    module = _OfficialStyleModule(model)
    concrete = module.__call__.get_concrete_function()
    tf.train.Checkpoint(model=model).save(str(folder / "checkpoint" / "ckpt"))
    tf.saved_model.save(module, str(folder / "saved_model"), signatures=concrete)
    (folder / "pipeline.config").write_text("model { center_net { } }\n")
    archive = root / pretrained.PUBLISHED["deepmac"].archive
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=pretrained.MODEL_NAME)
    return model, folder, archive


@pytest.mark.large
def test_official_fake_is_as_strict_as_the_real_graph(official):
    _, folder, _ = official
    fn = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]
    assert sorted(fn.structured_input_signature[1]) == ["boxes", "input_tensor"]
    assert fn.structured_outputs["detection_masks"].shape[-1] is None
    image = tf.constant(_image()[None])
    out = fn(input_tensor=image, boxes=tf.constant([[[0.1, 0.1, 0.5, 0.5]]]))
    assert out["detection_boxes"].shape == (1, MAX_DETECTIONS, 4)
    assert all(v.dtype == tf.float32 for v in out.values())
    with pytest.raises(tf.errors.InvalidArgumentError):  # what a raw MegaDetector box did
        fn(input_tensor=image, boxes=tf.constant([[[0.2, -0.002, 0.7, 0.6]]]))


@pytest.mark.parametrize("source", ["archive", "folder", "load_official"])
@pytest.mark.large
def test_official_fake_loads_and_clips_boxes(official, tmp_path, source):
    model, folder, archive = official
    if source == "archive":
        predictor = loading.load(archive, cache_dir=tmp_path)
    elif source == "folder":
        predictor = loading.load(folder)
    else:
        predictor = pretrained.load_official(archive, cache_dir=tmp_path)
    assert (predictor.backend, predictor.mask_size) == ("saved_model", 16)
    image = _image()
    given = np.array([c[0] for c in CLIPPED_CASES], np.float32)
    clipped = np.array([c[1] for c in CLIPPED_CASES], np.float32)
    want = model.predict_masks(image[None], clipped[None]).numpy()[0]
    np.testing.assert_allclose(predictor.predict_box_masks(image, given), want, atol=1e-5)
    masks = predictor.predict(image, given)
    np.testing.assert_array_equal(masks, predictor.predict(image, clipped))
    rows, cols = np.nonzero(masks[0] > 0)  # [-0.1, -0.1, 0.5, 0.5]: only pixels of [0, 0.5]
    assert rows.max() <= 0.5 * 47 and cols.max() <= 0.5 * 79
    detections = predictor.detect(image, min_score=0.0)
    assert len(detections["scores"]) <= MAX_DETECTIONS and detections["classes"].min() >= 1


@pytest.fixture(scope="module")
def deepmarc(tmp_path_factory):
    """(DeepMARCModel, Model Garden export folder, deepmarc_spinenet.zip) with the same
    random weights, written by Model Garden's own exporter."""
    from official.projects.deepmac_maskrcnn.serving import detection as mg_detection
    from official.vision.serving import export_saved_model_lib

    from deepmac_nb.deepmarc.predictor import DeepMARCModel
    from deepmac_nb.train import experiments

    root = tmp_path_factory.mktemp("deepmarc")
    params = experiments.get_experiment("deepmarc_shapes_quick")
    params.override({"task": {"model": DEEPMARC_TINY_MODEL}}, is_strict=True)
    wrapper = DeepMARCModel.from_config(params.task.model)
    ckpt = tf.train.Checkpoint(model=wrapper.model).write(str(root / "ckpt" / "ckpt"))
    size = [64, 64]
    module = mg_detection.DetectionModule(
        params=params, batch_size=1, input_image_size=size, num_channels=3
    )
    export_dir = root / "export"
    export_saved_model_lib.export_inference_graph(
        input_type="image_and_boxes_tensor",
        batch_size=1,
        input_image_size=size,
        params=params,
        checkpoint_path=ckpt,
        export_dir=str(export_dir),
        export_module=module,
        export_checkpoint_subdir="checkpoint",
        export_saved_model_subdir="saved_model",
    )
    archive = root / pretrained.PUBLISHED["deepmarc"].archive
    with zipfile.ZipFile(archive, "w") as zf:
        for dirpath, _, files in os.walk(export_dir / "saved_model"):
            for name in files:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, export_dir / "saved_model")
                zf.write(path, f"deepmarc_spinenet/{rel}")
    return wrapper, export_dir, archive


@pytest.mark.large
def test_deepmarc_fake_loads_from_zip_export_and_saved_model(deepmarc, tmp_path):
    wrapper, export_dir, archive = deepmarc
    assert {p.name for p in export_dir.iterdir()} >= {"params.yaml", "checkpoint", "saved_model"}
    assert loading.artifact_kind(export_dir) == "model_garden_export"
    image = _image(50, 90)
    given = np.array([c[0] for c in CLIPPED_CASES], np.float32)
    clipped = np.array([c[1] for c in CLIPPED_CASES], np.float32)
    want = wrapper.predict_masks(image[None], clipped[None]).numpy()[0]
    predictors = [
        loading.load(export_dir),
        loading.load(export_dir / "saved_model"),
        loading.load(archive, cache_dir=tmp_path / "cache"),
        pretrained.load_published("deepmarc", None, tmp_path / "dl", url=archive.as_uri()),
    ]
    for predictor in predictors:
        assert predictor.mask_size == 16
        np.testing.assert_allclose(predictor.predict_box_masks(image, given), want, atol=1e-4)
        with pytest.raises(ValueError, match="no detector outputs"):
            predictor.detect(image)
    masks = predictors[2].predict(image, given)
    np.testing.assert_array_equal(masks, predictors[2].predict(image, clipped))
    assert predictors[2].predict(image, []).shape == (0, 50, 90)
