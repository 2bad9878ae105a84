"""Export: SavedModel with the official DeepMAC signature, builtin-ops TFLite, downloads
(offline: file:// addresses) and safe, content-keyed archive extraction."""

import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from conftest import camera_trap_prompts, run_signature_in_subprocess, tflite_ops_by_signature

from deepmac_nb import archives, cli, download, loading, pretrained
from deepmac_nb.errors import UserError
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


@pytest.mark.large
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
    # Another process, another oneDNN thread split: sums can differ in the last bits.
    np.testing.assert_allclose(out["detection_masks"], want, atol=1e-4)
    dets = model.detect(image[None])
    for key in ("detection_boxes", "detection_scores", "detection_classes", "num_detections"):
        assert out[key].dtype == np.float32, key
        np.testing.assert_allclose(out[key], np.float32(dets[key].numpy()), atol=1e-4)


def test_saved_model_predictor_and_zero_boxes(run):
    model, _, saved = run
    predictor = loading.load(saved)
    assert (predictor.backend, predictor.mask_size) == ("saved_model", 16)
    want = model.predict_masks(_image()[None], BOXES[None]).numpy()[0]
    np.testing.assert_allclose(predictor.predict_box_masks(_image(), BOXES), want, atol=1e-5)
    assert predictor.predict(_image(), []).shape == (0, 48, 80)


@pytest.mark.large
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


@pytest.mark.large
def test_tflite_builtin_ops_match_saved_model_on_camera_traps(run, tmp_path):
    _, model_dir, saved = run
    path = tmp_path / "m.tflite"
    argv = ["export", "--model-dir", str(model_dir), "--out", str(path), "--format", "tflite"]
    assert cli.main([*argv, "--max-boxes", "4"]) == 0  # 4 < boxes per photo: chunking runs
    lite, reference = loading.load(path), Predictor.from_saved_model(saved)
    ops = tflite_ops_by_signature(path)  # every signature's subgraph, not only the first
    assert sorted(ops) == ["features", "masks"] and all(ops.values()), ops
    assert not [op for names in ops.values() for op in names if op.startswith("CUSTOM")], ops
    worst = 0.0
    for image, boxes in camera_trap_prompts():
        got, want = lite.predict_box_masks(image, boxes), reference.predict_box_masks(image, boxes)
        assert got.shape == want.shape == (len(boxes), 16, 16)
        worst = max(worst, float(np.abs(got - want).max(initial=0.0)))
    assert worst < TFLITE_TOLERANCE
    print(f"TFLite vs SavedModel max abs diff: {worst:.2e}")


@pytest.mark.large
def test_tflite_answers_detect_with_one_clear_error(run, tmp_path):
    _, model_dir, _ = run
    path = tmp_path / "m.tflite"
    argv = ["export", "--model-dir", str(model_dir), "--out", str(path), "--format", "tflite"]
    assert cli.main(argv) == 0
    with pytest.raises(ValueError, match="tflite model has no detector outputs"):
        loading.load(path).detect(_image())


def _archive_of(saved, root, name=pretrained.MODEL_NAME):
    folder = root / name
    shutil.copytree(saved, folder / "saved_model")
    archive = root / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=name)
    return folder, archive


