"""Notebook 04 where the project's sample data folder does not exist (Colab, Kaggle with
internet off and a pip install): the camera-trap photos come from their download addresses
(here a local mirror folder, ``file://``), the detections from the package, and no other
address is reached (every proxy points at a closed port)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from deepmac_nb import demo
from deepmac_nb.data import samples
from deepmac_nb.inference import export, segment_cli
from deepmac_nb.modeling import config as cfg_lib

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_iwildcam_visualize.py"


@pytest.mark.large
def test_notebook_04_runs_offline_from_downloads(tmp_path, monkeypatch):
    mirror = samples.data_root() / "camera_traps" / "images"
    if not mirror.is_dir():
        pytest.skip("camera-trap photos absent (the test's local mirror)")
    model_dir = export.save_model_dir(
        export._built(cfg_lib.tiny_model_config(image_size=64)), tmp_path / "model"
    )
    monkeypatch.setenv(samples.ENV_VAR, str(tmp_path / "nowhere"))
    monkeypatch.setenv(samples.MIRROR_ENV, str(mirror))
    monkeypatch.setenv("DEEPMAC_NB_CACHE", str(tmp_path / "cache"))
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    out = tmp_path / "out"
    nb = demo.execute_notebook(
        NOTEBOOK, {"MODEL": str(model_dir), "OUTPUT_DIR": str(out), "MAX_IMAGES": 10,
                   "ADAPT_STEPS": 0},
        timeout=600, kernel_log=tmp_path / "kernel.log",
    )  # fmt: skip
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert f"model at {model_dir}" in text and "Model used for the masks below" in text
    images = tmp_path / "cache" / "camera_traps" / "images"
    assert len(list(images.glob("*.jp*g"))) == 14
    summary = json.loads((out / "iwildcam" / segment_cli.SUMMARY_FILE).read_text())
    assert summary["images_written"] == 10 and not summary["images_skipped"]
    with open(out / "iwildcam" / segment_cli.AREAS_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["image_id"] for r in rows} <= {p.stem for p in images.iterdir()}
