"""The mask head's arithmetic rate as a share of this machine's matmul peak, per runtime.

Run from the repository root:

    .venv/bin/python benchmarks/mask_head_speed.py                       # CPU default + paper
    .venv/bin/python benchmarks/mask_head_speed.py --heads hourglass20:16,hourglass52:64 \\
        --batches 64,256 --channels 34

A head spec is ``<network_type>:<nc>``. Every head gets random weights and random BN
statistics (rates do not depend on trained values) and is run on ``[B, S, S, C]`` crops
(``--mask-size`` S, ``--channels`` C = 2 xy + pixel + instance embedding channels) with:

* ``graph``: ``tf.function`` as inference runs it (grappler remapper + oneDNN kernels);
* ``xla``: the same with ``jit_compile=True``;
* ``frozen``: variables turned into constants, so grappler's constant folding can fold
  batch norm into the convolutions (what "BN folded at export" amounts to in TF);
* ``tflite``: builtin-ops TFLite (the converter folds BN into the convolutions), run by
  LiteRT with its default XNNPACK delegate on all cores.

Two references come from the same run: the float32 matmul peak (``tf.matmul`` of 2048^2)
and ``conv_ceiling``, the rate of one lone 3x3 convolution ``nc -> nc`` on ``[B, S, S, nc]``:
the head's most common operation at its own shape, i.e. what any runtime can hope for.
FLOPs are counted by ``tf.compat.v1.profiler`` (as in ``inference_speed.py``). Each rate
is timed for at least ``--seconds`` after two warm-up calls. The LAST line printed is one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from deepmac_nb.modeling import mask_heads

RUNTIMES = ("graph", "xla", "frozen", "tflite")
MATMUL_N = 2048


def rate(run, min_seconds: float = 1.0) -> float:
    """Calls per second of ``run`` after 2 warm-ups, timed over >= ``min_seconds``."""
    run(), run()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds:
        run()
        calls += 1
    return calls / elapsed


def matmul_peak() -> float:
    """float32 GFLOP/s of a ``MATMUL_N``^2 matmul loop (TF eager, all cores)."""
    a = tf.random.normal([MATMUL_N, MATMUL_N])
    return rate(lambda: tf.matmul(a, a).numpy(), 2.0) * 2 * MATMUL_N**3 / 1e9


def profiled_flops(fn, spec: tf.TensorSpec) -> int:
    """FLOPs of one call of ``fn`` on ``spec`` (``tf.compat.v1.profiler`` count)."""
    graph = tf.function(fn).get_concrete_function(spec).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def build_head(name: str, nc: int, mask_size: int, channels: int):
    """A built ``MaskHead`` with random BN statistics (so folding has work to do)."""
    head = mask_heads.build_mask_head(name, nc, mask_size)
    head(tf.zeros([1, mask_size, mask_size, channels]))
    rng = np.random.default_rng(0)
    for weight in head.weights:
        if "moving_variance" in weight.name:
            weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype(np.float32))
        elif "moving_mean" in weight.name or "beta" in weight.name:
            weight.assign(rng.normal(0.0, 0.1, weight.shape).astype(np.float32))
    return head


def runners(head, batch: np.ndarray, workdir: Path) -> dict:
    """``runtime -> zero-argument callable`` running the head's logits on ``batch``."""
    # The body without MaskHead.call's tf.cond (for N = 0), which hides it from XLA's
    # clustering and from the profiler alike.
    body = lambda x: head._logits(x, training=False)  # noqa: E731
    spec = tf.TensorSpec(batch.shape, tf.float32, name="x")
    tensor = tf.constant(batch)
    graph_fn = tf.function(body).get_concrete_function(spec)
    xla_fn = tf.function(body, jit_compile=True).get_concrete_function(spec)
    frozen_fn = convert_to_constants.convert_variables_to_constants_v2(graph_fn)
    return {
        "graph": lambda: graph_fn(tensor).numpy(),
        "xla": lambda: xla_fn(tensor).numpy(),
        "frozen": lambda: frozen_fn(tensor)[0].numpy(),
        "tflite": tflite_runner(head, body, spec, batch, workdir),
    }


