"""Classical box-prompted baselines: rasterisation rule, GrabCut, real-data AP ranges."""

import time

import numpy as np
import pytest

from deepmac_nb.data import samples
from deepmac_nb.evaluation import baselines, evaluate_predictions, load_coco, run_box_prompted


def _image(h, w):
    return np.zeros((h, w, 3), np.uint8)


def test_box_uses_pixel_centres():
    # 4 x 6 image; rows [1, 3) and cols [0, 3) in pixels.
    m = baselines.box_masks(_image(4, 6), np.array([[0.25, 0.0, 0.75, 0.5]], np.float32))
    expected = np.zeros((4, 6), bool)
    expected[1:3, 0:3] = True
    np.testing.assert_array_equal(m[0], expected)
    # Edges on pixel centres: ymin*H = 1.5 takes row 1, ymax*H = 3.5 leaves row 3 out.
    m = baselines.box_masks(_image(4, 6), np.array([[1.5 / 4, 0, 3.5 / 4, 1]], np.float32))
    assert m[0].any(axis=1).tolist() == [False, True, True, False]


def test_touching_boxes_partition_the_image():
    # W = 7: the shared edge x = 3.5 is a pixel centre, which goes to the right box only.
    boxes = np.array([[0, 0, 1, 0.5], [0, 0.5, 1, 1]], np.float32)
    m = baselines.box_masks(_image(5, 7), boxes)
    np.testing.assert_array_equal(m.sum(axis=0), np.ones((5, 7)))
    assert m[0].sum() == 5 * 3


def test_ellipse_inside_box_with_quarter_pi_area():
    boxes = np.array([[0.1, 0.2, 0.9, 0.7], [0.5, 0.5, 0.5, 0.5]], np.float32)
    image = _image(200, 300)
    ell, box = baselines.ellipse_masks(image, boxes), baselines.box_masks(image, boxes)
    assert not (ell & ~box).any()
    assert ell[0].sum() / box[0].sum() == pytest.approx(np.pi / 4, abs=0.01)
    np.testing.assert_array_equal(ell[0], ell[0][::-1])  # symmetric about the centre row
    assert ell.shape == (2, 200, 300) and ell.dtype == bool and not ell[1].any()


def _disk_scene(seed=0):
    """uint8 [96, 128, 3] noisy dark background with a bright disk (radius 20) at (48, 64)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :128]
    disk = (yy + 0.5 - 48) ** 2 + (xx + 0.5 - 64) ** 2 <= 20**2
    image = rng.integers(0, 60, (96, 128, 3)).astype(np.uint8)
    image[disk] = rng.integers(190, 255, (int(disk.sum()), 3))
    return image, disk


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_grabcut_finds_the_object_and_is_deterministic():
    image, disk = _disk_scene()
    boxes = np.array([[22 / 96, 40 / 128, 74 / 96, 88 / 128]], np.float32)
    first = baselines.grabcut_masks(image, boxes)
    assert _iou(first[0], disk) > 0.9 > _iou(baselines.box_masks(image, boxes)[0], disk)
    again = baselines.get_mask_fn("grabcut", workers=2)(image, np.repeat(boxes, 3, axis=0))
    for mask in again:
        np.testing.assert_array_equal(mask, first[0])


def test_grabcut_falls_back_to_the_box():
    image, _ = _disk_scene()
    tiny = np.array([[0.5, 0.5, 0.52, 0.6]], np.float32)  # 2 px tall
    whole = np.array([[0, 0, 1, 1]], np.float32)  # no background left to model
    for boxes in (tiny, whole):
        np.testing.assert_array_equal(
            baselines.grabcut_masks(image, boxes), baselines.box_masks(image, boxes)
        )
    assert baselines.grabcut_masks(image, np.zeros((0, 4), np.float32)).shape == (0, 96, 128)


def test_unknown_baseline():
    with pytest.raises(ValueError, match="choose from box, ellipse, grabcut"):
        baselines.get_mask_fn("snake")


# Sanity ranges for mask AP (%) on val_dev; docs/benchmarks.md has the measured values.
_RANGES = {
    "box": {"all": (18, 35), "voc": (12, 30), "non_voc": (20, 38)},
    "ellipse": {"all": (25, 42), "voc": (18, 36), "non_voc": (28, 45)},
    "grabcut": {"all": (20, 40), "voc": (14, 32), "non_voc": (24, 42)},
}


@pytest.mark.large
@pytest.mark.skipif(not samples.available(), reason="sample data (../shared/data) absent")
@pytest.mark.parametrize("method", ["box", "ellipse", "grabcut"])
def test_baselines_on_val_dev(method):
    ds = samples.coco_mini("val_dev")
    coco = load_coco(ds.annotations)
    start = time.perf_counter()
    preds, stats = run_box_prompted(coco, ds.images, baselines.get_mask_fn(method), progress=False)
    out = evaluate_predictions(coco, preds, image_ids=stats["image_ids"])
    seconds = time.perf_counter() - start
    aps = {split: out["mask"][split]["AP"] for split in ("all", "voc", "non_voc")}
    print(f"{method}: {aps} {seconds:.1f} s (model {stats['seconds_model']:.1f} s)")
    assert (out["images"], out["instances"], stats["predictions"]) == (48, 434, 434)
    for split, (lo, hi) in _RANGES[method].items():
        assert lo <= aps[split] <= hi, (split, aps[split])
