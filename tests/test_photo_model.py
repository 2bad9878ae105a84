"""The shipped photo model: small, portable, recorded, reproduced, and the offline default."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from deepmac_nb import photo_model, tutorial
from deepmac_nb.data import samples
from deepmac_nb.inference import segment_cli

ELLIPSE_VAL_DEV_NON_VOC = 36.2  # benchmarks.md: the inscribed ellipse on val_dev, GT boxes


def test_shipped_files_are_small_portable_and_recorded():
    assert photo_model.available()
    size = sum(p.stat().st_size for p in photo_model.ROOT.rglob("*") if p.is_file())
    assert size <= 20 * 2**20, size
    params = yaml.safe_load((photo_model.model_dir() / "params.yaml").read_text())
    assert set(params) == {"task"} and set(params["task"]) == {"model"}  # no local paths
    assert params["task"]["model"]["mask"]["image_channels"]
    info = photo_model.info()
    assert info["experiment"] == "deepmac_coco_mini_voc_img" and info["mask_classes"] == "voc"
    assert info["command"] and info["flip_tta"] and info["steps"] == 800
    (ckpt,) = photo_model.model_dir().glob("ckpt-*.index")
    assert ckpt.name == f"ckpt-{info['steps']}.index"
    # The claim it ships on: over >= 3 seeds, the recipe beats the ellipse by >= 2 on
    # val_dev's unseen (non-VOC) classes.
    seeds = [row["val_dev"]["non_voc"] for row in info["seeds"]]
    assert len(seeds) >= 3 and sum(seeds) / len(seeds) >= ELLIPSE_VAL_DEV_NON_VOC + 2
    assert info["seed"] in [row["seed"] for row in info["seeds"]]


def test_pyproject_ships_every_file_of_the_model():
    import fnmatch

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    pyproject = photo_model.ROOT.parents[1] / "pyproject.toml"
    globs = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    package = photo_model.ROOT.parent
    files = [p.relative_to(package).as_posix() for p in photo_model.ROOT.rglob("*")]
    data = [f for f in files if (package / f).is_file() and not f.endswith((".py", ".pyc"))]
    unshipped = [f for f in data if not any(fnmatch.fnmatch(f, g) for g in globs["deepmac_nb"])]
    assert len(data) >= 5 and not unshipped, unshipped  # json, yaml, checkpoint, index, data


@pytest.mark.large
def test_shipped_model_reproduces_its_recorded_val_dev_ap():
    root = samples.data_root() / "coco_mini"
    if not (root / "annotations" / "val_dev.json").is_file():
        pytest.skip(f"COCO-mini sample data absent ({root})")
    recorded = photo_model.info()["box_prompted_mask_AP"]["val_dev"]
    measured = photo_model.evaluate(
        photo_model.model_dir(), root / "annotations" / "val_dev.json", root / "images"
    )
    for split in ("voc", "non_voc"):
        assert abs(measured[split] - recorded[split]) <= 0.5, (split, measured, recorded)


def test_segment_defaults_to_the_shipped_model_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPMAC_NB_CACHE", str(tmp_path))
    assert segment_cli.resolve_model("auto") == "photo"
    (tmp_path / "deepmac_1024x1024_coco17.tar.gz").write_bytes(b"")  # a downloaded archive
    assert segment_cli.resolve_model("auto") == "official"
    assert segment_cli.resolve_model("runs/m") == "runs/m"
    args = argparse.Namespace(
        model="photo", min_conf=0.2, max_images=None, detections=str(tmp_path / "md.json"),
        images=str(tmp_path), out=str(tmp_path / "out"),
    )  # fmt: skip
    (tmp_path / "md.json").write_text("{}")
    segment_cli.check_args(args)  # a named model needs no path check
    monkeypatch.setattr(photo_model, "available", lambda: False)
    with pytest.raises(segment_cli.UserError, match="no shipped photo model"):
        segment_cli.check_args(args)


def test_notebooks_pick_the_shipped_model_for_photos_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPMAC_NB_CACHE", str(tmp_path))
    monkeypatch.setattr(tutorial, "online", lambda *a, **k: False)
    assert tutorial._auto_model(photos=True) == "photo"
    assert tutorial._auto_model(photos=False) == "quick"  # the shapes notebooks keep shapes
    assert tutorial.adaptable_model_dir("auto")[0] == photo_model.model_dir()
    assert tutorial.adaptable_model_dir("official")[0] == photo_model.model_dir()
    banner = tutorial.model_banner(f"{tutorial.PHOTO_LABEL} (x, flip TTA)", photos=True)
    assert "beats an inscribed ellipse" in banner


@pytest.mark.large
def test_segment_runs_the_shipped_model_on_the_camera_traps(tmp_path, capsys):
    from conftest import camera_traps_or_skip

    from deepmac_nb.cli import main

    ds = camera_traps_or_skip("mdv5")
    out = tmp_path / "seg"
    argv = ["segment", "--detections", str(ds.detections), "--images", str(ds.images)]
    assert main([*argv, "--out", str(out), "--max-images", "2"]) == 0  # no --model: photo
    assert "model: shipped photo model (flip TTA)" in capsys.readouterr().out
    summary = json.loads((out / segment_cli.SUMMARY_FILE).read_text())
    assert summary["images_written"] == 2