def tflite_runner(head, body, spec, batch: np.ndarray, workdir: Path):
    """``body`` (capturing ``head``'s weights) as builtin-ops TFLite, run by LiteRT on
    ``batch`` with all cores; returns the zero-argument runner."""
    from ai_edge_litert.interpreter import Interpreter

    concrete = tf.function(lambda x: {"masks": body(x)}).get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], head)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    path = workdir / "head.tflite"
    path.write_bytes(converter.convert())
    runner = Interpreter(str(path), num_threads=os.cpu_count()).get_signature_runner()
    return lambda: runner(x=batch)


def conv_ceiling(nc: int, batch_size: int, mask_size: int, seconds: float) -> float:
    """GFLOP/s of one 3x3 ``nc -> nc`` convolution plus bias on ``[B, S, S, nc]``."""
    kernel = tf.random.normal([3, 3, nc, nc])
    bias = tf.random.normal([nc])
    conv = lambda x: tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias)  # noqa: E731
    spec = tf.TensorSpec([batch_size, mask_size, mask_size, nc], tf.float32)
    flops = profiled_flops(conv, spec)
    fn = tf.function(conv).get_concrete_function(spec)
    x = tf.random.normal(spec.shape)
    return rate(lambda: fn(x).numpy(), seconds) * flops / 1e9


def measure_head(spec: str, args, workdir: Path) -> list[dict]:
    """One record per (batch size, runtime) for the head ``<network_type>:<nc>``."""
    name, nc = spec.split(":")
    nc = int(nc)
    head = build_head(name, nc, args.mask_size, args.channels)
    one = tf.TensorSpec([1, args.mask_size, args.mask_size, args.channels], tf.float32)
    flops = profiled_flops(lambda x: head._logits(x, training=False), one)
    records = []
    for batch_size in args.batches:
        batch = np.random.default_rng(1).normal(size=[batch_size, *one.shape[1:]])
        ceiling = conv_ceiling(nc, batch_size, args.mask_size, args.seconds)
        for runtime, run in runners(head, batch.astype(np.float32), workdir).items():
            gflops = rate(run, args.seconds) * flops * batch_size / 1e9
            records.append(
                {"head": name, "nc": nc, "batch": batch_size, "runtime": runtime,
                 "mflops_per_instance": round(flops / 1e6, 2),
                 "gflops_per_s": round(gflops, 2), "conv_ceiling_gflops_per_s": round(ceiling, 2)}
            )  # fmt: skip
            print(
                f"{name:>12s} nc {nc:3d}  B {batch_size:4d}  {runtime:6s} "
                f"{gflops:7.1f} GFLOP/s   (lone 3x3 conv {ceiling:6.1f})",
                flush=True,
            )
    return records


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--heads",
        default="hourglass20:16,hourglass20:64,conv4:16",
        help="comma-separated <network_type>:<nc>; default: the CPU configs' head, the "
        "paper's width, and the shallow baseline",
    )
    parser.add_argument("--batches", default="64,256", help="comma-separated instance counts")
    parser.add_argument("--mask-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=34, help="xy + pixel + instance emb")
    parser.add_argument("--seconds", type=float, default=1.5, help="minimum timing per rate")
    args = parser.parse_args()
    args.heads = [h for h in args.heads.split(",") if h]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    return args


def main() -> None:
    args = _parse_args()
    peak = matmul_peak()
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="deepmac-head-") as tmp:
        records = [r for spec in args.heads for r in measure_head(spec, args, Path(tmp))]
    peak_after = matmul_peak()  # a second reading shows how steady the machine was
    for record in records:
        record["share_of_peak"] = round(record["gflops_per_s"] / max(peak, peak_after), 3)
    best = max(records, key=lambda r: r["share_of_peak"])
    print(
        json.dumps(
            {"matmul_peak_gflops_per_s": [round(peak, 2), round(peak_after, 2)],
             "cpu_count": os.cpu_count(), "mask_size": args.mask_size,
             "channels": args.channels, "best": best, "records": records}
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
