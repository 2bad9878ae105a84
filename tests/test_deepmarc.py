"""Deep-MARC (Model Garden's deep-mask-head Mask R-CNN): configs, partial supervision,
CPU training through the CLI, box-prompted masks behind Deep-MAC's interface."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    camera_trap_prompts,
    run_signature_in_subprocess,
    tflite_ops_by_signature,
    tiny_params,
)
from official.core import task_factory

from deepmac_nb import loading, splits
from deepmac_nb.cli import main
from deepmac_nb.deepmarc import experiments as marc
from deepmac_nb.deepmarc import predictor as marc_predictor
from deepmac_nb.train import experiments
from deepmac_nb.train import params as train_params

MASK_SIZE = 16  # crop 8 x upsample 2
BOXES = np.array([[0.1, 0.2, 0.6, 0.7], [0.4, 0.0, 1.0, 0.5], [0.3, 0.3, 0.3, 0.3]], np.float32)
TFLITE_TOLERANCE = 1e-3  # max abs difference of mask probabilities vs the SavedModel


def _train_glob(data_root) -> str:
    return str(data_root / "tfrecords" / "train-*.tfrecord")


def tiny_marc_params(data_root):
    return tiny_params(data_root, steps=2, experiment="deepmarc_smoke")


@pytest.fixture(scope="module")
def trained_dir(tiny_shapes, tmp_path_factory):
    """Two CPU training steps of ``deepmarc_smoke`` through ``deepmac-nb train``."""
    model_dir = tmp_path_factory.mktemp("marc_run")
    override = f"task.dataset=,task.train_data.input_path={_train_glob(tiny_shapes)}"
    args = ["train", "--experiment", "deepmarc_smoke", "--model-dir", str(model_dir),
            "--strategy", "cpu", "--steps", "2", "--mask-head", "hourglass20",
            "--params-override", override]  # fmt: skip
    assert main(args) == 0
    return model_dir


@pytest.fixture(scope="module")
def marc_model(trained_dir):
    return marc_predictor.DeepMARCModel.from_model_dir(trained_dir)


def _image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


# --- configs -------------------------------------------------------------------------


def test_experiments_registered_next_to_deepmac():
    for name in marc.EXPERIMENTS:
        params = experiments.get_experiment(name)
        params.validate()
        model = params.task.model
        assert isinstance(params.task, marc.DeepMARCTaskConfig)
        assert model.use_gt_boxes_for_masks and model.mask_head.class_agnostic
        assert model.mask_head.upsample_factor == 2


def test_paper_configs_carry_the_published_values():
    r50 = experiments.get_experiment("deepmarc_r50_hg52_voc")
    m = r50.task.model
    assert (m.backbone.type, m.backbone.resnet.model_id, m.input_size) == (
        "resnet",
        50,
        [1024] * 2 + [3],
    )
    assert (m.mask_head.convnet_variant, m.mask_head.num_filters, m.mask_roi_aligner.crop_size) == (
        "hourglass52", 64, 32,
    )  # fmt: skip
    assert r50.task.allowed_mask_class_ids == list(splits.VOC_IDS)
    assert (r50.task.train_data.global_batch_size, r50.trainer.train_steps) == (64, 70000)
    assert r50.trainer.optimizer_config.learning_rate.stepwise.boundaries == [50000, 65000]
    for split, ids in (("voc", splits.VOC_IDS), ("non_voc", splits.NON_VOC_IDS)):
        sp = experiments.get_experiment(f"deepmarc_spinenet143_hg52_{split}")
        assert sp.task.model.backbone.spinenet.model_id == "143"
        assert sp.task.model.input_size == [1280, 1280, 3]
        assert (sp.task.train_data.global_batch_size, sp.trainer.train_steps) == (256, 231000)
        assert sp.task.allowed_mask_class_ids == list(ids)
        assert sp.task.train_data.parser.aug_scale_min == 0.1


def test_cpu_configs_read_deepmacs_data():
    quick = experiments.get_experiment("deepmarc_shapes_quick")
    assert quick.task.dataset == "shapes" and quick.task.allowed_mask_class_ids == [1, 2, 3, 4]
    assert quick.task.model.num_classes == 9 and quick.task.train_data.dtype == "float32"
    coco = experiments.get_experiment("deepmarc_coco_mini_voc")
    assert coco.task.dataset == "coco_mini" and coco.task.allowed_mask_class_ids == list(
        splits.VOC_IDS
    )


def test_dataset_auto_prep_fills_the_paths(monkeypatch):
    from deepmac_nb.train import data_sources

    fake = {("shapes", "default"): ("tr*", "va*", "val.json", "images")}
    monkeypatch.setattr(data_sources, "_shapes", lambda name, preset: fake[name, preset])
    params = data_sources.prepare_experiment_data(
        experiments.get_experiment("deepmarc_shapes_quick")
    )
    task = params.task
    got = (task.train_data.input_path, task.validation_data.input_path, task.annotation_file)
    assert got == ("tr*", "va*", "val.json") and task.validation_images == "images"


def test_set_mask_head():
    params = experiments.get_experiment("deepmarc_shapes_quick")  # crop 16
    assert marc.set_mask_head(params, "default").task.model.mask_head.convnet_variant == "default"
    with pytest.raises(ValueError, match="hourglass100"):
        marc.set_mask_head(params, "hg9")
    with pytest.raises(ValueError, match="crop_size"):
        marc.set_mask_head(params, "hourglass52")  # halves 5 times: 16 px is too small
    params = train_params.build_params("deepmarc_r50_hg52_voc", mask_head="hourglass100")
    assert params.task.model.mask_head.convnet_variant == "hourglass100"


def test_unknown_experiment_lists_deepmarc(capsys):
    assert main(["train", "--experiment", "nope", "--model-dir", "/tmp/x"]) == 2
    err = capsys.readouterr().err
    assert "deepmarc_shapes_quick" in err and "deepmac_shapes_quick" in err


def test_unknown_mask_head_refused(tmp_path, capsys):
    args = ["train", "--experiment", "deepmarc_shapes_quick", "--model-dir", str(tmp_path),
            "--mask-head", "resnet4"]  # fmt: skip
    assert main(args) == 2
    assert "hourglass20" in capsys.readouterr().err


def test_missing_input_path_is_explained():
    params = experiments.get_experiment("deepmarc_r50_hg52_voc")
    task = task_factory.get_task(params.task)
    with pytest.raises(ValueError, match="deepmac-nb prepare"):
        task.build_inputs(params.task.train_data)


# --- partial supervision and training --------------------------------------------------


def _forward(model, images, labels, classes):
    return model(
        images,
        image_shape=labels["image_info"][:, 1, :],
        anchor_boxes=labels["anchor_boxes"],
        gt_boxes=labels["gt_boxes"],
        gt_classes=classes,
        gt_masks=labels["gt_masks"],
        training=True,
    )


def _mixed_batch(task, data_config):
    """The first (shuffled) batch with seen and unseen instances, plus a mask of each."""
    for images, labels in task.build_inputs(data_config).take(16):
        classes = labels["gt_classes"]
        seen_ids = tf.constant(splits.SHAPES_SEEN_IDS, classes.dtype)
        seen = tf.reduce_any(classes[..., None] == seen_ids, -1)
        unseen = (classes > 0) & ~seen
        if bool(tf.reduce_any(seen)) and bool(tf.reduce_any(unseen)):
            return images, labels, seen, unseen
    pytest.fail("no batch of the fixture holds both seen and unseen instances")


@pytest.mark.large
def test_unseen_instances_carry_no_mask_loss(tiny_shapes):
    params = tiny_marc_params(tiny_shapes)
    task = task_factory.get_task(params.task)
    model = marc_predictor.DeepMARCModel.from_config(params.task.model).model
    images, labels, seen, unseen = _mixed_batch(task, params.task.train_data)
    classes = labels["gt_classes"]

    out = _forward(model, images, labels, classes)
    loss = task.build_losses(out, labels)["mask_loss"]
    assert float(loss) > 0
    # Inverting every unseen target leaves the loss bit-identical.
    flipped = dict(out)
    flipped["mask_targets"] = tf.where(unseen[..., None, None], 1.0 - out["mask_targets"],
                                       out["mask_targets"])  # fmt: skip
    assert float(task.build_losses(flipped, labels)["mask_loss"]) == float(loss)

    # Only unseen instances (seen ones relabelled unseen), or none: exactly 0, zero gradient.
    for relabelled in (
        tf.where(seen, tf.constant(5, classes.dtype), classes),
        -tf.ones_like(classes),
    ):
        with tf.GradientTape() as tape:
            out = _forward(model, images, labels, relabelled)
            zero = task.build_losses(out, labels)["mask_loss"]
        assert float(zero) == 0.0
        grads = tape.gradient(zero, model.mask_head.trainable_variables)
        assert any(g is not None for g in grads)  # connected, and yet exactly zero
        assert all(g is None or not np.any(g.numpy()) for g in grads)


@pytest.mark.large
def test_two_cli_steps_write_checkpoint_and_config(trained_dir):
    assert tf.train.latest_checkpoint(str(trained_dir)).endswith("ckpt-2")
    params = marc_predictor.read_params(trained_dir)
    assert marc_predictor.is_deepmarc_params(params)
    assert params["task"]["model"]["mask_head"]["convnet_variant"] == "hourglass20"


# --- box-prompted inference ------------------------------------------------------------


@pytest.mark.large
def test_predict_masks_one_per_box(marc_model):
    images = np.stack([_image(50, 90, 0), _image(50, 90, 1)])
    boxes = np.array([[[0.1, 0.1, 0.6, 0.4], [0.2, 0.5, 0.9, 0.9], [0.0, 0.0, 1.0, 1.0]]] * 2)
    masks = marc_model.predict_masks(images, boxes.astype(np.float32)).numpy()
    assert marc_model.mask_size == MASK_SIZE and masks.shape == (2, 3, MASK_SIZE, MASK_SIZE)
    assert np.all((masks >= 0) & (masks <= 1))


@pytest.mark.large
def test_box_frame_matches_model_gardens_serving_transform(marc_model):
    from official.projects.deepmac_maskrcnn.serving import detection
    from official.vision.ops import preprocess_ops

    boxes = tf.constant([[[0.1, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0]]])
    image = tf.zeros([50, 90, 3])
    _, info = preprocess_ops.resize_and_crop_image(image, [64, 64], [64, 64], 1.0, 1.0)
    want = detection.reverse_input_box_transformation(boxes, info[None])
    _, valid = marc_model.preprocess(tf.zeros([1, 50, 90, 3], tf.uint8))
    np.testing.assert_allclose(marc_model.pixel_boxes(boxes, valid), want, atol=1e-4)


@pytest.mark.large
def test_no_boxes_and_boxes_outside_the_image(marc_model):
    images = _image(40, 60)[None]
    empty = marc_model.predict_masks(images, np.zeros((1, 0, 4), np.float32))
    assert empty.shape == (1, 0, MASK_SIZE, MASK_SIZE)
    odd = np.array([[[-1, -1, 2, 2], [1.5, 1.5, 2, 2], [0.5, 0.5, 0.5, 0.5], [np.nan, 0, 1, 1]]])
    masks = marc_model.predict_masks(images, odd.astype(np.float32)).numpy()
    assert masks.shape == (1, 4, MASK_SIZE, MASK_SIZE) and np.all(np.isfinite(masks))


@pytest.mark.large
def test_project_predictor_wraps_deepmarc(marc_model):
    predictor = marc_predictor.as_predictor(marc_model)
    image = _image(50, 90)
    boxes = np.array([[0.1, 0.1, 0.6, 0.4], [0.2, 0.5, 0.9, 0.9]], np.float32)
    want = marc_model.predict_masks(image[None], boxes[None]).numpy()[0]
    np.testing.assert_allclose(predictor.predict_box_masks(image, boxes), want, atol=1e-5)
    assert predictor.predict(image, boxes).shape == (2, 50, 90)
    assert predictor.predict(image, np.zeros((0, 4))).shape == (0, 50, 90)


@pytest.mark.large
def test_predictor_runs_the_box_prompted_protocol(marc_model, tiny_shapes):
    from deepmac_nb.evaluation import runner

    predictor = marc_predictor.as_predictor(marc_model)
    results, _ = runner.run_box_prompted(
        str(tiny_shapes / "val.json"), tiny_shapes / "images", predictor.predict,
        max_images=2, progress=False,
    )  # fmt: skip
    assert results and all("segmentation" in r for r in results)


def test_model_dir_errors(tmp_path):
    with pytest.raises(ValueError, match=r"params\.yaml"):
        marc_predictor.DeepMARCModel.from_model_dir(tmp_path)
    (tmp_path / "params.yaml").write_text("task:\n  model:\n    num_classes: 9\n")
    with pytest.raises(ValueError, match="Deep-MARC"):
        marc_predictor.DeepMARCModel.from_model_dir(tmp_path)


@pytest.mark.large
def test_predictor_detect(marc_model):
    detections = marc_predictor.as_predictor(marc_model).detect(_image(50, 90), min_score=0.0)
    count = len(detections["boxes"])
    assert detections["masks"].shape == (count, 50, 90)
    assert np.all((detections["boxes"] >= 0) & (detections["boxes"] <= 1))


@pytest.mark.large
@pytest.mark.parametrize("name", ["deepmarc_r50_hg52_voc", "deepmarc_spinenet143_hg52_voc"])
def test_paper_models_build_at_tiny_input(name):
    config = experiments.get_experiment(name).task.model
    config.input_size = [128, 128, 3]  # a multiple of 2 ** max_level
    model = marc_predictor.DeepMARCModel.from_config(config)
    masks = model.predict_masks(_image(100, 120)[None], tf.constant([[[0.1, 0.1, 0.9, 0.7]]]))
    assert masks.shape == (1, 1, 64, 64)  # crop 32 x upsample 2


# --- export: the same SavedModel signature and TFLite contract as Deep-MAC -------------


@pytest.fixture(scope="module")
def marc_saved(trained_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("marc_export") / "saved_model"
    assert main(["export", "--model-dir", str(trained_dir), "--out", str(out)]) == 0
    return out


@pytest.mark.large
def test_export_loads_with_tensorflow_alone(marc_model, marc_saved, tmp_path):
    image = _image(50, 90)
    out, info = run_signature_in_subprocess(marc_saved, image, BOXES, tmp_path)
    assert not {"deepmac_nb", "official"} & set(info["modules"])
    assert info["inputs"] == {
        "input_tensor": ["uint8", [1, None, None, 3]], "boxes": ["float32", [1, None, 4]]
    }  # fmt: skip
    want = marc_model.predict_masks(image[None], BOXES[None]).numpy()
    assert out["detection_masks"].shape == (1, 3, MASK_SIZE, MASK_SIZE)
    # Another process, another oneDNN thread split: sums can differ in the last bits
    # (1.2e-5 on one mask pixel of 768 was seen); a wrong graph differs by far more.
    np.testing.assert_allclose(out["detection_masks"], want, atol=1e-4)
    dets = marc_model.detect(image[None])
    for key in ("detection_boxes", "detection_scores", "detection_classes", "num_detections"):
        assert out[key].dtype == np.float32, key
        np.testing.assert_allclose(out[key], np.float32(dets[key].numpy()), atol=1e-4)


@pytest.mark.large
def test_exported_predictor_matches_model_dir(trained_dir, marc_saved):
    exported, direct = loading.load(marc_saved), loading.load(trained_dir)
    assert (exported.backend, exported.mask_size) == ("saved_model", MASK_SIZE)
    image = _image(70, 40, seed=3)
    np.testing.assert_allclose(
        exported.predict_box_masks(image, BOXES), direct.predict_box_masks(image, BOXES), atol=1e-5
    )
    assert exported.predict(image, []).shape == (0, 70, 40)
    assert exported.detect(image, min_score=0.0)["masks"].shape[1:] == (70, 40)


@pytest.mark.large
def test_tflite_export_builtin_ops_match_saved_model(trained_dir, marc_saved, tmp_path):
    path = tmp_path / "marc.tflite"
    argv = ["export", "--model-dir", str(trained_dir), "--out", str(path), "--format", "tflite"]
    assert main([*argv, "--max-boxes", "4"]) == 0  # 4 < boxes per photo: chunking runs
    lite, reference = loading.load(path), loading.load(marc_saved)
    ops = tflite_ops_by_signature(path)  # every signature's subgraph, not only the first
    assert sorted(ops) == ["features", "masks"] and all(ops.values()), ops
    assert not [op for names in ops.values() for op in names if op.startswith("CUSTOM")], ops
    prompts = camera_trap_prompts(limit_boxes=10)[::3]
    prompts.append(
        (_image(50, 90), np.array([[-0.4, -0.4, 1.4, 1.4], [0.5, 0.5, 0.5, 0.5]], np.float32))
    )
    worst = 0.0
    for image, boxes in prompts:
        got, want = lite.predict_box_masks(image, boxes), reference.predict_box_masks(image, boxes)
        assert got.shape == want.shape == (len(boxes), MASK_SIZE, MASK_SIZE)
        worst = max(worst, float(np.abs(got - want).max(initial=0.0)))
    assert worst < TFLITE_TOLERANCE, worst


@pytest.mark.large
def test_segment_camera_traps_with_a_deepmarc_export(marc_saved, tmp_path):
    from conftest import camera_traps_or_skip

    from deepmac_nb.inference import megadetector, segment_cli

    ds = camera_traps_or_skip("mdv5")
    out = tmp_path / "seg"
    argv = ["segment", "--model", str(marc_saved), "--detections", str(ds.detections),
            "--images", str(ds.images), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    count = len(megadetector.read_detections(ds.detections, ds.images).images)
    summary = json.loads((out / segment_cli.SUMMARY_FILE).read_text())
    assert summary["images_written"] == count
    assert len(list((out / "instance_masks").glob("*.png"))) == count
    results = json.loads((out / segment_cli.RESULTS_FILE).read_text())
    assert len(results["images"]) == count and results["annotations"]
    assert all(a["segmentation"]["counts"] for a in results["annotations"])


@pytest.mark.large
def test_tflite_export_refuses_zero_boxes(marc_model, tmp_path):
    from deepmac_nb.deepmarc import export as marc_export

    with pytest.raises(ValueError, match="max_boxes"):
        marc_export.export_tflite(marc_model, tmp_path / "m.tflite", max_boxes=0)
