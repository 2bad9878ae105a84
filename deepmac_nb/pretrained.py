"""The two box-prompted checkpoints the DeepMAC authors publish, as ``Predictor`` objects.

* ``deepmac``: CenterNet Hourglass-104 DeepMAC, ``deepmac_1024x1024_coco17.tar.gz`` from
  the TF OD API model zoo (folder ``deepmac_1024x1024_coco17/saved_model``; signature
  ``input_tensor`` + ``boxes``, plus CenterNet's own detections);
* ``deepmarc``: Mask R-CNN SpineNet Deep-MARC, ``deepmarc_spinenet.zip`` from Model
  Garden (folder ``deepmarc_spinenet/`` = a bare SavedModel of the ``deepmac_maskrcnn``
  serving module: ``images`` + ``boxes`` -> ``detection_masks`` only, so its
  ``detect()`` raises ``ValueError``).

Integrity: no checksum is published for either archive, so none is hard-coded. The first
download is checked against the server's ``Content-Length``, its size and sha256 are
recorded beside it and checked before every later use (``download``); extraction is
keyed by the archive's hash (``archives.extract_cached``).

Example:
    >>> from deepmac_nb import pretrained
    >>> predictor = pretrained.load_published("deepmarc")   # downloads once; doctest: +SKIP
    >>> masks = predictor.predict(image, boxes)             # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from deepmac_nb import download, loading


@dataclasses.dataclass(frozen=True)
class Published:
    """A published model: folder ``name`` inside ``archive`` downloaded from ``url``."""

    name: str
    url: str
    archive: str
    description: str


PUBLISHED = {
    "deepmac": Published(
        "deepmac_1024x1024_coco17",
        "http://download.tensorflow.org/models/object_detection/tf2/20210329/"
        "deepmac_1024x1024_coco17.tar.gz",
        "deepmac_1024x1024_coco17.tar.gz",
        "official DeepMAC (CenterNet Hourglass-104, 1024 px, COCO)",
    ),
    "deepmarc": Published(
        "deepmarc_spinenet",
        "https://storage.googleapis.com/tf_model_garden/vision/deepmac_maskrcnn/"
        "deepmarc_spinenet.zip",
        "deepmarc_spinenet.zip",
        "official Deep-MARC (Mask R-CNN SpineNet, COCO)",
    ),
}
MODEL_NAME = PUBLISHED["deepmac"].name
URL = PUBLISHED["deepmac"].url
CACHE_ENV = download.CACHE_ENV
default_cache_dir = download.cache_dir  # the package's one cache folder


def _published(which: str) -> Published:
    if which not in PUBLISHED:
        raise ValueError(f"Unknown published model {which!r}; choose from {sorted(PUBLISHED)}.")
    return PUBLISHED[which]


def archive_path(which: str = "deepmac", cache_dir: str | Path | None = None) -> Path:
    """Where the archive of ``which`` is (or will be) cached."""
    cache = Path(cache_dir) if cache_dir is not None else download.cache_dir()
    return cache / _published(which).archive


def is_cached(which: str = "deepmac", cache_dir: str | Path | None = None) -> bool:
    """True when the archive of ``which`` has been downloaded (no network needed)."""
    return archive_path(which, cache_dir).is_file()


def fetch(
    which: str = "deepmac", cache_dir: str | Path | None = None, url: str | None = None
) -> Path:
    """The cached archive of ``which``, downloaded on first use and verified against its
    download record afterwards. ``url`` overrides the address (tests: ``file://``)."""
    return download.download(url or _published(which).url, archive_path(which, cache_dir))


def load_published(
    which: str = "deepmac",
    path_or_none=None,
    cache_dir: str | Path | None = None,
    url: str | None = None,
    flip_tta: bool = False,
):
    """A ``Predictor`` for a published model.

    Args:
      which: ``"deepmac"`` or ``"deepmarc"``.
      path_or_none: a local copy (the archive or its extracted folder), or None to
        download ``url`` (default: the published address) into ``cache_dir`` once.
      cache_dir: downloads and extractions; default ``download.cache_dir()``.
      url: the archive address (tests point it at a local ``file://`` archive).
      flip_tta: mirror test-time augmentation (``Predictor``).
    """
    spec = _published(which)
    if path_or_none is None:
        path = fetch(which, cache_dir, url)
    else:
        path = Path(path_or_none)
        if not path.exists():
            raise ValueError(f"{path} is neither a {spec.name} folder nor its {spec.archive}.")
    return loading.load(path, flip_tta=flip_tta, cache_dir=cache_dir)


def load_official(path_or_none=None, cache_dir=None, url: str = URL, flip_tta: bool = False):
    """``load_published("deepmac", ...)``: the official DeepMAC checkpoint."""
    return load_published("deepmac", path_or_none, cache_dir, url, flip_tta)
