"""Pictures for the tutorial: mask overlays, contact sheets, tables and loss curves.

One module per kind of picture; every name is re-exported here, so notebooks write
``viz.overlay_masks``, ``viz.table``, ``viz.LiveLossCurve``:

* ``overlays``: ``overlay_masks``, ``draw_boxes``, ``boxes_from_masks``, ``crop_box``, ...
* ``figures``: PNG bytes and files (``save_png``, ``save_figure``), ``show``,
  ``contact_sheet`` and ``table`` (HTML in Jupyter, Markdown in text);
* ``charts``: AP per split and method, instances per class, AP vs mask-head size;
* ``loss_curves``: TensorBoard scalars (``read_scalars``), ``plot_loss_curves`` and
  ``LiveLossCurve`` (trains in a thread, redraws meanwhile);
* ``galleries``: ground truth of a COCO-format set (``coco_image_sheet``,
  ``instance_gallery``).

Conventions: images are ``uint8 [H, W, 3]`` RGB; masks ``[N, H, W]`` bool, or float
probabilities where ``> threshold`` is foreground; boxes are normalized ``[ymin, xmin,
ymax, xmax]`` to the image they are drawn on. Nothing here imports TensorFlow at import
time.
"""

from deepmac_nb.viz.charts import (
    SPLIT_COLORS,
    plot_ap_vs_params,
    plot_class_counts,
    plot_method_comparison,
)
from deepmac_nb.viz.figures import (
    Table,
    contact_sheet,
    encode_png,
    figure_png,
    save_figure,
    save_png,
    show,
    table,
)
from deepmac_nb.viz.galleries import coco_image_sheet, coco_instances, instance_gallery
from deepmac_nb.viz.loss_curves import (
    LOSS_TAGS,
    LiveLossCurve,
    ScalarReader,
    plot_loss_curves,
    read_scalars,
)
from deepmac_nb.viz.overlays import (
    PALETTE,
    binary_masks,
    boxes_from_masks,
    color,
    crop_box,
    draw_boxes,
    overlay_masks,
    resize_max_side,
)

__all__ = [
    "LOSS_TAGS",
    "PALETTE",
    "SPLIT_COLORS",
    "LiveLossCurve",
    "ScalarReader",
    "Table",
    "binary_masks",
    "boxes_from_masks",
    "coco_image_sheet",
    "coco_instances",
    "color",
    "contact_sheet",
    "crop_box",
    "draw_boxes",
    "encode_png",
    "figure_png",
    "instance_gallery",
    "overlay_masks",
    "plot_ap_vs_params",
    "plot_class_counts",
    "plot_loss_curves",
    "plot_method_comparison",
    "read_scalars",
    "resize_max_side",
    "save_figure",
    "save_png",
    "show",
    "table",
]
