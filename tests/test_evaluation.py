"""COCO evaluation: hand-derived APs, goldens, crowd handling, splits, CLI contract."""

import copy
import json
import sys
import types

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

import deepmac_nb
from deepmac_nb import cli
from deepmac_nb.data import samples
from deepmac_nb.evaluation import baselines, coco_eval, runner
from deepmac_nb.evaluation.coco_eval import evaluate_predictions, load_coco, quiet

H = W = 40
SPLITS = {"a": [1], "b": [2]}


def square(r0, r1, c0, c1):
    """bool [H, W] with rows r0..r1-1 and cols c0..c1-1 set."""
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


def rle(mask):
    out = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    out["counts"] = out["counts"].decode("ascii")
    return out


def gt_ann(ann_id, image_id, cat, mask, crowd=0):
    ys, xs = np.nonzero(mask)
    bbox = [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]
    seg = rle(mask)
    if crowd:  # COCO stores crowd regions as uncompressed RLE
        seg = {"size": [H, W], "counts": _uncompressed_counts(mask)}
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "segmentation": seg,
            "area": float(mask.sum()), "bbox": bbox, "iscrowd": crowd}  # fmt: skip


def _uncompressed_counts(mask):
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], edges])).tolist()


def pred(image_id, cat, mask, score):
    return {"image_id": image_id, "category_id": cat, "score": score, "segmentation": rle(mask)}


@pytest.fixture
def tiny():
    """Image 1: A (class 1) rows/cols 0-9 and B (class 2) 20-29; image 2: A' (class 1)
    0-9; image 3: a class-1 object plus a class-1 crowd region. All objects are small."""
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "height": H, "width": W} for i in (1, 2, 3)],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            gt_ann(1, 1, 1, square(0, 10, 0, 10)),
            gt_ann(2, 2, 1, square(0, 10, 0, 10)),
            gt_ann(3, 1, 2, square(20, 30, 20, 30)),
            gt_ann(4, 3, 1, square(0, 10, 0, 10)),
            gt_ann(5, 3, 1, square(20, 36, 20, 36), crowd=1),
        ],
    }


def hand_predictions():
    # Class 1 has 2 GTs (images 1, 2). P1 (score .9) covers A plus one column: IoU
    # 100/110 = .909; P2 (score .8) is a 9x7 part of A': IoU 63/100 = .63.
    #   IoU thr .50-.60 (3 of 10): both match -> precision 1 at every recall -> AP_t = 1.
    #   IoU thr .65-.90 (6 of 10): P1 TP then P2 FP -> precision 1 up to recall .5, then
    #     nothing: 51 of COCO's 101 recall points -> AP_t = 51/101.
    #   IoU thr .95: none match -> 0.
    #   AP = (3 + 6 * 51/101) / 10 = 60.30 %, AP50 = 100, AP75 = 51/101 = 50.50 %.
    # Class 2: an exact mask (score .9) plus a lower-scored FP on image 2 -> AP 100.
    return [
        pred(1, 1, square(0, 10, 0, 11), 0.9),
        pred(2, 1, square(0, 9, 0, 7), 0.8),
        pred(1, 2, square(20, 30, 20, 30), 0.9),
        pred(2, 2, square(5, 15, 5, 15), 0.5),
    ]


def test_hand_derived_ap(tiny):
    out = evaluate_predictions(tiny, hand_predictions(), SPLITS, image_ids=[1, 2])
    class_a = (3 + 6 * 51 / 101) / 10 * 100
    assert out["mask"]["a"]["AP"] == pytest.approx(class_a, abs=0.01)
    assert out["mask"]["a"]["AP50"] == 100.0
    assert out["mask"]["a"]["AP75"] == pytest.approx(5100 / 101, abs=0.01)
    assert out["mask"]["a"]["APs"] == out["mask"]["a"]["AP"]
    assert out["mask"]["a"]["APm"] is None and out["mask"]["a"]["APl"] is None
    assert out["mask"]["b"]["AP"] == 100.0
    assert out["mask"]["all"]["AP"] == pytest.approx((class_a + 100) / 2, abs=0.01)
    assert [(r["id"], r["split"], r["instances"]) for r in out["per_class"]] == [
        (1, "a", 2),
        (2, "b", 1),
    ]
    assert out["per_class"][0]["mask_AP"] == out["mask"]["a"]["AP"]
    assert (out["images"], out["instances"], out["notes"]) == (2, 3, [])


