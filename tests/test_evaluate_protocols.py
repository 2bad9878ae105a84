"""deepmac_nb.evaluation.evaluate: one protocol run, scored on the images it covered."""

import numpy as np
import pytest

from deepmac_nb.evaluation import (
    baselines,
    evaluate,
    evaluate_predictions,
    load_coco,
    run_box_prompted,
)

TIMINGS = ("seconds_model", "seconds_total")


@pytest.fixture(scope="module")
def shapes_val(tmp_path_factory):
    from deepmac_nb.data import shapes

    root = tmp_path_factory.mktemp("shapes")
    shapes.generate_shapes(root, num_images=5, seed=1, image_size=64, split_name="val")
    return root / "val.json", root / "images"


def _without_timings(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k not in TIMINGS}


def test_box_prompted_equals_run_then_evaluate_predictions(shapes_val):
    annotations, images = shapes_val
    preds, stats = run_box_prompted(
        annotations, images, baselines.ellipse_masks, max_images=3, progress=False
    )
    want = evaluate_predictions(annotations, preds, image_ids=stats.pop("image_ids"))
    got = evaluate(baselines.ellipse_masks, annotations, images, max_images=3)
    assert list(got) == [*want, "stats"]
    assert {k: v for k, v in got.items() if k != "stats"} == want
    assert _without_timings(got["stats"]) == _without_timings(stats)
    assert "image_ids" not in got["stats"] and got["stats"]["images"] == 3


class _FakePredictor:
    """A ``Predictor``'s two entry points: box masks, and detection of one fixed box."""

    def __init__(self):
        self.calls = []

    def predict(self, image, boxes):
        self.calls.append("predict")
        return baselines.box_masks(image, boxes)

    def detect(self, image):
        self.calls.append("detect")
        h, w = image.shape[:2]
        mask = np.zeros((1, h, w), bool)
        mask[0, : h // 2, : w // 2] = True
        return {"boxes": [[0, 0, 0.5, 0.5]], "classes": [1], "scores": [0.9], "masks": mask}


def test_a_predictor_is_called_through_the_protocols_method(shapes_val):
    annotations, images = shapes_val
    model = _FakePredictor()
    coco = load_coco(annotations)
    prompted = evaluate(model, coco, images, splits="all", max_images=2)
    assert set(model.calls) == {"predict"} and "box" not in prompted
    model.calls.clear()
    detected = evaluate(model, coco, images, "detected", max_images=2)
    assert set(model.calls) == {"detect"} and set(detected["box"]) == set(detected["mask"])
    assert detected["stats"]["predictions"] == 2
    only_masks = evaluate(model.detect, coco, images, "detected", iou_types=["segm"])
    assert "box" not in only_masks and only_masks["stats"]["images"] == 5


def test_an_unknown_protocol_is_refused_before_running(shapes_val):
    annotations, images = shapes_val
    with pytest.raises(ValueError, match="unknown protocol 'gt'"):
        evaluate(baselines.box_masks, annotations, images, "gt")
