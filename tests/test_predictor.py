"""Predictor: model dirs in, [N, H, W] masks out, traced once, bad input refused clearly,
boxes clipped to the image for every backend."""

import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import reframe_box_masks_numpy

import deepmac_nb
from deepmac_nb import loading
from deepmac_nb.inference import export, megadetector
from deepmac_nb.inference.predictor import Predictor, box_bucket, check_boxes
from deepmac_nb.modeling import config as cfg_lib

BOXES = np.array(
    [[0.1, 0.1, 0.6, 0.4], [0.5, 0.5, 0.5, 0.5], [0.7, 0.2, 0.3, 0.9], [-0.4, -0.4, 1.4, 1.4]],
    np.float32,
)
CLIPPED = np.array(
    [[0.1, 0.1, 0.6, 0.4], [0.5, 0.5, 0.5, 0.5], [0.3, 0.2, 0.7, 0.9], [0.0, 0.0, 1.0, 1.0]],
    np.float32,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = export._built(cfg_lib.tiny_model_config(image_size=64))
    return model, export.save_model_dir(model, tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def predictor(model_dir):
    return loading.from_model_dir(model_dir[1])


def _image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def test_model_dir_round_trip(model_dir, predictor):
    model, _ = model_dir
    image = _image(50, 90)
    want = model.predict_masks(image[None], CLIPPED[None]).numpy()[0]
    np.testing.assert_allclose(predictor.predict_box_masks(image, BOXES), want, atol=1e-6)
    assert predictor.backend == "keras" and predictor.mask_size == 16


# Box edges at fractional pixels of a 50 x 90 image (0.137 * 50 = 6.85 rows, ...): the
# pasted masks then interpolate across every edge, where a half-pixel or align-corners
# mistake shows.
FRACTIONAL = np.array(
    [[0.137, 0.061, 0.629, 0.433], [0.351, 0.519, 0.988, 0.977], [0.0, 0.0, 0.503, 0.251]],
    np.float32,
)


def _golden_image_masks(predictor, image, boxes, clipped):
    """The numpy port of the OD API's paste applied to ``predictor``'s box-frame masks of
    ``boxes``, in the frame of ``clipped`` (the boxes as ``check_boxes`` must give them)."""
    box_masks = predictor.predict_box_masks(image, boxes)
    return reframe_box_masks_numpy(box_masks, clipped, *image.shape[:2])


@pytest.mark.parametrize(
    ("boxes", "clipped"),
    [(BOXES, CLIPPED), (FRACTIONAL, FRACTIONAL)],
    ids=["clipped", "fractional"],
)
def test_predict_is_pasted_box_masks(predictor, boxes, clipped):
    image = _image(50, 90)
    masks = predictor.predict(image, boxes)
    assert masks.shape == (len(boxes), 50, 90) and masks.dtype == np.float32
    assert np.isfinite(masks).all() and masks.min() >= 0 and masks.max() <= 1
    # Independent golden: the OD API's reframe_box_masks_to_image_masks, in the clipped frame.
    want = _golden_image_masks(predictor, image, boxes, clipped)
    for row in range(len(boxes)):  # every row, no slack
        np.testing.assert_allclose(masks[row], want[row], atol=2e-6, err_msg=f"row {row}")


@pytest.mark.parametrize("shape", [(50, 90, 3), (120, 40, 3), (1, 1, 3), (300, 17, 3)])
def test_any_image_size_and_zero_boxes(predictor, shape):
    image = _image(*shape[:2])
    assert predictor.predict(image, BOXES[:2]).shape == (2, *shape[:2])
    assert predictor.predict(image, np.zeros((0, 4))).shape == (0, *shape[:2])
    assert predictor.predict(image, []).shape == (0, *shape[:2])
    assert predictor.predict_box_masks(image, []).shape == (0, 16, 16)


def test_new_box_counts_and_sizes_do_not_retrace(model_dir):
    fresh = Predictor.from_model(model_dir[0])
    sizes = [(40, 40), (64, 100), (33, 21), (80, 60), (7, 9)]
    for n, (h, w) in zip([1, 3, 17, 70, 2], sizes, strict=True):
        boxes = np.tile([[0.2, 0.2, 0.7, 0.9]], (n, 1))
        assert fresh.predict_box_masks(_image(h, w), boxes).shape == (n, 16, 16)
    assert fresh._box_mask_fn.traces == 1


def test_box_buckets():
    assert [box_bucket(n) for n in (1, 2, 4, 5, 16, 17, 64, 65, 256)] == [
        1, 4, 4, 16, 16, 64, 64, 256, 256,
    ]  # fmt: skip
    assert box_bucket(257) == 512 and box_bucket(1000) == 1024


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8), np.uint8), r"\[H, W, 3\]"),
        (np.zeros((8, 8, 4), np.uint8), r"\[H, W, 3\]"),
        (np.zeros((0, 8, 3), np.uint8), r"\[H, W, 3\]"),
        (np.zeros((1, 8, 8, 3), np.uint8), r"\[H, W, 3\]"),
    ],
)
def test_bad_images_raise_clear_errors(predictor, image, match):
    with pytest.raises(ValueError, match=match):
        predictor.predict(image, BOXES)


