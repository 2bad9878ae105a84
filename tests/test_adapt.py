"""``deepmac-nb adapt``: boxes-only records, the fine-tuning config, bad input, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from deepmac_nb.cli import main

SAMPLE_CONF = 0.8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random Deep-MAC model dir (params.yaml + ckpt-1), as training writes it."""
    from deepmac_nb.inference import export
    from deepmac_nb.modeling import config as cfg_lib

    model = export._built(cfg_lib.tiny_model_config(image_size=64))
    return export.save_model_dir(model, tmp_path_factory.mktemp("source") / "M")


def _photo_set(tmp_path, conf=0.9, corrupt=False):
    images = tmp_path / "images"
    images.mkdir()
    if corrupt:
        (images / "a.jpg").write_bytes(b"not a jpeg at all")
    else:
        pixels = np.full((48, 64, 3), 40, np.uint8)
        pixels[10:30, 20:50] = 220
        Image.fromarray(pixels).save(images / "a.jpg")
    md = {
        "images": [
            {"file": "a.jpg", "detections": [{"category": "1", "conf": conf,
                                              "bbox": [0.3, 0.2, 0.5, 0.45]}]}
        ],
        "detection_categories": {"1": "animal"},
    }  # fmt: skip
    (tmp_path / "md.json").write_text(json.dumps(md))
    return tmp_path / "md.json", images


def _adapt(model, md, images, out, *extra):
    argv = ["adapt", "--model", str(model), "--detections", str(md), "--images", str(images)]
    return main([*argv, "--out", str(out), *extra])


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_bad_paths_fail_before_anything_is_written(tmp_path, capsys, model_dir):
    md, images = _photo_set(tmp_path)
    out = tmp_path / "out"
    assert _adapt(tmp_path, md, images, out) == 2
    _one_line_error(capsys, "not a model dir")
    assert _adapt(model_dir, tmp_path / "none.json", images, out) == 2
    _one_line_error(capsys, "detections file not found")
    assert _adapt(model_dir, md, images, out, "--min-conf", "1.5") == 2
    _one_line_error(capsys, "--min-conf")
    (tmp_path / "taken").mkdir()
    assert _adapt(model_dir, md, images, tmp_path / "taken") == 2
    _one_line_error(capsys, "exists")
    assert not out.exists() and not (tmp_path / "out.partial").exists()


def test_no_confident_detection_is_refused(tmp_path, capsys, model_dir):
    md, images = _photo_set(tmp_path, conf=0.5)
    assert _adapt(model_dir, md, images, tmp_path / "out") == 2
    _one_line_error(capsys, "no detection with confidence >= 0.8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "md.json"]


def test_unreadable_images_are_refused(tmp_path, capsys, model_dir):
    md, images = _photo_set(tmp_path, corrupt=True)
    assert _adapt(model_dir, md, images, tmp_path / "out") == 2
    _one_line_error(capsys, "none of the 1 images", "corrupt image")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "md.json"]


def test_deepmarc_model_dir_is_refused(tmp_path, capsys):
    from official.core import train_utils

    from deepmac_nb.train import experiments

    marc = tmp_path / "marc"
    marc.mkdir()
    train_utils.serialize_config(experiments.get_experiment("deepmarc_shapes_quick"), str(marc))
    md, images = _photo_set(tmp_path)
    assert _adapt(marc, md, images, tmp_path / "out") == 2
    _one_line_error(capsys, "Deep-MARC")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_records_hold_boxes_and_no_mask_supervision(tmp_path, model_dir):
    import tensorflow as tf
    from official.vision.dataloaders import tf_example_decoder

    from deepmac_nb.train import adapt, task

    md, images = _photo_set(tmp_path)
    options = adapt.AdaptOptions(min_conf=SAMPLE_CONF, steps=10)
    entries = adapt.confident_entries(md, images, options)
    counts = adapt.write_records(entries, images, tmp_path / "rec")
    assert counts == {"images": 1, "boxes": 1, "skipped": {}}
    records = str(tmp_path / "rec" / "adapt-*.tfrecord")
    params = adapt.adapt_params(adapt.read_model_params(model_dir), model_dir, records, options)
    decoder = tf_example_decoder.TfExampleDecoder(include_mask=True)
    raw = next(iter(tf.data.TFRecordDataset(tf.io.gfile.glob(records))))
    decoded = decoder.decode(raw)
    np.testing.assert_allclose(decoded["groundtruth_boxes"], [[0.2, 0.3, 0.65, 0.8]], atol=1e-6)
    assert decoded["groundtruth_instance_masks"].shape == (1, 48, 64)
    assert float(tf.reduce_max(decoded["groundtruth_instance_masks"])) == 0.0
    deepmac = task.DeepMACTask(params.task)
    parser = deepmac.parser_settings(params.task.train_data)
    assert parser.allowed_mask_ids == (0,)
    _, labels = next(iter(deepmac.build_inputs(params.task.train_data)))
    assert float(tf.reduce_sum(labels["mask_weights"])) == 0.0
    assert float(tf.reduce_sum(labels["box_weights"])) > 0


