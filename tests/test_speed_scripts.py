"""The inference benchmarks run end to end at toy sizes and print their JSON contract.

Speeds are not asserted (goals live in docs/benchmarks.md); these tests keep the scripts
working and their last line parseable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import camera_traps_or_skip

from deepmac_nb.inference import export
from deepmac_nb.modeling import config as cfg_lib

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *argv: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.large
def test_mask_head_speed_reports_every_runtime():
    out = _run("mask_head_speed.py", "--heads", "conv4:8", "--batches", "4", "--seconds", "0.05")
    records = out["records"]
    assert [r["runtime"] for r in records] == ["graph", "xla", "frozen", "tflite"]
    for record in records:
        assert record["gflops_per_s"] > 0 and record["conv_ceiling_gflops_per_s"] > 0
        assert record["mflops_per_instance"] > 0 and 0 < record["share_of_peak"]
    assert len(out["matmul_peak_gflops_per_s"]) == 2


@pytest.mark.large
@pytest.mark.parametrize("backend", ["tf", "tflite"])
def test_inference_speed_json_contract(tmp_path, backend):
    ds = camera_traps_or_skip("mdv5")
    model = export._built(cfg_lib.tiny_model_config(image_size=64))
    model_dir = export.save_model_dir(model, tmp_path / "run")
    argv = ["--model", str(model_dir), "--detections", str(ds.detections),
            "--images", str(ds.images), "--backend", backend, "--image-px", "64"]  # fmt: skip
    out = _run("inference_speed.py", *argv)
    for key in ("images_per_s", "ms_per_box", "mask_head_gflops_per_s",
                "matmul_peak_gflops_per_s", "boxes", "image_px", "backend"):  # fmt: skip
        assert out[key] is not None, key
    assert (out["backend"], out["image_px"]) == (backend, 64)
    assert set(out["ms_per_image_vs_boxes"]) == {"1", "10", "100"}


@pytest.mark.large
def test_inference_speed_runs_a_deepmarc_model_dir(tmp_path):
    import tensorflow as tf
    import yaml

    from deepmac_nb.deepmarc.predictor import DeepMARCModel
    from deepmac_nb.train import experiments

    ds = camera_traps_or_skip("serengeti_gt")
    params = experiments.get_experiment("deepmarc_smoke")
    model = DeepMARCModel.from_config(params.task.model)
    tf.train.Checkpoint(model=model.model).save(str(tmp_path / "run" / "ckpt"))
    (tmp_path / "run" / "params.yaml").write_text(yaml.safe_dump(params.as_dict()))
    argv = ["--model", str(tmp_path / "run"), "--detections", str(ds.detections),
            "--images", str(ds.images), "--backend", "tflite"]  # fmt: skip
    out = _run("inference_speed.py", *argv)
    assert (out["backend"], out["image_px"]) == ("tflite", 64)
    assert out["images_per_s"] > 0 and out["mask_head_gflops_per_s"] is None
