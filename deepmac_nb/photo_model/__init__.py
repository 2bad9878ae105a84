"""The real-photo model shipped with the package, for segmenting photos offline.

``deepmac_coco_mini_voc_img/`` is a Deep-MAC model dir ``loading.from_model_dir`` loads
(``params.yaml`` of the model config and a weights-only ``ckpt-<step>``) of that recipe:
CenterNet HG-10 trained from scratch on 214 COCO photos with masks for the 20 VOC classes
only, whose mask head also reads each box's standardized image crop.
``photo_model.json`` holds the experiment, seed, steps, the command that trained it and
the box-prompted mask AP it scores, with mirror TTA, on the COCO-mini files it was
measured on (``val_dev`` for the headline, ``train_exhaustive``'s non-VOC masks for the
choice among seeds); ``tests/test_photo_model.py`` reproduces them.

It answers box prompts (``predict``) well enough to beat an inscribed ellipse on classes
it never saw a mask of; its own detector is untrained for practical purposes (box AP
near 0), so use it with boxes from elsewhere (MegaDetector, a person). The official
DeepMAC checkpoint is far stronger; this is what runs when that cannot be downloaded.

Example:
    >>> from deepmac_nb import photo_model
    >>> predictor = photo_model.load()  # doctest: +SKIP
    >>> masks = predictor.predict(image, boxes)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MODEL_DIR = ROOT / "deepmac_coco_mini_voc_img"
INFO_FILE = "photo_model.json"
DESCRIPTION = "shipped photo model"  # how notebooks and the CLI name it


def available() -> bool:
    """Whether the weights are in this install (``photo_model.json`` and a checkpoint)."""
    return (ROOT / INFO_FILE).is_file() and (MODEL_DIR / "checkpoint").is_file()


def model_dir() -> Path:
    """The shipped model dir; ``FileNotFoundError`` when this install has none."""
    if not available():
        raise FileNotFoundError(
            f"no shipped photo model in {ROOT} (photo_model.json and the model dir)"
        )
    return MODEL_DIR


def info() -> dict:
    """``photo_model.json``: experiment, seed, steps, command, recorded mask AP."""
    model_dir()
    return json.loads((ROOT / INFO_FILE).read_text())


def load(flip_tta: bool = True):
    """A ``Predictor`` of the shipped model; mirror TTA is part of its recipe."""
    from deepmac_nb import loading

    return loading.from_model_dir(model_dir(), flip_tta=flip_tta)


def evaluate(path, annotations, images, flip_tta: bool = True) -> dict[str, float]:
    """Box-prompted mask AP per split (``all``, ``voc``, ``non_voc``) of the model dir
    ``path`` with GT boxes on a COCO file, rounded as ``photo_model.json`` records it."""
    from deepmac_nb import evaluation, loading

    predictor = loading.from_model_dir(path, flip_tta=flip_tta)
    metrics = evaluation.evaluate(predictor, annotations, images)
    return {split: round(row["AP"], 2) for split, row in metrics["mask"].items()}
