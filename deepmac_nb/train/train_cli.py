"""``deepmac-nb train``: one command for TPU, multi-GPU, GPU and CPU.

Uses Model Garden's ``train_lib.run_experiment`` (orbit loop, checkpoints every
``checkpoint_interval`` steps, TensorBoard summaries of every loss term, learning rate
and steps/s). Rerunning the same command resumes from the latest checkpoint with the
step count and schedule intact, also after SIGKILL.

Example::

    deepmac-nb train --experiment deepmac_shapes_quick --model-dir runs/quick
    deepmac-nb train --experiment deepmac_shapes_quick --model-dir runs/hg52 \\
        --mask-head hourglass52 --params-override trainer.train_steps=3000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepmac_nb.cli import CliError

STRATEGIES = ("auto", "tpu", "mirrored", "multi_worker", "one_device", "cpu")
_MARKER = "deepmac_experiment.json"


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


def build_params(args: argparse.Namespace):
    """The experiment config with YAML files, overrides and shortcuts applied, validated."""
    from official.modeling import hyperparams

    from deepmac_nb.train import experiments

    params = experiments.get_experiment(args.experiment)
    for path in args.config_file:
        params = hyperparams.override_params_dict(params, path, is_strict=True)
    if args.params_override:
        params = hyperparams.override_params_dict(params, args.params_override, is_strict=True)
    if args.mask_head:
        set_mask_head(params, args.mask_head)
    if args.steps:
        set_train_steps(params, args.steps)
    params.validate()
    return params


def set_mask_head(params, name: str) -> None:
    """``--mask-head``: Model Garden's variants for Deep-MARC configs, else Deep-MAC's heads."""
    from deepmac_nb.deepmarc import experiments as deepmarc
    from deepmac_nb.modeling import mask_heads

    if deepmarc.is_deepmarc(params):
        deepmarc.set_mask_head(params, name)
        return
    if name not in mask_heads.MASK_HEAD_NAMES:
        raise CliError(
            f"unknown mask head {name!r}; valid: {', '.join(mask_heads.MASK_HEAD_NAMES)}"
        )
    params.task.model.mask.network_type = name


def set_train_steps(params, steps: int) -> None:
    """Sets ``train_steps`` and stretches a cosine / polynomial decay to end with it, so a
    shorter run still anneals its learning rate (warm-up steps are kept)."""
    params.trainer.train_steps = steps
    lr = params.trainer.optimizer_config.learning_rate
    schedule = lr.get() if lr.type else None
    if schedule is not None and hasattr(schedule, "decay_steps"):
        schedule.decay_steps = steps


def check_model_dir(model_dir: Path, experiment: str) -> None:
    """Refuses a model dir that holds another experiment's checkpoints."""
    marker = model_dir / _MARKER
    if marker.exists():
        previous = json.loads(marker.read_text()).get("experiment")
        if previous != experiment:
            raise CliError(
                f"{model_dir} holds checkpoints of experiment {previous!r}, not {experiment!r}. "
                "Use a new --model-dir; to fine-tune from it, set task.init_checkpoint "
                "(restores the backbone only by default)."
            )


def mark_model_dir(model_dir: Path, experiment: str) -> None:
    from deepmac_nb import _io

    if not (model_dir / _MARKER).exists():
        _io.write_json(model_dir / _MARKER, {"experiment": experiment})


def run(args: argparse.Namespace) -> int:
    from absl import logging

    from deepmac_nb.train import runner

    # Model Garden reports progress ("train | step: N | steps/sec ...") through absl.
    logging.set_verbosity(logging.INFO)

    model_dir = Path(args.model_dir)
    check_model_dir(model_dir, args.experiment)
    params = build_params(args)
    mark_model_dir(model_dir, args.experiment)
    runner.train(params, model_dir, mode=args.mode, strategy=args.strategy, tpu=args.tpu)
    return 0
