"""COCO evaluation split into seen / unseen classes, box-prompted runners, baselines, plots.

* ``protocols``: ``evaluate`` - one protocol run with a model or baseline, scored: the
  entry the command line, notebooks and benchmarks use.
* ``coco_eval``: ``evaluate_predictions`` - pycocotools mask / box AP per class split.
* ``runner``: ``gt_box_prompts``, ``run_box_prompted`` (GT boxes as prompts, DeepMAC's
  protocol) and ``run_detected`` (the model finds the objects).
* ``baselines``: filled box, inscribed ellipse and GrabCut ``MaskFn``s.
* ``plots``: per-class AP bars, AP by object size, precision-recall curves.
* ``evaluate_cli``: ``deepmac-nb evaluate``.

Nothing here imports TensorFlow.

Example:
    >>> from deepmac_nb.evaluation import baselines, evaluate
    >>> metrics = evaluate(baselines.ellipse_masks, ann, images)  # doctest: +SKIP
    >>> metrics["mask"]["unseen"]["AP"]                           # doctest: +SKIP
"""

from deepmac_nb.evaluation.coco_eval import evaluate_predictions, load_coco
from deepmac_nb.evaluation.protocols import evaluate
from deepmac_nb.evaluation.runner import gt_box_prompts, run_box_prompted, run_detected

__all__ = [
    "evaluate",
    "evaluate_predictions",
    "gt_box_prompts",
    "load_coco",
    "run_box_prompted",
    "run_detected",
]
