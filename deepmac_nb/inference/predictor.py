"""Box-prompted masks behind one interface, whatever the model artifact.

``Predictor.predict(image, boxes)`` takes an ``uint8 [H, W, 3]`` RGB image of any size and
``[N, 4]`` boxes normalized ``[ymin, xmin, ymax, xmax]`` to that image, and returns
``float32 [N, H, W]`` mask probabilities (``> 0.5`` for binary masks). Backends:

* a Keras ``DeepMACModel`` (``from_model`` / ``from_model_dir``): one ``tf.function`` with
  a fixed input signature, traced once; box counts are padded up to ``box_bucket(n)`` so
  the runtime sees a handful of shapes (and XLA, if enabled, compiles a handful);
* a SavedModel with the official DeepMAC signature (``from_saved_model``: ours from
  ``export.export_saved_model`` or ``deepmac_1024x1024_coco17/saved_model``);
* a builtin-ops TFLite model (``from_tflite``), run with ``ai_edge_litert``; resize, pad
  and box mapping happen here in Python, ``K`` boxes per invocation.

Example:
    >>> predictor = Predictor.load("runs/deepmac/export/saved_model")    # doctest: +SKIP
    >>> masks = predictor.predict(image, boxes) > 0.5                   # doctest: +SKIP
"""

from __future__ import annotations

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


