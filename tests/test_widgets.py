"""deepmac_nb.widgets: the camera-trap viewer and the box picker, driven without a browser.

Setting a control's ``.value`` fires the same ``observe`` callbacks a user's drag does.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deepmac_nb import viz, widgets
from deepmac_nb.evaluation import baselines
from deepmac_nb.inference import megadetector

H, W = 48, 64


class FakePredictor:
    """``predict_box_masks`` like ``Predictor``: a filled box frame; counts its calls."""

    def __init__(self, value: float = 1.0, size: int = 8):
        self.calls, self.value, self.size = 0, value, size

    def predict_box_masks(self, image, boxes):
        assert image.dtype == np.uint8 and image.ndim == 3
        self.calls += 1
        return np.full((len(boxes), self.size, self.size), self.value, np.float32)


def _detection(x, y, w, h, conf, category="1"):
    return {"category": category, "conf": conf, "bbox": [x, y, w, h]}


@pytest.fixture()
def camera_traps(tmp_path):
    """Three photos: a blank, one with an animal (0.9) and a weak one (0.1), one person."""
    for i in range(3):
        image = np.full((H, W, 3), 40 * (i + 1), np.uint8)
        cv2.imwrite(str(tmp_path / f"img{i}.jpg"), image)
    data = {
        "images": [
            {"file": "img0.jpg", "detections": []},
            {
                "file": "img1.jpg",
                "detections": [
                    _detection(0.1, 0.1, 0.4, 0.5, 0.9),
                    _detection(0.6, 0.5, 0.3, 0.4, 0.1),
                ],
            },
            {"file": "img2.jpg", "detections": [_detection(0.2, 0.2, 0.5, 0.5, 0.8, "2")]},
            {"file": "broken.jpg", "failure": "detector failure"},
        ],
        "detection_categories": {"1": "animal", "2": "person"},
    }
    return megadetector.parse_detections(data), tmp_path


def _viewer(camera_traps, **kwargs):
    detections, folder = camera_traps
    models = {"fake": FakePredictor(), "box": baselines.box_masks}
    return widgets.CameraTrapViewer(detections, folder, models, **kwargs)


def test_viewer_builds_its_controls_and_opens_on_the_first_detection(camera_traps):
    viewer = _viewer(camera_traps, min_conf=0.2)
    assert len(viewer.entries) == 3  # the failed entry is left out
    assert viewer.image_slider.max == 2 and viewer.image_slider.value == 1
    assert viewer.view.value[:4] == b"\x89PNG"
    assert viewer.shown() == [0]
    assert "1 of 2 detections shown" in viewer.info.value
    assert set(viewer.category_select.options) == {"animal", "person"}
    assert viewer.render().shape == (H, W, 3)


def test_confidence_slider_filters_and_redraws(camera_traps):
    viewer = _viewer(camera_traps, min_conf=0.2)
    before = viewer.view.value
    viewer.conf_slider.value = 0.05
    assert viewer.shown() == [0, 1] and viewer.view.value != before
    viewer.conf_slider.value = 0.95
    assert viewer.shown() == [] and "0 of 2" in viewer.info.value
    np.testing.assert_array_equal(viewer.render(), viewer.image())  # nothing drawn


def test_masks_are_computed_once_per_image_and_model(camera_traps):
    viewer = _viewer(camera_traps)
    fake = viewer.models["fake"]
    assert fake.calls == 1
    viewer.conf_slider.value = 0.0
    viewer.opacity_slider.value = 0.9
    assert fake.calls == 1  # threshold and opacity reuse the cached masks
    viewer.image_slider.value = 2
    viewer.image_slider.value = 1
    assert fake.calls == 2  # image 2 computed once, image 1 came from the cache
    masks = viewer.masks()
    assert masks.shape == (2, H, W) and masks.dtype == bool
    # The fake fills each box: the first box covers rows 0.1..0.6 and columns 0.1..0.5.
    assert masks[0, int(0.3 * H), int(0.3 * W)] and not masks[0, int(0.8 * H), int(0.8 * W)]


def test_opacity_changes_the_tint(camera_traps):
    viewer = _viewer(camera_traps, min_conf=0.5)
    y, x = int(0.3 * H), int(0.3 * W)
    viewer.opacity_slider.value = 0.0
    plain = viewer.render()[y, x].copy()
    viewer.opacity_slider.value = 1.0
    tinted = viewer.render()[y, x]
    np.testing.assert_array_equal(plain, viewer.image()[y, x])
    assert not np.array_equal(plain, tinted)


def test_category_filter_and_model_selector(camera_traps):
    viewer = _viewer(camera_traps, min_conf=0.5)
    viewer.image_slider.value = 2
    assert viewer.shown() == [0]
    viewer.category_select.value = ("animal",)
    assert viewer.shown() == []  # image 2 holds only a person
    viewer.category_select.value = ("animal", "person")
    viewer.model_select.value = "box"
    assert "model: box" in viewer.info.value
    np.testing.assert_array_equal(
        viewer.masks()[0], baselines.box_masks(viewer.image(), [viewer.entry.detections[0].box])[0]
    )


def test_compare_draws_each_image_with_each_model_and_leaves_the_controls(camera_traps):
    viewer = _viewer(camera_traps, min_conf=0.5)
    viewer.model_select.value = "box"
    state = [c.value for c in viewer.controls]
    tiles, titles = viewer.compare(["fake", "box"], zoom=None)
    assert titles == ["img1: fake", "img1: box", "img2: fake", "img2: box"]  # img0: none
    assert [c.value for c in viewer.controls] == state
    viewer.image_slider.value = 2
    viewer.model_select.value = "fake"
    np.testing.assert_array_equal(tiles[2], viewer.render())  # same as through the controls
    zoomed, _ = viewer.compare(["fake"], count=1, zoom=0.0)  # img1's shown box only
    box = viewer.entries[1].detections[0].box  # x 0.1-0.5, y 0.1-0.6 of 64 x 48
    np.testing.assert_array_equal(zoomed[0], viz.crop_box(tiles[0], box, 0.0))
    assert zoomed[0].shape == (25, 26, 3)  # rows 4..28, columns 6..31
    dim = FakePredictor(value=0.0)  # empty masks: the tint must differ from the filled box
    viewer.models["dim"] = dim
    dark, _ = viewer.compare(["dim"], count=1)
    assert not np.array_equal(dark[0], tiles[0])
    with pytest.raises(ValueError, match="unknown model names"):
        viewer.compare(["nope"])


def test_an_unreadable_photo_shows_a_placeholder_and_the_reason(camera_traps):
    folder = camera_traps[1]
    (folder / "img2.jpg").write_bytes(b"not a jpeg")
    viewer = _viewer(camera_traps)
    viewer.image_slider.value = 2
    assert "corrupt image" in viewer.info.value and viewer.view.value[:4] == b"\x89PNG"


def test_viewer_needs_usable_images_and_a_model(camera_traps):
    detections, folder = camera_traps
    with pytest.raises(ValueError, match="No usable images"):
        widgets.CameraTrapViewer(detections.images[3:], folder, {"fake": FakePredictor()})
    with pytest.raises(ValueError, match="at least one mask model"):
        widgets.CameraTrapViewer(detections, folder, {})


def test_paste_box_masks_fills_only_the_box():
    masks = widgets.paste_box_masks(
        np.ones((1, 4, 4), np.float32), np.array([[0.0, 0.0, 0.5, 1.0]]), 10, 6
    )
    assert masks.shape == (1, 10, 6) and masks[0, :5].all() and not masks[0, 5:].any()


def test_box_picker_adds_and_clears_boxes():
    image = np.zeros((H, W, 3), np.uint8)
    calls = []

    def mask_fn(img, boxes):
        calls.append(len(boxes))
        return baselines.ellipse_masks(img, boxes)

    picker = widgets.BoxPicker(image, mask_fn)
    assert picker.boxes.shape == (0, 4) and picker.masks.shape == (0, H, W)
    picker.y_range.value, picker.x_range.value = (0.1, 0.6), (0.2, 0.9)
    assert calls == []  # moving the draft box does not segment
    picker.add_button.click()
    np.testing.assert_allclose(picker.boxes, [[0.1, 0.2, 0.6, 0.9]], atol=1e-6)
    assert calls == [1] and picker.masks.shape == (1, H, W) and picker.masks.any()
    assert "0.100, 0.200, 0.600, 0.900" in picker.info.value
    picker.clear_button.click()
    assert picker.boxes.shape == (0, 4) and picker.view.value[:4] == b"\x89PNG"


def test_box_picker_with_initial_boxes_and_a_predictor():
    image = np.full((H, W, 3), 90, np.uint8)
    fake = FakePredictor(value=0.9)
    picker = widgets.BoxPicker(image, fake, boxes=np.array([[0.0, 0.0, 0.5, 0.5]]), opacity=1.0)
    assert fake.calls == 1 and picker.masks[0, : H // 2, : W // 2].all()
    picture = picker.render()
    assert not np.array_equal(picture[5, 5], image[5, 5])  # tinted inside the box
