"""Moving average of the weights (``trainer.optimizer_config.ema``): written by training,
preferred by every loader of a model dir."""

from __future__ import annotations

import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import tiny_params
from official.core import train_utils

from deepmac_nb.modeling import model_dir as md


def _save(directory, name, step):
    """A checkpoint named as training (``ckpt``) or Model Garden's EMACheckpointing
    (``average_weights``) names it; only names and steps matter here."""
    checkpoint = tf.train.Checkpoint(v=tf.Variable(float(step)))
    tf.train.CheckpointManager(checkpoint, str(directory), 3, checkpoint_name=name).save(step)


def test_the_average_wins_unless_it_is_stale(tmp_path):
    assert md.weights_checkpoint(tmp_path) is None
    _save(tmp_path, "ckpt", 8)
    assert md.weights_checkpoint(tmp_path).endswith("/ckpt-8")
    _save(tmp_path / md.AVERAGED_DIR, "average_weights", 8)
    assert md.weights_checkpoint(tmp_path).endswith(f"/{md.AVERAGED_DIR}/average_weights-8")
    # Training resumed without the average: ckpt-12 is newer, so the old average loses.
    _save(tmp_path, "ckpt", 12)
    assert md.weights_checkpoint(tmp_path).endswith("/ckpt-12")
    _save(tmp_path / md.AVERAGED_DIR, "average_weights", 100)  # 100 > 12, not "100" < "12"
    assert md.weights_checkpoint(tmp_path).endswith("average_weights-100")


@pytest.mark.large
def test_training_with_ema_writes_the_average_and_loaders_read_it(tiny_shapes, tmp_path):
    from deepmac_nb.train import runner
    from deepmac_nb.train.task import DeepMACTask

    params = tiny_params(
        tiny_shapes, steps=6, steps_per_loop=3, checkpoint_interval=3, summary_interval=3
    )
    params.override({"trainer": {"optimizer_config": {"ema": {"average_decay": 0.5}}}})
    model_dir = tmp_path / "run"
    runner.train(params, model_dir)
    averaged = md.weights_checkpoint(model_dir)
    assert averaged.endswith(f"{md.AVERAGED_DIR}/average_weights-6")

    # The average Model Garden's optimizer keeps in the training checkpoint (its
    # "average" slots) is what the averaged checkpoint holds and what loading returns.
    training = tf.train.load_checkpoint(str(model_dir / "ckpt-6"))
    slots = {k: k.rsplit("/.OPTIMIZER_SLOT/", 1)[0] for k in training.get_variable_to_shape_map()
             if k.endswith("/.OPTIMIZER_SLOT/optimizer/average/.ATTRIBUTES/VARIABLE_VALUE")}  # fmt: skip
    assert slots
    saved = tf.train.load_checkpoint(averaged)
    names = saved.get_variable_to_shape_map()
    differs = matched = 0
    for slot, variable in slots.items():
        # The training checkpoint may file a variable under Model Garden's checkpoint
        # items ("mask_head/..."); the averaged one has the model only ("model/...").
        name = variable if variable.startswith("model/") else f"model/{variable}"
        if f"{name}/.ATTRIBUTES/VARIABLE_VALUE" not in names:
            continue
        matched += 1
        average = training.get_tensor(slot)
        np.testing.assert_allclose(saved.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE"), average)
        last = training.get_tensor(f"{variable}/.ATTRIBUTES/VARIABLE_VALUE")
        differs += not np.allclose(average, last)
    assert matched >= 0.9 * len(slots)
    assert differs > 0  # the average is not the last weights

    loaded = md.load_model_dir(model_dir)
    raw = md._built(loaded.config)
    tf.train.Checkpoint(model=raw).restore(str(model_dir / "ckpt-6")).expect_partial()
    assert any(
        not np.allclose(a, b) for a, b in zip(loaded.get_weights(), raw.get_weights(), strict=True)
    )
    # Fine-tuning from the model dir (adapt, init_checkpoint) starts from the average too.
    init = tiny_params(tiny_shapes)
    init.task.init_checkpoint, init.task.init_checkpoint_modules = str(model_dir), "all"
    task = DeepMACTask(init.task)
    started = task.build_model()
    task.initialize(started)
    for a, b in zip(started.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(a, b)


def test_a_bad_loop_never_replaces_the_last_good_average(tmp_path):
    from official.modeling import optimization

    from deepmac_nb.train import runner

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(3,))])
        optimizer = optimization.ExponentialMovingAverage(tf_keras.optimizers.legacy.SGD())
        optimizer.shadow_copy(model)
        trainer = types.SimpleNamespace(model=model, optimizer=optimizer)
        action = runner._SaveAveragedWeights(str(tmp_path), loss_upper_bound=100.0)
        action.bind(trainer)
        for loss in (float("nan"), float("inf"), 1e3):
            action({"training_loss": np.float32(loss)})
            assert md.weights_checkpoint(tmp_path) is None
        action({"training_loss": np.float32(1.0)})
    assert md.weights_checkpoint(tmp_path).endswith("average_weights-0")
    # With evaluations, Model Garden's own EMACheckpointing owns the folder.
    evaluated = runner._SaveAveragedWeights(str(tmp_path / "eval"), mode="train_and_eval")
    evaluated.bind(trainer)
    with strategy.scope():
        evaluated({"training_loss": 1.0})
    assert not (tmp_path / "eval").exists()
    # Without the EMA optimizer the action does nothing.
    plain = runner._SaveAveragedWeights(str(tmp_path / "plain"))
    plain.bind(types.SimpleNamespace(model=model, optimizer=tf_keras.optimizers.legacy.SGD()))
    plain({"training_loss": 1.0})
    assert not (tmp_path / "plain").exists()


def test_resuming_with_averaging_switched_is_refused(tmp_path):
    from deepmac_nb.errors import UserError
    from deepmac_nb.train import params as train_params
    from deepmac_nb.train import runner

    ema = ["trainer.optimizer_config.ema.average_decay=0.9"]
    with_ema = train_params.build_params("deepmac_smoke", overrides=ema)
    without = train_params.build_params("deepmac_smoke")
    train_utils.serialize_config(without, str(tmp_path))
    runner._check_resume_keeps_averaging(with_ema, str(tmp_path))  # no checkpoint yet: fine
    _save(tmp_path, "ckpt", 4)
    runner._check_resume_keeps_averaging(without, str(tmp_path))
    with pytest.raises(UserError, match=r"trained without trainer\.optimizer_config\.ema"):
        runner._check_resume_keeps_averaging(with_ema, str(tmp_path))
    train_utils.serialize_config(with_ema, str(tmp_path))
    runner._check_resume_keeps_averaging(with_ema, str(tmp_path))
    with pytest.raises(UserError, match=r"trained with trainer\.optimizer_config\.ema"):
        runner._check_resume_keeps_averaging(without, str(tmp_path))