def check_boxes(boxes) -> np.ndarray:
    """Returns ``float32 [N, 4]`` boxes, non-finite values -> 0 and corners ordered.

    Raises ``ValueError`` for anything that is not ``[N, 4]`` numbers. Values outside
    [0, 1] are kept: those parts of a box just have no image under them.
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
    array = np.where(np.isfinite(array), array, 0.0).astype(np.float32)
    low, high = np.minimum(array[:, :2], array[:, 2:]), np.maximum(array[:, :2], array[:, 2:])
    return np.concatenate([low, high], axis=1)


class Predictor:
    """Masks for boxes. Build with ``load``, ``from_model``, ``from_model_dir``,
    ``from_saved_model`` or ``from_tflite`` rather than directly.

    Attributes:
      backend: ``"keras"``, ``"saved_model"`` or ``"tflite"``.
      mask_size: side S of the box-frame masks.
      model: the Keras model for the ``keras`` backend, else None.
      flip_tta: when True, every mask is the mean of the image's and its mirror image's
        (test-time augmentation: twice the model cost; +1.7 and +2.2 non-VOC mask AP on
        COCO-mini val_dev for two training seeds, docs/results.md).
    """

    def __init__(
        self, box_mask_fn: BoxMaskFn, mask_size: int, backend: str, model=None, detect_fn=None
    ):
        self._box_mask_fn = box_mask_fn
        self._detect_fn = detect_fn
        self.mask_size = int(mask_size)
        self.backend = backend
        self.model = model
        self.flip_tta = False

    @classmethod
    def from_model(cls, model) -> Predictor:
        """Wraps a built ``DeepMACModel`` in a once-traced ``tf.function``."""
        return cls(
            _KerasMasks(model),
            model.config.mask.mask_size,
            "keras",
            model=model,
            # Traced on the first detect() only: box-prompted use never pays for it.
            detect_fn=_signature_detections(lambda: export.serving_function(model)),
        )

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> Predictor:
        """``params.yaml`` + latest ``ckpt-*`` of a training run (Deep-MAC or Deep-MARC)."""
        from deepmac_nb.deepmarc import predictor as marc

        if marc.is_deepmarc_params(marc.read_params(model_dir)):
            return marc.load_predictor(model_dir)
        return cls.from_model(export.load_model_dir(model_dir))

    @classmethod
    def from_saved_model(cls, path: str | Path) -> Predictor:
        """A SavedModel with the DeepMAC ``serving_default`` signature (ours or official)."""
        fn = _SavedModelMasks(path)
        return cls(
            fn, fn.mask_size, "saved_model", detect_fn=_signature_detections(lambda: fn.signature)
        )

    @classmethod
    def from_tflite(cls, path: str | Path, num_threads: int | None = None) -> Predictor:
        """A builtin-ops TFLite model written by ``export.export_tflite``."""
        fn = _TFLiteMasks(path, num_threads)
        return cls(fn, fn.mask_size, "tflite")

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """Picks the backend from what ``path`` is: a ``.tflite`` file, the official
        ``.tar.gz``, a SavedModel folder, a folder with ``saved_model/`` in it, or a training
        model dir (``params.yaml`` + ``ckpt-*``). Anything else raises ``ValueError``."""
        path = Path(path)
        if path.is_file() and path.suffix == ".tflite":
            return cls.from_tflite(path)
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
            from deepmac_nb import pretrained

            return pretrained.load_official(path)
        if (path / "saved_model.pb").is_file():
            return cls.from_saved_model(path)
        if (path / "saved_model" / "saved_model.pb").is_file():
            return cls.from_saved_model(path / "saved_model")
        if (path / export.PARAMS_FILE).is_file():
            return cls.from_model_dir(path)
        raise ValueError(_describe_expected(path))

    def predict_box_masks(self, image, boxes) -> np.ndarray:
        """Box-frame masks: ``float32 [N, S, S]`` probabilities, row 0 = each box's ymin."""
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
        to ``image``, ``uint8 [H, W, 3]``); degenerate or NaN boxes give finite masks.

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

        Returns ``boxes float32 [K, 4]`` normalized to ``image``, ``classes int64 [K]``
        (1-based ids), ``scores float32 [K]`` (descending, >= ``min_score``) and
        ``masks float32 [K, H, W]`` probabilities.
        """
        if self._detect_fn is None:
            raise ValueError(f"The {self.backend} backend has no detector outputs; use predict().")
        image = check_image(image)
        boxes, classes, scores = self._detect_fn(image)
        keep = np.flatnonzero(scores >= min_score)[:max_detections]
        boxes, classes, scores = boxes[keep], classes[keep], scores[keep]
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


class _SavedModelMasks:
    """SavedModel backend: ``serving_default(input_tensor, boxes)['detection_masks']``."""

    def __init__(self, path: str | Path):
        self._loaded = tf.saved_model.load(str(path))  # keeps the variables alive
        signatures = getattr(self._loaded, "signatures", {})
        fn = signatures.get(export.SIGNATURE) if signatures else None
        inputs = set(fn.structured_input_signature[1]) if fn is not None else set()
        if fn is None or not {"input_tensor", "boxes"} <= inputs:
            raise ValueError(
                f"{path} has no '{export.SIGNATURE}' signature with inputs input_tensor and "
                "boxes; expected a DeepMAC box-prompted SavedModel."
            )
        if "detection_masks" not in fn.structured_outputs:
            raise ValueError(f"{path}: '{export.SIGNATURE}' has no detection_masks output.")
        self._fn = self.signature = fn
        size = fn.structured_outputs["detection_masks"].shape[-1]
        self.mask_size = int(size) if size is not None else self._probe_mask_size()

    def _probe_mask_size(self) -> int:
        probe = self(np.zeros((32, 32, 3), np.uint8), np.array([[0.0, 0.0, 1.0, 1.0]], np.float32))
        return int(probe.shape[-1])

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        out = self._fn(input_tensor=tf.constant(image[None]), boxes=tf.constant(boxes[None]))
        return out["detection_masks"][0].numpy()


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


def _describe_expected(path: Path) -> str:
    if not path.exists():
        return f"Model path not found: {path}"
    return (
        f"Don't know how to load {path}: expected a .tflite file, a DeepMAC .tar.gz, a "
        "SavedModel folder (saved_model.pb), a folder with saved_model/ in it (the official "
        f"deepmac_1024x1024_coco17), or a training model dir ({export.PARAMS_FILE} + ckpt-*)."
    )
