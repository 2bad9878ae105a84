"""Pictures for the tutorial: mask overlays, contact sheets, tables and loss curves.

Conventions: images are ``uint8 [H, W, 3]`` RGB; masks ``[N, H, W]`` bool, or float
probabilities where ``> threshold`` is foreground; boxes are normalized ``[ymin, xmin,
ymax, xmax]`` to the image they are drawn on. Figures are built without ``pyplot`` (as in
``deepmac_nb.evaluation.plots``), so nothing leaks into pyplot's global state; notebooks
show them after ``%matplotlib inline`` or through ``show``.

TensorBoard event files are read with a small TFRecord reader and TensorBoard's
protobuf classes: nothing here imports TensorFlow, and a file that is still being
written is read up to its last complete record.

Example:
    >>> import numpy as np
    >>> image = np.zeros((4, 4, 3), np.uint8)
    >>> masks = np.zeros((1, 4, 4), bool); masks[0, 1:3, 1:3] = True
    >>> overlay_masks(image, masks).shape
    (4, 4, 3)
    >>> boxes_from_masks(masks).tolist()
    [[0.25, 0.25, 0.75, 0.75]]
"""

from __future__ import annotations

import html
import io
import os
import struct
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from deepmac_nb import _io

# Tab10-like colours (RGB), distinguishable on photos and on the shapes backgrounds.
PALETTE = np.array(
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
     [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]],
    np.uint8,
)  # fmt: skip
LOSS_TAGS = ("total_loss", "mask_loss", "center_loss", "scale_loss", "offset_loss")
SPLIT_COLORS = {"seen": "C0", "voc": "C0", "unseen": "C1", "non_voc": "C1", "all": "C7"}


def color(index: int) -> tuple[int, int, int]:
    """RGB colour number ``index`` of ``PALETTE`` (cycles)."""
    return tuple(int(c) for c in PALETTE[index % len(PALETTE)])


# ----------------------------------------------------------------------- overlays


def binary_masks(masks: Any, threshold: float = 0.5) -> np.ndarray:
    """``[N, H, W]`` bool or probabilities -> bool ``[N, H, W]`` (``> threshold``)."""
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    return masks.astype(bool) if masks.dtype == bool else masks > threshold


def boxes_from_masks(masks: Any) -> np.ndarray:
    """Tight boxes of bool masks ``[N, H, W]``: float32 ``[N, 4]`` normalized
    ``[ymin, xmin, ymax, xmax]`` (pixel edges; an empty mask gives zeros)."""
    masks = binary_masks(masks)
    n, h, w = masks.shape
    out = np.zeros((n, 4), np.float32)
    for i, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rows.size:
            out[i] = [rows[0] / h, cols[0] / w, (rows[-1] + 1) / h, (cols[-1] + 1) / w]
    return out


