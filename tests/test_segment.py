"""MegaDetector variants -> records, and `deepmac-nb segment` -> iWildCam-style outputs
(ids = position in the MegaDetector file, mask areas, loud failures)."""

import csv
import dataclasses
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from deepmac_nb import cli
from deepmac_nb.data import samples
from deepmac_nb.inference import export, iwildcam, megadetector, segment_cli
from deepmac_nb.inference.megadetector import parse_detections
from deepmac_nb.inference.predictor import Predictor
from deepmac_nb.modeling import config as cfg_lib
from deepmac_nb.modeling import crops

W, H = 200, 100  # synthetic photo size


def _det(bbox, conf=0.9, category="1", key="conf"):
    return {"category": category, key: conf, "bbox": bbox}


def test_md_1x_boxes_become_normalized_yxyx():
    data = {"images": [{"file": "a/b.jpg", "detections": [_det([0.1, 0.2, 0.3, 0.4])]}]}
    parsed = parse_detections(data)
    entry = parsed.images[0]
    assert (parsed.format, entry.key, entry.file) == ("md_1x", "a/b", "a/b.jpg")
    np.testing.assert_allclose(entry.detections[0].box, [0.2, 0.1, 0.6, 0.4])
    assert (entry.detections[0].category, entry.detections[0].conf) == ("animal", 0.9)


def test_iwildcam_2021_uses_ids():
    data = {"detection_categories": {"1": "animal", "2": "person"},
            "images": [{"id": "905a", "detections": [_det([0.5, 0.5, 0.5, 0.5], 0.7, "2")]}]}  # fmt: skip
    parsed = parse_detections(data)
    entry = parsed.images[0]
    assert (parsed.format, entry.key, entry.file) == ("iwildcam2021", "905a", "905a.jpg")
    np.testing.assert_allclose(entry.detections[0].box, [0.5, 0.5, 1.0, 1.0])
    assert entry.detections[0].category == "person"


def test_iwildcam_2020_pixel_boxes_use_entry_or_header_size(tmp_path):
    Image.new("RGB", (W, H)).save(tmp_path / "x2.jpg")
    data = {"images": [
        {"id": "x1", "width": W, "height": H, "detections": [_det([20, 10, 100, 50])]},
        {"id": "x2", "detections": [_det([20, 10, 100, 50])]},
        {"id": "x3", "detections": [_det([20, 10, 100, 50])]},  # no size, no file
    ]}  # fmt: skip
    (tmp_path / "md.json").write_text(json.dumps(data))
    parsed = megadetector.read_detections(tmp_path / "md.json", tmp_path)
    assert parsed.format == "iwildcam2020"
    for entry in parsed.images[:2]:
        np.testing.assert_allclose(entry.detections[0].box, [0.1, 0.1, 0.6, 0.6])
    assert parsed.images[2].failure == "missing image"


def test_list_style_per_image_and_flat(tmp_path):
    per_image = [{"file": "p.jpg", "width": W, "height": H,
                  "detections": [_det([20, 10, 120, 60], 0.8, "animal", key="confidence")]}]  # fmt: skip
    Image.new("RGB", (W, H)).save(tmp_path / "p.jpg")
    flat = [{"image": "p.jpg", **_det([20, 10, 120, 60], 0.8, 1, key="confidence")},
            {"image": "p.jpg", **_det([0, 0, 10, 10], 0.3, 2, key="confidence")}]  # fmt: skip
    for data in (per_image, flat):
        parsed = parse_detections(data, megadetector._size_lookup(tmp_path))
        assert parsed.format == "list_xyxy"
        det = parsed.images[0].detections[0]
        np.testing.assert_allclose(det.box, [0.1, 0.1, 0.6, 0.6])
        assert (det.category, det.conf, det.index) == ("animal", 0.8, 0)
    assert parsed.images[0].detections[1].category == "person"


