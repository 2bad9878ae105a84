"""COCO -> TFRecord conversion: Model Garden's decoder reads it, bad input is reported.

Tiny inline fixtures cover every segmentation form and every kind of bad input; one
test round-trips the real COCO-mini ``val_dev`` set (skipped without the sample data).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from deepmac_nb import cli
from deepmac_nb.data import coco_tfrecord, samples
from deepmac_nb.errors import UserError

W, H = 40, 30
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 3, "name": "car"}]


@pytest.fixture(scope="module")
def decode():
    """Reads every example under a glob with Model Garden's own decoder, as numpy."""
    import tensorflow as tf
    from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder

    decoder = TfExampleDecoder(include_mask=True)

    def _decode(pattern: str) -> list[dict]:
        files = sorted(tf.io.gfile.glob(pattern))
        return [
            {k: v.numpy() for k, v in decoder.decode(record).items()}
            for record in tf.data.TFRecordDataset(files)
        ]

    return _decode


def _image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (W, H)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buf, format=fmt)
    return buf.getvalue()


def _write_set(tmp_path: Path, images: dict[str, bytes | None], annotations: list) -> Path:
    """Writes image files (``None`` = listed but absent) and the COCO JSON beside them."""
    records = []
    for i, (name, data) in enumerate(images.items(), start=1):
        records.append({"id": i, "file_name": name, "width": W, "height": H})
        if data is not None:
            (tmp_path / "images").mkdir(exist_ok=True)
            (tmp_path / "images" / name).write_bytes(data)
    for j, ann in enumerate(annotations, start=1):
        ann.setdefault("id", j)
        ann.setdefault("image_id", 1)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("category_id", 1)
    coco = {"images": records, "annotations": annotations, "categories": CATEGORIES}
    path = tmp_path / "set.json"
    path.write_text(json.dumps(coco))  # NaN is written as the bare token, as Python allows
    return path


def _convert(tmp_path: Path, ann_path: Path, **kwargs) -> dict:
    kwargs = {"workers": 0, "progress": False, "shards": 1, **kwargs}
    return coco_tfrecord.convert_coco(ann_path, tmp_path / "images", tmp_path / "out", **kwargs)


def _square_mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, zeros first."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": [H, W], "counts": ([0] if flat[0] else []) + counts}


# An L (COCO polygon: x, y pairs): a bar along the top, 32 px wide, 6 high, and a leg down
# the left, 8 px wide, 24 high. Not symmetric in x and y, so reading the pairs as (y, x)
# or swapping width and height moves pixels (and the box) and fails the checks below.
L_POLYGON = [4, 2, 36, 2, 36, 8, 12, 8, 12, 26, 4, 26]
L_BOX = [4, 2, 32, 24]  # x, y, w, h