def test_download_records_checks_and_reuses(run, tmp_path, monkeypatch):
    model, _, saved = run
    _, archive = _archive_of(saved, tmp_path / "src")
    want = model.predict_masks(_image()[None], BOXES[None]).numpy()[0]
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "default_cache"))
    predictor = pretrained.load_official(None, url=archive.as_uri())  # into $DEEPMAC_NB_CACHE
    np.testing.assert_allclose(predictor.predict_box_masks(_image(), BOXES), want, atol=1e-5)
    cached = tmp_path / "default_cache" / archive.name
    record = json.loads(download.record_path(cached).read_text())
    assert record["size"] == cached.stat().st_size == archive.stat().st_size
    assert record["sha256"] == download.sha256_of(archive)
    pretrained.load_official(None, url="http://127.0.0.1:9/x")  # cached: no network
    with open(cached, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(UserError, match="does not match its expected size/sha256"):
        pretrained.load_official(None)


def test_download_checks_a_known_checksum_and_leaves_nothing(tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"12345")
    digest = download.sha256_of(src)
    got = download.download(src.as_uri(), tmp_path / "d" / "f.bin", size=5, sha256=digest)
    assert got.read_bytes() == b"12345"
    with pytest.raises(UserError, match="expected 4 bytes"):
        download.download(src.as_uri(), tmp_path / "e" / "f.bin", size=4, progress=False)
    assert not (tmp_path / "e").exists() or not list((tmp_path / "e").iterdir())


def test_download_failure_is_one_line_after_retries(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(download, "_RETRY_PAUSE_S", (0.0,))
    real = download._fetch_once

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(download, "_fetch_once", counting)
    with pytest.raises(UserError, match=r"Could not download .* after 3 attempts") as exc:
        pretrained.load_official(None, cache_dir=tmp_path, url="http://127.0.0.1:9/none.tar.gz")
    assert len(calls) == 3 and "\n" not in str(exc.value)
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(ValueError, match="neither"):
        pretrained.load_official(tmp_path / "missing.zip")


def test_http_is_upgraded_where_the_host_serves_https():
    assert download.secure_url(pretrained.URL).startswith("https://download.tensorflow.org/")
    assert download.secure_url("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"


def test_extraction_is_keyed_by_the_archive_content(run, tmp_path):
    _, _, saved = run
    _, first = _archive_of(saved, tmp_path / "a")
    again = archives.extract_cached(first, tmp_path / "cache")
    assert archives.extract_cached(first, tmp_path / "cache") == again  # reused
    other = tmp_path / "b" / first.name  # same name, other content
    other.parent.mkdir()
    with tarfile.open(other, "w:gz") as tar:
        data = b"other"
        info = tarfile.TarInfo("deepmac_1024x1024_coco17/README")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    fresh = archives.extract_cached(other, tmp_path / "cache")
    assert fresh != again and (fresh / "deepmac_1024x1024_coco17" / "README").is_file()
    assert not (fresh / "deepmac_1024x1024_coco17" / "saved_model").exists()


def test_zip_members_are_checked_too(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(archives.UnsafeArchiveError, match=r"'\.\.'"):
        archives.safe_extract(bad, tmp_path / "dest")
    assert not (tmp_path / "evil.txt").exists()


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
    with pytest.raises(archives.UnsafeArchiveError, match=match):
        archives.safe_extract(archive, dest)
    assert not list(dest.iterdir()) and not (tmp_path / "outside").exists()


def test_safe_archive_with_inner_link_extracts(tmp_path):
    members = [(_info("m/sub/file.txt"), b"data"), (_info("m/ok", tarfile.SYMTYPE, "sub"), None)]
    archive = _tar(tmp_path / "good.tar", members)
    archives.safe_extract(archive, tmp_path / "dest")
    assert (tmp_path / "dest" / "m" / "ok" / "file.txt").read_bytes() == b"data"


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--model-dir", "NOPE"], "is not a model dir"),
        (["--model-dir", "RUN", "--max-boxes", "0"], "--max-boxes must be at least 1"),
        (["--model-dir", "RUN", "--format", "tflite", "--out", "TMP"], "is a folder"),
    ],
)
def test_bad_export_invocations_answer_before_tensorflow(tmp_path, extra, match):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "params.yaml").write_text("task: {model: {}}\n")
    names = {"NOPE": tmp_path / "nope", "RUN": tmp_path / "run", "TMP": tmp_path}
    argv = ["export", "--out", str(tmp_path / "sm"), *[str(names.get(a, a)) for a in extra]]
    code = (
        "import sys; from deepmac_nb import cli; rc = cli.main(sys.argv[1:]); "
        "print('tensorflow' in sys.modules); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout.strip() == "False"
    assert match in proc.stderr and proc.stderr.count("\n") == 1
