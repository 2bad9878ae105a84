"""Strategy choice: a TPU runtime that TensorFlow cannot use fails loudly, never trains on the CPU."""

from __future__ import annotations

import pytest
import tensorflow as tf

from deepmac_nb.errors import UserError
from deepmac_nb.train import runner


@pytest.fixture
def no_tpu_hint(monkeypatch):
    for key in ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE"):
        monkeypatch.delenv(key, raising=False)


def test_auto_without_tpu_hint_takes_the_cpu(no_tpu_hint):
    strategy = runner.select_strategy("auto")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.extended.worker_devices[0].endswith("CPU:0")


def test_auto_on_a_tpu_runtime_without_a_usable_tpu_refuses(no_tpu_hint, monkeypatch):
    # What a Colab TPU runtime with PyPI's plain `tensorflow` looks like: the hint is set,
    # the TPU resolver fails (this machine has no TPU, so the real resolver runs).
    monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v2-8")
    with pytest.raises(UserError, match="tensorflow-tpu"):
        runner.select_strategy("auto")


def test_forced_tpu_without_one_refuses(no_tpu_hint):
    with pytest.raises(UserError, match="could not initialise"):
        runner.select_strategy("tpu")