def test_polygon_and_both_rle_forms_decode_exactly(tmp_path, decode):
    rle_mask, crle_mask = _square_mask(2, 10, 20, 30), _square_mask(15, 28, 3, 12)
    crle = mask_utils.encode(np.asfortranarray(crle_mask))
    crle = {"size": [H, W], "counts": crle["counts"].decode()}
    anns = [
        {"bbox": L_BOX, "segmentation": [L_POLYGON]},
        {"bbox": [20, 2, 10, 8], "segmentation": _uncompressed_rle(rle_mask), "iscrowd": 1},
        {"bbox": [3, 15, 9, 13], "segmentation": crle},
        {"bbox": [1, 1, 2, 2], "category_id": 3, "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]]},
    ]
    summary = _convert(tmp_path, _write_set(tmp_path, {"a.jpg": _image_bytes()}, anns))
    assert (summary["images_written"], summary["instances"]) == (1, 4)
    [ex] = decode(str(tmp_path / "out" / "set-*.tfrecord"))
    masks = ex["groundtruth_instance_masks"]
    assert masks.shape == (4, H, W) and set(np.unique(masks)) == {0.0, 1.0}
    np.testing.assert_array_equal(masks[1], rle_mask)
    np.testing.assert_array_equal(masks[2], crle_mask)
    # The L as pycocotools rasterizes the polygon in an H x W image ...
    want = mask_utils.decode(mask_utils.frPyObjects([L_POLYGON], H, W))[..., 0]
    np.testing.assert_array_equal(masks[0], want)
    # ... and by hand: the bar's right end and the leg's foot are set, the L's inside
    # corner is not, and nothing lies below row 26 or right of column 36.
    assert masks[0][3:7, 20:35].all() and masks[0][10:25, 5:11].all()
    assert not masks[0][10:, 14:].any() and not masks[0][:, 37:].any()
    assert masks[3].sum() > 0
    box = [2 / H, 4 / W, 26 / H, 36 / W]  # ymin, xmin, ymax, xmax
    np.testing.assert_allclose(ex["groundtruth_boxes"][0], box, atol=1e-6)
    np.testing.assert_allclose(ex["groundtruth_boxes"][2], [15 / H, 3 / W, 28 / H, 12 / W],
                               atol=1e-6)  # fmt: skip
    assert ex["groundtruth_classes"].tolist() == [1, 1, 1, 3]
    assert ex["groundtruth_is_crowd"].tolist() == [False, True, False, False]
    assert [c["instances"] for c in summary["categories"]] == [3, 1]


def test_negatives_kept_and_png_images_stored_unchanged(tmp_path, decode):
    png = _image_bytes("PNG")
    ann_path = _write_set(tmp_path, {"empty.jpg": _image_bytes(), "b.png": png}, [])
    summary = _convert(tmp_path, ann_path, shards=2)
    assert (summary["images_written"], summary["negatives"]) == (2, 2)
    examples = decode(str(tmp_path / "out" / "set-*-of-00002.tfrecord"))
    assert len(examples) == 2
    for ex in examples:
        assert ex["groundtruth_boxes"].shape == (0, 4)
        assert ex["groundtruth_instance_masks"].shape[0] == 0
        assert ex["image"].shape == (H, W, 3)
    import tensorflow as tf

    shard = tmp_path / "out" / "set-00001-of-00002.tfrecord"
    record = next(iter(tf.data.TFRecordDataset(str(shard))))
    features = tf.train.Example.FromString(record.numpy()).features.feature
    assert features["image/encoded"].bytes_list.value[0] == png
    assert features["image/format"].bytes_list.value[0] == b"png"
    assert features["image/source_id"].bytes_list.value[0] == b"2"


def test_bad_input_is_skipped_repaired_or_dropped_and_reported(tmp_path, decode):
    good = _image_bytes()
    images = {
        "ok.jpg": good,
        "gone.jpg": None,
        "junk.jpg": b"not an image at all",
        "cut.jpg": good[: len(good) // 2],
        "small.jpg": _image_bytes(size=(20, 10)),
        "allbad.jpg": good,
    }
    square = [[5, 5, 15, 5, 15, 15, 5, 15]]
    anns = [
        {"image_id": 1, "bbox": [5, 5, 0, 10], "segmentation": square},  # zero width
        {"image_id": 1, "bbox": [30, 20, 20, 20], "segmentation": [[30, 20, 39, 20, 39, 29]]},
        {"image_id": 1, "bbox": [5, 5, 10, 10], "segmentation": [[5, 5, 15, 5]]},  # 2 points
        {"image_id": 1, "bbox": [5, 5, 10, 10], "segmentation": [[5, float("nan"), 15, 5, 9, 9]]},
        {"image_id": 1, "bbox": [5, 5, 10, 10], "segmentation": [[1, 2], *square]},  # 1 bad part
        {"image_id": 1, "bbox": [50, 50, 5, 5], "segmentation": square},  # outside the image
        {"image_id": 1, "bbox": [5, 5, 10, 10], "segmentation": square, "category_id": 99},
        {"image_id": 7, "bbox": [5, 5, 10, 10], "segmentation": square},  # no such image
        {"image_id": 6, "bbox": [5, 5, 10, -1], "segmentation": square},  # its only object
        {"image_id": 1, "bbox": [5, 5, 10, 10], "segmentation": {"size": [H, W], "counts": [-3]}},
    ]
    summary = _convert(tmp_path, _write_set(tmp_path, images, anns))
    assert (summary["images_written"], summary["instances"]) == (1, 2)
    skipped = {reason: v["examples"] for reason, v in summary["images_skipped"].items()}
    assert skipped == {
        "missing file": ["gone.jpg"],
        "corrupt image": ["junk.jpg", "cut.jpg"],
        "size differs from JSON": ["small.jpg"],
        "all annotations invalid": ["allbad.jpg"],
    }
    dropped = {reason: v["count"] for reason, v in summary["instances_dropped"].items()}
    assert dropped == {
        "zero-area box": 2,
        "invalid polygon": 2,
        "box outside image": 1,
        "unknown category": 1,
        "annotation for unknown image": 1,
        "invalid segmentation": 1,
    }
    repaired = summary["instances_repaired"]
    assert repaired["box clipped to image"] == {"count": 1, "examples": ["ok.jpg#2"]}
    assert repaired["invalid polygon removed"] == {"count": 1, "examples": ["ok.jpg#5"]}
    [ex] = decode(str(tmp_path / "out" / "set-*.tfrecord"))
    np.testing.assert_allclose(ex["groundtruth_boxes"][0], [20 / H, 30 / W, 1.0, 1.0])
    line = coco_tfrecord.format_summary(summary)
    assert "gone.jpg" in line and "zero-area box 2" in line and "box clipped to image 1" in line


def test_cli_exit_codes_and_one_line_errors(tmp_path, capsys):
    ann_path = _write_set(tmp_path, {"gone.jpg": None}, [])
    argv = ["prepare", "coco", "--images", str(tmp_path), "--out", str(tmp_path / "out")]
    assert cli.main([*argv, "--annotations", str(ann_path), "--workers", "0"]) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    capsys.readouterr()
    assert cli.main([*argv, "--annotations", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "annotation file not found" in err and "\n" not in err
    no_images = ["prepare", "coco", "--images", "/no/such/dir", "--out", str(tmp_path / "o")]
    assert cli.main([*no_images, "--annotations", str(ann_path)]) == 2
    assert "image folder not found" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"images": [}')
    assert cli.main([*argv, "--annotations", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not valid JSON" in err and "line 1" in err and "\n" not in err


def test_prepare_lists_coco_and_shapes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["prepare", "--help"])
    out = capsys.readouterr().out
    assert "coco" in out and "shapes" in out


def test_cli_writes_shards_and_summary(tmp_path, capsys):
    ann_path = _write_set(tmp_path, {"a.jpg": _image_bytes(), "gone.jpg": None}, [])
    out = tmp_path / "out"
    argv = ["prepare", "coco", "--annotations", str(ann_path), "--images", str(tmp_path / "images")]
    code = cli.main([*argv, "--out", str(out), "--shards", "2", "--prefix", "x", "--workers", "1"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "wrote 1 images" in stdout and "missing file 1 (gone.jpg)" in stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == [*coco_tfrecord.shard_names("x", 2), "x-summary.json"]
    summary = json.loads((out / "x-summary.json").read_text())
    assert summary["categories"][1] == {"id": 3, "name": "car", "instances": 0}
    assert summary["source_annotations"] == str(ann_path.resolve())


def test_interrupted_run_leaves_no_partial_shards(tmp_path, monkeypatch):
    ann_path = _write_set(tmp_path, {f"{i}.jpg": _image_bytes() for i in range(4)}, [])
    _convert(tmp_path, ann_path, shards=2)
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = coco_tfrecord._to_example, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(coco_tfrecord, "_to_example", failing)
    with pytest.raises(KeyboardInterrupt):
        _convert(tmp_path, ann_path, shards=2)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no .tmp-*, no change
    monkeypatch.undo()
    summary = _convert(tmp_path, ann_path, shards=3)
    assert summary["stale_shards_removed"] == coco_tfrecord.shard_names("set", 2)
    assert sorted(p.name for p in out.glob("*.tfrecord")) == coco_tfrecord.shard_names("set", 3)


def test_download_checks_checksum_and_is_atomic(tmp_path):
    src = tmp_path / "src.jpg"
    src.write_bytes(_image_bytes())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    record = {"file_name": "a.jpg", "coco_url": src.as_uri(), "sha256": digest}
    record["file_size"] = src.stat().st_size
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps({"images": [record]}))
    images = samples.download_coco_mini(tmp_path / "cache", ann)
    assert (images / "a.jpg").read_bytes() == src.read_bytes()
    record.update(file_name="b.jpg", sha256="0" * 64)
    ann.write_text(json.dumps({"images": [record]}))
    with pytest.raises(UserError, match="sha256"):
        samples.download_coco_mini(tmp_path / "cache", ann)
    # Nothing of b.jpg is left behind (no partial file, no temp file, no record).
    assert not [p.name for p in images.iterdir() if not p.name.startswith("a.jpg")]


@pytest.mark.skipif(not samples.available(), reason="sample data (../shared/data) not present")
def test_real_val_dev_round_trip(tmp_path, decode):
    ds = samples.coco_mini("val_dev")
    coco = json.loads(ds.annotations.read_text())
    summary = coco_tfrecord.convert_coco(
        ds.annotations, ds.images, tmp_path, shards=3, workers=2, progress=False
    )
    assert (summary["images_written"], summary["instances"], summary["negatives"]) == (48, 443, 2)
    assert not summary["instances_dropped"] and not summary["images_skipped"]
    examples = decode(str(tmp_path / "val_dev-*.tfrecord"))
    by_id = {str(ex["source_id"].decode()): ex for ex in examples}
    assert len(by_id) == 48
    images = {im["id"]: im for im in coco["images"]}
    expected = {str(i): [] for i in images}
    for ann in coco["annotations"]:
        expected[str(ann["image_id"])].append(ann)
    for source_id, anns in expected.items():
        ex, im = by_id[source_id], images[int(source_id)]
        x, y, w, h = np.array([a["bbox"] for a in anns]).reshape(-1, 4).T
        x, w = x / im["width"], w / im["width"]
        y, h = y / im["height"], h / im["height"]
        boxes = np.stack([y, x, y + h, x + w], axis=-1)
        np.testing.assert_allclose(ex["groundtruth_boxes"], boxes, atol=1e-4)
        assert ex["groundtruth_classes"].tolist() == [a["category_id"] for a in anns]
        masks = ex["groundtruth_instance_masks"]
        assert masks.shape == (len(anns), im["height"], im["width"])
        assert (masks.max(axis=(1, 2), initial=0) == 1).all()  # every mask non-empty