def test_bad_entries_and_detections_are_dropped_and_counted():
    dets = [
        _det([0.1, 0.1, 0.2, 0.2]),  # ok
        _det([float("nan"), 0.1, 0.2, 0.2]),  # nan box
        _det([0.1, 0.1, 0.0, 0.2]),  # zero width
        _det([0.9, 0.9, 0.5, 0.5]),  # partly outside: clipped
        _det([1.5, 1.5, 0.2, 0.2]),  # fully outside: degenerate after clipping
        _det([0.1, 0.1, 0.2]),  # malformed
        _det([0.1, 0.1, 0.2, 0.2], category="9"),  # unknown category
    ]
    data = {"images": [
        {"file": "ok.jpg", "detections": dets},
        {"file": "failed.jpg", "failure": "Failure image access", "detections": None},
        {"file": "empty.jpg", "detections": []},
        {"file": "ok.png", "detections": []},  # same key as ok.jpg
        {"file": "video.mp4", "frame_rate": 20, "detections": []},
    ]}  # fmt: skip
    images = parse_detections(data).images
    ok = images[0]
    assert [d.index for d in ok.detections] == [0, 3]
    np.testing.assert_allclose(ok.detections[1].box, [0.9, 0.9, 1.0, 1.0])
    assert dict(ok.dropped) == {
        "nan box": 1, "degenerate box": 2, "clipped box": 1, "malformed detection": 1,
        "unknown category": 1,
    }  # fmt: skip
    assert [e.failure for e in images[1:]] == [
        "detector failure", None, "duplicate image key", "video (not supported)"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("file", "key"),
    [("/abs/dir/x.jpg", "abs/dir/x"), ("..\\..\\up\\y.JPG", "up/y"), ("C:/d/z.png", "d/z")],
)
def test_image_keys_stay_inside_the_output(file, key):
    assert megadetector.image_key(file) == key


def test_unknown_layouts_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="Not MegaDetector"):
        parse_detections({"annotations": []})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="Cannot read"):
        megadetector.read_detections(tmp_path / "bad.json")


def test_paste_region_matches_paste_masks():
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = (int(v) for v in rng.integers(1, 120, 2))
        corners = rng.uniform(-0.2, 1.2, 4).astype(np.float32)
        box = np.concatenate(
            [np.minimum(corners[:2], corners[2:]), np.maximum(corners[:2], corners[2:])]
        )
        mask = rng.random((1, 16, 16)).astype(np.float32)
        want = crops.paste_masks(mask, box[None], height, width).numpy()[0]
        got = np.zeros((height, width), np.float32)
        region = iwildcam.paste_region(mask[0], box, height, width)
        if region is not None:
            got[region[0], region[1]] = region[2]
        np.testing.assert_allclose(got, want, atol=1e-5)


def _constant_predictor(value=0.9):
    return Predictor(lambda image, boxes: np.full((len(boxes), 8, 8), value, np.float32), 8, "test")


def _write_set(tmp_path, images):
    """Synthetic photos + an MD 1.x file; ``images`` maps file -> detections (or entry)."""
    (tmp_path / "img").mkdir(exist_ok=True)
    entries = []
    for name, dets in images.items():
        if name != "missing.jpg":
            Image.new("RGB", (W, H), (90, 120, 30)).save(tmp_path / "img" / name)
        entries.append(dets if isinstance(dets, dict) else {"file": name, "detections": dets})
    (tmp_path / "md.json").write_text(json.dumps({"images": entries}))
    return megadetector.read_detections(tmp_path / "md.json", tmp_path / "img")


