"""Copies a trained COCO-mini run into the package as the shipped photo model.

    .venv/bin/python benchmarks/export_photo_model.py \\
        runs/coco/img800/hourglass20_seed0_800steps --command "<the command that trained it>" \\
        --coco-mini ../shared/data/coco_mini --seeds-table runs/coco/img800_seeds.json

The run dir (``params.yaml`` + ``ckpt-*``, from ``deepmac-nb train`` or
``mask_head_ablation.py``) becomes ``deepmac_nb/photo_model/deepmac_coco_mini_voc_img/``:
``params.yaml`` of the model config only (no local data paths) and a weights-only
checkpoint (no optimizer slots). ``photo_model.json`` records the experiment, seed, steps
and command, and the box-prompted mask AP with mirror TTA that the *exported* weights score here on
``train_exhaustive.json`` and ``val_dev.json`` (``photo_model.evaluate``): the numbers
``tests/test_photo_model.py`` reproduces. ``--seeds-table`` adds the recipe's per-seed
figures (a JSON list of ``{seed, split: AP}`` rows) so the file states the spread too.
``--precise-bn N`` first recomputes the BatchNorm statistics over N batches of the run's
training data (``train.precise_bn``), for a run trained without
``task.precise_bn_batches``: the same statistics that option would have written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

SPLITS = ("train_exhaustive", "val_dev")


def export(
    run_dir: Path, command: str, coco_mini: Path, seeds_table: list | None, precise_bn: int = 0
) -> dict:
    import yaml

    from deepmac_nb import _io, photo_model
    from deepmac_nb.inference import export as export_lib
    from deepmac_nb.train import precise_bn as precise_bn_lib

    params = yaml.safe_load((run_dir / export_lib.PARAMS_FILE).read_text())
    if precise_bn:  # a run trained before task.precise_bn_batches existed
        model = precise_bn_lib.recompute_model_dir(run_dir, precise_bn)
    else:
        model = export_lib.load_model_dir(run_dir)
    step = int(params["trainer"]["train_steps"])
    work = photo_model.MODEL_DIR.with_name(photo_model.MODEL_DIR.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    export_lib.save_model_dir(model, work, step=step)
    ap = {
        split: photo_model.evaluate(
            work, coco_mini / "annotations" / f"{split}.json", coco_mini / "images"
        )
        for split in SPLITS
    }  # fmt: skip
    shutil.rmtree(photo_model.MODEL_DIR, ignore_errors=True)
    work.rename(photo_model.MODEL_DIR)
    info = {
        "experiment": "deepmac_coco_mini_voc_img",
        "mask_classes": params["task"]["allowed_mask_classes"],
        "seed": params["task"].get("seed"),
        "steps": step,
        "command": command,
        "precise_bn_batches": precise_bn or params["task"].get("precise_bn_batches", 0),
        "flip_tta": True,
        "box_prompted_mask_AP": ap,
        "seeds": seeds_table or [],
    }
    _io.write_json(photo_model.ROOT / photo_model.INFO_FILE, info)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a trained model dir")
    parser.add_argument("--command", required=True, help="the command that trained it")
    parser.add_argument("--coco-mini", default="../shared/data/coco_mini")
    parser.add_argument("--seeds-table", default=None, help="JSON list of per-seed rows")
    parser.add_argument(
        "--precise-bn", type=int, default=0,
        help="recompute the BatchNorm statistics over N training batches first",
    )  # fmt: skip
    args = parser.parse_args(argv)
    table = json.loads(Path(args.seeds_table).read_text()) if args.seeds_table else None
    info = export(Path(args.run), args.command, Path(args.coco_mini), table, args.precise_bn)
    print(json.dumps(info["box_prompted_mask_AP"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
