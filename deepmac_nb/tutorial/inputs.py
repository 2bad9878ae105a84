"""Where the notebooks' inputs come from, and the one-line stop when one is missing.

``require_path`` / ``MissingInput`` name the parameters-cell setting to change;
``coco_inputs`` (01_data_prep) and ``iwildcam_inputs`` (04_iwildcam_visualize) take the
given paths or fall back to the sample data (a Kaggle iWildCam competition first, for
the camera traps). ``cache_dir`` and ``repo_path`` place everything else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from deepmac_nb import pretrained
from deepmac_nb.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
KAGGLE_INPUT = Path("/kaggle/input")


class MissingInput(FileNotFoundError):
    """A notebook input is absent; the message names the setting to change.

    IPython prints ``_render_traceback_`` instead of a traceback, so a notebook stops
    with this one line.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def require_path(path: str | os.PathLike | None, setting: str, hint: str = "") -> Path:
    """``Path(path)`` if it exists; else ``MissingInput`` saying to set ``setting``."""
    if path is not None and Path(path).expanduser().exists():
        return Path(path).expanduser()
    where = "is not set" if path is None else f"= {str(path)!r} does not exist"
    raise MissingInput(f"{setting} {where}. Set {setting} in the parameters cell. {hint}".strip())


def cache_dir() -> Path:
    """``$DEEPMAC_NB_CACHE`` or ``~/.cache/deepmac_nb``: data, models, downloads."""
    return pretrained.default_cache_dir()


def repo_path(relative: str | os.PathLike) -> Path:
    """``relative`` from the current folder if it exists there, else from the repository."""
    path = Path(relative)
    return path if path.is_absolute() or path.exists() else REPO_ROOT / path


def quiet_tensorflow() -> None:
    """Keeps TensorFlow's deprecation and restore chatter out of notebook outputs
    (errors still show). Call it before importing the modules that import Model Garden."""
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)


def coco_inputs(annotations=None, images=None, names: Sequence[str] = ("val_dev",)) -> list:
    """``[(name, annotations JSON, images folder)]`` of the COCO sets 01_data_prep converts.

    Given paths must both exist (else ``MissingInput``); without them the COCO-mini sample
    files ``names`` are used, or ``[]`` when the sample data is absent.
    """
    from deepmac_nb.data import samples

    if annotations is not None or images is not None:
        hint = "Set both COCO_ANNOTATIONS and COCO_IMAGES, or neither (COCO-mini sample)."
        ann = require_path(annotations, "COCO_ANNOTATIONS", hint)
        return [(ann.stem, ann, require_path(images, "COCO_IMAGES", hint))]
    if not samples.available():
        return []
    return [(n, samples.coco_mini(n).annotations, samples.coco_mini(n).images) for n in names]


def _walk_json(root: Path, depth: int = 3) -> list[Path]:
    """JSON files up to ``depth`` folders below ``root``, not descending into image folders."""
    found, frontier = [], [root]
    for _ in range(depth + 1):
        next_frontier = []
        for folder in frontier:
            try:
                children = sorted(folder.iterdir())
            except OSError:
                continue
            found += [c for c in children if c.suffix == ".json"]
            skip = {"train", "test", "instance_masks", "images"}
            next_frontier += [c for c in children if c.is_dir() and c.name not in skip]
        frontier = next_frontier
    return found


def _image_folders(root: Path) -> list[Path]:
    """Where a competition's photos may be: ``train``, ``test``, ``images`` (also nested
    once, as Kaggle unpacks some archives), or the root when file names carry the folder."""
    names = ("train", "test", "images")
    candidates = [root / n for n in names] + [root / n / n for n in names] + [root]
    return [p for p in candidates if p.is_dir()]


def find_kaggle_iwildcam(root: str | os.PathLike = KAGGLE_INPUT) -> tuple[Path, Path] | None:
    """``(MegaDetector JSON, images folder)`` of an iWildCam competition attached in a
    Kaggle notebook (``/kaggle/input/iwildcam*``), or None. The images folder is the
    ``train``/``test`` folder holding the first detection's file."""
    from deepmac_nb.inference import megadetector

    for competition in sorted(Path(root).glob("iwildcam*")):
        keys = ("megadetector", "detections", "mdv")
        for path in _walk_json(competition):
            if not any(k in path.name.lower() for k in keys):
                continue
            entries = megadetector.read_detections(path).images
            first = next((e.file for e in entries if e.failure is None), None)
            for folder in _image_folders(competition):
                if first and (folder / first).is_file():
                    return path, folder
    return None


def iwildcam_inputs(detections=None, images=None) -> tuple[Path, Path, str]:
    """``(detections JSON, images folder, where from)`` for 04_iwildcam_visualize.

    Given paths must exist. Without them: a Kaggle iWildCam competition, else the
    camera-trap sample set (``deepmac_nb.data.samples``), else ``MissingInput``.
    """
    from deepmac_nb.data import samples

    if detections is not None or images is not None:
        hint = "Set both DETECTIONS (MegaDetector JSON) and IMAGES_DIR, or neither."
        det = require_path(detections, "DETECTIONS", hint)
        return det, require_path(images, "IMAGES_DIR", hint), "given paths"
    kaggle = find_kaggle_iwildcam()
    if kaggle is not None:
        return kaggle[0], kaggle[1], "Kaggle iWildCam competition data"
    try:
        # Without the sample data folder: the package's detections + photos downloaded.
        sample = samples.camera_traps("mdv5", download=True)
    except (samples.SampleDataMissing, UserError) as exc:
        raise MissingInput(
            "No camera-trap data: set DETECTIONS and IMAGES_DIR in the parameters cell, "
            f"attach an iWildCam competition on Kaggle, or set {samples.ENV_VAR}. ({exc})"
        ) from None
    return sample.detections, sample.images, "camera-trap sample set (MegaDetector v5)"
