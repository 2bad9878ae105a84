"""Box-prompted masks from a Deep-MARC model, behind Deep-MAC's interface.

``DeepMARCModel`` wraps Model Garden's ``DeepMaskRCNNModel`` (built by Model Garden's own
``build_maskrcnn``) with the methods of ``DeepMACModel`` that inference uses:

* ``preprocess(images uint8 [B, H, W, 3])`` -> ``(inputs float32 [B, H_in, W_in, 3],
  valid float32 [B, 2])``: ``deepmac_nb.modeling.preprocess.resize_and_pad``, which is
  Model Garden's Mask R-CNN preprocessing too (same ImageNet statistics, aspect kept,
  rounded size, zero padding at the bottom/right after normalization);
* ``predict_masks(images, boxes [B, N, 4])`` -> ``float32 [B, N, S, S]`` sigmoid
  probabilities in each box's frame (row 0 = the box's ymin), from Model Garden's
  ``call_images_and_boxes``; ``S = crop_size * upsample_factor``;
* ``detect(images)`` -> the model's own detections, boxes normalized to each image.

Frames: ``boxes`` are normalized ``[ymin, xmin, ymax, xmax]`` to each *original* image.
Model Garden's Mask R-CNN wants absolute pixels of the padded input, i.e. the normalized
box times the resized image size ``valid * [H_in, W_in]``. NaN/inf coordinates become 0,
swapped corners are ordered, and boxes are kept at least one input pixel high and wide
(Model Garden's RoI level assignment takes ``log(sqrt(area))``). Here boxes partly or
wholly outside the image are kept (the RoI aligner clamps its samples to the feature map,
so their masks are finite); the ``Predictor`` clips every box to the image first.

``as_predictor(model)`` / ``load_predictor(model_dir)`` return the project's
``inference.predictor.Predictor`` (``predict``, ``predict_box_masks``, ``detect``), so
callers switch architectures by loading a different model dir.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras
import yaml
from official.projects.deepmac_maskrcnn.configs import deep_mask_head_rcnn as mg_cfg
from official.projects.deepmac_maskrcnn.tasks import deep_mask_head_rcnn as mg_task

from deepmac_nb.inference.predictor import Predictor, box_bucket
from deepmac_nb.modeling import crops, preprocess
from deepmac_nb.modeling import model_dir as model_dir_lib

PARAMS_FILE = "params.yaml"
# Smallest box side, in input pixels, that Model Garden's RoI level assignment handles.
_MIN_BOX_PIXELS = 1.0


class DeepMARCModel:
    """A built Deep-MARC Keras model plus Deep-MAC's inference interface.

    Attributes:
      model: Model Garden's ``DeepMaskRCNNModel``.
      config: its ``DeepMaskHeadRCNN`` model config.
      input_hw: ``(H_in, W_in)`` of the padded model input.
      mask_size: side S of the box-frame masks.
    """

    def __init__(self, model: tf_keras.Model, config: mg_cfg.DeepMaskHeadRCNN):
        self.model = model
        self.config = config
        self.input_hw = tuple(int(v) for v in config.input_size[:2])
        self.mask_size = int(config.mask_roi_aligner.crop_size * config.mask_head.upsample_factor)

    @classmethod
    def from_config(cls, config: mg_cfg.DeepMaskHeadRCNN) -> DeepMARCModel:
        """Builds the model with Model Garden's builder and creates all its variables."""
        specs = tf_keras.layers.InputSpec(shape=[None, *config.input_size])
        model = mg_task.build_maskrcnn(input_specs=specs, model_config=config)
        height, width = (int(v) for v in config.input_size[:2])
        # One inference call creates every variable (mask head included) before restores.
        model(tf.zeros([1, height, width, 3]), image_shape=tf.constant([[height, width]]))
        return cls(model, config)

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> DeepMARCModel:
        """``params.yaml`` + latest ``ckpt-*`` of a Deep-MARC training run (its moving
        average of the weights when it trained with one: ``weights_checkpoint``)."""
        model_dir = Path(model_dir)
        wrapper = cls.from_config(model_config_from_params(read_params(model_dir)))
        checkpoint = model_dir_lib.weights_checkpoint(model_dir)
        if checkpoint is None:
            raise ValueError(f"{model_dir} has {PARAMS_FILE} but no checkpoint (ckpt-<step>).")
        try:
            status = tf.train.Checkpoint(model=wrapper.model).restore(checkpoint)
            status.expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError) as exc:
            raise ValueError(
                f"{checkpoint} does not match {model_dir / PARAMS_FILE}: {exc}"
            ) from exc
        return wrapper

    def preprocess(self, images) -> tuple[tf.Tensor, tf.Tensor]:
        """``uint8 [B, H, W, 3]`` (or a list of differently sized images) -> padded inputs.

        Returns ``(inputs float32 [B, H_in, W_in, 3], valid float32 [B, 2])``.
        """
        pairs = [preprocess.resize_and_pad(img, self.input_hw) for img in images]
        return tf.stack([p[0] for p in pairs]), tf.stack([p[1] for p in pairs])

    def pixel_boxes(self, boxes, valid) -> tf.Tensor:
        """Image-frame normalized ``boxes [B, N, 4]`` -> absolute input pixels (see module)."""
        model_boxes = preprocess.image_to_model_boxes(crops.sanitize_boxes(boxes), valid)
        height, width = self.input_hw
        ymin, xmin, ymax, xmax = tf.unstack(model_boxes * [height, width, height, width], axis=-1)
        ymax = tf.maximum(ymax, ymin + _MIN_BOX_PIXELS)
        xmax = tf.maximum(xmax, xmin + _MIN_BOX_PIXELS)
        return tf.stack([ymin, xmin, ymax, xmax], axis=-1)

    def predict_masks(self, images, boxes) -> tf.Tensor:
        """Box-prompted masks: ``images uint8 [B, H, W, 3]``, ``boxes [B, N, 4]`` normalized
        to each original image -> mask probabilities ``float32 [B, N, S, S]`` in each box's
        frame (paste with ``crops.paste_masks``). ``N = 0`` gives ``[B, 0, S, S]``."""
        inputs, valid = self.preprocess(images)
        return self.masks_from_inputs(inputs, valid, tf.cast(boxes, tf.float32))

    def masks_from_inputs(self, inputs, valid, boxes) -> tf.Tensor:
        """``predict_masks`` after ``preprocess`` (traceable: any B, N)."""
        boxes = self.pixel_boxes(boxes, valid)
        size = self.mask_size

        def masks():
            return self.model.call_images_and_boxes(inputs, boxes)["detection_masks"]

        def no_masks():  # Model Garden's mask head cannot reshape an empty box list
            return tf.zeros([tf.shape(boxes)[0], 0, size, size])

        return tf.cond(tf.shape(boxes)[1] > 0, masks, no_masks)

    def detect(self, images) -> dict:
        """The model's detections for ``uint8 [B, H, W, 3]`` images.

        Returns ``detection_boxes [B, K, 4]`` normalized to each original image,
        ``detection_classes [B, K]`` int32 (1-based), ``detection_scores [B, K]`` and
        ``num_detections [B]``.
        """
        return self.detections_from_inputs(*self.preprocess(images))

    def detections_from_inputs(self, inputs, valid) -> dict:
        """``detect`` after ``preprocess`` (traceable)."""
        size = tf.constant(self.input_hw, tf.float32)
        out = self.model(inputs, image_shape=valid * size, training=False)
        model_frame = out["detection_boxes"] / tf.concat([size, size], 0)
        return {
            "detection_boxes": preprocess.model_to_image_boxes(model_frame, valid),
            "detection_classes": tf.cast(out["detection_classes"], tf.int32),
            "detection_scores": out["detection_scores"],
            "num_detections": out["num_detections"],
        }


