"""``deepmac-nb evaluate --model``: a training model dir through both protocols."""

import json

import numpy as np
import pytest

from deepmac_nb.cli import main
from deepmac_nb.inference import export
from deepmac_nb.modeling import config as cfg_lib
from deepmac_nb.modeling import deepmac_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = cfg_lib.tiny_model_config()
    cfg.input_size = [96, 96, 3]
    model = deepmac_model.build_deepmac_model(cfg)
    model.predict_masks(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 1, 4), np.float32))
    return export.save_model_dir(model, tmp_path_factory.mktemp("model"))


@pytest.mark.parametrize("protocol", ["gt", pytest.param("detected", marks=pytest.mark.large)])
def test_evaluate_model_dir(model_dir, tiny_shapes, tmp_path, protocol):
    out = tmp_path / "metrics.json"
    args = ["evaluate", "--model", str(model_dir), "--annotations", str(tiny_shapes / "val.json"),
            "--images", str(tiny_shapes / "images"), "--boxes", protocol, "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads(out.read_text())
    assert metrics["protocol"] == ("box_prompted" if protocol == "gt" else "detected")
    assert set(metrics["mask"]) >= {"all", "seen", "unseen"}
    assert 0.0 <= metrics["mask"]["unseen"]["AP"] <= 100.0
    assert ("box" in metrics) == (protocol == "detected")
    assert metrics["images"] == 8