def test_segment_overlaps_conf_order_and_bad_images(tmp_path):
    detections = _write_set(tmp_path, {
        "a.jpg": [_det([0.0, 0.0, 0.6, 1.0], 0.5), _det([0.4, 0.0, 0.6, 1.0], 0.95),
                  _det([0.9, 0.9, 0.05, 0.05], 0.1)],  # last: below --min-conf
        "empty.jpg": [],
        "missing.jpg": [_det([0.1, 0.1, 0.2, 0.2])],
        "failed.jpg": {"file": "failed.jpg", "failure": "Failure image access"},
    })  # fmt: skip
    (tmp_path / "img" / "corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    entries = json.loads((tmp_path / "md.json").read_text())["images"]
    entries.append({"file": "corrupt.jpg", "detections": [_det([0.1, 0.1, 0.2, 0.2])]})
    (tmp_path / "md.json").write_text(json.dumps({"images": entries}))
    detections = megadetector.read_detections(tmp_path / "md.json", tmp_path / "img")
    out = tmp_path / "out"
    summary = segment_cli.segment(_constant_predictor(), detections, tmp_path / "img", out,
                                  overlays=True, progress=False)  # fmt: skip
    labels = np.array(Image.open(out / "instance_masks" / "a.png"))
    assert labels.dtype == np.uint8 and labels.shape == (H, W)
    assert labels[10, 20] == 1 and labels[10, 150] == 2  # x < 0.4: only box 1; overlap: conf
    assert set(np.unique(labels)) == {1, 2}  # the low-conf detection is not written
    assert not np.array(Image.open(out / "instance_masks" / "empty.png")).any()
    assert (out / "overlays" / "a.jpg").is_file()
    assert summary["images_skipped"] == {
        "missing image": 1, "corrupt image": 1, "detector failure": 1
    }  # fmt: skip
    assert (summary["images_written"], summary["images_all_zero"]) == (2, 1)
    assert summary["detections_dropped"] == {"below min conf": 1}
    coco = COCO(str(out / segment_cli.RESULTS_FILE))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=["a"]))
    assert [(a["mask_id"], a["detection_index"], a["score"]) for a in anns] == [
        (1, 0, 0.5), (2, 1, 0.95)
    ]  # fmt: skip
    assert coco.annToMask(anns[0]).sum() == 120 * H  # its own mask: overlap kept in RLE