@pytest.mark.parametrize("boxes", [np.zeros(4), np.zeros((2, 3)), [["a", "b", "c", "d"]]])
def test_bad_boxes_raise_clear_errors(predictor, boxes):
    with pytest.raises(ValueError, match="boxes"):
        predictor.predict(_image(8, 8), boxes)


def test_degenerate_and_outside_boxes_give_finite_masks(predictor):
    boxes = np.array([[0.3, 0.3, 0.3, 0.3], [1.2, 1.2, 1.4, 1.4], [-0.5, -0.5, -0.1, 0.2]])
    masks = predictor.predict(_image(30, 40), boxes)
    assert masks.shape == (3, 30, 40) and np.isfinite(masks).all()
    assert not masks[1, :-1, :-1].any()  # wholly outside: clipped onto the corner pixel


@pytest.mark.parametrize("row", [0, 2])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nan_box_is_refused_naming_its_row(predictor, row, bad):
    boxes = np.tile([[0.1, 0.1, 0.5, 0.5]], (3, 1))
    boxes[row, 1] = bad
    with pytest.raises(ValueError, match=f"boxes row {row} is not finite"):
        predictor.predict(_image(8, 8), boxes)


@pytest.mark.parametrize(
    "boxes", [[[2, 3, 15, 25]], [[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 1.6, 0.5]], [[-0.6, 0, 1, 1]]]
)
def test_pixel_boxes_are_refused_saying_what_is_expected(predictor, boxes):
    with pytest.raises(
        ValueError, match=r"normalized \[ymin, xmin, ymax, xmax\] in \[0, 1\]"
    ) as exc:
        predictor.predict(_image(30, 40), boxes)
    assert "megadetector.xywh_to_yxyx" in str(exc.value)
    assert f"row {len(boxes) - 1}" in str(exc.value)


def test_boxes_within_the_margin_are_clipped_and_ordered():
    got = check_boxes([[-0.5, -0.002, 1.5, 1.0001], [0.9, 0.8, 0.1, 0.2]])
    np.testing.assert_allclose(got, [[0.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.9, 0.8]], atol=1e-7)


def test_xywh_helper_gives_the_predictor_order():
    np.testing.assert_allclose(
        megadetector.xywh_to_yxyx([[0.1, 0.2, 0.3, 0.4]]), [[0.2, 0.1, 0.6, 0.4]], atol=1e-7
    )
    pixels = megadetector.xywh_to_yxyx([20, 10, 100, 50], width=200, height=100)
    np.testing.assert_allclose(pixels, [[0.1, 0.1, 0.6, 0.6]], atol=1e-7)


def test_predict_batch(predictor):
    images = [_image(20, 30), _image(40, 10, seed=1), _image(50, 90, seed=2)]
    boxes, clipped = [BOXES[:1], BOXES[:3], FRACTIONAL], [CLIPPED[:1], CLIPPED[:3], FRACTIONAL]
    out = predictor.predict_batch(images, boxes)
    assert [m.shape for m in out] == [(1, 20, 30), (3, 40, 10), (3, 50, 90)]
    for index, (image, image_boxes) in enumerate(zip(images, boxes, strict=True)):
        want = _golden_image_masks(predictor, image, image_boxes, clipped[index])
        for row in range(len(image_boxes)):  # every image, every row: the numpy golden
            np.testing.assert_allclose(
                out[index][row], want[row], atol=2e-6, err_msg=f"image {index} row {row}"
            )
    with pytest.raises(ValueError, match="3 images but 1"):
        predictor.predict_batch(images, [BOXES])


