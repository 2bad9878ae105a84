"""``train.precise_bn``: BatchNorm statistics recomputed as a mean over batches."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import tiny_params

from deepmac_nb.train import precise_bn


class _ForwardOnly:
    """The part of a task ``recompute_batch_norm`` calls: its losses (none here)."""

    def build_losses(self, outputs, labels, **kwargs):
        return {}


def test_statistics_become_the_mean_of_the_batch_statistics():
    norm = tf_keras.layers.BatchNormalization(momentum=0.1, epsilon=1e-3)
    model = tf_keras.Sequential([tf_keras.Input((2,)), norm])
    norm.moving_mean.assign([100.0, -100.0])  # what was there must not matter
    batches = [np.array([[0.0, 1.0], [2.0, 3.0]], "float32") + k for k in (0.0, 4.0, 8.0)]
    dataset = tf.data.Dataset.from_tensor_slices((np.stack(batches), np.zeros(3)))
    assert precise_bn.recompute_batch_norm(model, _ForwardOnly(), dataset, 5) == 3
    # Batch means (1, 2), (5, 6), (9, 10); batch variances (biased: over the 2 rows) 1, 1.
    np.testing.assert_allclose(norm.moving_mean.numpy(), [5.0, 6.0], rtol=1e-6)
    np.testing.assert_allclose(norm.moving_variance.numpy(), [1.0, 1.0], rtol=1e-5)
    assert norm.momentum == 0.1  # restored
    assert precise_bn.batch_norm_layers(model) == [norm]
    with pytest.raises(ValueError, match="at least 1 batch"):
        precise_bn.recompute_batch_norm(model, _ForwardOnly(), dataset, 0)
    with pytest.raises(ValueError, match="no batch"):
        precise_bn.recompute_batch_norm(model, _ForwardOnly(), dataset.take(0), 2)


@pytest.mark.large
def test_training_ends_with_precise_statistics_in_its_last_checkpoint(tiny_shapes, tmp_path):
    from deepmac_nb.modeling import model_dir as md
    from deepmac_nb.train import runner
    from deepmac_nb.train.task import DeepMACTask

    def statistics(model):
        return [v.numpy() for n in precise_bn.batch_norm_layers(model)
                for v in (n.moving_mean, n.moving_variance)]  # fmt: skip

    runs = {}
    for name, batches in (("plain", 0), ("precise", 3)):
        params = tiny_params(tiny_shapes, steps=4, steps_per_loop=2,
                             checkpoint_interval=2, summary_interval=2)  # fmt: skip
        params.task.precise_bn_batches = batches
        params.task.train_data.seed = 0
        runner.train(params, tmp_path / name)
        runs[name] = (md.load_model_dir(tmp_path / name), params)
    model, params = runs["precise"]
    # Recomputing again from the same weights and batches changes nothing: the last
    # checkpoint already holds the precise statistics...
    kept = statistics(model)
    task = DeepMACTask(params.task)
    precise_bn.recompute_batch_norm(model, task, task.build_inputs(params.task.train_data), 3)
    for a, b in zip(kept, statistics(model), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # ...which the same recomputation would change for a run without the option.
    plain, _ = runs["plain"]
    before = statistics(plain)
    precise_bn.recompute_batch_norm(plain, task, task.build_inputs(params.task.train_data), 3)
    assert any(
        not np.allclose(a, b, atol=1e-4) for a, b in zip(before, statistics(plain), strict=True)
    )
