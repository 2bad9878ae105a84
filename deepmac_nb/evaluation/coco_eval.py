"""COCO mask / box AP split into class subsets (seen vs unseen), on pycocotools.

DeepMAC's headline number is mask AP on the classes that had no mask labels. This module
runs pycocotools' ``COCOeval`` once over every category of the dataset and reads each
split's numbers out of it with ``COCOeval.summarize`` on the split's slice of the
accumulated precision / recall arrays. That equals a ``COCOeval`` run with
``params.catIds`` set to the split (per-category matching is independent), without
recomputing the IoUs per split; setting ``params.catIds`` to a subset before
``accumulate()`` instead is unsafe, because pycocotools indexes the per-image results by
the position in the *new* list (tests check the equivalence).

Predictions use COCO's results format: ``{"image_id", "category_id", "score",
"segmentation": RLE with str counts, "bbox": [x, y, w, h] in pixels (optional)}``;
category ids are COCO's 1-based ids. AP values are percentages rounded to 2 decimals,
``None`` where COCO reports -1 (no ground truth in that split / size range).

Example:
    >>> evaluate_predictions("val.json", preds)["mask"]["non_voc"]["AP"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from deepmac_nb import splits as splits_lib

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPE_KEYS = {"segm": "mask", "bbox": "box"}

SplitSpec = Mapping[str, Any] | Sequence[str] | str | None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silences pycocotools, which prints progress on every call."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def load_coco(source: COCO | str | os.PathLike | Mapping) -> COCO:
    """Returns a ``COCO`` index for a loaded index, an annotation file path or a dict.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: the file is not JSON or lacks ``images`` / ``annotations`` / ``categories``.
    """
    if isinstance(source, COCO):
        return source
    if isinstance(source, Mapping):
        return _coco_from_dict(dict(source), "annotations")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    return _coco_from_dict(data, str(path))


def _coco_from_dict(data: Any, source: str) -> COCO:
    if not isinstance(data, dict):
        raise ValueError(f"{source} is not a COCO annotation file (top level is not an object)")
    missing = [
        k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)
    ]
    if missing:
        raise ValueError(f"{source} is not a COCO annotation file: no {', '.join(missing)} list")
    coco = COCO()
    coco.dataset = data
    with quiet():
        coco.createIndex()
    return coco


def default_split_names(category_ids: Sequence[int]) -> tuple[str, ...]:
    """Named splits reported by default: ``voc, non_voc`` for COCO ids, ``seen, unseen``
    for the synthetic shapes ids 1..8, none (only ``all``) otherwise."""
    ids = set(int(i) for i in category_ids)
    if ids == set(splits_lib.SHAPES_IDS):
        return ("seen", "unseen")
    if ids and ids <= set(splits_lib.COCO_IDS):
        return ("voc", "non_voc")
    return ()


def resolve_eval_splits(coco: COCO, splits: SplitSpec = None) -> tuple[dict, list[str]]:
    """Maps a split spec to ``{name: sorted category ids present in the dataset}``.

    ``splits`` is ``None`` (defaults above), a comma-separated string or list of names from
    ``deepmac_nb.splits.SPLITS``, or a mapping ``name -> name | ids``. ``"all"`` (every
    dataset category) always comes first. Ids missing from the dataset are dropped with a
    note rather than an error, so e.g. the VOC split still works on a COCO subset.
    """
    cat_ids = sorted(int(i) for i in coco.getCatIds())
    if splits is None:
        splits = default_split_names(cat_ids)
    elif isinstance(splits, str):
        splits = [s.strip() for s in splits.split(",") if s.strip()]
    named = dict(splits) if isinstance(splits, Mapping) else {s: s for s in splits}
    resolved, notes = {"all": tuple(cat_ids)}, []
    for name, spec in named.items():
        if name == "all":
            continue
        ids = splits_lib.resolve_split(spec)
        present = tuple(i for i in ids if i in set(cat_ids))
        if len(present) < len(ids):
            notes.append(
                f"split {name!r}: {len(ids) - len(present)} of its {len(ids)} classes "
                "are not categories of this dataset"
            )
        resolved[name] = present
    return resolved, notes


def _percent(value: float) -> float | None:
    return None if value < 0 else round(float(value) * 100.0, 2)


def _check_predictions(predictions: Sequence[dict], coco: COCO, iou_types, image_ids) -> None:
    if not iou_types or set(iou_types) - set(IOU_TYPE_KEYS):
        raise ValueError(f"iou_types must be a non-empty subset of {tuple(IOU_TYPE_KEYS)}")
    if not image_ids:
        raise ValueError("no images to evaluate")
    known = set(coco.getImgIds())
    for i, pred in enumerate(predictions):
        need = ["image_id", "category_id", "score"]
        need += ["segmentation"] if "segm" in iou_types else []
        missing = [k for k in need if k not in pred]
        if "bbox" in iou_types and "bbox" not in pred and "segmentation" not in pred:
            missing.append("bbox")
        if missing:
            raise ValueError(f"prediction {i} lacks {', '.join(missing)}")
        if pred["image_id"] not in known:
            raise ValueError(f"prediction {i} refers to image {pred['image_id']!r}, not in the GT")


def _result_entry(pred: dict, iou_type: str) -> dict:
    """Copies one prediction into what ``loadRes`` needs for ``iou_type`` (it mutates it)."""
    entry = {k: pred[k] for k in ("image_id", "category_id", "score")}
    seg = pred.get("segmentation")
    if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        seg = mask_utils.frPyObjects(seg, *seg["size"])  # uncompressed RLE -> compressed
    if iou_type == "segm":
        # No bbox: loadRes then takes the detection's area from the mask, not the box,
        # which is what the S/M/L ranges of mask AP should see.
        entry["segmentation"] = seg
    else:
        box = pred.get("bbox")
        entry["bbox"] = list(box) if box is not None else mask_utils.toBbox(seg).tolist()
    return entry


def _load_results(coco: COCO, entries: list[dict]) -> COCO:
    if entries:
        return coco.loadRes(entries)
    # loadRes indexes anns[0]; an empty result set still has to evaluate to AP 0.
    res = COCO()
    res.dataset = {
        "images": list(coco.dataset["images"]),
        "categories": copy.deepcopy(coco.dataset["categories"]),
        "annotations": [],
    }
    res.createIndex()
    return res


def run_cocoeval(coco: COCO, predictions: Sequence[dict], iou_type: str, image_ids) -> COCOeval:
    """Runs ``evaluate`` + ``accumulate`` over all dataset categories on ``image_ids``."""
    wanted = set(image_ids)
    entries = [_result_entry(p, iou_type) for p in predictions if p["image_id"] in wanted]
    with quiet():
        evaluator = COCOeval(coco, _load_results(coco, entries), iouType=iou_type)
        evaluator.params.imgIds = list(image_ids)
        evaluator.params.catIds = sorted(coco.getCatIds())
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _sliced(evaluator: COCOeval, cat_ids: Sequence[int]) -> COCOeval:
    """A shallow copy whose accumulated arrays keep only ``cat_ids`` (axis K)."""
    index = {c: k for k, c in enumerate(evaluator.params.catIds)}
    ks = [index[c] for c in cat_ids if c in index]
    view = copy.copy(evaluator)
    view.eval = dict(evaluator.eval)
    view.eval["precision"] = evaluator.eval["precision"][:, :, ks]
    view.eval["recall"] = evaluator.eval["recall"][:, ks]
    return view


def split_stats(evaluator: COCOeval, cat_ids: Sequence[int]) -> dict[str, float | None]:
    """AP, AP50, AP75, APs, APm, APl (percent) of ``cat_ids``, via ``COCOeval.summarize``."""
    view = _sliced(evaluator, cat_ids)
    with quiet():
        view.summarize()
    return {name: _percent(v) for name, v in zip(METRIC_NAMES, view.stats[:6], strict=True)}


def pr_curve(evaluator: COCOeval, cat_ids: Sequence[int]) -> dict[str, list[float]] | None:
    """Class-averaged precision at COCO's 101 recall points, IoU .5 and .75, area all,
    100 detections; ``None`` when no class of ``cat_ids`` has ground truth."""
    precision = _sliced(evaluator, cat_ids).eval["precision"][:, :, :, 0, -1]  # [T, R, K]
    has_gt = precision[0, 0, :] > -1
    if not has_gt.any():
        return None
    iou_thrs = evaluator.params.iouThrs
    curve = {"recall": np.round(evaluator.params.recThrs, 4).tolist()}
    for iou in (0.5, 0.75):
        t = int(np.argmin(np.abs(iou_thrs - iou)))
        curve[f"precision_{round(iou * 100)}"] = np.round(
            precision[t][:, has_gt].mean(axis=1), 4
        ).tolist()
    return curve


def instance_counts(coco: COCO, image_ids: Sequence[int]) -> dict[int, int]:
    """Non-crowd ground-truth instances per category id on ``image_ids``."""
    counts: dict[int, int] = {}
    for image_id in image_ids:
        for ann in coco.imgToAnns.get(image_id, []):
            if not ann.get("iscrowd", 0):
                counts[ann["category_id"]] = counts.get(ann["category_id"], 0) + 1
    return counts


def _per_class(coco: COCO, split_ids: dict, counts: dict, class_ap: dict) -> list[dict]:
    named = [(n, set(ids)) for n, ids in split_ids.items() if n != "all"]
    rows = []
    for cat in sorted(coco.dataset["categories"], key=lambda c: c["id"]):
        cid = cat["id"]
        row = {
            "id": cid,
            "name": cat.get("name", str(cid)),
            "split": next((n for n, ids in named if cid in ids), "all"),
            "mask_AP": class_ap.get("mask", {}).get(cid),
            "instances": counts.get(cid, 0),
        }
        if "box" in class_ap:
            row["box_AP"] = class_ap["box"].get(cid)
        rows.append(row)
    return rows


def _summaries(evaluator: COCOeval, split_ids: dict) -> tuple[dict, dict]:
    """({split: stats}, {category id: AP}) of one accumulated evaluation."""
    stats = {name: split_stats(evaluator, cats) for name, cats in split_ids.items()}
    return stats, {c: split_stats(evaluator, [c])["AP"] for c in evaluator.params.catIds}


def evaluate_predictions(
    coco_gt: COCO | str | os.PathLike,
    predictions: Sequence[dict],
    splits: SplitSpec = None,
    iou_types: Sequence[str] = ("segm",),
    image_ids: Sequence[int] | None = None,
    pr_curves: bool = False,
) -> dict[str, Any]:
    """COCO AP overall and per class split.

    Args:
      coco_gt: ground truth (``COCO`` index or annotation file path).
      predictions: COCO results (see module docstring); scores rank detections.
      splits: see ``resolve_eval_splits``.
      iou_types: ``"segm"`` (-> ``"mask"``) and/or ``"bbox"`` (-> ``"box"``).
      image_ids: images to evaluate on (default all GT images); GT on them that no
        prediction matches counts as missed.
      pr_curves: also return ``"pr_curves": {"mask": {split: pr_curve(...)}}``.

    Returns:
      ``{"mask": {split: {AP, AP50, AP75, APs, APm, APl}}, "box": ... (when asked),
      "per_class": [{"id", "name", "split", "mask_AP", "instances"}], "images",
      "instances", "notes": [str]}``.
    """
    coco = load_coco(coco_gt)
    split_ids, notes = resolve_eval_splits(coco, splits)
    ids = sorted(coco.getImgIds()) if image_ids is None else sorted({int(i) for i in image_ids})
    _check_predictions(predictions, coco, iou_types, ids)
    result: dict[str, Any] = {}
    class_ap: dict[str, dict] = {}
    for iou_type in iou_types:
        key = IOU_TYPE_KEYS[iou_type]
        evaluator = run_cocoeval(coco, predictions, iou_type, ids)
        result[key], class_ap[key] = _summaries(evaluator, split_ids)
        if pr_curves:
            curves = {name: pr_curve(evaluator, cats) for name, cats in split_ids.items()}
            result.setdefault("pr_curves", {})[key] = curves
    counts = instance_counts(coco, ids)
    notes += [
        f"split {name!r}: no non-crowd ground truth of its {len(cats)} classes on the "
        f"{len(ids)} evaluated images; its AP is None"
        for name, cats in split_ids.items()
        if not any(counts.get(c, 0) for c in cats)
    ]
    result["per_class"] = _per_class(coco, split_ids, counts, class_ap)
    result.update(images=len(ids), instances=sum(counts.values()), notes=notes)
    return result
