"""``benchmarks/adapt_coco_mini.py``: COCO boxes of one split reach ``adapt`` as the
MegaDetector file an ecologist would give it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from deepmac_nb.inference import megadetector

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "adapt_coco_mini.py"


def _script():
    spec = importlib.util.spec_from_file_location("adapt_coco_mini", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _coco():
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
                   {"id": 2, "file_name": "b.jpg", "width": 50, "height": 50}],
        "categories": [{"id": 1, "name": "person"}, {"id": 23, "name": "bear"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 23, "bbox": [20, 10, 100, 50], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 23, "bbox": [0, 0, 200, 100], "iscrowd": 1},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "iscrowd": 0},
            {"id": 4, "image_id": 1, "category_id": 23, "bbox": [5, 5, 0, 10], "iscrowd": 0},
            {"id": 5, "image_id": 2, "category_id": 1, "bbox": [1, 1, 10, 10], "iscrowd": 0},
        ],
    }  # fmt: skip
    coco.createIndex()
    return coco


def test_only_the_splits_non_crowd_boxes_become_detections():
    data = _script().boxes_as_detections(_coco(), [23])  # bear: a non-VOC class
    entries = megadetector.parse_detections(data).images
    assert [e.file for e in entries] == ["a.jpg"]  # b.jpg holds no bear
    (det,) = entries[0].detections  # the crowd and the zero-width box are left out
    assert det.conf == 1.0
    # normalized [ymin, xmin, ymax, xmax] of pixel [x=20, y=10, w=100, h=50] in 200 x 100
    assert det.box == pytest.approx((0.1, 0.1, 0.6, 0.6))
