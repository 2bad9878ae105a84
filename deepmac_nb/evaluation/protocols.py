"""``evaluate``: one evaluation protocol run over a COCO set, then split AP of its results.

The one entry the command line, the notebooks, the reference models and the benchmarks
share: ``runner.run_box_prompted`` or ``runner.run_detected`` collects COCO results, and
``coco_eval.evaluate_predictions`` scores them on exactly the images the run covered.

Example:
    >>> from deepmac_nb.evaluation import baselines, evaluate
    >>> metrics = evaluate(baselines.ellipse_masks, "val.json", "images/")  # doctest: +SKIP
    >>> metrics["mask"]["unseen"]["AP"], metrics["stats"]["images"]          # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pycocotools.coco import COCO

from deepmac_nb.evaluation import coco_eval, runner

PROTOCOLS = ("box_prompted", "detected")
# The IoU types each protocol is scored with by default: box AP needs the model's boxes.
DEFAULT_IOU_TYPES = {"box_prompted": ("segm",), "detected": ("segm", "bbox")}


def protocol_fn(model: Any, protocol: str):
    """The callable ``protocol`` runs: ``model.predict`` (box-prompted) or ``model.detect``
    (detected) of a ``Predictor``, else ``model`` itself (a ``MaskFn`` / ``DetectFn``)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    method = "predict" if protocol == "box_prompted" else "detect"
    return getattr(model, method, model)


def evaluate(
    model: Any,
    annotations: COCO | str | os.PathLike,
    images: str | os.PathLike,
    protocol: str = "box_prompted",
    *,
    splits: coco_eval.SplitSpec = None,
    iou_types: Sequence[str] | None = None,
    max_images: int | None = None,
    skip_missing: bool = False,
    workers: int = 1,
    progress: bool = False,
    pr_curves: bool = False,
) -> dict[str, Any]:
    """Runs ``protocol`` with ``model`` on ``annotations`` / ``images`` and scores it.

    Args:
      model: a ``Predictor`` (its ``predict`` or ``detect`` is used), or the function
        itself: a ``MaskFn`` for ``"box_prompted"`` (e.g. a baseline), a ``DetectFn``
        for ``"detected"``.
      annotations: COCO index or annotation file (loaded once for both steps).
      images: the folder the images' ``file_name`` entries are relative to.
      protocol: ``"box_prompted"`` (GT boxes are the prompts) or ``"detected"``.
      splits: class splits, see ``coco_eval.resolve_eval_splits``.
      iou_types: default ``("segm",)`` box-prompted, ``("segm", "bbox")`` detected.
      max_images, skip_missing, workers, progress: as ``runner.run_box_prompted``.
      pr_curves: also return precision-recall curves (``evaluate_predictions``).

    Returns:
      ``evaluate_predictions`` output plus ``"stats"``: the run's statistics (images,
      predictions, model and total seconds, ...), without the image ids.
    """
    fn = protocol_fn(model, protocol)
    run = runner.run_box_prompted if protocol == "box_prompted" else runner.run_detected
    coco = coco_eval.load_coco(annotations)
    predictions, stats = run(
        coco,
        images,
        fn,
        max_images=max_images,
        skip_missing=skip_missing,
        workers=workers,
        progress=progress,
    )
    metrics = coco_eval.evaluate_predictions(
        coco,
        predictions,
        splits=splits,
        iou_types=DEFAULT_IOU_TYPES[protocol] if iou_types is None else tuple(iou_types),
        image_ids=stats.pop("image_ids"),
        pr_curves=pr_curves,
    )
    return {**metrics, "stats": stats}