def _pixel_box(box: Sequence[float], h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    top_left = (round(xmin * w), round(ymin * h))
    bottom_right = (max(round(xmax * w) - 1, 0), max(round(ymax * h) - 1, 0))
    return top_left, bottom_right


def draw_boxes(
    image: np.ndarray,
    boxes: Any,
    colors: Sequence[tuple[int, int, int]] | None = None,
    labels: Sequence[str] | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """Copy of ``image`` (uint8 [H, W, 3]) with boxes ([N, 4] normalized) outlined and
    optional text labels above their top-left corners."""
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    thickness = thickness or max(1, round(max(h, w) / 400))
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    for i, box in enumerate(boxes):
        c = colors[i] if colors is not None else color(i)
        top_left, bottom_right = _pixel_box(box, h, w)
        cv2.rectangle(out, top_left, bottom_right, c, thickness)
        if labels is not None and labels[i]:
            scale = max(0.35, max(h, w) / 900)
            origin = (top_left[0], max(top_left[1] - 3, int(12 * scale)))
            cv2.putText(out, str(labels[i]), origin, cv2.FONT_HERSHEY_SIMPLEX, scale, c, 1)
    return out


def overlay_masks(
    image: np.ndarray,
    masks: Any,
    boxes: Any = None,
    alpha: float = 0.5,
    threshold: float = 0.5,
    labels: Sequence[str] | None = None,
    colors: Sequence[tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """``uint8 [H, W, 3]``: each mask ([N, H, W], image frame) tinted with opacity
    ``alpha`` and outlined, in order (later masks on top); boxes and labels drawn too."""
    out = np.asarray(image, np.uint8).astype(np.float32)
    masks = binary_masks(masks, threshold)
    colors = list(colors) if colors is not None else [color(i) for i in range(len(masks))]
    for mask, c in zip(masks, colors, strict=False):
        out[mask] = (1.0 - alpha) * out[mask] + alpha * np.asarray(c, np.float32)
    out = np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))
    for mask, c in zip(masks, colors, strict=False):
        contours, _ = cv2.findContours(
            mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(out, contours, -1, c, 1)
    if boxes is not None:
        out = draw_boxes(out, boxes, colors, labels)
    return out


def crop_box(image: np.ndarray, box: Sequence[float], context: float = 0.15) -> np.ndarray:
    """The pixels of ``image`` under ``box`` (normalized) grown by ``context`` of its side."""
    h, w = image.shape[:2]
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    dy, dx = (ymax - ymin) * context, (xmax - xmin) * context
    y0, y1 = max(int((ymin - dy) * h), 0), min(int(np.ceil((ymax + dy) * h)), h)
    x0, x1 = max(int((xmin - dx) * w), 0), min(int(np.ceil((xmax + dx) * w)), w)
    return image[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]


def resize_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` scaled down (area interpolation) so its longer side is <= ``max_side``."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------ files, figures


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB ``uint8 [H, W, 3]`` (or single-channel) image."""
    pixels = image[..., ::-1] if image.ndim == 3 else image
    ok, data = cv2.imencode(".png", np.ascontiguousarray(pixels))
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {image.shape}")
    return data.tobytes()


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Writes an RGB (or single-channel) uint8 image as PNG atomically; returns the path."""
    return _io.write_bytes(path, encode_png(image))


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib ``Figure`` (any backend)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Writes ``fig`` as a PNG atomically; returns the path."""
    return _io.write_bytes(path, figure_png(fig, dpi))


def show(obj: Figure | np.ndarray) -> None:
    """Displays a Figure or an RGB image (``uint8 [H, W, 3]``) in Jupyter as a PNG."""
    _display_png(obj)


def _display_png(obj: Figure | np.ndarray):
    """Displays ``obj`` as a PNG; returns the display handle (for in-place updates)."""
    from IPython.display import Image, display

    data = figure_png(obj) if isinstance(obj, Figure) else encode_png(np.asarray(obj))
    return display(Image(data=data), display_id=True)


def contact_sheet(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    tile: float = 2.6,
    title: str | None = None,
) -> Figure:
    """A grid of RGB images (any sizes) with optional per-image titles."""
    ncols = max(1, min(ncols, len(images)))
    nrows = max(1, -(-len(images) // ncols))
    fig = Figure(figsize=(tile * ncols, tile * nrows + (0.4 if title else 0.0)))
    for i, image in enumerate(images):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(image)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------- tables


class Table:
    """Rows of dicts shown as an HTML table in Jupyter and as Markdown in text."""

    def __init__(self, rows: Sequence[Mapping], columns: Sequence[str] | None = None, digits=2):
        self.rows = [dict(r) for r in rows]
        self.columns = list(columns or (self.rows[0].keys() if self.rows else []))
        self.digits = digits

    def _cell(self, value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.{self.digits}f}"
        return str(value)

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        for row in self.rows:
            lines.append("| " + " | ".join(self._cell(row.get(c)) for c in self.columns) + " |")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(self._cell(row.get(c)))}</td>" for c in self.columns)
            + "</tr>"
            for row in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        return self.to_markdown()

    __repr__ = __str__


def table(rows: Sequence[Mapping], columns: Sequence[str] | None = None, digits=2) -> Table:
    """``Table(rows, columns, digits)``: floats with ``digits`` decimals, None as ``-``."""
    return Table(rows, columns, digits)


# ---------------------------------------------------------------------- bar charts


def plot_method_comparison(
    results: Mapping[str, Mapping],
    splits: Sequence[str] | None = None,
    metric: str = "AP",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Grouped bars of mask ``metric`` per split for several methods.

    ``results`` maps a method name to ``evaluate_predictions`` output (``["mask"][split]``).
    """
    names = list(results)
    first = next(iter(results.values()))["mask"]
    splits = list(splits or [s for s in first if s != "all"] or ["all"])
    fig = Figure(figsize=(max(5.0, 1.1 * len(names) + 2.0), 3.6))
    ax = fig.add_subplot()
    width = 0.8 / len(splits)
    for j, split in enumerate(splits):
        values = [results[n]["mask"].get(split, {}).get(metric) or 0.0 for n in names]
        xs = [i + (j - (len(splits) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, values, width, color=SPLIT_COLORS.get(split, f"C{2 + j}"), label=split)
        for x, v in zip(xs, values, strict=True):
            ax.text(x, v + 1, f"{v:.0f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel(f"mask {metric} (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title(f"mask {metric} by class split")
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_class_counts(
    rows: Sequence[Mapping], path: str | os.PathLike | None = None, title: str = ""
) -> Figure:
    """Bars of instances per class coloured by split: rows ``{name, split, instances}``."""
    fig = Figure(figsize=(max(5.0, 0.18 * len(rows) + 2.0), 3.4))
    ax = fig.add_subplot()
    colors = [SPLIT_COLORS.get(r["split"], "C7") for r in rows]
    ax.bar(range(len(rows)), [r["instances"] for r in rows], color=colors)
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("instances")
    # Explicit patches: empty bar containers give legend entries the cycle's colour.
    splits = dict.fromkeys(r["split"] for r in rows)
    handles = [Patch(color=SPLIT_COLORS.get(s, "C7"), label=s) for s in splits]
    ax.legend(handles=handles, fontsize=8)
    ax.set_title(title or "instances per class")
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_ap_vs_params(
    rows: Sequence[Mapping],
    ap_key: str,
    label_key: str = "head",
    params_key: str = "params",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Mask AP (``row[ap_key]``) against mask-head parameters (log x), one labelled point
    per row; rows with 0 or no parameters (baselines) become dashed horizontal lines."""
    fig = Figure(figsize=(6.0, 3.8))
    ax = fig.add_subplot()
    for i, row in enumerate(r for r in rows if r.get(ap_key) is not None):
        params, ap = row.get(params_key) or 0, row[ap_key]
        if params > 0:
            ax.scatter([params], [ap], color=f"C{i % 10}")
            ax.annotate(str(row[label_key]), (params, ap), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        else:
            ax.axhline(ap, color="C7", ls="--", lw=1)
            ax.text(1.0, ap, f" {row[label_key]}", transform=ax.get_yaxis_transform(), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("mask-head parameters")
    ax.set_ylabel(ap_key)
    ax.set_title(f"{ap_key} vs mask-head size")
    if path is not None:
        save_figure(fig, path)
    return fig


# ------------------------------------------------------------ TensorBoard scalars


def _records(path: Path) -> Iterator[bytes]:
    """Payloads of a TFRecord file, stopping at the first incomplete record."""
    with open(path, "rb") as f:
        while True:
            header = f.read(12)  # uint64 length + uint32 masked CRC of it
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                return
            yield data


_TENSOR_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}


def _scalar(value) -> float | None:
    """The number in a ``Summary.Value`` (``simple_value`` or a scalar tensor)."""
    if value.WhichOneof("value") == "simple_value":
        return float(value.simple_value)
    tensor = value.tensor
    if tensor.tensor_content and tensor.dtype in _TENSOR_DTYPES:
        return float(np.frombuffer(tensor.tensor_content, _TENSOR_DTYPES[tensor.dtype])[0])
    for field in ("float_val", "double_val", "int_val", "int64_val"):
        values = getattr(tensor, field)
        if len(values):
            return float(values[0])
    return None


def read_scalars(log_dir: str | os.PathLike, subdir: str = "train") -> dict[str, list]:
    """Scalars of every ``events.out.tfevents.*`` file in ``log_dir/subdir``.

    Returns ``{tag: [(step, value), ...]}`` sorted by step, the last value kept for a
    step written twice (a resumed run). Missing folder: ``{}``.
    """
    from tensorboard.compat.proto import event_pb2

    folder = Path(log_dir) / subdir if subdir else Path(log_dir)
    found: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in _records(path):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                number = _scalar(value)
                if number is not None:
                    found.setdefault(value.tag, {})[int(event.step)] = number
    return {tag: sorted(steps.items()) for tag, steps in found.items()}


def plot_loss_curves(
    scalars: Mapping[str, Sequence],
    tags: Sequence[str] = LOSS_TAGS,
    title: str = "training losses",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Loss curves (log y) of ``read_scalars`` output; tags without data are skipped."""
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.add_subplot()
    drawn = 0
    for i, tag in enumerate(tags):
        points = scalars.get(tag) or []
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker=".", color=f"C{i}", label=tag)
            drawn += 1
    if drawn:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no summaries yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if path is not None:
        save_figure(fig, path)
    return fig


_INTERRUPTED = (
    "Interrupted: only the curve stopped. The training thread runs on until the kernel is "
    "restarted; after a restart, training again resumes from the latest checkpoint."
)


class LiveLossCurve:
    """Runs a training function in a thread and redraws its loss curves meanwhile.

    The curves come from the TensorBoard event files the train loop writes under
    ``model_dir/train`` (every ``summary_interval`` steps), re-read every ``interval``
    seconds; in Jupyter one output is updated in place, elsewhere a line is printed.

    Example:
        >>> curve = LiveLossCurve("runs/quick")                          # doctest: +SKIP
        >>> curve.run(runner.train, params, "runs/quick")                # doctest: +SKIP
    """

    def __init__(self, model_dir, tags: Sequence[str] = LOSS_TAGS, interval: float = 10.0):
        self.model_dir = Path(model_dir)
        self.tags = tuple(tags)
        self.interval = float(interval)
        self.updates = 0
        self._handle = None

    def figure(self) -> Figure:
        """The current curves as a Figure."""
        scalars = read_scalars(self.model_dir)
        last = max((pts[-1][0] for pts in scalars.values() if pts), default=0)
        return plot_loss_curves(scalars, self.tags, title=f"{self.model_dir.name}: step {last}")

    def refresh(self) -> Figure:
        """Redraws the output (or prints the latest losses outside Jupyter)."""
        fig = self.figure()
        self.updates += 1
        if _in_notebook():
            if self._handle is None:
                self._handle = _display_png(fig)
            else:
                self._handle.update(_png_image(fig))
        else:
            print(f"[loss] {fig.axes[0].get_title()}", flush=True)
        return fig

    def run(self, fn: Callable, *args, **kwargs) -> Any:
        """Calls ``fn(*args, **kwargs)`` in a thread, refreshing until it returns; returns
        its result or re-raises its exception here. The final curve is always drawn."""
        outcome: dict[str, Any] = {}

        def target():
            try:
                outcome["result"] = fn(*args, **kwargs)
            except BaseException as exc:  # re-raised in the caller's thread
                outcome["error"] = exc

        thread = threading.Thread(target=target, name="deepmac-train", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(self.interval)
                self.refresh()
        except KeyboardInterrupt:
            print(_INTERRUPTED, flush=True)
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("result")


def _png_image(fig: Figure):
    from IPython.display import Image

    return Image(data=figure_png(fig))


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


# ------------------------------------------------------------ COCO ground truth


def coco_instances(coco: Any, images_dir: str | os.PathLike, image_id: int):
    """One image of a COCO set and its non-crowd instances.

    Returns ``(image uint8 [H, W, 3], masks bool [N, H, W], boxes float32 [N, 4]
    normalized, category_ids int64 [N])``; ``coco`` is a ``COCO`` index or a JSON path.
    """
    from deepmac_nb.evaluation import load_coco
    from deepmac_nb.evaluation.runner import gt_box_prompts, load_image_rgb

    coco = load_coco(coco)
    info = coco.imgs[image_id]
    image = load_image_rgb(Path(images_dir) / info["file_name"])
    prompts = gt_box_prompts(coco, [image_id])[image_id]
    anns = [coco.anns[int(i)] for i in prompts.ann_ids]
    masks = np.array([coco.annToMask(a).astype(bool) for a in anns]).reshape(-1, *image.shape[:2])
    return image, masks, prompts.boxes, prompts.category_ids


def coco_image_sheet(
    coco: Any, images_dir: str | os.PathLike, count: int = 8, ncols: int = 4, title: str = ""
) -> Figure:
    """The first ``count`` images of a COCO set with their ground-truth masks drawn."""
    from deepmac_nb.evaluation import load_coco

    coco = load_coco(coco)
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    tiles, titles = [], []
    for image_id in sorted(coco.getImgIds())[:count]:
        image, masks, boxes, ids = coco_instances(coco, images_dir, image_id)
        tiles.append(overlay_masks(image, masks, boxes))
        titles.append(", ".join(names.get(int(i), str(i)) for i in ids)[:40])
    return contact_sheet(tiles, titles, ncols=ncols, title=title)


def instance_gallery(
    coco: Any,
    images_dir: str | os.PathLike,
    category_ids: Sequence[int],
    count: int = 8,
    title: str = "",
    min_area: float = 400.0,
) -> Figure:
    """Crops of the ``count`` first instances (image order, one class after another,
    area >= ``min_area`` px) of ``category_ids`` with their ground-truth masks."""
    from deepmac_nb.evaluation import load_coco

    coco = load_coco(coco)
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    wanted = set(int(i) for i in category_ids)
    anns = [
        a
        for a in sorted(coco.dataset["annotations"], key=lambda a: (a["image_id"], a["id"]))
        if a["category_id"] in wanted and not a.get("iscrowd", 0) and a["area"] >= min_area
    ]
    picked = _round_robin(anns, count)
    tiles = [_instance_tile(coco, images_dir, a) for a in picked]
    titles = [names.get(a["category_id"], str(a["category_id"])) for a in picked]
    return contact_sheet(tiles, titles, ncols=min(count, 8), tile=1.6, title=title)


def _round_robin(anns: list[dict], count: int) -> list[dict]:
    """Up to ``count`` annotations, taking classes in turn so every class shows."""
    by_class: dict[int, list[dict]] = {}
    for ann in anns:
        by_class.setdefault(ann["category_id"], []).append(ann)
    queues, picked = [list(v) for _, v in sorted(by_class.items())], []
    while queues and len(picked) < count:
        for queue in list(queues):
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
        queues = [q for q in queues if q]
    return picked


def _instance_tile(coco: Any, images_dir: str | os.PathLike, ann: dict) -> np.ndarray:
    from deepmac_nb.evaluation.runner import load_image_rgb

    info = coco.imgs[ann["image_id"]]
    image = load_image_rgb(Path(images_dir) / info["file_name"])
    x, y, bw, bh = ann["bbox"]
    h, w = image.shape[:2]
    box = [y / h, x / w, (y + bh) / h, (x + bw) / w]
    picture = overlay_masks(image, coco.annToMask(ann)[None].astype(bool), alpha=0.55)
    return crop_box(picture, box, context=0.2)
