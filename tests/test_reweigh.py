"""``benchmarks/reweigh_model_dir.py``: checkpoint averaging and precise BatchNorm."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
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


def _norms(layer) -> list:
    from deepmac_nb.train import precise_bn

    return precise_bn.batch_norm_layers(layer)


@pytest.mark.large
def test_precise_bn_replaces_the_batchnorm_statistics_of_backbone_and_mask_head(
    tiny_shapes, tmp_path
):
    from official.core import train_utils

    params = tiny_params(tiny_shapes, head="hourglass10")  # SyncBatchNormalization inside
    params.task.train_data.seed = 0  # the same first batch for every probe below
    config = md.model_config_from_params({"task": {"model": params.task.model.as_dict()}})
    model = md._built(config)

    def model_dir(name, statistics):
        for layer in _norms(model):
            layer.moving_mean.assign(tf.fill(layer.moving_mean.shape, statistics))
        path = md.save_model_dir(model, tmp_path / name, step=5)
        train_utils.serialize_config(params, str(path))  # the full config, as training
        return path

    script = _script()
    clean = script.precise_batch_norm(model_dir("clean", 0.0), batches=1)
    garbage = script.precise_batch_norm(model_dir("garbage", 7.0), batches=1)
    before = md.load_model_dir(tmp_path / "clean")
    statistics = {v.name for n in _norms(clean) for v in (n.moving_mean, n.moving_variance)}
    mask_head = {v.name for n in _norms(clean.mask_head) for v in (n.moving_mean,)}
    assert mask_head and mask_head <= statistics
    changed = {
        new.name
        for old, new in zip(before.weights, clean.weights, strict=True)
        if not np.allclose(old.numpy(), new.numpy())
    }
    assert changed <= statistics  # nothing but the statistics moved...
    assert mask_head <= changed  # ...and the mask head's did, not only the backbone's
    # One batch replaces the statistics whatever they were before (momentum 0 first).
    for a, b in zip(_norms(clean), _norms(garbage), strict=True):
        np.testing.assert_allclose(a.moving_mean.numpy(), b.moving_mean.numpy(), atol=1e-5)
