"""``benchmarks/mask_head_ablation.py``: a tiny two-head sweep, its JSON schema and resume."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mask_head_ablation.py"
HEADS = ("conv4", "resnet4")


def _load_script():
    spec = importlib.util.spec_from_file_location("mask_head_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _tiny_overrides(data_root: Path, path: Path) -> Path:
    """The ``deepmac_smoke`` sizes (``deepmac_nb.train.smoke``) on ``data_root``, as YAML."""
    from deepmac_nb.train import smoke

    task = {**smoke.DEEPMAC["task"], "dataset": "", "annotation_file": str(data_root / "val.json"),
            "validation_images": str(data_root / "images")}  # fmt: skip
    records = str(data_root / "tfrecords" / "train-*.tfrecord")
    task["train_data"] = {**task["train_data"], "input_path": records}
    trainer = {"steps_per_loop": 3, "summary_interval": 3, "checkpoint_interval": 3}
    path.write_text(yaml.safe_dump({"task": task, "trainer": trainer}))
    return path


def _argv(data_root: Path, tmp_path: Path) -> list[str]:
    config = _tiny_overrides(data_root, tmp_path / "tiny.yaml")
    return ["--dataset", "shapes", "--heads", ",".join(HEADS), "--seeds", "0", "--steps", "3",
            "--baselines", "box", "--config-file", str(config), "--out",
            str(tmp_path / "results.json"), "--runs-dir", str(tmp_path / "runs"),
            "--figures", str(tmp_path / "figures")]  # fmt: skip


def _check_schema(results: dict) -> None:
    assert results["dataset"] == "shapes" and results["splits"] == ["seen", "unseen"]
    assert results["steps"] == 3 and set(results["heads"]) == set(HEADS)
    for summary in results["heads"].values():
        assert summary["params"] > 0 and summary["mflops_per_instance"] > 0
        assert summary["ms_per_instance"] > 0
        for protocol in ("gt", "detected"):
            for split in ("seen", "unseen"):
                stat = summary[protocol][split]
                assert len(stat["values"]) == 1 and 0.0 <= stat["mean"] <= 100.0
    assert 0.0 <= results["baselines"]["box"]["unseen"]["AP"] <= 100.0
    assert [(r["head"], r["seed"]) for r in results["runs"]] == [(h, 0) for h in HEADS]


@pytest.mark.large
def test_ablation_sweep_and_resume(tiny_shapes, tmp_path, capsys):
    ablation = _load_script()
    argv = _argv(tiny_shapes, tmp_path)
    assert ablation.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    _check_schema(results)
    metrics = sorted((tmp_path / "runs").glob(f"*/{ablation.METRICS_FILE}"))
    assert len(metrics) == len(HEADS)
    stamps = [p.stat().st_mtime_ns for p in metrics]
    assert "| `conv4` |" in capsys.readouterr().out
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert figures == ["ablation_shapes_ap_vs_cost.png", "ablation_shapes_masks.png"]

    assert ablation.main(argv) == 0  # everything done: both runs are skipped
    assert capsys.readouterr().out.count("skipped (done)") == len(HEADS)
    assert [p.stat().st_mtime_ns for p in metrics] == stamps
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == results["runs"]


def _load(name: str):
    path = SCRIPT.parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _sweep_results(steps: int, aps: dict[str, list[tuple[float, float]]]) -> dict:
    runs = [
        {"head": head, "seed": seed, "eval": {"gt": {"mask": {"seen": {"AP": s}, "unseen": {"AP": u}}}}}
        for head, values in aps.items()
        for seed, (s, u) in enumerate(values)
    ]  # fmt: skip
    return {
        "splits": ["seen", "unseen"],
        "steps": steps,
        "heads": {head: {"params": 10 * (i + 1)} for i, head in enumerate(aps)},
        "runs": runs,
        "baselines": {"ellipse": {"seen": {"AP": 28.0}, "unseen": {"AP": 9.0}}},
    }


def test_sweep_table_gap_is_judged_against_the_pooled_seed_spread(tmp_path, capsys):
    table = _load("head_sweep_table")
    clear = _sweep_results(
        600,
        {"conv2": [(40, 20), (41, 21), (39, 19)], "hourglass52": [(44, 30), (45, 31), (43, 29)]},
    )
    noisy = _sweep_results(
        1500,
        {"conv2": [(40, 10), (41, 30), (39, 20)], "hourglass52": [(44, 12), (45, 32), (43, 22)]},
    )
    for name, results in (("clear", clear), ("noisy", noisy)):
        (tmp_path / f"{name}.json").write_text(json.dumps(results))
    out = tmp_path / "table.json"
    files = [str(tmp_path / "clear.json"), str(tmp_path / "noisy.json")]
    assert table.main([*files, "--out", str(out)]) == 0
    gaps = json.loads(out.read_text())["gaps"]
    assert [g["holds"] for g in gaps] == [True, False]
    assert gaps[0]["gap"] == 10.0 and gaps[0]["pooled_sd"] == 1.0
    text = capsys.readouterr().out
    assert "| 600 | `conv2` | 10 | 3 | 40.0 ± 1.0 | **20.0 ± 1.0** | 0.50 ± 0.01 |" in text
    assert "`ellipse` (no learning)" in text and "gap > 2 sd does not hold" in text
    # A head swept later, in its own file, is compared with the shallow head of the same
    # budget from another file.
    shallow = _sweep_results(600, {"conv2": [(40, 20), (41, 21), (39, 19)]})
    deep = _sweep_results(600, {"hourglass52": [(44, 26), (45, 27), (43, 25)]})
    for name, results in (("shallow", shallow), ("deep", deep)):
        (tmp_path / f"{name}.json").write_text(json.dumps(results))
    files = [str(tmp_path / "shallow.json"), str(tmp_path / "deep.json")]
    assert table.main([*files, "--out", str(out)]) == 0
    assert [(g["steps"], g["gap"]) for g in json.loads(out.read_text())["gaps"]] == [(600, 6.0)]


def test_photo_recipe_figures_come_from_the_cli_config(monkeypatch, tmp_path):
    """The photo recipe's seeds were trained by this script (``--dataset coco_mini --steps 800
    --params-override task.model.mask.image_channels=true``), and their BatchNorm
    statistics recomputed afterwards (``reweigh_model_dir.py --precise-bn 100``). With that
    setting named, the script's config is the one ``deepmac-nb train --experiment
    deepmac_coco_mini_voc_img --seed S`` builds, key by key."""
    from deepmac_nb.train import data_sources, train_cli

    script = _load_script()
    monkeypatch.setattr(data_sources, "prepare_experiment_data", lambda params: params)
    argv = ["--dataset", "coco_mini", "--steps", "800", "--heads", "hourglass20",
            "--params-override",
            "task.model.mask.image_channels=true,task.precise_bn_batches=100",
            "--out", str(tmp_path / "r.json")]  # fmt: skip
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    for seed in (0, 2):
        ablation = script.run_params(script.parse_args(argv), "hourglass20", seed).as_dict()
        cli_args = parser.parse_args(["--experiment", "deepmac_coco_mini_voc_img", "--seed",
                                      str(seed), "--model-dir", str(tmp_path / "m")])  # fmt: skip
        cli = train_cli.params_from_args(cli_args).as_dict()
        assert ablation == cli
        assert cli["task"]["seed"] == seed and cli["trainer"]["train_steps"] == 800
    # The comparison can fail: another override is another config.
    other = script.run_params(script.parse_args([*argv[:-4], "--out", "x"]), "hourglass20", 2)
    assert other.as_dict() != cli
