"""Locates the real sample data (COCO-mini photos, camera-trap photos) in place.

One setting decides where it is: the ``DEEPMAC_NB_DATA`` environment variable, default
``<repository>/../shared/data``. Files are read where they are and never copied into
the repository.

Example:
    >>> from deepmac_nb.data import samples
    >>> ds = samples.coco_mini("val_dev")          # doctest: +SKIP
    >>> ds.annotations, ds.images                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from urllib import request

from deepmac_nb import _io

ENV_VAR = "DEEPMAC_NB_DATA"
DEFAULT_CACHE = Path("~/.cache/deepmac_nb")
_REPO_ROOT = Path(__file__).resolve().parents[2]

COCO_MINI_SPLITS = ("train_exhaustive", "train_coco128seg", "val_dev")
CAMERA_TRAP_DETECTIONS = {
    "mdv5": "cameratrapai_mdv5_detections.json",
    "serengeti_gt": "snapshot_serengeti_gt_boxes_md_format.json",
}


class SampleDataMissing(FileNotFoundError):
    """Raised when the sample data folder (or a file in it) is absent."""


@dataclasses.dataclass(frozen=True)
class CocoSet:
    """A COCO-format annotation file and the folder its ``file_name`` entries live in."""

    name: str
    annotations: Path
    images: Path


@dataclasses.dataclass(frozen=True)
class CameraTrapSet:
    """A MegaDetector batch-output JSON and the folder of the photos it names."""

    name: str
    detections: Path
    images: Path


def data_root() -> Path:
    """Returns the sample data folder (``$DEEPMAC_NB_DATA`` or ``../shared/data``)."""
    return Path(os.environ.get(ENV_VAR, _REPO_ROOT.parent / "shared" / "data")).expanduser()


def available() -> bool:
    """True when the sample data folder exists with its COCO-mini annotations."""
    return (data_root() / "coco_mini" / "annotations").is_dir()


def _require(path: Path) -> Path:
    if not path.exists():
        raise SampleDataMissing(
            f"Sample data not found: {path}. Set {ENV_VAR} to the folder holding "
            "'coco_mini/' and 'camera_traps/' (default: ../shared/data beside the repository)."
        )
    return path


def coco_mini(split: str = "val_dev") -> CocoSet:
    """Returns one COCO-mini set: ``train_exhaustive``, ``train_coco128seg`` or ``val_dev``."""
    if split not in COCO_MINI_SPLITS:
        raise ValueError(f"Unknown COCO-mini split {split!r}; choose from {COCO_MINI_SPLITS}.")
    root = data_root() / "coco_mini"
    return CocoSet(
        name=split,
        annotations=_require(root / "annotations" / f"{split}.json"),
        images=_require(root / "images"),
    )


def voc_fixture() -> CocoSet:
    """Three PASCAL VOC 2011 photos with 12 instance polygons (COCO category ids)."""
    root = data_root() / "fixtures"
    return CocoSet("voc2011_3img", _require(root / "voc2011_3img.json"), _require(root / "images"))


def camera_traps(name: str = "mdv5") -> CameraTrapSet:
    """Returns camera-trap photos with real MegaDetector v5 detections (``mdv5``) or the
    hand-drawn Snapshot Serengeti boxes in the same format (``serengeti_gt``)."""
    if name not in CAMERA_TRAP_DETECTIONS:
        raise ValueError(
            f"Unknown camera-trap set {name!r}; choose from {tuple(CAMERA_TRAP_DETECTIONS)}."
        )
    root = data_root() / "camera_traps"
    return CameraTrapSet(
        name=name,
        detections=_require(root / CAMERA_TRAP_DETECTIONS[name]),
        images=_require(root / "images"),
    )


def _fetch(url: str, dest: Path, size: int | None, sha256: str | None) -> None:
    """Downloads ``url`` to ``dest`` atomically; a size or checksum mismatch leaves nothing."""
    with request.urlopen(url, timeout=60) as response:
        data = response.read()
    if size is not None and len(data) != size:
        raise OSError(f"{url}: got {len(data)} bytes, expected {size}")
    if sha256 and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise OSError(f"{url}: sha256 mismatch")
    _io.write_bytes(dest, data)


def download_coco_mini(
    dest: str | os.PathLike | None = None, annotations: str | os.PathLike | None = None
) -> Path:
    """For users with internet: fetches each image of a COCO JSON by its ``coco_url``.

    Images land in ``<dest>/coco_mini/images/`` (default ``~/.cache/deepmac_nb``); those
    already there are kept, so an interrupted run resumes. An image record's optional
    ``file_size`` / ``sha256`` fields are checked. ``annotations`` defaults to the three
    COCO-mini JSON files. Returns the images folder.
    """
    images = Path(dest or DEFAULT_CACHE).expanduser() / "coco_mini" / "images"
    files = [annotations] if annotations else [coco_mini(s).annotations for s in COCO_MINI_SPLITS]
    for path in files:
        for image in json.loads(Path(path).read_text(encoding="utf-8"))["images"]:
            target = images / Path(image["file_name"]).name
            if not target.exists():
                _fetch(image["coco_url"], target, image.get("file_size"), image.get("sha256"))
    return images
