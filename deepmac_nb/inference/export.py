"""Model artifacts: training model dirs in (``modeling.model_dir``), SavedModel and
builtin-ops TFLite out.

* The *SavedModel* has the official DeepMAC signature ``serving_default``: inputs
  ``input_tensor`` uint8 ``[1, H, W, 3]`` and ``boxes`` float32 ``[1, N, 4]`` normalized
  ``[ymin, xmin, ymax, xmax]`` to the given image; outputs ``detection_masks`` float32
  ``[1, N, S, S]`` (sigmoid, each box's frame) plus the model's own detections
  (``detection_boxes`` image frame, ``detection_scores``, ``detection_classes`` float32
  1-based, ``num_detections`` float32), as the OD API exports them.
* The *TFLite* model uses builtin ops only, with static shapes, and two signatures so
  that the backbone runs once per image however many boxes there are:
  ``features`` takes ``image`` float32 ``[1, H_in, W_in, 3]`` (already resized,
  normalized and padded by ``preprocess.resize_and_pad``) and returns the feature maps
  the mask head crops from; ``masks`` takes those maps (same names) plus ``boxes``
  float32 ``[1, K, 4]`` in the padded model frame (``preprocess.image_to_model_boxes``),
  sanitized and zero-padded to K, and returns ``detection_masks`` ``[1, K, S, S]``.
  ``Predictor.from_tflite`` does the Python side. Deep-MARC's TFLite has the same two
  signatures (``deepmarc.export``).
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from deepmac_nb import _io
from deepmac_nb.modeling import crops, preprocess
from deepmac_nb.modeling.deepmac_model import IMAGE, INSTANCE_EMB, PIXEL_EMB, DeepMACModel

# Model-dir I/O lives in modeling.model_dir; these names stay importable from here.
from deepmac_nb.modeling.model_dir import (  # noqa: F401
    PARAMS_FILE,
    _apply_overrides,
    _built,
    load_model_dir,
    model_config_from_params,
    rebuild,
    save_model_dir,
)

SIGNATURE = "serving_default"
TFLITE_FEATURES, TFLITE_MASKS = "features", "masks"  # TFLite signature keys
DEFAULT_TFLITE_BOXES = 16
# The official DeepMAC serving signature's inputs (shared by Deep-MARC's export).
SERVING_INPUTS = (
    tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor"),
    tf.TensorSpec([1, None, 4], tf.float32, name="boxes"),
)


def image_masks_and_raw(model: DeepMACModel, image: tf.Tensor, boxes: tf.Tensor):
    """One forward pass for one image: ``(masks [N, S, S], raw head outputs, valid [2])``.

    ``image`` uint8 ``[H, W, 3]``; ``boxes`` float32 ``[N, 4]`` normalized to the image;
    masks are sigmoid probabilities in each box's frame. Traceable (any H, W, N).
    """
    inputs, valid = preprocess.resize_and_pad(image, model.input_hw)
    raw = model.raw_outputs(inputs[None], training=False)
    model_boxes = crops.sanitize_boxes(preprocess.image_to_model_boxes(boxes, valid))
    last = model.mask_stages(raw)[-1]
    logits = model.stage_mask_logits(raw, last, model_boxes[None], False)
    return tf.sigmoid(logits[0]), raw, valid


def serving_function(model: DeepMACModel) -> tf.types.experimental.ConcreteFunction:
    """The official-DeepMAC-signature concrete function (see the module docstring)."""

    @tf.function(input_signature=SERVING_INPUTS)
    def serve(input_tensor, boxes):
        masks, raw, valid = image_masks_and_raw(model, input_tensor[0], boxes[0])
        dets = model.decode(raw)
        return {
            "detection_masks": masks[None],
            "detection_boxes": preprocess.model_to_image_boxes(dets["detection_boxes"], valid),
            "detection_scores": dets["detection_scores"],
            "detection_classes": tf.cast(dets["detection_classes"], tf.float32),
            "num_detections": tf.cast(dets["num_detections"], tf.float32),
        }

    return serve.get_concrete_function()


def export_saved_model(model: DeepMACModel, out_dir: str | Path) -> Path:
    """Writes ``model`` as a SavedModel with the official DeepMAC signature, atomically.

    Only the variables and the traced graph are saved (no Keras metadata), so loading
    needs nothing but TensorFlow: ``tf.saved_model.load(out_dir).signatures[...]``.
    """
    root = tf.Module()
    root.model_variables = list(model.variables)  # tracks what the graph captures
    concrete = serving_function(model)
    with _io.atomic_dir(out_dir) as tmp:
        tf.saved_model.save(root, str(tmp), signatures={SIGNATURE: concrete})
    return Path(out_dir)


def tflite_functions(model: DeepMACModel, max_boxes: int) -> list:
    """The two static-shape signatures of a ``crop_method="matmul"`` model (module docstring).

    ``features``: ``image [1, H_in, W_in, 3]`` -> the last mask stage's embedding maps
    (``pixel_embedding``, and ``instance_embedding`` when the model has one);
    ``masks``: those maps + ``boxes [1, K, 4]`` -> ``detection_masks [1, K, S, S]``.
    """
    height, width = model.input_hw

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, name="image")])
    def features(image):
        raw = model.raw_outputs(image, training=False)
        stage = model.mask_stages(raw)[-1]
        mask_cfg = model.config.mask
        keys = [PIXEL_EMB] + [INSTANCE_EMB] * (mask_cfg.instance_embedding_dim > 0)
        keys += [IMAGE] * bool(mask_cfg.image_channels)
        return {key: raw[key][stage] for key in keys}

    return [features.get_concrete_function(), _tflite_masks(model, features, max_boxes)]


def masks_input_signature(features, max_boxes: int) -> list[tf.TensorSpec]:
    """The TFLite ``masks`` inputs: each output of ``features`` (same name), then ``boxes``."""
    outputs = features.get_concrete_function().structured_outputs
    specs = [tf.TensorSpec(t.shape, t.dtype, name=key) for key, t in outputs.items()]
    return [*specs, tf.TensorSpec([1, max_boxes, 4], tf.float32, name="boxes")]


def _tflite_masks(model: DeepMACModel, features, max_boxes: int):
    signature = masks_input_signature(features, max_boxes)

    @tf.function(input_signature=signature)
    def masks(*tensors):
        *maps, boxes = tensors
        raw = {spec.name: [value] for spec, value in zip(signature[:-1], maps, strict=True)}
        # Boxes arrive sanitized: sanitize_boxes' is_finite has no builtin TFLite op.
        return {"detection_masks": tf.sigmoid(model.stage_mask_logits(raw, 0, boxes, False))}

    return masks.get_concrete_function()


def export_tflite(
    model: DeepMACModel, out_path: str | Path, max_boxes: int = DEFAULT_TFLITE_BOXES
) -> Path:
    """Writes a builtin-ops-only TFLite model of ``model``'s box -> mask path, atomically.

    The graph is traced from a ``crop_method="matmul"`` copy of ``model`` (same weights):
    ``tf.image.crop_and_resize`` has no builtin TFLite kernel. ``max_boxes`` is the fixed
    box count K per invocation. Raises ``ValueError`` if conversion needs non-builtin ops.
    """
    if max_boxes < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes}.")
    matmul_model = rebuild(model, crop_method="matmul")
    functions = tflite_functions(matmul_model, max_boxes)
    return write_builtin_tflite(functions, matmul_model.variables, out_path)


def write_builtin_tflite(functions: list, variables, out_path: str | Path) -> Path:
    """Converts concrete ``functions`` (capturing ``variables``; one signature each, keyed
    by function name) with builtin ops only, atomically.

    Raises ``ValueError`` when the graph needs Flex (SELECT_TF_OPS) or custom ops.
    """
    root = tf.Module()
    root.model_variables = list(variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, root)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        data = converter.convert()
    except Exception as exc:  # the converter raises its own ConverterError types
        raise ValueError(f"TFLite conversion with builtin ops only failed: {exc}") from exc
    return _io.write_bytes(out_path, data)
