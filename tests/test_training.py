"""Partially supervised training: losses, zero gradient for unseen classes, real runs."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import smoke_train_command, tiny_params
from official.core import task_factory

from deepmac_nb.cli import main
from deepmac_nb.errors import UserError
from deepmac_nb.train import experiments, losses, runner
from deepmac_nb.train import params as train_params


def _loss_history(model_dir: Path, tag: str = "total_loss") -> list[float]:
    values = []
    for path in sorted(glob.glob(str(model_dir / "train" / "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values.append(float(tf.make_ndarray(value.tensor)))
    return values


def test_mask_loss_reference_normalization():
    logits = tf.zeros([3, 4, 4])
    targets = tf.concat([tf.ones([1, 4, 4]), tf.zeros([2, 4, 4])], 0)
    weights = tf.constant([1.0, 1.0, 0.0])
    # CE at logit 0 is log 2 for any target: (log2 + log2) / max(2, 1).
    assert float(losses.mask_loss(logits, targets, weights)) == pytest.approx(np.log(2.0))
    assert float(losses.mask_loss(logits, targets, tf.zeros([3]))) == 0.0


def _batch(task, tiny_shapes, batch=4):
    ds = task.build_inputs(task.task_config.train_data)
    return next(iter(ds.take(1)))


@pytest.mark.large
def test_unseen_instances_contribute_zero_mask_gradient(tiny_shapes):
    params = tiny_params(tiny_shapes)
    task = task_factory.get_task(params.task)
    model = task.build_model()
    images, labels = _batch(task, tiny_shapes)
    unseen = (labels["mask_weights"] == 0) & (labels["box_weights"] > 0)
    assert bool(tf.reduce_any(unseen)), "fixture must hold unseen-class instances"

    def mask_grads(lab):
        with tf.GradientTape() as tape:
            out = model(images, training=True)
            loss = task.build_losses(out, lab, model=model, training=True)["mask_loss"]
        return tape.gradient(loss, model.mask_head.trainable_variables)

    base = mask_grads(labels)
    # Scramble everything about the unseen instances: targets and boxes.
    changed = dict(labels)
    changed["mask_targets"] = tf.where(
        unseen[..., None, None], 1.0 - labels["mask_targets"], labels["mask_targets"]
    )
    changed["boxes"] = tf.where(
        unseen[..., None], tf.constant([0.0, 0.0, 1.0, 1.0]), labels["boxes"]
    )
    for g0, g1 in zip(base, mask_grads(changed), strict=True):
        np.testing.assert_array_equal(g0.numpy(), g1.numpy())
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in base)


def test_unknown_experiment_lists_registered(capsys):
    assert main(["train", "--experiment", "nope", "--model-dir", "/tmp/x"]) == 2
    err = capsys.readouterr().err
    assert "deepmac_shapes_quick" in err and "deepmac_hg104_1024_voc" in err


def test_model_dir_of_another_experiment_refused(tmp_path, capsys):
    (tmp_path / "deepmac_experiment.json").write_text(
        json.dumps({"experiment": "deepmac_coco_mini_voc"})
    )
    assert (
        main(["train", "--experiment", "deepmac_shapes_quick", "--model-dir", str(tmp_path)]) == 2
    )
    assert "deepmac_coco_mini_voc" in capsys.readouterr().err


def test_unknown_mask_head_refused(tmp_path, capsys):
    args = [
        "train",
        "--experiment",
        "deepmac_shapes_quick",
        "--model-dir",
        str(tmp_path),
        "--mask-head",
        "hg9",
    ]
    assert main(args) == 2
    assert "hourglass52" in capsys.readouterr().err


@pytest.mark.large
def test_twenty_steps_loss_decreases_and_checkpoints(tiny_shapes, tmp_path):
    params = tiny_params(tiny_shapes, steps=20)
    runner.train(params, tmp_path, strategy="cpu")
    history = _loss_history(tmp_path)
    assert len(history) == 4, history
    assert history[-1] < history[0], history
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-20")
    assert (tmp_path / "params.yaml").exists()


@pytest.mark.large
def test_nonfinite_loss_stops_with_step_and_keeps_checkpoint(tiny_shapes, tmp_path):
    params = tiny_params(tiny_shapes, steps=20)
    params.task.losses.mask_weight = float("nan")
    with pytest.raises(UserError, match=r"step \d+"):
        runner.train(params, tmp_path, strategy="cpu")


@pytest.mark.large
def test_paper_configs_build_at_tiny_input():
    for name in ["deepmac_hg104_1024_voc", "deepmac_hg104_512_voc"]:
        params = experiments.get_experiment(name)
        params.task.model.input_size = [128, 128, 3]  # HG-52 stacks need 128 | size
        model = task_factory.get_task(params.task).build_model()
        out = model(tf.zeros([1, 128, 128, 3]), training=True)
        stages = len(out["raw_output"]["pixel_embedding"])
        assert stages == 2 and len(model.mask_stages(out["raw_output"])) == (
            1 if "512" in name else 2
        )
    for name in ["deepmac_hg104_1024_non_voc", "deepmac_hg104_1024_coco"]:
        params = experiments.get_experiment(name)
        assert (
            params.trainer.train_steps == 50000 and params.task.train_data.global_batch_size == 128
        )
        opt = params.trainer.optimizer_config
        assert opt.optimizer.adam.epsilon == 1e-7 and opt.warmup.linear.warmup_steps == 5000


def _latest_step(model_dir) -> int:
    latest = tf.train.latest_checkpoint(str(model_dir))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


@pytest.mark.large
def test_resume_after_sigkill(tiny_shapes, tmp_path, tmp_path_factory):
    proc = subprocess.Popen(smoke_train_command(tiny_shapes, tmp_path, 2000), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and _latest_step(tmp_path) < 4:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-run, possibly mid-checkpoint-write
    proc.wait()
    killed_at = _latest_step(tmp_path)
    assert 4 <= killed_at < 2000
    # The checkpoint left by the kill restores completely: every model weight takes the
    # checkpoint's value (none stays at its initialization).
    latest = tf.train.latest_checkpoint(str(tmp_path))
    reader = tf.train.load_checkpoint(latest)
    # The trainer saves the model's checkpoint_items (backbone, head, mask_head) at the
    # root, next to the optimizer and the step counter.
    keys = [
        key
        for key in reader.get_variable_to_shape_map()
        if key.endswith("VARIABLE_VALUE") and "OPTIMIZER_SLOT" not in key
        and not key.startswith(("optimizer/", "save_counter", "global_step"))
    ]  # fmt: skip
    override = smoke_train_command(tiny_shapes, tmp_path, 1)[-1]
    task = task_factory.get_task(train_params.build_params("deepmac_smoke", [override]).task)
    model, fresh = task.build_model(), task.build_model()
    status = tf.train.Checkpoint(**model.checkpoint_items).read(latest)
    status.expect_partial().assert_existing_objects_matched()
    assert len(keys) == len(model.weights) > 0
    # Weight by weight, under its own checkpoint key: write the restored model with the
    # same root items and compare each variable with the killed run's value of that key.
    restored = tf.train.load_checkpoint(
        tf.train.Checkpoint(**model.checkpoint_items).write(
            str(tmp_path_factory.mktemp("restored") / "ckpt")
        )
    )
    restored_keys = [k for k in restored.get_variable_to_shape_map() if k in set(keys)]
    assert sorted(restored_keys) == sorted(keys)
    for key in keys:
        np.testing.assert_array_equal(restored.get_tensor(key), reader.get_tensor(key), key)
    assert not all(
        np.array_equal(w.numpy(), v.numpy())
        for w, v in zip(fresh.weights, model.weights, strict=True)
    )
    done = subprocess.run(
        smoke_train_command(tiny_shapes, tmp_path, killed_at + 4),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # It continued from the checkpoint rather than starting over.
    assert re.search(
        rf"train \| step:\s+{killed_at} \| training until step {killed_at + 4}",
        done.stderr + done.stdout,
    )
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith(f"ckpt-{killed_at + 4}")
    reader = tf.train.load_checkpoint(str(tmp_path))
    iterations = [k for k in reader.get_variable_to_shape_map() if k.startswith("optimizer/iter")]
    assert int(reader.get_tensor(iterations[0])) == killed_at + 4


@pytest.mark.large
def test_init_checkpoint_restores_backbone_across_class_counts(tmp_path):
    from deepmac_nb.inference import export
    from deepmac_nb.modeling import config as cfg_lib
    from deepmac_nb.modeling import deepmac_model

    source = deepmac_model.build_deepmac_model(cfg_lib.tiny_model_config())
    source.predict_masks(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 1, 4), np.float32))
    for v in source.backbone.trainable_variables:
        v.assign(tf.random.normal(v.shape))
    export.save_model_dir(source, tmp_path / "source")

    params = experiments.get_experiment("deepmac_shapes_quick")
    params.task.model = cfg_lib.tiny_model_config()
    params.task.model.num_classes = 3  # a different head: must not break the restore
    params.task.init_checkpoint = str(tmp_path / "source")
    task = task_factory.get_task(params.task)
    model = task.build_model()
    task.initialize(model)
    for a, b in zip(source.backbone.weights, model.backbone.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    params.task.init_checkpoint = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No checkpoint"):
        task_factory.get_task(params.task).initialize(model)


def test_steps_flag_stretches_the_decay_schedule():
    params = train_params.build_params("deepmac_shapes_quick", steps=600)
    assert params.trainer.train_steps == 600
    assert params.trainer.optimizer_config.learning_rate.cosine.decay_steps == 600
    params = train_params.build_params("deepmarc_shapes_quick", steps=600)
    lr = params.trainer.optimizer_config.learning_rate
    assert params.trainer.train_steps == 600 and lr.get().decay_steps == 600