def test_splits_match_cocoeval_with_restricted_cat_ids(tiny):
    preds = hand_predictions()
    out = evaluate_predictions(tiny, preds, SPLITS, image_ids=[1, 2])
    coco = load_coco(tiny)
    for name, ids in SPLITS.items():
        with quiet():
            ev = COCOeval(coco, coco.loadRes(copy.deepcopy(preds)), "segm")
            ev.params.imgIds, ev.params.catIds = [1, 2], ids
            ev.evaluate(), ev.accumulate(), ev.summarize()
        assert out["mask"][name]["AP"] == round(ev.stats[0] * 100, 2)


def _sized_set():
    """Three 128 x 160 images with small (< 32^2 px), medium and large (> 96^2 px) objects
    of classes 1-3, and noisy predictions: shifted and resized masks with their own
    fractional boxes, random scores, and false positives."""
    rng = np.random.default_rng(5)
    height, width = 128, 160
    images = [{"id": i, "file_name": f"{i}.png", "height": height, "width": width}
              for i in (1, 2, 3)]  # fmt: skip
    annotations, predictions = [], []
    layout = [(1, (4, 104, 4, 104)), (2, (10, 50, 110, 150)), (3, (110, 122, 120, 136))]
    for image in images:
        for cat, (r0, r1, c0, c1) in layout:
            cat = (cat + image["id"]) % 3 + 1  # every class in every size range
            mask = np.zeros((height, width), bool)
            mask[r0:r1, c0:c1] = True
            ys, xs = np.nonzero(mask)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image["id"], "category_id": cat,
                "segmentation": rle(mask), "area": float(mask.sum()), "iscrowd": 0,
                "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1),
                         float(np.ptp(ys) + 1)],
            })  # fmt: skip
            for _ in range(2):
                dy, dx = rng.integers(-3, 4, 2)
                grow = rng.integers(-2, 3)
                guess = np.zeros_like(mask)
                guess[max(r0 + dy, 0) : r1 + dy + grow, max(c0 + dx, 0) : c1 + dx + grow] = True
                cat_guess = cat if rng.random() < 0.8 else cat % 3 + 1
                box = [c0 + dx + rng.random(), r0 + dy - rng.random(),
                       c1 - c0 + grow + 2 * rng.random(), r1 - r0 + grow - rng.random()]  # fmt: skip
                predictions.append({"image_id": image["id"], "category_id": int(cat_guess),
                                    "score": float(rng.random()), "segmentation": rle(guess),
                                    "bbox": [float(v) for v in box]})  # fmt: skip
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}  # fmt: skip
    return gt, predictions


def test_every_split_metric_and_box_ap_match_plain_cocoeval():
    """AP, AP50, AP75, APs, APm, APl of "all" and each split, mask and box, equal plain
    pycocotools COCOeval restricted to the split's classes (segm results carry only
    masks, bbox results only boxes, as COCO result files do)."""
    gt, preds = _sized_set()
    splits = {"a": [1], "bc": [2, 3]}
    out = evaluate_predictions(gt, preds, splits, iou_types=("segm", "bbox"))
    coco = load_coco(gt)
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    plain = {
        "segm": [{k: p[k] for k in ("image_id", "category_id", "score", "segmentation")}
                 for p in preds],
        "bbox": [{k: p[k] for k in ("image_id", "category_id", "score", "bbox")} for p in preds],
    }  # fmt: skip
    for iou_type, key in (("segm", "mask"), ("bbox", "box")):
        assert set(out[key]) == {"all", "a", "bc"}
        for name, ids in {"all": [1, 2, 3], **splits}.items():
            with quiet():
                ev = COCOeval(coco, coco.loadRes(copy.deepcopy(plain[iou_type])), iou_type)
                ev.params.catIds = ids
                ev.evaluate(), ev.accumulate(), ev.summarize()
            want = {n: round(v * 100, 2) for n, v in zip(names, ev.stats[:6], strict=True)}
            assert all(v >= 0 for v in want.values()), (key, name, want)  # every range has GT
            assert out[key][name] == want, (key, name)
    assert out["mask"]["all"] != out["box"]["all"]  # boxes are not the masks' boxes