def test_load_dispatch_and_errors(model_dir, tmp_path):
    assert loading.artifact_kind(model_dir[1]) == "model_dir"
    assert loading.load(model_dir[1]).backend == "keras"
    assert loading.load(model_dir[1], flip_tta=True).flip_tta is True
    with pytest.raises(ValueError, match="not found"):
        loading.load(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"expected a \.tflite file"):
        loading.load(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"task": {"model": {}}}))
    with pytest.raises(ValueError, match="no checkpoint"):
        loading.load(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runtime": {}}))
    with pytest.raises(ValueError, match="task: model:"):
        export.load_model_dir(tmp_path)


def test_checkpoint_of_another_model_is_refused(model_dir, tmp_path):
    other = cfg_lib.tiny_model_config(image_size=64)
    other.mask.num_init_channels = 4  # different mask-head weight shapes
    export.save_model_dir(export._built(other), tmp_path)
    params = yaml.safe_load((model_dir[1] / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ValueError, match="does not match the model"):
        export.load_model_dir(tmp_path)


def test_full_model_garden_params_yaml(model_dir, tmp_path):
    """params.yaml as Model Garden writes it: runtime/trainer blocks, extra task keys."""
    model, src = model_dir
    params = yaml.safe_load((src / "params.yaml").read_text())
    params = {"runtime": {"distribution_strategy": "mirrored"}, "trainer": {"train_steps": 5},
              "task": {"model": params["task"]["model"], "init_checkpoint": ""}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for name in src.iterdir():
        if name.name != "params.yaml":
            (tmp_path / name.name).write_bytes(name.read_bytes())
    image = _image(30, 30)
    got = loading.load(tmp_path).predict_box_masks(image, BOXES[:1])
    np.testing.assert_allclose(got, model.predict_masks(image[None], BOXES[None, :1])[0], atol=1e-6)


def test_lazy_top_level_export_without_tensorflow():
    assert deepmac_nb.Predictor is Predictor
    code = "import sys, deepmac_nb; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_detect_returns_sorted_detections_with_image_masks():
    from deepmac_nb.modeling import deepmac_model

    model = deepmac_model.build_deepmac_model(cfg_lib.tiny_model_config())
    predictor = Predictor.from_model(model)
    image = np.random.default_rng(0).integers(0, 255, (40, 70, 3), dtype=np.uint8)
    out = predictor.detect(image, min_score=0.0, max_detections=7)
    assert out["boxes"].shape == (7, 4) and out["masks"].shape == (7, 40, 70)
    assert (np.diff(out["scores"]) <= 0).all()
    assert out["classes"].min() >= 1
    assert ((out["boxes"] >= 0) & (out["boxes"] <= 1)).all()


def test_flip_tta_averages_the_mirrored_pass():
    calls = []
    size = 8
    ramp = np.tile(np.linspace(0.0, 1.0, size, dtype=np.float32), (size, 1))  # 0 left, 1 right

    def box_masks(image, boxes):
        calls.append((image.copy(), boxes.copy()))
        return np.repeat(ramp[None], len(boxes), axis=0)

    tta = Predictor(box_masks, size, "keras", flip_tta=True)
    image = _image(10, 20)
    boxes = np.array([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 0.3]], np.float32)
    masks = tta.predict_box_masks(image, boxes)
    np.testing.assert_allclose(masks, 0.5)  # the ramp plus the mirrored ramp
    (first_image, first_boxes), (second_image, second_boxes) = calls
    np.testing.assert_array_equal(first_image, image)
    np.testing.assert_array_equal(first_boxes, boxes)
    np.testing.assert_array_equal(second_image, image[:, ::-1])
    np.testing.assert_allclose(
        second_boxes, [[0.1, 0.1, 0.5, 0.8], [0.0, 0.7, 1.0, 1.0]], atol=1e-6
    )


def test_flip_tta_is_mirror_equivariant_on_a_real_model(model_dir, predictor):
    image = _image(40, 64, seed=2)
    boxes = np.array([[0.1, 0.2, 0.7, 0.6], [0.3, 0.5, 0.9, 1.0]], np.float32)
    mirrored = np.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], 1)
    tta = loading.load(model_dir[1], flip_tta=True)
    plain = tta.predict_box_masks(image, boxes)
    flipped = tta.predict_box_masks(image[:, ::-1], mirrored)
    np.testing.assert_allclose(flipped, plain[:, :, ::-1], atol=1e-5)
    assert not np.allclose(plain, predictor.predict_box_masks(image, boxes), atol=1e-4)


@pytest.mark.large
def test_the_old_attribute_still_switches_flip_tta(model_dir):
    image = _image(40, 64, seed=3)
    boxes = np.array([[0.1, 0.2, 0.7, 0.6]], np.float32)
    tta, plain = loading.load(model_dir[1], flip_tta=True), loading.load(model_dir[1])
    plain.flip_tta = True
    np.testing.assert_allclose(plain.predict_box_masks(image, boxes),
                               tta.predict_box_masks(image, boxes), atol=1e-6)  # fmt: skip


def test_a_backend_without_detector_refuses_detect_in_one_line():
    box_only = Predictor(lambda image, boxes: np.zeros((len(boxes), 4, 4), np.float32), 4, "x")
    with pytest.raises(ValueError, match="no detector outputs") as exc:
        box_only.detect(_image(8, 8))
    assert "\n" not in str(exc.value)
