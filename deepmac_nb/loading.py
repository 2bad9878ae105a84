"""One function that loads any model artifact as a ``Predictor``: ``load(path)``.

The artifact kinds, in the order they are recognised (``artifact_kind`` names them
without importing TensorFlow, so command lines check paths before paying for it):

============================  =====================================================
``tflite``                    a ``.tflite`` file from ``deepmac-nb export --format tflite``
``archive``                   ``.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip`` holding a
                              SavedModel (``deepmac_1024x1024_coco17.tar.gz``,
                              ``deepmarc_spinenet.zip``); extracted once per content
``saved_model``               a folder with ``saved_model.pb`` whose signature takes
                              ``input_tensor`` + ``boxes`` (OD API exporter, ours) or
                              ``images`` + ``boxes`` (Model Garden ``deepmac_maskrcnn``)
``model_garden_export``       Model Garden's export folder: ``params.yaml``,
                              ``checkpoint/``, ``saved_model/`` (the SavedModel is used)
``saved_model_parent``        a folder with ``saved_model/`` in it (the official
                              ``deepmac_1024x1024_coco17``)
``model_dir``                 a training run: ``params.yaml`` + ``ckpt-*``, Deep-MAC or
                              Deep-MARC (read from ``params.yaml``)
============================  =====================================================

Example:
    >>> from deepmac_nb import loading
    >>> predictor = loading.load("deepmarc_spinenet.zip")    # doctest: +SKIP
    >>> masks = predictor.predict(image, boxes) > 0.5        # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from deepmac_nb import archives

PARAMS_FILE = "params.yaml"
KINDS = (
    "tflite",
    "archive",
    "saved_model",
    "model_garden_export",
    "saved_model_parent",
    "model_dir",
)


def artifact_kind(path: str | Path) -> str:
    """Names what ``path`` is (one of ``KINDS``); ``ValueError`` saying what was expected
    when it is none of them. Reads only file names (no TensorFlow import)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".tflite":
        return "tflite"
    if path.is_file() and archives.is_archive(path):
        return "archive"
    if (path / "saved_model.pb").is_file():
        return "saved_model"
    has_params = (path / PARAMS_FILE).is_file()
    if (path / "saved_model" / "saved_model.pb").is_file():
        return "model_garden_export" if has_params else "saved_model_parent"
    if has_params:
        return "model_dir"
    raise ValueError(describe_expected(path))


def describe_expected(path: Path) -> str:
    """The one-line error for a path that is no model artifact."""
    if not path.exists():
        return f"Model path not found: {path}"
    return (
        f"Don't know how to load {path}: expected a .tflite file, a .tar.gz/.zip archive of a "
        "SavedModel, a SavedModel folder (saved_model.pb), a folder with saved_model/ in it "
        "(the official deepmac_1024x1024_coco17, or a Model Garden export with params.yaml "
        f"and checkpoint/), or a training model dir ({PARAMS_FILE} + ckpt-*)."
    )


def load(path: str | Path, flip_tta: bool = False, cache_dir: str | Path | None = None):
    """A ``Predictor`` for any artifact of ``KINDS`` (module docstring).

    Args:
      path: the artifact.
      flip_tta: mirror test-time augmentation (``Predictor`` docs).
      cache_dir: where archives are extracted; default ``download.cache_dir()``.

    Raises ``ValueError`` (one line) for a path that is none of them.
    """
    from deepmac_nb.inference.predictor import Predictor

    path = Path(path)
    kind = artifact_kind(path)
    if kind == "tflite":
        return Predictor.from_tflite(path, flip_tta=flip_tta)
    if kind == "archive":
        folder = archives.extract_cached(path, cache_dir)
        return Predictor.from_saved_model(archives.find_saved_model(folder), flip_tta=flip_tta)
    if kind == "saved_model":
        return Predictor.from_saved_model(path, flip_tta=flip_tta)
    if kind in ("model_garden_export", "saved_model_parent"):
        return Predictor.from_saved_model(path / "saved_model", flip_tta=flip_tta)
    return from_model_dir(path, flip_tta=flip_tta)


def from_model_dir(model_dir: str | Path, flip_tta: bool = False):
    """``params.yaml`` + latest ``ckpt-*`` of a training run, Deep-MAC or Deep-MARC."""
    from deepmac_nb.deepmarc import predictor as marc
    from deepmac_nb.inference import export
    from deepmac_nb.inference.predictor import Predictor

    if marc.is_deepmarc_params(marc.read_params(model_dir)):
        return marc.load_predictor(model_dir, flip_tta=flip_tta)
    return Predictor.from_model(export.load_model_dir(model_dir), flip_tta=flip_tta)