def as_predictor(model: DeepMARCModel, flip_tta: bool = False) -> Predictor:
    """The project's ``Predictor`` over a ``DeepMARCModel`` (backend ``keras``)."""
    masks, detections = _traced(model)
    return Predictor(
        masks, model.mask_size, "keras", model=model, detect_fn=detections, flip_tta=flip_tta
    )


def load_predictor(model_dir: str | Path, flip_tta: bool = False) -> Predictor:
    """``Predictor`` for a Deep-MARC model dir (``params.yaml`` + ``ckpt-*``)."""
    return as_predictor(DeepMARCModel.from_model_dir(model_dir), flip_tta=flip_tta)


def _traced(model: DeepMARCModel):
    """``Predictor`` callbacks, each one ``tf.function`` traced once per box bucket."""
    image_spec = tf.TensorSpec([None, None, 3], tf.uint8)

    @tf.function(input_signature=[image_spec, tf.TensorSpec([None, 4], tf.float32)])
    def masks_fn(image, boxes):
        inputs, valid = preprocess.resize_and_pad(image, model.input_hw)
        return model.masks_from_inputs(inputs[None], valid[None], boxes[None])[0]

    @tf.function(input_signature=[image_spec])
    def detect_fn(image):
        inputs, valid = preprocess.resize_and_pad(image, model.input_hw)
        return model.detections_from_inputs(inputs[None], valid[None])

    def masks(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        padded = np.zeros((box_bucket(len(boxes)), 4), np.float32)
        padded[: len(boxes)] = boxes
        return masks_fn(tf.constant(image), tf.constant(padded)).numpy()[: len(boxes)]

    def detections(image: np.ndarray):
        out = detect_fn(tf.constant(image))
        count = int(out["num_detections"][0])
        boxes = out["detection_boxes"][0, :count].numpy().astype(np.float32)
        classes = out["detection_classes"][0, :count].numpy().astype(np.int64)
        return boxes, classes, out["detection_scores"][0, :count].numpy().astype(np.float32)

    return masks, detections


def read_params(model_dir: str | Path) -> dict:
    """The parsed ``params.yaml`` of a model dir; ``ValueError`` when there is none."""
    path = Path(model_dir) / PARAMS_FILE
    if not path.is_file():
        raise ValueError(f"{model_dir} is not a model dir: no {PARAMS_FILE} in it.")
    return yaml.safe_load(path.read_text()) or {}


def is_deepmarc_params(params: dict) -> bool:
    """True when a parsed ``params.yaml`` holds a Deep-MARC (deep mask head R-CNN) model."""
    model = (params or {}).get("task", {}).get("model") or {}
    return isinstance(model.get("mask_head"), dict) and "convnet_variant" in model["mask_head"]


def model_config_from_params(params: dict) -> mg_cfg.DeepMaskHeadRCNN:
    """``DeepMaskHeadRCNN`` from a parsed ``params.yaml``; ``ValueError`` if not Deep-MARC."""
    if not is_deepmarc_params(params):
        raise ValueError(
            f"{PARAMS_FILE} holds no Deep-MARC model (task.model.mask_head.convnet_variant)."
        )
    config = mg_cfg.DeepMaskHeadRCNN()
    config.override(params["task"]["model"], is_strict=False)
    return config
