"""``deepmac-nb train``: one command for TPU, multi-GPU, GPU and CPU.

Uses Model Garden's ``train_lib.run_experiment`` (orbit loop, checkpoints every
``checkpoint_interval`` steps, TensorBoard summaries of every loss term, learning rate
and steps/s). Rerunning the same command resumes from the latest checkpoint with the
step count and schedule intact, also after SIGKILL.

Example::

    deepmac-nb train --experiment deepmac_shapes_quick --model-dir runs/quick
    deepmac-nb train --experiment deepmac_shapes_quick --model-dir runs/hg52 \\
        --mask-head hourglass52 --seed 1 --params-override trainer.train_steps=3000

Every run is seeded (``--seed``, default the experiment's ``task.seed``, 0): weights,
data order and each image's augmentation; the seeds go into ``<model dir>/params.yaml``.
Seeded runs on one machine agree to ~1e-5 in the loss after 20 steps (some CPU gradient
kernels add in thread order); with ``--deterministic`` the same seed, data and machine
give the same losses bit for bit. The work is done by ``deepmac_nb.train.params`` and
``runner``.
"""

from __future__ import annotations

import argparse

from deepmac_nb.train import params as train_params

STRATEGIES = ("auto", "tpu", "mirrored", "multi_worker", "one_device", "cpu")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="a registered experiment name")
    parser.add_argument("--model-dir", required=True, help="checkpoints, summaries, params.yaml")
    parser.add_argument("--mode", default="train", choices=("train", "train_and_eval", "eval"))
    parser.add_argument("--strategy", default="auto", choices=STRATEGIES)
    parser.add_argument("--tpu", default=None, help="TPU address (default: the local TPU)")
    parser.add_argument("--config-file", action="append", default=[], help="YAML overrides")
    parser.add_argument(
        "--params-override",
        default="",
        help="e.g. 'trainer.train_steps=200,task.model.mask.mask_size=16'",
    )
    parser.add_argument(
        "--mask-head",
        default=None,
        help="mask head by name, e.g. hourglass52 (Deep-MARC: default, hourglass20/52/100)",
    )
    parser.add_argument("--steps", type=int, default=None, help="shortcut for trainer.train_steps")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of weights, data order and augmentation (default: the experiment's, 0)",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="TensorFlow's deterministic kernels too: the same seed repeats the losses bit "
        "for bit (some 10%% slower on CPUs)",
    )


def params_from_args(args: argparse.Namespace):
    """``train_params.build_params`` with the command line's values."""
    return train_params.build_params(
        args.experiment,
        overrides=[*args.config_file, args.params_override],
        mask_head=args.mask_head,
        steps=args.steps,
        seed=args.seed,
        deterministic=args.deterministic,
    )


def run(args: argparse.Namespace) -> int:
    from absl import logging

    from deepmac_nb.train import runner

    # Model Garden reports progress ("train | step: N | steps/sec ...") through absl.
    logging.set_verbosity(logging.INFO)

    train_params.check_model_dir(args.model_dir, args.experiment)
    params = params_from_args(args)
    train_params.mark_model_dir(args.model_dir, args.experiment)
    runner.train(params, args.model_dir, mode=args.mode, strategy=args.strategy, tpu=args.tpu)
    return 0
