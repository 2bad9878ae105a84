"""``benchmarks/reweigh_model_dir.py``: checkpoint averaging and precise BatchNorm."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import yaml
from conftest import tiny_params

from deepmac_nb.modeling import config as model_config
from deepmac_nb.modeling import model_dir as md

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reweigh_model_dir.py"


def _script():
    spec = importlib.util.spec_from_file_location("reweigh_model_dir", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _two_checkpoints(model_dir: Path):
    """A tiny model dir with ckpt-1 holding weights w and ckpt-2 holding 3 w."""
    md.save_model_dir(md._built(model_config.tiny_model_config()), model_dir, step=1)
    model = md.load_model_dir(model_dir)
    weights = model.get_weights()
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(model_dir), 2)
    model.set_weights([3 * w for w in weights])
    manager.save(checkpoint_number=2)
    return weights


def test_average_of_two_checkpoints_and_bad_input(tmp_path, capsys):
    script = _script()
    weights = _two_checkpoints(tmp_path / "m")
    assert script.main([str(tmp_path / "m"), "--average", "1,2", "--out", str(tmp_path / "a")]) == 0
    averaged = md.load_model_dir(tmp_path / "a").get_weights()
    for got, w in zip(averaged, weights, strict=True):
        np.testing.assert_allclose(got, 2 * w, rtol=1e-6, atol=1e-7)
    capsys.readouterr()
    # Bad input: one line, exit 2, nothing written.
    assert script.main([str(tmp_path / "m"), "--average", "1,7", "--out", str(tmp_path / "b")]) == 2
    assert "no ckpt-7" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert script.main([str(tmp_path / "m"), "--average", "1", "--out", str(tmp_path / "a")]) == 2
    assert script.main([str(tmp_path), "--average", "1", "--out", str(tmp_path / "c")]) == 2


@pytest.mark.large
def test_precise_bn_replaces_only_the_batchnorm_statistics(tiny_shapes, tmp_path):
    from official.core import train_utils

    model_dir = tmp_path / "m"
    params = tiny_params(tiny_shapes)
    model = md._built(md.model_config_from_params({"task": {"model": params.task.model.as_dict()}}))
    md.save_model_dir(model, model_dir, step=5)
    train_utils.serialize_config(params, str(model_dir))  # the full config, as training
    assert yaml.safe_load((model_dir / "params.yaml").read_text())["task"]["train_data"]
    before = md.load_model_dir(model_dir)
    after = _script().precise_batch_norm(model_dir, batches=3)

    def statistics(m):
        return {
            v.name
            for layer in m._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, tf_keras.layers.BatchNormalization)
            for v in (layer.moving_mean, layer.moving_variance)
        }

    names = statistics(after)
    assert names
    changed = set()
    for old, new in zip(before.weights, after.weights, strict=True):
        if not np.allclose(old.numpy(), new.numpy()):
            changed.add(new.name)
    assert changed and changed <= names  # statistics moved, nothing else did
