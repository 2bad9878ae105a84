"""Training speed of the CPU experiments: steps/s, images/s, mask-branch share, data-only rate.

Command (figures recorded in docs/benchmarks.md)::

    .venv/bin/python benchmarks/train_speed.py --experiment deepmac_shapes_quick --steps 30
    .venv/bin/python benchmarks/train_speed.py --experiment deepmac_coco_mini_voc --steps 20

Hardware: the 2-core CPU machine this project is developed on (no GPU). Expected time:
1-3 minutes per experiment (data preparation on first use excluded).

Measures, on the experiment's real input pipeline:
* ``train_steps_per_s`` / ``train_images_per_s``: compiled train steps (after warm-up)
  fed from a cached batch, so the input pipeline does not count;
* ``mask_branch_share``: 1 - (step time with every mask weight zeroed, which skips the
  mask head) / (full step time);
* ``data_images_per_s``: the tf.data pipeline alone (decode, augment, targets), and
  ``data_to_train_ratio`` = data images/s over train images/s (goal: >= 3).

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import time

import tensorflow as tf
from official.core import task_factory

from deepmac_nb.train import data_sources, experiments


def time_calls(fn, arg, steps: int) -> float:
    """Seconds per call of ``fn(arg)`` after two warm-up calls."""
    for _ in range(2):
        fn(arg)
    start = time.perf_counter()
    for _ in range(steps):
        out = fn(arg)
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
    return (time.perf_counter() - start) / steps


def data_rate(dataset: tf.data.Dataset, batch_size: int, batches: int) -> float:
    """Images per second of the input pipeline alone."""
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def measure(name: str, steps: int) -> dict:
    params = data_sources.prepare_experiment_data(experiments.get_experiment(name))
    task = task_factory.get_task(params.task)
    model = task.build_model()
    optimizer = task.create_optimizer(params.trainer.optimizer_config)
    dataset = task.build_inputs(params.task.train_data)
    batch = next(iter(dataset))
    no_masks = (batch[0], {**batch[1], "mask_weights": tf.zeros_like(batch[1]["mask_weights"])})
    step = tf.function(lambda x: task.train_step(x, model, optimizer))
    full = time_calls(step, batch, steps)
    without = time_calls(step, no_masks, steps)
    size = params.task.train_data.global_batch_size
    data = data_rate(dataset, size, max(steps, 10))
    return {
        "experiment": name,
        "batch_size": size,
        "input_px": params.task.model.input_size[0],
        "mask_head": params.task.model.mask.network_type,
        "train_steps_per_s": round(1.0 / full, 3),
        "train_images_per_s": round(size / full, 2),
        "mask_branch_share": round(max(0.0, 1.0 - without / full), 3),
        "data_images_per_s": round(data, 2),
        "data_to_train_ratio": round(data * full / size, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="deepmac_shapes_quick")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps(measure(args.experiment, args.steps)))


if __name__ == "__main__":
    main()
