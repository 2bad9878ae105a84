"""Runs an experiment under the right ``tf.distribute`` strategy (Python API of ``train``).

Example (from a notebook):
    >>> from deepmac_nb.train import experiments, runner
    >>> params = experiments.get_experiment("deepmac_shapes_quick")     # doctest: +SKIP
    >>> runner.train(params, "runs/quick")                              # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import tensorflow as tf
import tf_keras
from absl import logging
from official.core import actions, task_factory, train_lib, train_utils
from official.modeling import optimization

from deepmac_nb.errors import UserError
from deepmac_nb.train import data_sources, experiments, precise_bn

_NO_TPU = (
    "this runtime reports a TPU, but TensorFlow could not initialise it: install the matched "
    "tensorflow-tpu + libtpu pair (the notebooks' install cell does this on a TPU runtime), or "
    "choose strategy 'cpu' / 'one_device' to train without it"
)


def _try_tpu(address: str | None):
    """A TPUStrategy if a TPU answers, else None (resolver and init errors both caught)."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address or "local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError, KeyError) as exc:
        logging.info("No TPU (%s): %s", type(exc).__name__, exc)
        return None


def select_strategy(name: str = "auto", tpu: str | None = None) -> tf.distribute.Strategy:
    """``auto``: TPU, else all GPUs (mirrored when > 1), else the CPU.

    ``tpu``, ``mirrored``, ``multi_worker`` (reads ``TF_CONFIG``), ``one_device`` and
    ``cpu`` force a choice.
    """
    if name == "auto":
        wants_tpu = bool(tpu) or _has_tpu_hint()
        strategy = _try_tpu(tpu) if wants_tpu else None
        if strategy is not None:
            return strategy
        if wants_tpu:
            # A TPU runtime whose TensorFlow cannot reach the TPU (plain `tensorflow` from
            # PyPI has no TPU support) would otherwise train on the host CPU unnoticed.
            raise UserError(_NO_TPU)
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "tpu":
        strategy = _try_tpu(tpu)
        if strategy is None:
            raise UserError(_NO_TPU)
        return strategy
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.OneDeviceStrategy("/cpu:0" if name == "cpu" else _first_device())