def test_adapt_params_train_only_the_weak_mask_losses(tmp_path, model_dir):
    from deepmac_nb.train import adapt

    params = adapt.adapt_params(
        adapt.read_model_params(model_dir), model_dir, "x-*.tfrecord",
        adapt.AdaptOptions(steps=40),
    )  # fmt: skip
    losses = params.task.losses
    assert (losses.object_center_weight, losses.scale_weight, losses.offset_weight) == (0, 0, 0)
    assert losses.mask_weight == 0.0
    assert losses.weak.box_consistency_weight > 0 and losses.weak.color_consistency_weight > 0
    assert params.task.freeze_backbone and params.task.init_checkpoint_modules == "all"
    assert params.task.init_checkpoint == str(model_dir)
    assert params.task.model.input_size == [64, 64, 3]
    assert params.trainer.train_steps == 40


@pytest.mark.large
def test_adapt_end_to_end_on_the_camera_trap_sample(tmp_path, model_dir, monkeypatch):
    """Tiny model, 2 steps, interrupted once before training: the rerun resumes with the
    same records, the mask head moves, the frozen backbone does not, and ``segment``
    runs on the adapted model dir."""
    from conftest import camera_traps_or_skip

    from deepmac_nb.inference import export
    from deepmac_nb.train import adapt, runner

    ds = camera_traps_or_skip("mdv5")
    out = tmp_path / "M2"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(runner, "train", interrupted)
        with pytest.raises(KeyboardInterrupt):
            _adapt(model_dir, ds.detections, ds.images, out, "--steps", "2")
    assert not out.exists()
    assert (tmp_path / "M2.partial" / "adapt_records" / "summary.json").is_file()

    def rewritten(*args, **kwargs):
        raise AssertionError("the rerun must reuse the records")

    monkeypatch.setattr(adapt, "write_records", rewritten)
    assert _adapt(model_dir, ds.detections, ds.images, out, "--steps", "2") == 0
    assert not (tmp_path / "M2.partial").exists()
    summary = json.loads((out / "adapt_summary.json").read_text())
    assert summary["images"] == 7 and summary["boxes"] == 12  # the confident MDv5 boxes
    assert not (out / "adapt_records").exists()
    before, after = export.load_model_dir(model_dir), export.load_model_dir(out)
    for a, b in zip(before.backbone.get_weights(), after.backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(before.mask_head.get_weights(), after.mask_head.get_weights(), strict=True)
    ]
    assert any(moved)
    argv = ["segment", "--model", str(out), "--detections", str(ds.detections)]
    assert main([*argv, "--images", str(ds.images), "--out", str(tmp_path / "seg")]) == 0
    assert (tmp_path / "seg" / "masks_coco_rle.json").is_file()


def test_large_photos_are_stored_downscaled(tmp_path):
    import tensorflow as tf
    from official.vision.dataloaders import tf_example_decoder

    from deepmac_nb.train import adapt

    md, images = _photo_set(tmp_path)  # 64 x 48
    entries = adapt.confident_entries(md, images, adapt.AdaptOptions(min_conf=SAMPLE_CONF))
    adapt.write_records(entries, images, tmp_path / "rec", max_side=32)
    raw = next(
        iter(tf.data.TFRecordDataset(str(tmp_path / "rec" / "adapt-00000-of-00001.tfrecord")))
    )
    decoded = tf_example_decoder.TfExampleDecoder(include_mask=True).decode(raw)
    assert decoded["image"].shape == (24, 32, 3)
    assert decoded["groundtruth_instance_masks"].shape == (1, 24, 32)
    np.testing.assert_allclose(decoded["groundtruth_boxes"], [[0.2, 0.3, 0.65, 0.8]], atol=1e-6)
    # The bright square (rows 10-30, cols 20-50 of 48 x 64) is still where it was.
    image = decoded["image"].numpy()
    assert image[10, 17].mean() > 150 and image[2, 2].mean() < 80
