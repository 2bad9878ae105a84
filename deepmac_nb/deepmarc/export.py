"""Deep-MARC model dirs -> a SavedModel with the official DeepMAC signature.

The SavedModel is interchangeable with a Deep-MAC export (``inference.export``): the
``serving_default`` signature takes ``input_tensor`` uint8 ``[1, H, W, 3]`` and ``boxes``
float32 ``[1, N, 4]`` normalized ``[ymin, xmin, ymax, xmax]`` to the given image, and
returns ``detection_masks`` float32 ``[1, N, S, S]`` (sigmoid, each box's frame; S =
``crop_size * upsample_factor``, 64 for the paper models) plus the Mask R-CNN's own
detections (``detection_boxes`` normalized to the image, ``detection_scores``,
``detection_classes`` float32 1-based, ``num_detections`` float32). So
``loading.load``, ``deepmac-nb evaluate --model`` and ``deepmac-nb segment --model``
take either architecture's export.

Why not Model Garden's ``serving/detection.py`` ``DetectionModule`` as is: its
``image_and_boxes_tensor`` signature returns masks only, names its inputs differently
from the official DeepMAC checkpoint, and fails on an empty box list. The graph here
calls the same ``call_images_and_boxes`` with the same box transform (checked against
``reverse_input_box_transformation`` in the tests).

``export_tflite`` writes the box -> mask path (what ``call_images_and_boxes`` computes)
as a builtin-ops-only TFLite model with the same two signatures as Deep-MAC's
(``inference.export``): ``features`` (``image`` float32 ``[1, H_in, W_in, 3]``
preprocessed by ``preprocess.resize_and_pad`` -> the FPN levels ``level_2`` ...) and
``masks`` (those levels + ``boxes`` float32 ``[1, K, 4]`` sanitized and normalized to the
padded model input -> ``detection_masks`` ``[1, K, S, S]``); so ``Predictor.from_tflite``
runs either, with one backbone pass per image. The Mask R-CNN's own detections (RPN, NMS)
are not in it.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from deepmac_nb import _io
from deepmac_nb.deepmarc.predictor import DeepMARCModel
from deepmac_nb.inference import export
from deepmac_nb.modeling import preprocess

_LEVEL = "level_"  # TFLite names of the FPN levels: level_2 ... level_6


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
    with _io.atomic_dir(out_dir) as tmp:
        tf.saved_model.save(root, str(tmp), signatures={export.SIGNATURE: concrete})
    return Path(out_dir)


def tflite_functions(model: DeepMARCModel, max_boxes: int) -> list:
    """``features`` (image -> FPN levels ``level_<k>``) and ``masks`` (levels + boxes ->
    masks), the two signatures of ``inference.export``'s TFLite contract."""
    height, width = model.input_hw
    net = model.model

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, name="image")])
    def features(image):
        levels = net.backbone(image)
        levels = net.decoder(levels) if net.decoder is not None else levels
        return {f"{_LEVEL}{key}": value for key, value in levels.items()}

    signature = export.masks_input_signature(features, max_boxes)
    scale = tf.constant([height, width, height, width], tf.float32)

    @tf.function(input_signature=signature)
    def masks(*tensors):
        *maps, boxes = tensors
        names = [spec.name.removeprefix(_LEVEL) for spec in signature[:-1]]
        levels = dict(zip(names, maps, strict=True))
        ymin, xmin, ymax, xmax = tf.unstack(boxes * scale, axis=-1)
        # As DeepMARCModel.pixel_boxes: RoI level assignment takes log(sqrt(area)).
        ymax, xmax = tf.maximum(ymax, ymin + 1.0), tf.maximum(xmax, xmin + 1.0)
        rois = tf.stack([ymin, xmin, ymax, xmax], axis=-1)
        # The body of Model Garden's call_images_and_boxes after its backbone + decoder.
        classes = tf.zeros([1, max_boxes], tf.int32)
        logits = net.mask_head([net.mask_roi_aligner(levels, rois), classes])
        return {"detection_masks": tf.sigmoid(logits)}

    return [features.get_concrete_function(), masks.get_concrete_function()]


def export_tflite(
    model: DeepMARCModel, out_path: str | Path, max_boxes: int = export.DEFAULT_TFLITE_BOXES
) -> Path:
    """Writes the box -> mask path as a builtin-ops-only TFLite model, atomically.

    ``max_boxes`` is the fixed box count K per invocation. Raises ``ValueError`` if the
    conversion needs non-builtin ops.
    """
    if max_boxes < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes}.")
    functions = tflite_functions(model, max_boxes)
    return export.write_builtin_tflite(functions, model.model.variables, out_path)