def test_ground_truth_as_predictions_is_perfect(tiny):
    preds = [dict(copy.deepcopy(a), score=1.0) for a in tiny["annotations"] if not a["iscrowd"]]
    for p in preds:  # boxes then come from the masks (pycocotools toBbox)
        del p["bbox"]
    out = evaluate_predictions(tiny, preds, SPLITS, iou_types=("segm", "bbox"))
    for key in ("mask", "box"):
        assert {name: s["AP"] for name, s in out[key].items()} == {"all": 100, "a": 100, "b": 100}
    assert [r["box_AP"] for r in out["per_class"]] == [100.0, 100.0]


def test_empty_predictions_give_zero(tiny):
    out = evaluate_predictions(tiny, [], SPLITS, iou_types=("segm", "bbox"))
    assert out["mask"]["a"]["AP"] == 0.0 and out["box"]["b"]["AP"] == 0.0
    assert out["instances"] == 4


def test_crowd_region_is_neither_miss_nor_false_positive(tiny):
    preds = [pred(3, 1, square(0, 10, 0, 10), 0.8), pred(3, 1, square(20, 36, 20, 36), 0.95)]
    out = evaluate_predictions(tiny, preds, SPLITS, image_ids=[3])
    assert out["mask"]["a"]["AP"] == 100.0
    assert out["instances"] == 1
    prompts = runner.gt_box_prompts(load_coco(tiny), [3])[3]
    assert prompts.ann_ids.tolist() == [4]
    np.testing.assert_allclose(prompts.boxes, [[0, 0, 0.25, 0.25]])


def test_other_split_unaffected_by_a_class_a_false_positive(tiny):
    base = evaluate_predictions(tiny, hand_predictions(), SPLITS, image_ids=[1, 2])
    extra = [*hand_predictions(), pred(1, 1, square(30, 40, 0, 10), 0.99)]
    out = evaluate_predictions(tiny, extra, SPLITS, image_ids=[1, 2])
    assert out["mask"]["a"]["AP"] < base["mask"]["a"]["AP"]
    assert out["mask"]["b"] == base["mask"]["b"]


def test_split_without_ground_truth_is_noted(tiny):
    out = evaluate_predictions(tiny, hand_predictions(), SPLITS, image_ids=[2])
    assert out["mask"]["b"]["AP"] is None
    assert any("'b'" in note for note in out["notes"])
    out = evaluate_predictions(tiny, [], {"c": [1, 5]}, image_ids=[1])
    assert any("1 of its 2 classes" in note for note in out["notes"])


def test_default_split_names():
    assert coco_eval.default_split_names([1, 2, 90]) == ("voc", "non_voc")
    assert coco_eval.default_split_names(range(1, 9)) == ("seen", "unseen")
    assert coco_eval.default_split_names([1, 500]) == ()


def test_bad_predictions_and_files(tiny, tmp_path):
    with pytest.raises(ValueError, match="lacks segmentation"):
        evaluate_predictions(tiny, [{"image_id": 1, "category_id": 1, "score": 1.0}])
    with pytest.raises(ValueError, match="image 7"):
        evaluate_predictions(tiny, [pred(7, 1, square(0, 1, 0, 1), 1.0)])
    with pytest.raises(FileNotFoundError):
        load_coco(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_coco(tmp_path / "bad.json")


@pytest.fixture
def dataset(tiny, tmp_path):
    """``tiny`` on disk with non-integer boxes: (annotations path, images folder)."""
    rng = np.random.default_rng(0)
    for ann, box in zip(
        tiny["annotations"], ([0.3, 0.2, 9.9, 10.4], [1.5, 0.5, 7.2, 9.0]), strict=False
    ):
        ann["bbox"] = box
    images = tmp_path / "images"
    images.mkdir()
    for info in tiny["images"]:
        cv2.imwrite(str(images / info["file_name"]), rng.integers(0, 255, (H, W, 3), np.uint8))
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(tiny))
    return path, images


