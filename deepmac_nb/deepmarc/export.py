"""Deep-MARC model dirs -> a SavedModel with the official DeepMAC signature.

The SavedModel is interchangeable with a Deep-MAC export (``inference.export``): the
``serving_default`` signature takes ``input_tensor`` uint8 ``[1, H, W, 3]`` and ``boxes``
float32 ``[1, N, 4]`` normalized ``[ymin, xmin, ymax, xmax]`` to the given image, and
returns ``detection_masks`` float32 ``[1, N, S, S]`` (sigmoid, each box's frame; S =
``crop_size * upsample_factor``, 64 for the paper models) plus the Mask R-CNN's own
detections (``detection_boxes`` normalized to the image, ``detection_scores``,
``detection_classes`` float32 1-based, ``num_detections`` float32). So
``Predictor.load``, ``deepmac-nb evaluate --model`` and ``deepmac-nb segment --model``
take either architecture's export.

Why not Model Garden's ``serving/detection.py`` ``DetectionModule`` as is: its
``image_and_boxes_tensor`` signature returns masks only, names its inputs differently
from the official DeepMAC checkpoint, and fails on an empty box list. The graph here
calls the same ``call_images_and_boxes`` with the same box transform (checked against
``reverse_input_box_transformation`` in the tests).

``export_tflite`` writes the box -> mask path (``call_images_and_boxes``) as a
builtin-ops-only TFLite model with the same inputs and outputs as Deep-MAC's
(``inference.export``): ``image`` float32 ``[1, H_in, W_in, 3]`` preprocessed by
``preprocess.resize_and_pad``, ``boxes`` float32 ``[1, K, 4]`` sanitized and normalized
to the padded model input, ``detection_masks`` ``[1, K, S, S]``; so
``Predictor.from_tflite`` runs either. The Mask R-CNN's own detections (RPN, NMS) are
not in it.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from deepmac_nb.deepmarc.predictor import DeepMARCModel
from deepmac_nb.inference import export
from deepmac_nb.modeling import preprocess


def serving_function(model: DeepMARCModel) -> tf.types.experimental.ConcreteFunction:
    """The official-DeepMAC-signature concrete function of a Deep-MARC model."""

    @tf.function(input_signature=export.SERVING_INPUTS)
    def serve(input_tensor, boxes):
        inputs, valid = preprocess.resize_and_pad(input_tensor[0], model.input_hw)
        inputs, valid = inputs[None], valid[None]
        dets = model.detections_from_inputs(inputs, valid)
        return {
            "detection_masks": model.masks_from_inputs(inputs, valid, boxes),
            "detection_boxes": dets["detection_boxes"],
            "detection_scores": dets["detection_scores"],
            "detection_classes": tf.cast(dets["detection_classes"], tf.float32),
            "num_detections": tf.cast(dets["num_detections"], tf.float32),
        }

    return serve.get_concrete_function()


def export_saved_model(model: DeepMARCModel, out_dir: str | Path) -> Path:
    """Writes ``model`` as a SavedModel with the official DeepMAC signature, atomically.

    Loading it needs only TensorFlow (no deepmac_nb, no Model Garden import).
    """
    root = tf.Module()
    root.model_variables = list(model.model.variables)  # what the graph captures
    concrete = serving_function(model)
    with export.atomic_dir(out_dir) as tmp:
        tf.saved_model.save(root, str(tmp), signatures={export.SIGNATURE: concrete})
    return Path(out_dir)


def tflite_function(model: DeepMARCModel, max_boxes: int):
    """Static-shape masks function: preprocessed image + model-frame boxes (module doc)."""
    height, width = model.input_hw
    scale = tf.constant([height, width, height, width], tf.float32)

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, height, width, 3], tf.float32, name="image"),
            tf.TensorSpec([1, max_boxes, 4], tf.float32, name="boxes"),
        ]
    )
    def masks(image, boxes):
        ymin, xmin, ymax, xmax = tf.unstack(boxes * scale, axis=-1)
        # As DeepMARCModel.pixel_boxes: RoI level assignment takes log(sqrt(area)).
        ymax = tf.maximum(ymax, ymin + 1.0)
        xmax = tf.maximum(xmax, xmin + 1.0)
        pixel_boxes = tf.stack([ymin, xmin, ymax, xmax], axis=-1)
        out = model.model.call_images_and_boxes(image, pixel_boxes)
        return {"detection_masks": out["detection_masks"]}

    return masks.get_concrete_function()


def export_tflite(
    model: DeepMARCModel, out_path: str | Path, max_boxes: int = export.DEFAULT_TFLITE_BOXES
) -> Path:
    """Writes the box -> mask path as a builtin-ops-only TFLite model, atomically.

    ``max_boxes`` is the fixed box count K per invocation. Raises ``ValueError`` if the
    conversion needs non-builtin ops.
    """
    if max_boxes < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes}.")
    concrete = tflite_function(model, max_boxes)
    return export.write_builtin_tflite(concrete, model.model.variables, out_path)
