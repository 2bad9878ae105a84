"""Two post-hoc probes of a trained Deep-MAC model dir, each written as a new model dir to
score with ``deepmac-nb evaluate``: the mean of some of its checkpoints' weights
(``--average 550,800``), or its BatchNorm statistics recomputed as the mean over N
training batches (``--precise-bn 100``; backbone and hourglass mask head keep momentum
0.1, so their moving statistics are mostly the last batch's).

    .venv/bin/python benchmarks/reweigh_model_dir.py runs/coco/img800/hourglass20_seed2_800steps \\
        --average 550,800 --out runs/pbn/avg550_800_s2
    .venv/bin/python benchmarks/reweigh_model_dir.py runs/coco/img800/hourglass20_seed2_800steps \\
        --precise-bn 100 --out runs/pbn/seed2_n100

``--precise-bn`` reads the training data of the run's own ``params.yaml`` (its
experiment's data, prepared on first use). Results: docs/results.md (the COCO-mini photo
recipe's seeds). A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def average_checkpoints(model_dir: Path, steps: list[int]):
    """The model of ``model_dir`` holding the mean of the weights of ``ckpt-<step>``, all
    variables (BatchNorm statistics too)."""
    import tensorflow as tf

    from deepmac_nb.modeling import model_dir as md

    model = md.load_model_dir(model_dir)
    total = None
    for step in steps:
        path = model_dir / f"ckpt-{step}"
        status = tf.train.Checkpoint(model=model).restore(str(path)).expect_partial()
        status.assert_existing_objects_matched()
        weights = model.get_weights()
        total = weights if total is None else [a + b for a, b in zip(total, weights, strict=True)]
    model.set_weights([w / len(steps) for w in total])
    return model


def precise_batch_norm(model_dir: Path, batches: int):
    """The model of ``model_dir`` after ``train.precise_bn.recompute_model_dir``: its
    BatchNorm statistics recomputed over ``batches`` batches of the run's own training
    data, as ``task.precise_bn_batches`` does at the end of training."""
    from deepmac_nb.train import precise_bn

    model = precise_bn.recompute_model_dir(model_dir, batches)
    print(f"{len(precise_bn.batch_norm_layers(model))} BatchNorm layers over {batches} batches")
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="new model dir")
    probe = parser.add_mutually_exclusive_group(required=True)
    probe.add_argument("--average", help="comma-separated checkpoint steps, e.g. 550,800")
    probe.add_argument("--precise-bn", type=int, help="training batches to average over (>= 1)")
    args = parser.parse_args(argv)
    if args.precise_bn is not None and args.precise_bn < 1:
        print("error: --precise-bn needs at least 1 batch", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"error: {args.out} exists; choose a new --out", file=sys.stderr)
        return 2
    if not (args.model_dir / "params.yaml").is_file():
        print(f"error: {args.model_dir} is not a model dir (no params.yaml)", file=sys.stderr)
        return 2
    from deepmac_nb.modeling import model_dir as md

    start = time.perf_counter()
    if args.average:
        steps = [int(s) for s in args.average.split(",") if s]
        missing = [s for s in steps if not (args.model_dir / f"ckpt-{s}.index").is_file()]
        if missing:
            print(f"error: {args.model_dir} has no ckpt-{missing[0]}", file=sys.stderr)
            return 2
        model, step = average_checkpoints(args.model_dir, steps), max(steps)
    else:
        model = precise_batch_norm(args.model_dir, args.precise_bn)
        step = int(md.weights_checkpoint(args.model_dir).rsplit("-", 1)[1])
    md.save_model_dir(model, args.out, step=step)
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
