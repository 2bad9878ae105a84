"""tf.distribute on CPU: MirroredStrategy over 2 logical CPUs, 2 workers on localhost."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# Runs in a fresh interpreter: logical devices must be set before TF initializes.
MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from official.core import task_factory
    from conftest import tiny_params
    from pathlib import Path

    params = tiny_params(Path(sys.argv[1]))
    params.task.train_data.global_batch_size = 4
    # Plain SGD: the update is proportional to the gradient. Adam's first step is
    # ~lr * sign(g), which turns round-off on near-zero gradients into lr-sized jumps.
    params.trainer.optimizer_config.override({
        "optimizer": {"type": "sgd", "sgd": {"momentum": 0.0}},
        "learning_rate": {"type": "constant", "constant": {"learning_rate": 0.01}},
        "warmup": {"type": None},
    }, is_strict=False)
    task = task_factory.get_task(params.task)
    # One example repeated: every replica then sees identical data, so per-replica loss
    # normalizers equal the global ones and the two runs must agree exactly.
    images, labels = next(iter(task.build_inputs(params.task.train_data)))
    batch = tf.nest.map_structure(lambda t: tf.repeat(t[:1], 4, axis=0), (images, labels))

    def run(strategy, init):
        with strategy.scope():
            model = task.build_model()
            if init is not None:
                model.set_weights(init)
            start = model.get_weights()
            opt = task.create_optimizer(params.trainer.optimizer_config)
        dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
        step = tf.function(lambda x: strategy.run(task.train_step, args=(x, model, opt)))
        logs = step(next(iter(dist)))
        loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, logs["loss"], axis=None)
        trainable = [v.numpy() for v in model.trainable_variables]
        stats = [v.numpy() for v in model.non_trainable_variables]
        return float(loss), start, (trainable, stats)

    loss1, init, after1 = run(tf.distribute.OneDeviceStrategy("/cpu:0"), None)
    loss2, _, after2 = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), init)
    def max_diff(xs, ys, rel=False):
        scale = (lambda y: np.abs(y) + 1e-6) if rel else (lambda y: 1.0)
        return max(float(np.max(np.abs(x - y) / scale(y))) for x, y in zip(xs, ys))

    print(json.dumps({"single": loss1, "mirrored": loss2,
                      "trainable_diff": max_diff(after1[0], after2[0]),
                      "bn_stats_rel_diff": max_diff(after1[1], after2[1], rel=True)}))
    """
)


def _python_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.pop("TF_CONFIG", None)
    return env


@pytest.mark.large
def test_mirrored_two_cpus_matches_one_device(tiny_shapes):
    out = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tiny_shapes)],
        capture_output=True, text=True, timeout=300, env=_python_env(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["mirrored"] == pytest.approx(result["single"], rel=1e-4)
    assert result["trainable_diff"] < 1e-5
    # BN moving variances use the per-replica sample count in their unbiased estimate
    # (2 vs 4 images here), so they agree only to the Bessel-factor level.
    assert result["bn_stats_rel_diff"] < 0.05


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.large
def test_two_workers_on_localhost_train_a_few_steps(tiny_shapes, tmp_path):
    from conftest import smoke_train_command

    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = _python_env()
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        cmd = smoke_train_command(tiny_shapes, tmp_path / f"worker{index}", 4)
        cmd[cmd.index("cpu")] = "multi_worker"
        procs.append(
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    try:
        outputs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text[-3000:]
        assert (
            "Strategy CollectiveAllReduceStrategy with 2 replica(s)" in text
        )  # MultiWorkerMirrored
    assert (tmp_path / "worker0" / "ckpt-4.index").exists()