def _has_tpu_hint() -> bool:
    """Cheap check before the (slow) TPU resolver: Colab/Kaggle TPU VMs set these."""
    return any(k in os.environ for k in ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE"))


def _first_device() -> str:
    return "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"


def train(params, model_dir, mode: str = "train", strategy: str = "auto", tpu=None):
    """Prepares data if needed, then trains/evaluates with Model Garden's train loop.

    Returns ``(model, eval_logs)``. A non-finite loss raises ``UserError`` naming the
    step; the latest checkpoint is then the last good one.
    """
    experiments.register()
    params = data_sources.prepare_experiment_data(params)
    apply_seed(params)
    model_dir = str(model_dir)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    _check_resume_keeps_averaging(params, model_dir)
    train_utils.serialize_config(params, model_dir)
    dist = select_strategy(strategy, tpu)
    logging.info("Strategy %s with %d replica(s)", type(dist).__name__, dist.num_replicas_in_sync)
    with dist.scope():
        task = task_factory.get_task(params.task, logging_dir=model_dir)
    # Precise BatchNorm first, so the averaged checkpoint also gets the new statistics.
    precise = precise_bn.PreciseBatchNormAction(
        task, params.task.train_data, params.trainer.train_steps,
        getattr(params.task, "precise_bn_batches", 0),
    )  # fmt: skip
    averaged = _SaveAveragedWeights(model_dir, params.trainer.loss_upper_bound, mode)
    orbit_runner = train_lib.OrbitExperimentRunner(
        distribution_strategy=dist, task=task, mode=mode, params=params, model_dir=model_dir,
        train_actions=[precise, averaged],
    )  # fmt: skip
    precise.bind(orbit_runner.trainer)
    averaged.bind(orbit_runner.trainer)
    try:
        return orbit_runner.run()
    except RuntimeError as exc:
        if "loss value" not in str(exc):
            raise
        step = int(orbit_runner.trainer.global_step.numpy())
        raise UserError(_nonfinite_message(model_dir, step, exc)) from exc


class _SaveAveragedWeights:
    """Orbit train action: when the run trains with ``trainer.optimizer_config.ema``, writes
    the moving average of the weights after every train loop to
    ``<model_dir>/ema_checkpoints`` (Model Garden's ``EMACheckpointing``, which Model Garden
    runs only after evaluations; ``mode="train"`` has none), where the loaders look first
    (``modeling.model_dir.weights_checkpoint``). A mode with evaluations keeps Model
    Garden's own action alone, so one manager owns the folder. Bound after the trainer
    exists, since the runner takes its actions before building it.

    A loop whose loss is not finite or above ``trainer.loss_upper_bound`` writes nothing:
    this action runs before Model Garden's recovery check stops the run, and its one kept
    average must stay the last good one, as ``ckpt-*`` does."""

    def __init__(self, model_dir: str, loss_upper_bound: float = float("inf"), mode: str = "train"):
        self._model_dir = model_dir
        self._loss_upper_bound = loss_upper_bound
        self._mode = mode
        self._action = None

    def bind(self, trainer) -> None:
        if "eval" in self._mode:
            return  # Model Garden's get_eval_actions adds EMACheckpointing itself
        if trainer is not None and isinstance(
            trainer.optimizer, optimization.ExponentialMovingAverage
        ):
            checkpoint = tf.train.Checkpoint(model=trainer.model)
            self._action = actions.EMACheckpointing(
                self._model_dir, trainer.optimizer, checkpoint, max_to_keep=1
            )

    def __call__(self, output) -> None:
        if self._action is None:
            return
        loss = float((output or {}).get("training_loss", 0.0))
        if math.isfinite(loss) and loss <= self._loss_upper_bound:
            self._action(output)


def _check_resume_keeps_averaging(params, model_dir: str) -> None:
    """Refuses to resume a run with the moving average of the weights switched on or off:
    the EMA optimizer files the inner optimizer's state (step count, moments) under
    another checkpoint key, so the resumed run would restart its schedule silently."""
    recorded = Path(model_dir) / "params.yaml"
    if not recorded.is_file() or tf.train.latest_checkpoint(model_dir) is None:
        return
    import yaml

    before = (yaml.safe_load(recorded.read_text()) or {}).get("trainer") or {}
    was = (before.get("optimizer_config") or {}).get("ema") is not None
    now = params.trainer.optimizer_config.ema is not None
    if was != now:
        state = "with" if was else "without"
        raise UserError(
            f"{model_dir} was trained {state} trainer.optimizer_config.ema; resume it "
            f"{state} it too, or train into a new model dir"
        )


def apply_seed(params) -> int | None:
    """Seeds Python, NumPy and TensorFlow with ``params.task.seed`` (so the weights start
    the same) and gives ``task.train_data`` the same seed (file and example shuffling,
    per-example augmentation) unless it has its own. Returns the seed; None: unseeded.

    Called before the model is built and before ``params.yaml`` is written, so the model
    dir records the seeds the run used. ``task.deterministic`` also switches TensorFlow to
    its deterministic kernels (process-wide, for good): some CPU gradient kernels add in
    thread order, which makes two runs drift apart by ~1e-5 within 20 steps.
    """
    seed = getattr(params.task, "seed", None)
    deterministic = getattr(params.task, "deterministic", False)
    if deterministic and seed is None:
        raise UserError("task.deterministic needs a seed: set task.seed (or --seed)")
    if seed is None:
        return None
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    tf_keras.utils.set_random_seed(seed)
    if params.task.train_data.seed is None:
        params.task.train_data.seed = seed
    return seed


def _nonfinite_message(model_dir: str, step: int, exc: Exception) -> str:
    latest = tf.train.latest_checkpoint(model_dir)
    return (
        f"training stopped at step {step}: {exc} The latest checkpoint is the last good one "
        f"({latest or 'none yet'}). Lower the learning rate or check the data, then rerun "
        "the same command to resume from it."
    )