def test_box_method_matches_cocoeval_on_filled_boxes(dataset):
    path, images = dataset
    coco = load_coco(path)
    preds, stats = runner.run_box_prompted(coco, images, baselines.box_masks, progress=False)
    out = evaluate_predictions(coco, preds, SPLITS, image_ids=stats["image_ids"])
    independent = []
    for image_id, p in runner.gt_box_prompts(coco).items():
        for box, cat in zip(p.boxes.astype(np.float64) * [H, W, H, W], p.category_ids, strict=True):
            r0, c0, r1, c1 = (int(np.ceil(v - 0.5)) for v in box)  # centre rule, by hand
            independent.append(pred(image_id, int(cat), square(r0, r1, c0, c1), 1.0))
    for name, ids in SPLITS.items():
        with quiet():
            ev = COCOeval(coco, coco.loadRes(copy.deepcopy(independent)), "segm")
            ev.params.catIds = ids
            ev.evaluate(), ev.accumulate(), ev.summarize()
        assert out["mask"][name]["AP"] == round(ev.stats[0] * 100, 2)
    assert stats["predictions"] == 4 and stats["seconds_model"] <= stats["seconds_total"]


def test_run_detected_reports_mask_and_box(dataset):
    path, images = dataset

    def detect(image):  # one class-1 object at rows/cols 0-9, where every image has one
        h, w = image.shape[:2]
        return {"boxes": [[0, 0, 10 / h, 10 / w]], "classes": [1], "scores": [0.7],
                "masks": square(0, 10, 0, 10)[None].astype(np.float32)}  # fmt: skip

    preds, stats = runner.run_detected(path, images, detect, progress=False)
    assert preds[0]["bbox"] == [0.0, 0.0, 10.0, 10.0] and stats["predictions"] == 3
    out = evaluate_predictions(path, preds, SPLITS, iou_types=("segm", "bbox"))
    assert out["mask"]["a"]["AP"] == 100.0 and out["box"]["a"]["AP50"] == 100.0
    assert out["mask"]["b"]["AP"] == 0.0


def _main(*args):
    return cli.main(["evaluate", *map(str, args)])


