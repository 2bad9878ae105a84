"""Export: SavedModel with the official DeepMAC signature, builtin-ops TFLite, the
official-checkpoint loader (offline, on our own export) and safe archive extraction."""

import io
import json
import shutil
import tarfile

import numpy as np
import pytest
from conftest import camera_trap_prompts, run_signature_in_subprocess

from deepmac_nb import cli, pretrained
from deepmac_nb.inference import export
from deepmac_nb.inference.predictor import Predictor
from deepmac_nb.modeling import config as cfg_lib

BOXES = np.array([[0.1, 0.2, 0.6, 0.7], [0.4, 0.0, 1.0, 0.5], [0.3, 0.3, 0.3, 0.3]], np.float32)
TFLITE_TOLERANCE = 1e-3  # max abs difference of mask probabilities vs the SavedModel


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(model, model dir, SavedModel dir) of a tiny random-weight model."""
    root = tmp_path_factory.mktemp("export")
    model = export._built(cfg_lib.tiny_model_config(image_size=64))
    model_dir = export.save_model_dir(model, root / "run")
    assert cli.main(["export", "--model-dir", str(model_dir), "--out", str(root / "sm")]) == 0
    return model, model_dir, root / "sm"


def _image(height=48, width=80):
    return np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)


def test_saved_model_loads_without_deepmac_nb(run, tmp_path):
    model, _, saved = run
    image = _image()
    out, info = run_signature_in_subprocess(saved, image, BOXES, tmp_path)
    assert "deepmac_nb" not in info["modules"]
    assert info["inputs"] == {
        "input_tensor": ["uint8", [1, None, None, 3]], "boxes": ["float32", [1, None, 4]]
    }  # fmt: skip
    want = model.predict_masks(image[None], BOXES[None]).numpy()
    assert out["detection_masks"].shape == (1, 3, 16, 16)
    np.testing.assert_allclose(out["detection_masks"], want, atol=1e-5)
    dets = model.detect(image[None])
    for key in ("detection_boxes", "detection_scores", "detection_classes", "num_detections"):
        assert out[key].dtype == np.float32, key
        np.testing.assert_allclose(out[key], np.float32(dets[key].numpy()), atol=1e-5)


def test_saved_model_predictor_and_zero_boxes(run):
    model, _, saved = run
    predictor = Predictor.load(saved)
    assert (predictor.backend, predictor.mask_size) == ("saved_model", 16)
    want = model.predict_masks(_image()[None], BOXES[None]).numpy()[0]
    np.testing.assert_allclose(predictor.predict_box_masks(_image(), BOXES), want, atol=1e-5)
    assert predictor.predict(_image(), []).shape == (0, 48, 80)


def test_export_overwrites_atomically_and_reports_bad_dirs(run, tmp_path, capsys):
    _, model_dir, _ = run
    out = tmp_path / "sm"
    for _ in range(2):
        assert cli.main(["export", "--model-dir", str(model_dir), "--out", str(out)]) == 0
    assert (out / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]  # no .tmp-/.old- litter
    assert cli.main(["export", "--model-dir", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "not a model dir" in capsys.readouterr().err


def test_matmul_crop_model_matches_native(run):
    model = run[0]
    matmul = export.rebuild(model, crop_method="matmul")
    image = _image()
    np.testing.assert_allclose(
        matmul.predict_masks(image[None], BOXES[None]),
        model.predict_masks(image[None], BOXES[None]),
        atol=1e-5,
    )


def test_tflite_builtin_ops_match_saved_model_on_camera_traps(run, tmp_path):
    _, model_dir, saved = run
    path = tmp_path / "m.tflite"
    argv = ["export", "--model-dir", str(model_dir), "--out", str(path), "--format", "tflite"]
    assert cli.main([*argv, "--max-boxes", "4"]) == 0  # 4 < boxes per photo: chunking runs
    lite, reference = Predictor.load(path), Predictor.from_saved_model(saved)
    ops = {op["op_name"] for op in lite._box_mask_fn._interpreter._get_ops_details()}
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    worst = 0.0
    for image, boxes in camera_trap_prompts():
        got, want = lite.predict_box_masks(image, boxes), reference.predict_box_masks(image, boxes)
        assert got.shape == want.shape == (len(boxes), 16, 16)
        worst = max(worst, float(np.abs(got - want).max(initial=0.0)))
    assert worst < TFLITE_TOLERANCE
    print(f"TFLite vs SavedModel max abs diff: {worst:.2e}")


def _official_folder(saved, root):
    folder = root / pretrained.MODEL_NAME
    shutil.copytree(saved, folder / "saved_model")
    archive = root / f"{pretrained.MODEL_NAME}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=pretrained.MODEL_NAME)
    return folder, archive


def test_load_official_from_folder_archive_and_download(run, tmp_path, monkeypatch):
    model, _, saved = run
    folder, archive = _official_folder(saved, tmp_path)
    want = model.predict_masks(_image()[None], BOXES[None]).numpy()[0]
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "default_cache"))
    for predictor in (
        pretrained.load_official(folder),
        pretrained.load_official(archive, cache_dir=tmp_path / "cache"),
        Predictor.load(archive),  # extracts into $DEEPMAC_NB_CACHE
        pretrained.load_official(None, cache_dir=tmp_path / "dl", url=archive.as_uri()),
    ):
        np.testing.assert_allclose(predictor.predict_box_masks(_image(), BOXES), want, atol=1e-5)
    cached = tmp_path / "dl" / archive.name
    record = json.loads((tmp_path / "dl" / f"{archive.name}.json").read_text())
    assert record["size"] == cached.stat().st_size == archive.stat().st_size
    assert record["sha256"] == pretrained.sha256_of(archive)
    pretrained.load_official(None, cache_dir=tmp_path / "dl", url="http://127.0.0.1:9/x")  # cached
    with open(cached, "ab") as f:
        f.write(b"tampered")
    shutil.rmtree(tmp_path / "dl" / pretrained.MODEL_NAME)  # force a fresh extraction
    with pytest.raises(ValueError, match="does not match its download record"):
        pretrained.load_official(None, cache_dir=tmp_path / "dl")


def test_download_failure_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Could not download"):
        pretrained.load_official(None, cache_dir=tmp_path, url="http://127.0.0.1:9/none.tar.gz")
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(ValueError, match="neither"):
        pretrained.load_official(tmp_path / "missing.zip")


def _tar(path, members):
    """Writes a tar of (TarInfo, bytes or None) pairs."""
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([(_info("/tmp/evil.txt"), b"x")], "absolute"),
        ([(_info("a/../../evil.txt"), b"x")], r"'\.\.'"),
        ([(_info("link", tarfile.SYMTYPE, "/etc"), None)], "outside"),
        ([(_info("a/link", tarfile.SYMTYPE, "../../outside"), None)], "outside"),
        ([(_info("hard", tarfile.LNKTYPE, "../outside/x"), None)], "outside"),
        ([(_info("d", tarfile.SYMTYPE, "."), None), (_info("d/f.txt"), b"x")], "through a link"),
        ([(_info("fifo", tarfile.FIFOTYPE), None)], "FIFO"),
    ],
)
def test_unsafe_archives_are_refused_before_writing(tmp_path, members, match):
    archive = _tar(tmp_path / "bad.tar", members)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(pretrained.UnsafeArchiveError, match=match):
        pretrained.safe_extract(archive, dest)
    assert not list(dest.iterdir()) and not (tmp_path / "outside").exists()


def test_safe_archive_with_inner_link_extracts(tmp_path):
    members = [(_info("m/sub/file.txt"), b"data"), (_info("m/ok", tarfile.SYMTYPE, "sub"), None)]
    archive = _tar(tmp_path / "good.tar", members)
    pretrained.safe_extract(archive, tmp_path / "dest")
    assert (tmp_path / "dest" / "m" / "ok" / "file.txt").read_bytes() == b"data"
