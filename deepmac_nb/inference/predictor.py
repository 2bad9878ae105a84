"""Box-prompted masks behind one interface, whatever the model artifact.

``Predictor.predict(image, boxes)`` takes an ``uint8 [H, W, 3]`` RGB image of any size and
``[N, 4]`` boxes normalized ``[ymin, xmin, ymax, xmax]`` to that image, and returns
``float32 [N, H, W]`` mask probabilities (``> 0.5`` for binary masks). Boxes are clipped
to the image first (``check_boxes``), for every backend. Backends:

* a Keras ``DeepMACModel`` (``from_model``): one ``tf.function`` with a fixed input
  signature, traced once; box counts are padded up to ``box_bucket(n)`` so the runtime
  sees a handful of shapes (and XLA, if enabled, compiles a handful);
* a box-prompted SavedModel (``from_saved_model``): the official DeepMAC signature (ours
  from ``export.export_saved_model`` or ``deepmac_1024x1024_coco17/saved_model``) or
  Model Garden's ``deepmac_maskrcnn`` one (the published Deep-MARC model);
* a builtin-ops TFLite model (``from_tflite``), run with ``ai_edge_litert``; resize, pad
  and box mapping happen here in Python, ``K`` boxes per invocation.

``deepmac_nb.loading.load(path)`` picks the backend for any artifact (model dirs of
both families included); this module knows none of the artifact kinds.

Example:
    >>> predictor = deepmac_nb.load("runs/deepmac/export/saved_model")   # doctest: +SKIP
    >>> masks = predictor.predict(image, boxes) > 0.5                   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from deepmac_nb.inference import export
from deepmac_nb.modeling import crops, preprocess

_BUCKETS = (1, 4, 16, 64, 256)
# Box-frame masks [N, S, S] from image uint8 [H, W, 3] and sanitized boxes [N >= 1, 4].
BoxMaskFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def box_bucket(num_boxes: int) -> int:
    """Padded box count: 1, 4, 16, 64, 256, then the next multiple of 256."""
    for size in _BUCKETS:
        if num_boxes <= size:
            return size
    return int(math.ceil(num_boxes / 256) * 256)


def check_image(image) -> np.ndarray:
    """Returns ``image`` as a numpy ``uint8 [H, W, 3]`` array or raises ``ValueError``."""
    array = image.numpy() if isinstance(image, tf.Tensor) else np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB [H, W, 3]; got dtype {array.dtype}.")
    if array.ndim != 3 or array.shape[-1] != 3 or min(array.shape[:2]) < 1:
        raise ValueError(f"image must be uint8 RGB [H, W, 3]; got shape {array.shape}.")
    return array


# Coordinates beyond these are not a detector's rounding: pixel boxes or swapped formats.
BOX_LOW, BOX_HIGH = -0.5, 1.5
BOX_FORMAT_HELP = (
    "boxes are normalized [ymin, xmin, ymax, xmax] in [0, 1] of the image (divide pixel "
    "rows by the height and columns by the width; MegaDetector [x, y, w, h] boxes convert "
    "with deepmac_nb.inference.megadetector.xywh_to_yxyx)"
)


def check_boxes(boxes) -> np.ndarray:
    """Returns ``float32 [N, 4]`` boxes clipped to the image, corners ordered.

    Every backend sees these clipped boxes and every mask is pasted in the clipped box's
    frame, so a box a detector rounded just past the border (``xmin = -0.002``) works
    everywhere (the official DeepMAC graph asserts ``0 <= box <= 1.1``).

    Raises ``ValueError`` for anything that is not ``[N, 4]`` numbers, for a NaN/inf row
    (named by its index), and for coordinates below ``BOX_LOW`` or above ``BOX_HIGH``
    (pixel boxes, the most common mistake: the message says what is expected).
    """
    try:
        array = np.asarray(boxes.numpy() if isinstance(boxes, tf.Tensor) else boxes, np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"boxes must be numbers of shape [N, 4]: {exc}") from exc
    if array.size == 0:
        return np.zeros((0, 4), np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(
            f"boxes must have shape [N, 4] (ymin, xmin, ymax, xmax); got {array.shape}."
        )
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        row = int(bad[0])
        raise ValueError(f"boxes row {row} is not finite: {array[row].tolist()}.")
    outside = np.flatnonzero(((array < BOX_LOW) | (array > BOX_HIGH)).any(axis=1))
    if outside.size:
        row = int(outside[0])
        raise ValueError(
            f"boxes row {row} = {array[row].tolist()} is outside [{BOX_LOW}, {BOX_HIGH}]: "
            f"{BOX_FORMAT_HELP}."
        )
    low, high = np.minimum(array[:, :2], array[:, 2:]), np.maximum(array[:, :2], array[:, 2:])
    return np.clip(np.concatenate([low, high], axis=1), 0.0, 1.0).astype(np.float32)


class Predictor:
    """Masks for boxes. Build with ``deepmac_nb.loading.load`` (any artifact),
    ``from_model``, ``from_saved_model`` or ``from_tflite`` rather than directly.

    Args:
      box_mask_fn: ``(image uint8 [H, W, 3], boxes float32 [N >= 1, 4] clipped) ->
        float32 [N, S, S]`` box-frame mask probabilities.
      mask_size: S.
      backend: a name for messages (``"keras"``, ``"saved_model"``, ``"tflite"``).
      model: the Keras model behind a ``keras`` backend, else None.
      detect_fn: ``image -> (boxes [K, 4], classes int64 [K], scores [K])`` or None for a
        backend that only answers box prompts.
      flip_tta: when True, every mask is the mean of the image's and its mirror image's
        (test-time augmentation: twice the model cost; +1.7 and +2.2 non-VOC mask AP on
        COCO-mini val_dev for two training seeds, docs/results.md). Kept as the
        attribute ``flip_tta``.
    """

    def __init__(
        self,
        box_mask_fn: BoxMaskFn,
        mask_size: int,
        backend: str,
        model=None,
        detect_fn=None,
        flip_tta: bool = False,
    ):
        self._box_mask_fn = box_mask_fn
        self._detect_fn = detect_fn
        self.mask_size = int(mask_size)
        self.backend = backend
        self.model = model
        self.flip_tta = bool(flip_tta)

    @classmethod
    def from_model(cls, model, flip_tta: bool = False) -> Predictor:
        """Wraps a built ``DeepMACModel`` in a once-traced ``tf.function``."""
        return cls(
            _KerasMasks(model),
            model.config.mask.mask_size,
            "keras",
            model=model,
            # Traced on the first detect() only: box-prompted use never pays for it.
            detect_fn=_signature_detections(lambda: export.serving_function(model)),
            flip_tta=flip_tta,
        )

    @classmethod
    def from_saved_model(cls, path: str | Path, flip_tta: bool = False) -> Predictor:
        """A box-prompted SavedModel: the official DeepMAC signature (``input_tensor``,
        ``boxes``; ours or ``deepmac_1024x1024_coco17``) or Model Garden's
        ``deepmac_maskrcnn`` one (``images``, ``boxes`` -> ``detection_masks`` only, as
        the published Deep-MARC model; its ``detect()`` raises ``ValueError``)."""
        fn = _SavedModelMasks(path)
        detect_fn = _signature_detections(lambda: fn.signature) if fn.has_detections else None
        return cls(fn, fn.mask_size, "saved_model", detect_fn=detect_fn, flip_tta=flip_tta)

    @classmethod
    def from_tflite(
        cls, path: str | Path, num_threads: int | None = None, flip_tta: bool = False
    ) -> Predictor:
        """A builtin-ops TFLite model written by ``export.export_tflite`` (no detector)."""
        fn = _TFLiteMasks(path, num_threads)
        return cls(fn, fn.mask_size, "tflite", flip_tta=flip_tta)

    def predict_box_masks(self, image, boxes) -> np.ndarray:
        """Box-frame masks: ``float32 [N, S, S]`` probabilities in the frame of each box
        *clipped to the image* (``check_boxes(boxes)``; row 0 = its ymin)."""
        image, boxes = check_image(image), check_boxes(boxes)
        if len(boxes) == 0:
            return np.zeros((0, self.mask_size, self.mask_size), np.float32)
        masks = np.asarray(self._box_mask_fn(image, boxes), np.float32)
        if not self.flip_tta:
            return masks
        # Mirrored image, mirrored boxes: a box's mask comes back mirrored in its own frame.
        ymin, xmin, ymax, xmax = boxes.T
        mirrored = np.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=1).astype(np.float32)
        flipped = self._box_mask_fn(np.ascontiguousarray(image[:, ::-1]), mirrored)
        return 0.5 * (masks + np.asarray(flipped, np.float32)[:, :, ::-1])

    def predict(self, image, boxes) -> np.ndarray:
        """Image masks: ``float32 [N, H, W]`` probabilities for boxes ``[N, 4]`` (normalized
        to ``image``, ``uint8 [H, W, 3]``); each mask is pasted in its clipped box (see
        ``check_boxes`` for the boxes refused); degenerate boxes give finite masks.

        This holds N full-size float masks; for many boxes on large photos use
        ``predict_box_masks`` and paste per box (``iwildcam.paste_region``)."""
        image, boxes = check_image(image), check_boxes(boxes)
        box_masks = self.predict_box_masks(image, boxes)
        height, width = image.shape[:2]
        if len(boxes) == 0:
            return np.zeros((0, height, width), np.float32)
        return _paste(box_masks, boxes, tf.constant(height), tf.constant(width)).numpy()

    def detect(self, image, min_score: float = 0.05, max_detections: int = 100) -> dict:
        """The model's own detections with image masks (the standard COCO protocol).

        Returns ``boxes float32 [K, 4]`` normalized to ``image`` (clipped to it),
        ``classes int64 [K]`` (1-based ids), ``scores float32 [K]`` (descending,
        >= ``min_score``) and ``masks float32 [K, H, W]`` probabilities. Raises
        ``ValueError`` for a backend that only answers box prompts (TFLite, Deep-MARC's
        published SavedModel).
        """
        if self._detect_fn is None:
            raise ValueError(
                f"This {self.backend} model has no detector outputs (it answers box prompts "
                "only): pass boxes, e.g. from MegaDetector, to predict()."
            )
        image = check_image(image)
        boxes, classes, scores = self._detect_fn(image)
        keep = np.flatnonzero(scores >= min_score)[:max_detections]
        boxes, classes, scores = check_boxes(boxes[keep]), classes[keep], scores[keep]
        masks = self.predict(image, boxes)
        return {"boxes": boxes, "classes": classes, "scores": scores, "masks": masks}

    def predict_batch(self, images: Sequence, boxes: Sequence) -> list[np.ndarray]:
        """``predict`` for each (image, boxes) pair; images may differ in size."""
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box arrays.")
        return [self.predict(image, b) for image, b in zip(images, boxes, strict=True)]


@tf.function(
    input_signature=[
        tf.TensorSpec([None, None, None], tf.float32),
        tf.TensorSpec([None, 4], tf.float32),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.int32),
    ]
)
def _paste(box_masks, boxes, height, width):
    return crops.paste_masks(box_masks, boxes, height, width)


def _signature_detections(make_serve):
    """``image -> (boxes [K, 4], classes [K], scores [K])`` from a DeepMAC signature that
    ``make_serve()`` returns (called once, on first use)."""
    cache = []

    def detections(image: np.ndarray):
        if not cache:
            cache.append(make_serve())
        out = cache[0](input_tensor=tf.constant(image[None]), boxes=tf.zeros([1, 0, 4]))
        count = int(out["num_detections"][0])
        boxes = out["detection_boxes"][0, :count].numpy().astype(np.float32)
        classes = out["detection_classes"][0, :count].numpy().astype(np.int64)
        return boxes, classes, out["detection_scores"][0, :count].numpy().astype(np.float32)

    return detections


class _KerasMasks:
    """Keras backend; ``traces`` counts how often the graph was (re)traced."""

    def __init__(self, model):
        self.traces = 0

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None, 3], tf.uint8),
                tf.TensorSpec([None, 4], tf.float32),
            ]
        )
        def masks(image, boxes):
            self.traces += 1  # runs only while tracing
            return export.image_masks_and_raw(model, image, boxes)[0]

        self._fn = masks

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        padded = np.zeros((box_bucket(len(boxes)), 4), np.float32)
        padded[: len(boxes)] = boxes
        return self._fn(tf.constant(image), tf.constant(padded)).numpy()[: len(boxes)]


# Box-prompted SavedModel inputs -> the name of the image input.
_BOX_PROMPT_INPUTS = (
    ("input_tensor", "boxes"),  # OD API exporter (official DeepMAC), ours
    ("images", "boxes"),  # Model Garden deepmac_maskrcnn serving (published Deep-MARC)
)
_DETECTION_OUTPUTS = {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}


class _SavedModelMasks:
    """SavedModel backend: ``signature(<image>, boxes)['detection_masks']`` for either
    input naming of ``_BOX_PROMPT_INPUTS``; ``serving_default`` is preferred."""

    def __init__(self, path: str | Path):
        # Model Garden graphs log one absl warning per custom-gradient function on load.
        absl_logger = logging.getLogger("absl")
        level = absl_logger.level
        absl_logger.setLevel(logging.ERROR)
        try:
            self._loaded = tf.saved_model.load(str(path))  # keeps the variables alive
        finally:
            absl_logger.setLevel(level)
        signatures = dict(getattr(self._loaded, "signatures", {}) or {})
        found = _box_prompt_signature(signatures)
        if found is None:
            seen = {k: sorted(f.structured_input_signature[1]) for k, f in signatures.items()}
            raise ValueError(
                f"{path}: no signature with inputs input_tensor+boxes or images+boxes "
                f"(found {seen or 'none'}); expected a box-prompted DeepMAC/Deep-MARC SavedModel."
            )
        key, self._image_key = found
        fn = signatures[key]
        if "detection_masks" not in fn.structured_outputs:
            raise ValueError(f"{path}: signature {key!r} has no detection_masks output.")
        self._fn = self.signature = fn
        self.has_detections = _DETECTION_OUTPUTS <= set(fn.structured_outputs)
        size = fn.structured_outputs["detection_masks"].shape[-1]
        self.mask_size = int(size) if size is not None else self._probe_mask_size()

    def _probe_mask_size(self) -> int:
        probe = self(np.zeros((32, 32, 3), np.uint8), np.array([[0.0, 0.0, 1.0, 1.0]], np.float32))
        return int(probe.shape[-1])

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        inputs = {self._image_key: tf.constant(image[None]), "boxes": tf.constant(boxes[None])}
        return self._fn(**inputs)["detection_masks"][0].numpy()


def _box_prompt_signature(signatures: dict) -> tuple[str, str] | None:
    """``(signature key, image input name)`` of the first box-prompted signature."""
    keys = sorted(signatures, key=lambda k: k != export.SIGNATURE)
    for key in keys:
        inputs = set(signatures[key].structured_input_signature[1])
        for image_key, boxes_key in _BOX_PROMPT_INPUTS:
            if {image_key, boxes_key} <= inputs:
                return key, image_key
    return None


class _TFLiteMasks:
    """TFLite backend: preprocessing in TF eager, the ``features`` signature once per image,
    then the ``masks`` signature on K boxes per call (``export`` module docstring)."""

    def __init__(self, path: str | Path, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        if not Path(path).is_file():
            raise ValueError(f"TFLite model not found: {path}")
        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        keys = set(self._interpreter.get_signature_list())
        if not {export.TFLITE_FEATURES, export.TFLITE_MASKS} <= keys:
            raise ValueError(
                f"{path}: expected TFLite signatures {export.TFLITE_FEATURES!r} and "
                f"{export.TFLITE_MASKS!r} (written by deepmac-nb export), got {sorted(keys)}."
            )
        self._features = self._interpreter.get_signature_runner(export.TFLITE_FEATURES)
        self._masks = self._interpreter.get_signature_runner(export.TFLITE_MASKS)
        image = self._features.get_input_details()["image"]
        self.input_hw = tuple(int(v) for v in image["shape"][1:3])
        self.max_boxes = int(self._masks.get_input_details()["boxes"]["shape"][1])
        self.mask_size = int(self._masks.get_output_details()["detection_masks"]["shape"][-1])

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        inputs, valid = preprocess.resize_and_pad(tf.constant(image), self.input_hw)
        maps = self._features(image=inputs.numpy()[None])
        model_boxes = boxes * np.tile(valid.numpy(), 2)[None]
        out = []
        for start in range(0, len(boxes), self.max_boxes):
            chunk = np.zeros((1, self.max_boxes, 4), np.float32)
            part = model_boxes[start : start + self.max_boxes]
            chunk[0, : len(part)] = part
            masks = self._masks(boxes=chunk, **maps)["detection_masks"]
            out.append(masks[0, : len(part)])
        return np.concatenate(out, axis=0)