def test_cli_writes_contract_json(dataset, tmp_path, capsys):
    path, images = dataset
    out = tmp_path / "m.json"
    assert _main("--annotations", path, "--images", images, "--method", "box", "--out", out) == 0
    metrics = json.loads(out.read_text())
    assert {
        "protocol",
        "method",
        "mask",
        "per_class",
        "images",
        "instances",
        "notes",
        "seconds",
    } <= set(metrics)
    assert metrics["protocol"] == "box_prompted" and metrics["method"] == "box"
    assert set(metrics["mask"]) == {"all", "voc", "non_voc"}  # ids 1, 2 are COCO ids
    assert "non_voc" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "box", "--boxes", "detected"], "needs --model"),
        (["--model", "no/such/model"], "model not found"),
        (["--method", "box", "--splits", "voc,bogus"], "bogus"),
        (["--method", "box", "--flip-tta"], "--flip-tta needs --model"),
    ],
)
def test_cli_bad_arguments(dataset, tmp_path, capsys, extra, message):
    path, images = dataset
    assert _main("--annotations", path, "--images", images, *extra, "--out", tmp_path / "m") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_cli_bad_annotations(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("[1, 2")
    for ann, message in ((tmp_path / "none.json", "not found"), (tmp_path / "bad.json", "JSON")):
        assert (
            _main(
                "--annotations",
                ann,
                "--images",
                tmp_path,
                "--method",
                "box",
                "--out",
                tmp_path / "m",
            )
            == 2
        )
        assert message in capsys.readouterr().err


def test_cli_missing_images(dataset, tmp_path, capsys):
    path, images = dataset
    (images / "2.png").unlink()
    args = [
        "--annotations",
        path,
        "--images",
        images,
        "--method",
        "ellipse",
        "--out",
        tmp_path / "m.json",
    ]
    assert _main(*args) == 2
    assert "1 of 3 images missing" in capsys.readouterr().err
    assert _main(*args, "--skip-missing") == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["stats"]["skipped_missing"] == 1 and metrics["images"] == 2


def test_cli_model_without_inference_package(dataset, tmp_path, capsys, monkeypatch):
    path, images = dataset
    monkeypatch.setitem(sys.modules, "deepmac_nb.inference.predictor", None)  # import fails
    assert (
        _main(
            "--annotations", path, "--images", images, "--model", tmp_path, "--out", tmp_path / "m"
        )
        == 2
    )
    assert "needs deepmac_nb.inference (not available" in capsys.readouterr().err


def test_cli_model_plugs_in_through_the_loader(dataset, tmp_path, monkeypatch):
    path, images = dataset
    loaded = []

    def fake_load(model_path, flip_tta=False):  # stands in for loading.load in this test
        loaded.append(types.SimpleNamespace(predict=baselines.box_masks, flip_tta=flip_tta))
        return loaded[-1]

    module = types.ModuleType("deepmac_nb.loading")
    module.load = fake_load
    monkeypatch.setitem(sys.modules, "deepmac_nb.loading", module)
    monkeypatch.setattr(deepmac_nb, "loading", module, raising=False)
    out = tmp_path / "m.json"
    argv = ["--annotations", path, "--images", images, "--model", tmp_path, "--out", out]
    assert _main(*argv) == 0
    metrics = json.loads(out.read_text())
    assert metrics["model"] == str(tmp_path) and "flip_tta" not in metrics
    assert loaded[0].flip_tta is False
    assert _main(*argv, "--flip-tta") == 0
    assert loaded[1].flip_tta is True and json.loads(out.read_text())["flip_tta"] is True


@pytest.mark.large
def test_cli_flip_tta_reaches_a_real_predictor(dataset, tmp_path, monkeypatch):
    from deepmac_nb import loading
    from deepmac_nb.inference import export
    from deepmac_nb.inference.predictor import Predictor
    from deepmac_nb.modeling import config as cfg_lib

    path, images = dataset
    model_dir = export.save_model_dir(
        export._built(cfg_lib.tiny_model_config(image_size=64)), tmp_path / "run"
    )
    real, made = loading.load, []
    monkeypatch.setattr(loading, "load", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    out = tmp_path / "m.json"
    argv = ["--annotations", path, "--images", images, "--model", model_dir, "--out", out]
    assert _main(*argv, "--flip-tta") == 0
    assert isinstance(made[0], Predictor) and made[0].flip_tta is True
    assert json.loads(out.read_text())["flip_tta"] is True
    assert _main(*argv) == 0
    assert isinstance(made[1], Predictor) and made[1].flip_tta is False


def test_cli_plots(dataset, tmp_path):
    path, images = dataset
    plots = tmp_path / "plots"
    args = ["--annotations", path, "--images", images, "--method", "box"]
    assert _main(*args, "--splits", "voc", "--out", tmp_path / "m.json", "--plots", plots) == 0
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["mask_ap_by_size.png", "mask_per_class_ap.png", "mask_pr_curves.png"]


@pytest.mark.skipif(not samples.available(), reason="sample data (../shared/data) absent")
def test_val_dev_ground_truth_golden():
    ds = samples.coco_mini("val_dev")
    coco = load_coco(ds.annotations)
    preds = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
         "segmentation": coco.annToRLE(a)}
        for a in coco.dataset["annotations"] if not a["iscrowd"]
    ]  # fmt: skip
    out = evaluate_predictions(coco, preds)
    assert {name: s["AP"] for name, s in out["mask"].items()} == {
        "all": 100.0,
        "voc": 100.0,
        "non_voc": 100.0,
    }
    assert (out["images"], out["instances"]) == (48, 434)  # 443 minus 9 crowd regions
