"""Copies trained shapes runs into the package as small reference models (weights only).

    .venv/bin/python benchmarks/export_reference_heads.py \\
        runs/sweep/long/conv2_seed0_1500steps runs/sweep/long/hourglass20_seed0_1500steps \\
        --out deepmac_nb/reference_models --command "<the benchmark command>"

Each run dir (a ``mask_head_ablation.py`` run: ``params.yaml`` + ``ckpt-*`` +
``ablation_metrics.json``) becomes ``<out>/<head>/`` with ``params.yaml``, a model-only
checkpoint (no optimizer slots: a third of the training checkpoint's size) and
``reference.json``: head, seed, steps, the command that trained it, the seed statistics
of the sweep (``--sweep``: the JSON of ``head_sweep_table.py --out``), and the box-prompted
mask AP (seen / unseen / all) on the shapes val set measured here, with the loaded
weights, by ``deepmac_nb.reference_models.evaluate`` - the number the test reproduces.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def portable_params(path: Path) -> str:
    """``params.yaml`` without this machine's data paths (``task.dataset: shapes`` finds the
    set again in any cache), so the shipped file names no local folder."""
    import yaml

    params = yaml.safe_load(path.read_text())
    task = params["task"]
    task["annotation_file"] = task["validation_images"] = ""
    task["train_data"]["input_path"] = task["validation_data"]["input_path"] = ""
    return yaml.safe_dump(params, sort_keys=False)


def sweep_stats(table: dict | None, head: str, steps: int) -> dict:
    """The seed statistics of ``head`` at ``steps`` from a ``head_sweep_table.py --out``
    JSON: ``{"seen": {mean, sd, n}, "unseen": ..., "unseen/seen": ...}`` or ``{}``."""
    for row in (table or {}).get("rows", []):
        if row["head"] == head and row["steps"] == steps:
            return {k: row[k] for k in ("seen", "unseen", "unseen/seen")}
    return {}


def export_run(run_dir: Path, out_root: Path, command: str, table: dict | None = None) -> dict:
    import tensorflow as tf

    from deepmac_nb import _io, reference_models
    from deepmac_nb.inference import export

    record = json.loads((run_dir / "ablation_metrics.json").read_text())
    head = record["head"]
    target = out_root / head
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    _io.write_text(target / export.PARAMS_FILE, portable_params(run_dir / export.PARAMS_FILE))
    model = export.load_model_dir(run_dir)
    step = int(record["steps"])
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), str(target), max_to_keep=1, checkpoint_name="ckpt"
    )
    manager.save(checkpoint_number=step)
    ap = reference_models.evaluate(target)
    info = {
        "head": head,
        "seed": record["seed"],
        "steps": step,
        "command": command,
        "box_prompted_mask_AP": ap,
        "ablation_AP": {s: v["AP"] for s, v in record["eval"]["gt"]["mask"].items()},
        "sweep": sweep_stats(table, head, step),
    }
    _io.write_json(target / reference_models.INFO_FILE, info)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run dirs of mask_head_ablation.py")
    parser.add_argument("--out", default="deepmac_nb/reference_models")
    parser.add_argument("--command", required=True, help="the command that trained them")
    parser.add_argument("--sweep", default=None, help="head_sweep_table.py --out JSON")
    args = parser.parse_args(argv)
    table = json.loads(Path(args.sweep).read_text()) if args.sweep else None
    for run in args.runs:
        info = export_run(Path(run), Path(args.out), args.command, table)
        print(f"{info['head']}: {info['box_prompted_mask_AP']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
