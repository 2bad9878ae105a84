"""Locates the real sample data (COCO-mini photos, camera-trap photos) in place.

One setting decides where it is: the ``DEEPMAC_NB_DATA`` environment variable, default
``<repository>/../shared/data``. Files are read where they are and never copied into
the repository.

Where that folder is absent (Colab, Kaggle, a pip install), ``camera_traps("mdv5",
download=True)`` fetches the 14 camera-trap photos from their public addresses into the
cache (``download.cache_dir("camera_traps")``), each checked against the size and sha256
in the package's ``camera_traps/sources.json``, and reads the MegaDetector v5 detections
shipped with the package (``camera_traps/cameratrapai_mdv5_detections.json``: the
expected outputs recorded in google/cameratrapai's ``speciesnet/detector_test.py``,
Apache-2.0). ``$DEEPMAC_NB_SAMPLE_MIRROR`` (a folder or base URL holding the same file
names) replaces the public addresses, for offline machines and tests.

Example:
    >>> from deepmac_nb.data import samples
    >>> ds = samples.coco_mini("val_dev")          # doctest: +SKIP
    >>> ds.annotations, ds.images                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from deepmac_nb import download

ENV_VAR = "DEEPMAC_NB_DATA"
MIRROR_ENV = "DEEPMAC_NB_SAMPLE_MIRROR"
PACKAGE_DATA = Path(__file__).resolve().parent / "camera_traps"
SOURCES_FILE = PACKAGE_DATA / "sources.json"
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


def camera_traps(name: str = "mdv5", download: bool = False) -> CameraTrapSet:
    """Returns camera-trap photos with real MegaDetector v5 detections (``mdv5``) or the
    hand-drawn Snapshot Serengeti boxes in the same format (``serengeti_gt``).

    With ``download=True`` and no sample data folder, ``mdv5`` comes from the package's
    detections and photos downloaded into the cache (module docstring)."""
    if name not in CAMERA_TRAP_DETECTIONS:
        raise ValueError(
            f"Unknown camera-trap set {name!r}; choose from {tuple(CAMERA_TRAP_DETECTIONS)}."
        )
    root = data_root() / "camera_traps"
    if download and name == "mdv5" and not (root / CAMERA_TRAP_DETECTIONS[name]).is_file():
        return downloaded_camera_traps()
    return CameraTrapSet(
        name=name,
        detections=_require(root / CAMERA_TRAP_DETECTIONS[name]),
        images=_require(root / "images"),
    )


def camera_trap_sources() -> list[dict]:
    """The package's list of camera-trap photos: ``file``, ``url``, ``bytes``, ``sha256``."""
    return json.loads(SOURCES_FILE.read_text(encoding="utf-8"))["images"]


def _source_url(item: dict) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return item["url"]
    base = Path(mirror).expanduser()
    if "://" not in mirror:
        return (base / item["file"]).resolve().as_uri()
    return mirror.rstrip("/") + "/" + item["file"]


def downloaded_camera_traps(files: list[str] | None = None, progress: bool = False):
    """``CameraTrapSet`` of the package's MegaDetector v5 detections and the photos,
    downloaded (once, checked) into ``download.cache_dir("camera_traps", "images")``.

    ``files`` limits the download to those photo names (default: all 14). Raises
    ``UserError`` when a photo cannot be fetched or does not match its checksum.
    """
    images = download.cache_dir("camera_traps", "images")
    for item in camera_trap_sources():
        if files is None or item["file"] in files:
            download.download(_source_url(item), images / item["file"], size=item["bytes"],
                              sha256=item["sha256"], progress=progress)  # fmt: skip
    detections = PACKAGE_DATA / CAMERA_TRAP_DETECTIONS["mdv5"]
    return CameraTrapSet(name="mdv5", detections=detections, images=images)


def download_coco_mini(
    dest: str | os.PathLike | None = None, annotations: str | os.PathLike | None = None
) -> Path:
    """For users with internet: fetches each image of a COCO JSON by its ``coco_url``.

    Images land in ``<dest>/coco_mini/images/`` (default ``download.cache_dir()``); those
    already there are kept, so an interrupted run resumes. An image record's optional
    ``file_size`` / ``sha256`` fields are checked. ``annotations`` defaults to the three
    COCO-mini JSON files. Returns the images folder.
    """
    images = (Path(dest).expanduser() if dest else download.cache_dir()) / "coco_mini" / "images"
    files = [annotations] if annotations else [coco_mini(s).annotations for s in COCO_MINI_SPLITS]
    for path in files:
        for image in json.loads(Path(path).read_text(encoding="utf-8"))["images"]:
            target = images / Path(image["file_name"]).name
            if not target.exists():
                download.download(image["coco_url"], target, image.get("file_size"),
                                  image.get("sha256"), progress=False)  # fmt: skip
    return images
