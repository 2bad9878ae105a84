"""Opt-in: the two published checkpoints, downloaded for real, on the camera-trap sample.

Skipped unless ``DEEPMAC_NB_NETWORK_TESTS=1`` (CI has no network). Run with::

    DEEPMAC_NB_NETWORK_TESTS=1 .venv/bin/python -m pytest tests/test_published_network.py -v

It downloads ``deepmac_1024x1024_coco17.tar.gz`` and ``deepmarc_spinenet.zip`` into
``$DEEPMAC_NB_CACHE`` (once), runs every camera-trap photo with MegaDetector v5 boxes
through each ``Predictor``, and compares one mask per model with the official Colab's
post-processing: the raw ``detection_masks`` of the SavedModel signature, pasted with the
OD API's ``reframe_box_masks_to_image_masks`` (numpy port in conftest), threshold 0.5.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import reframe_box_masks_numpy

from deepmac_nb import pretrained
from deepmac_nb.data import samples
from deepmac_nb.inference import iwildcam, megadetector

pytestmark = pytest.mark.skipif(
    os.environ.get("DEEPMAC_NB_NETWORK_TESTS") != "1",
    reason="network test: set DEEPMAC_NB_NETWORK_TESTS=1 to download the published models",
)


@pytest.fixture(scope="module")
def camera_traps():
    found = samples.camera_traps("mdv5", download=True)
    photos = []
    for entry in megadetector.read_detections(found.detections, found.images).images:
        kept, _ = megadetector.select_detections(entry, 0.2)
        boxes = np.array([d.box for d in kept], np.float32).reshape(-1, 4)
        photos.append((entry.file, iwildcam.load_rgb(found.images / entry.file), boxes))
    return photos


@pytest.mark.parametrize(
    ("which", "image_key"), [("deepmac", "input_tensor"), ("deepmarc", "images")]
)
def test_published_model_matches_the_official_post_processing(camera_traps, which, image_key):
    predictor = pretrained.load_published(which)
    signature = predictor._box_mask_fn.signature
    with_boxes = [p for p in camera_traps if len(p[2])]
    for _, image, boxes in camera_traps:
        masks = predictor.predict(image, boxes)
        assert masks.shape == (len(boxes), *image.shape[:2]) and np.isfinite(masks).all()
    name, image, boxes = max(with_boxes, key=lambda p: len(p[2]))
    raw = signature(**{image_key: tf.constant(image[None]), "boxes": tf.constant(boxes[None])})
    official = reframe_box_masks_numpy(raw["detection_masks"][0].numpy()[:1], boxes[:1],
                                       *image.shape[:2]) > 0.5  # fmt: skip
    ours = predictor.predict(image, boxes[:1])[0] > 0.5
    assert official.sum() > 0, f"{which}: empty official mask on {name}"
    disagree = np.logical_xor(ours, official[0]).sum() / max(official.sum(), 1)
    assert disagree < 1e-3, f"{which} on {name}: {disagree:.2%} of the mask differs"
    if which == "deepmarc":
        with pytest.raises(ValueError, match="no detector outputs"):
            predictor.detect(image)
    else:
        assert len(predictor.detect(image)["scores"]) > 0
