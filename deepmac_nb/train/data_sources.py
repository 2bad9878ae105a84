"""Data the CPU experiments find or build themselves (``task.dataset``).

``shapes`` (1000 + 200 images of 128 px) and ``shapes_smoke`` (32 + 8 of 96 px, for the
smoke experiments): the synthetic set is generated on first use into the cache and reused.
``coco_mini``: the real sample photos (``deepmac_nb.data.samples``) are converted to
TFRecords on first use. Explicit ``input_path`` settings always win.

The cache is ``$DEEPMAC_NB_CACHE`` (default ``~/.cache/deepmac_nb``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from official.core import config_definitions as cfg

from deepmac_nb.data import samples

SHAPES_TRAIN_IMAGES = 1000
SHAPES_VAL_IMAGES = 200
SHAPES_IMAGE_SIZE = 128
# task.dataset -> (train images, val images, image size) of a generated shapes set; the
# smoke set makes ``deepmac_smoke`` / ``deepmarc_smoke`` self-contained and seconds long.
SHAPES_SETS = {
    "shapes": (SHAPES_TRAIN_IMAGES, SHAPES_VAL_IMAGES, SHAPES_IMAGE_SIZE),
    "shapes_smoke": (32, 8, 96),
}
COCO_MINI_TRAIN = ("train_exhaustive", "train_coco128seg")
COCO_MINI_VAL = "val_dev"


def cache_root() -> Path:
    """The folder for generated data and converted TFRecords: the package cache."""
    from deepmac_nb import download

    return download.cache_dir()


def prepare_experiment_data(params: cfg.ExperimentConfig) -> cfg.ExperimentConfig:
    """Fills ``input_path`` / ``annotation_file`` for experiments with a ``dataset``."""
    task = params.task
    if not task.dataset or task.train_data.input_path:
        return params
    if task.dataset in SHAPES_SETS:
        train, val, ann, images = _shapes(task.dataset, task.shapes_preset)
    elif task.dataset == "coco_mini":
        train, val, ann, images = _coco_mini()
    else:
        names = ", ".join([*SHAPES_SETS, "coco_mini"])
        raise ValueError(f"Unknown task.dataset {task.dataset!r}; use one of {names}.")
    task.train_data.input_path = train
    task.validation_data.input_path = task.validation_data.input_path or val
    task.annotation_file = task.annotation_file or ann
    task.validation_images = task.validation_images or images
    return params


def _shapes(name: str = "shapes", preset: str = "default") -> tuple[str, str, str, str]:
    from deepmac_nb.data import shapes  # lazy: only this dataset needs the generator

    num_train, num_val, image_size = SHAPES_SETS[name]
    config = shapes.ShapesConfig.preset(preset)
    paths = shapes.ensure_shapes_dataset(
        # One folder per preset, so switching presets never regenerates the other.
        cache_root() / (name if preset == "default" else f"{name}-{preset}"),
        config=config,
        num_train=num_train,
        num_val=num_val,
        image_size=image_size,
        workers=os.cpu_count() or 1,
        tfrecords=True,
    )
    records = paths.tfrecords_dir
    return (
        str(records / "train-*.tfrecord"),
        str(records / "val-*.tfrecord"),
        str(paths.val_json),
        str(paths.images_dir),
    )


def _convert_once(name: str, out_dir: Path) -> str:
    """Converts one COCO-mini file unless a matching summary says it is already done."""
    from deepmac_nb.data import coco_tfrecord

    source = samples.coco_mini(name)
    summary = out_dir / f"{name}-summary.json"
    done = summary.exists() and json.loads(summary.read_text()).get("shards")
    if not done:
        coco_tfrecord.convert_coco(source.annotations, source.images, out_dir, prefix=name)
    return str(out_dir / f"{name}-*.tfrecord")


def _coco_mini() -> tuple[str, str, str, str]:
    out_dir = cache_root() / "coco_mini"
    train = ",".join(_convert_once(name, out_dir) for name in COCO_MINI_TRAIN)
    val = _convert_once(COCO_MINI_VAL, out_dir)
    val_set = samples.coco_mini(COCO_MINI_VAL)
    return train, val, str(val_set.annotations), str(val_set.images)