def test_more_than_255_instances_give_16_bit_png(tmp_path):
    dets = [_det([i % 20 * 0.05, i // 20 / 15, 0.05, 1 / 15], 0.5) for i in range(300)]
    detections = _write_set(tmp_path, {"many.jpg": dets})
    summary = segment_cli.segment(_constant_predictor(), detections, tmp_path / "img",
                                  tmp_path / "out", min_conf=0.0, progress=False)  # fmt: skip
    labels = np.array(Image.open(tmp_path / "out" / "instance_masks" / "many.png"))
    assert labels.dtype == np.uint16 and labels.max() == 300
    assert summary["images_16bit_png"] == ["many"]
    assert "16-bit PNGs" in segment_cli.format_summary(summary)


def test_16_bit_rule_follows_the_largest_id_not_the_count(tmp_path):
    low = [_det([0.0, 0.0, 0.01, 0.01], 0.01) for _ in range(299)]  # filtered by --min-conf
    detections = _write_set(tmp_path, {"gap.jpg": [*low, _det([0.2, 0.2, 0.5, 0.5], 0.9)]})
    summary = segment_cli.segment(_constant_predictor(), detections, tmp_path / "img",
                                  tmp_path / "out", progress=False)  # fmt: skip
    labels = np.array(Image.open(tmp_path / "out" / "instance_masks" / "gap.png"))
    assert labels.dtype == np.uint16 and set(np.unique(labels)) == {0, 300}
    assert summary["instances_written"] == 1 and summary["images_16bit_png"] == ["gap"]


def test_ids_are_the_position_in_the_megadetector_file(tmp_path):
    """The iWildCam 2021 spec: pixel k = the k-th detection of the image in the file."""
    detections = _write_set(tmp_path, {
        "a.jpg": [_det([0.0, 0.0, 0.3, 0.3], 0.05),  # below the default --min-conf 0.2
                  _det([0.5, 0.5, 0.4, 0.4], 0.9),
                  _det([0.1, 0.1, 0.2]),  # malformed: dropped, keeps its place
                  _det([0.0, 0.6, 0.3, 0.3], 0.8)],
    })  # fmt: skip
    out = tmp_path / "out"
    segment_cli.segment(_constant_predictor(), detections, tmp_path / "img", out, progress=False)
    labels = np.array(Image.open(out / "instance_masks" / "a.png"))
    assert set(np.unique(labels)) == {0, 2, 4}
    assert labels[80, 160] == 2 and labels[10, 10] == 0 and labels[80, 20] == 4
    record = json.loads((out / "per_image" / "a.json").read_text())
    assert [(a["mask_id"], a["detection_index"]) for a in record["annotations"]] == [
        (2, 1), (4, 3)
    ]  # fmt: skip


def test_mask_areas_in_per_image_json_and_one_csv(tmp_path):
    detections = _write_set(tmp_path, {
        "a.jpg": [_det([0.0, 0.0, 0.5, 0.5], 0.9), _det([0.5, 0.5, 0.5, 0.5], 0.8, "2")],
        "b.jpg": [_det([0.25, 0.25, 0.5, 0.5], 0.7)],
    })  # fmt: skip
    half = Predictor(  # top half of each box
        lambda image, boxes: np.concatenate(
            [np.ones((len(boxes), 4, 8)), np.zeros((len(boxes), 4, 8))], axis=1
        ).astype(np.float32),
        8,
        "test",
    )
    out = tmp_path / "out"
    segment_cli.segment(half, detections, tmp_path / "img", out, progress=False)
    record = json.loads((out / "per_image" / "a.json").read_text())
    ann = record["annotations"][0]
    box_px = 0.5 * W * 0.5 * H
    assert ann["area"] == int((np.array(Image.open(out / "instance_masks" / "a.png")) == 1).sum())
    assert (
        abs(ann["box_fraction"] - ann["area"] / box_px) < 1e-6 and 0.4 < ann["box_fraction"] < 0.6
    )
    with open(out / segment_cli.AREAS_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == segment_cli.AREA_COLUMNS
    assert [(r["image_id"], r["mask_id"], r["category"]) for r in rows] == [
        ("a", "1", "animal"), ("a", "2", "person"), ("b", "1", "animal")
    ]  # fmt: skip
    assert int(rows[0]["area_px"]) == ann["area"]
    assert float(rows[0]["box_fraction"]) == pytest.approx(ann["box_fraction"])


def test_overlays_are_labelled():
    det = megadetector.Detection(4, (0.1, 0.1, 0.5, 0.5), "animal", 0.934)
    assert iwildcam.overlay_label(det) == "#5 animal 0.93"
    image = np.full((H, W, 3), 128, np.uint8)
    labels = np.zeros((H, W), np.uint8)
    drawn = iwildcam.overlay(image, labels, [det])
    plain = iwildcam.overlay(image, labels, [dataclasses.replace(det, conf=0.5)])
    assert (drawn != plain).any()  # the text differs, so the label is drawn


def _md_file(tmp_path, images):
    (tmp_path / "img").mkdir(exist_ok=True)
    data = {"detection_categories": {"1": "animal", "2": "person"}, "images": images}
    (tmp_path / "md.json").write_text(json.dumps(data))
    return ["segment", "--detections", str(tmp_path / "md.json"), "--images",
            str(tmp_path / "img"), "--out", str(tmp_path / "out")]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--min-conf", "5"], r"--min-conf must be in \[0, 1\]"),
        (["--min-conf", "-0.1"], r"--min-conf must be in \[0, 1\]"),
        (["--categories", "animal,cat"], "unknown category 'cat'; the file has 1=animal, 2=person"),
        (["--max-images", "0"], "--max-images must be at least 1"),
    ],
)
def test_bad_options_exit_2_before_any_model_loads(tmp_path, capsys, monkeypatch, extra, match):
    from deepmac_nb import loading

    argv = _md_file(tmp_path, [{"file": "a.jpg", "detections": []}])
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"")  # would fail if loaded
    monkeypatch.setattr(loading, "load", lambda *a, **k: pytest.fail("model was loaded"))
    assert cli.main([*argv, "--model", str(tmp_path / "model"), *extra]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and err.count("\n") == 1 and "Traceback" not in err


def test_bad_paths_exit_2_in_one_line(tmp_path, capsys):
    argv = _md_file(tmp_path, [])
    cases = [
        (["--model", str(tmp_path / "nope")], "--model: Model path not found"),
        (["--model", str(tmp_path)], "--model: Don't know how to load"),
    ]
    for extra, match in cases:
        assert cli.main([*argv, *extra]) == 2
        assert match in capsys.readouterr().err
    argv[argv.index("--images") + 1] = str(tmp_path / "no_images")
    assert cli.main([*argv, "--model", str(tmp_path)]) == 2
    assert "--images: no such folder" in capsys.readouterr().err


def test_a_run_that_wrote_no_image_exits_non_zero(tmp_path, capsys, monkeypatch):
    from deepmac_nb import loading

    argv = _md_file(tmp_path, [{"file": "gone.jpg", "detections": [_det([0.1, 0.1, 0.2, 0.2])]}])
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"")
    monkeypatch.setattr(loading, "load", lambda *a, **k: _constant_predictor())
    assert cli.main([*argv, "--model", str(tmp_path / "model")]) == 1
    out = capsys.readouterr().out
    assert "0 images written" in out and "missing image: 1" in out and "no image was written" in out


def test_bad_invocations_answer_without_importing_tensorflow(tmp_path):
    argv = _md_file(tmp_path, [{"file": "a.jpg", "detections": []}])
    code = (
        "import sys; from deepmac_nb import cli; rc = cli.main(sys.argv[1:]); "
        "print('TF', 'tensorflow' in sys.modules, 'numpy' in sys.modules); sys.exit(rc)"
    )
    for extra in (["--model", str(tmp_path), "--min-conf", "5"], ["--model", "nope"]):
        proc = subprocess.run([sys.executable, "-c", code, *argv, *extra],
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout.strip() == "TF False False" and proc.stderr.count("\n") == 1


def test_category_filter_and_max_images(tmp_path):
    detections = _write_set(tmp_path, {
        "a.jpg": [_det([0.0, 0.0, 0.3, 0.3], 0.9, "1"), _det([0.5, 0.5, 0.5, 0.5], 0.8, "2")],
        "b.jpg": [_det([0.0, 0.0, 0.3, 0.3], 0.9, "2")],
    })  # fmt: skip
    out = tmp_path / "out"
    summary = segment_cli.segment(_constant_predictor(), detections, tmp_path / "img", out,
                                  categories=["person"], max_images=1, progress=False)  # fmt: skip
    assert (summary["images_considered"], summary["images_written"]) == (1, 1)
    assert summary["detections_dropped"] == {"category not selected": 1}
    labels = np.array(Image.open(out / "instance_masks" / "a.png"))
    assert set(np.unique(labels)) == {0, 2} and labels[90, 190] == 2  # the person box
    assert not (out / "instance_masks" / "b.png").exists()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random model whose masks are ~1 everywhere in the box (project_out bias 20),
    so label maps show the overlap order."""
    model = export._built(cfg_lib.tiny_model_config(image_size=64))
    bias = next(w for w in model.mask_head.weights if "project_out/bias" in w.name)
    bias.assign([20.0])
    return export.save_model_dir(model, tmp_path_factory.mktemp("run"))


def _expected_centre_labels(kept, height, width):
    """(row, col, mask id) at each box centre: the highest-conf box over it wins."""
    out = []
    for det in kept:
        ymin, xmin, ymax, xmax = det.box
        row, col = round((ymin + ymax) / 2 * (height - 1)), round((xmin + xmax) / 2 * (width - 1))
        over = [
            (d.conf, -n, d.index + 1)
            for n, d in enumerate(kept)
            if d.box[0] * (height - 1) <= row <= d.box[2] * (height - 1)
            and d.box[1] * (width - 1) <= col <= d.box[3] * (width - 1)
        ]
        out.append((row, col, max(over)[2]))
    return out


@pytest.mark.parametrize("name", ["mdv5", "serengeti_gt"])
@pytest.mark.large
def test_segment_real_camera_traps_and_resume(model_dir, tmp_path, name, capsys):
    try:
        ds = samples.camera_traps(name)
    except samples.SampleDataMissing as exc:
        pytest.skip(f"camera-trap sample data absent: {exc}")
    out = tmp_path / "out"
    argv = ["segment", "--model", str(model_dir), "--detections", str(ds.detections),
            "--images", str(ds.images), "--out", str(out), "--min-conf", "0.1"]  # fmt: skip
    assert cli.main(argv) == 0
    summary = json.loads((out / segment_cli.SUMMARY_FILE).read_text())
    entries = megadetector.read_detections(ds.detections, ds.images).images
    kept = {e.key: megadetector.select_detections(e, 0.1)[0] for e in entries}
    assert summary["images_written"] == len(entries) and not summary["images_skipped"]
    coco = COCO(str(out / segment_cli.RESULTS_FILE))
    for entry in entries:
        labels = np.array(Image.open(out / "instance_masks" / f"{entry.key}.png"))
        width, height = Image.open(ds.images / entry.file).size
        ids = [d.index + 1 for d in kept[entry.key]]
        assert labels.shape == (height, width) and labels.max() == max(ids, default=0)
        for row, col, mask_id in _expected_centre_labels(kept[entry.key], height, width):
            assert labels[row, col] == mask_id
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[entry.key]))
        assert [a["detection_index"] for a in anns] == [d.index for d in kept[entry.key]]
        assert [a["score"] for a in anns] == [d.conf for d in kept[entry.key]]
    stamps = {p: p.stat().st_mtime_ns for p in (out / "instance_masks").iterdir()}
    assert cli.main([*argv, "--overlays"]) == 0  # resume: nothing is redone
    assert {p: p.stat().st_mtime_ns for p in (out / "instance_masks").iterdir()} == stamps
    again = json.loads((out / segment_cli.SUMMARY_FILE).read_text())
    assert again["images_skipped"] == {"already done (resume)": len(entries)}
    assert len(COCO(str(out / segment_cli.RESULTS_FILE)).anns) == len(coco.anns)
    assert "already done (resume)" in capsys.readouterr().out


@pytest.mark.large
def test_segment_output_carries_no_tensorflow_cpp_log_lines(model_dir, tmp_path):
    """TF's C++ logger (``2026-01-01 10:00:00.123456: I/W/E file.cc:12] ...``: CUDA probing,
    CPU feature notes) is silenced before TensorFlow is imported."""
    detections = _write_set(tmp_path, {"a.jpg": [_det([0.1, 0.1, 0.5, 0.5])]})
    del detections
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    argv = ["segment", "--model", str(model_dir), "--detections", str(tmp_path / "md.json"),
            "--images", str(tmp_path / "img"), "--out", str(tmp_path / "out")]  # fmt: skip
    code = "import sys; from deepmac_nb import cli; sys.exit(cli.main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    tf_lines = re.findall(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] .*$", proc.stderr, re.M)
    assert not tf_lines and "1 images written" in proc.stdout


def test_flip_tta_reaches_a_real_predictor(model_dir, tmp_path, monkeypatch):
    from deepmac_nb import loading

    real, made = loading.load, []
    monkeypatch.setattr(loading, "load", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    _write_set(tmp_path, {"a.jpg": [_det([0.1, 0.1, 0.5, 0.5])]})
    argv = ["segment", "--model", str(model_dir), "--detections", str(tmp_path / "md.json"),
            "--images", str(tmp_path / "img"), "--out", str(tmp_path / "out")]  # fmt: skip
    assert cli.main([*argv, "--flip-tta"]) == 0
    assert isinstance(made[0], Predictor) and made[0].flip_tta is True
    assert cli.main([*argv, "--out", str(tmp_path / "out2")]) == 0
    assert made[1].flip_tta is False
