"""ipywidgets tools of the notebooks: a camera-trap mask viewer and a box picker.

Both are plain classes: every control is an attribute, its ``observe`` callback only
calls ``refresh()``, and ``render()`` returns the picture as ``uint8 [H, W, 3]`` RGB, so
tests drive them by setting ``.value`` (no browser needed). Display one with
``display(viewer)`` or by ending a cell with it.

Mask models are either a ``Predictor``-like object with ``predict_box_masks(image,
boxes) -> float32 [N, S, S]`` (box-frame masks; cached per image, pasted at display size
with ``iwildcam.paste_region``) or any ``mask_fn(image, boxes) -> [N, H, W]`` (e.g. a
baseline of ``evaluation.baselines``), called on the display-size image. Boxes are
normalized ``[ymin, xmin, ymax, xmax]``.

Example:
    >>> viewer = CameraTrapViewer(detections, "images/", {"quick": predictor})  # doctest: +SKIP
    >>> viewer.conf_slider.value = 0.5        # redraws, as a user's drag would  # doctest: +SKIP
"""

from __future__ import annotations

import html
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np

from deepmac_nb import viz
from deepmac_nb.inference import iwildcam, megadetector

MaskFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
_IMAGE_CACHE = 4  # decoded photos kept (camera-trap JPEGs take ~0.2 s each to decode)


def _has_box_masks(model: Any) -> bool:
    return callable(getattr(model, "predict_box_masks", None))


def model_masks(model: Any, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """bool ``[N, H, W]`` masks of ``boxes`` (float32 ``[N, 4]`` normalized) on ``image``
    (``uint8 [H, W, 3]``) from either kind of mask model (see the module docstring)."""
    h, w = image.shape[:2]
    if not len(boxes):
        return np.zeros((0, h, w), bool)
    if not _has_box_masks(model):
        return viz.binary_masks(model(image, boxes)).reshape(len(boxes), h, w)
    return paste_box_masks(model.predict_box_masks(image, boxes), boxes, h, w)


def paste_box_masks(box_masks: np.ndarray, boxes: np.ndarray, height: int, width: int):
    """Box-frame probabilities ``[N, S, S]`` -> bool ``[N, H, W]`` (``> 0.5``), pasted
    into the pixels under each box only."""
    out = np.zeros((len(boxes), height, width), bool)
    for n, (box_mask, box) in enumerate(zip(box_masks, boxes, strict=True)):
        pasted = iwildcam.paste_region(np.asarray(box_mask), box, height, width)
        if pasted is not None:
            rows, cols, region = pasted
            out[n, rows, cols] = region > iwildcam.MASK_THRESHOLD
    return out


class CameraTrapViewer:
    """MegaDetector boxes and predicted masks on camera-trap photos, one image at a time.

    Controls (attributes): ``image_slider`` (image index), ``conf_slider`` (minimum
    detection confidence), ``opacity_slider`` (mask opacity), ``category_select``
    (MegaDetector categories shown), ``model_select`` (which mask model). Output:
    ``view`` (PNG) and ``info`` (HTML line). Masks are computed for every detection of an
    image once per model, so the threshold and filter controls redraw instantly. The
    viewer opens on the first image with a detection above ``min_conf``.

    Args:
      detections: ``megadetector.DetectionsFile`` or a list of its ``ImageEntry``; images
        whose entry has a ``failure`` are left out.
      images_dir: folder the entries' ``file`` paths are relative to.
      models: display name -> mask model (see the module docstring), in menu order.
      min_conf, opacity: initial control values.
      max_side: photos are shown (and segmented) at most this many pixels on a side.
    """

    def __init__(
        self,
        detections: megadetector.DetectionsFile | Sequence[megadetector.ImageEntry],
        images_dir: str | Path,
        models: Mapping[str, Any],
        min_conf: float = 0.2,
        opacity: float = 0.5,
        max_side: int = 1024,
    ):
        entries = getattr(detections, "images", detections)
        self.entries = [e for e in entries if e.failure is None]
        if not self.entries:
            raise ValueError("No usable images in the detections (every entry has a failure).")
        if not models:
            raise ValueError("Give at least one mask model.")
        self.images_dir, self.models, self.max_side = Path(images_dir), dict(models), max_side
        self._images: OrderedDict[int, np.ndarray] = OrderedDict()
        self._masks: dict[tuple[str, int], np.ndarray] = {}
        self.errors: dict[int, str] = {}  # image index -> why it could not be read
        self._build_controls(min_conf, opacity)
        self.image_slider.value = self._first_with_detections()
        self.refresh()

    def _build_controls(self, min_conf: float, opacity: float) -> None:
        categories = sorted({d.category for e in self.entries for d in e.detections})
        style = {"description_width": "initial"}
        self.image_slider = w.IntSlider(value=0, min=0, max=len(self.entries) - 1)
        self.image_slider.description = "image"
        self.conf_slider = w.FloatSlider(value=min_conf, min=0.0, max=1.0, step=0.05, style=style)
        self.conf_slider.description = "min confidence"
        self.opacity_slider = w.FloatSlider(value=opacity, min=0.0, max=1.0, step=0.05)
        self.opacity_slider.description = "mask opacity"
        self.category_select = w.SelectMultiple(
            options=categories, value=tuple(categories), description="categories", rows=3
        )
        self.model_select = w.Dropdown(options=list(self.models), description="model")
        self.view, self.info = w.Image(format="png"), w.HTML()
        for control in self.controls:
            control.observe(self._on_change, names="value")
        top = w.HBox([self.image_slider, self.model_select])
        middle = w.HBox([self.conf_slider, self.opacity_slider, self.category_select])
        self.widget = w.VBox([top, middle, self.view, self.info])

    def _first_with_detections(self) -> int:
        """Index of the first image with a detection above the threshold (else 0)."""
        threshold = self.conf_slider.value
        hits = (
            i for i, e in enumerate(self.entries) if any(d.conf >= threshold for d in e.detections)
        )
        return next(hits, 0)

    @property
    def controls(self) -> list[w.ValueWidget]:
        return [
            self.image_slider,
            self.conf_slider,
            self.opacity_slider,
            self.category_select,
            self.model_select,
        ]

    @property
    def entry(self) -> megadetector.ImageEntry:
        return self.entries[self.image_slider.value]

    def _on_change(self, _change: dict) -> None:
        self.refresh()

    def image(self, index: int | None = None) -> np.ndarray:
        """The photo at display size, ``uint8 [h, w, 3]`` (a few are kept decoded)."""
        index = self.image_slider.value if index is None else index
        if index not in self._images:
            self._images[index] = self._load(index)
            while len(self._images) > _IMAGE_CACHE:
                self._images.popitem(last=False)
        self._images.move_to_end(index)
        return self._images[index]

    def _load(self, index: int) -> np.ndarray:
        """Decodes and shrinks photo ``index``; an unreadable file gives a grey placeholder
        and its reason in ``errors``."""
        try:
            photo = iwildcam.load_rgb(self.images_dir / self.entries[index].file)
        except iwildcam.ImageReadError as exc:
            self.errors[index] = str(exc)
            return np.full((240, 320, 3), 96, np.uint8)
        return viz.resize_max_side(photo, self.max_side)

    def masks(self, index: int | None = None, model: str | None = None) -> np.ndarray:
        """bool ``[N, h, w]`` masks of every detection of image ``index`` by ``model`` (a
        name in ``models``); the controls' current image and model by default."""
        index = self.image_slider.value if index is None else index
        model = self.model_select.value if model is None else model
        if (model, index) not in self._masks:
            boxes = [d.box for d in self.entries[index].detections]
            boxes = np.array(boxes, np.float32).reshape(-1, 4)
            self._masks[model, index] = model_masks(self.models[model], self.image(index), boxes)
        return self._masks[model, index]

    def shown(self, index: int | None = None) -> list[int]:
        """Indices (into image ``index``'s detections; the current image by default)
        passing the threshold and category filter."""
        entry = self.entry if index is None else self.entries[index]
        wanted = set(self.category_select.value)
        return [
            i
            for i, d in enumerate(entry.detections)
            if d.conf >= self.conf_slider.value and d.category in wanted
        ]

    def render(self, index: int | None = None, model: str | None = None) -> np.ndarray:
        """A picture: the shown masks tinted (higher confidence on top) and boxed. By
        default the controls' image and model; ``index`` / ``model`` draw another without
        touching the controls."""
        index = self.image_slider.value if index is None else index
        detections = self.entries[index].detections
        order = sorted(self.shown(index), key=lambda i: detections[i].conf)
        image = self.image(index)
        masks = self.masks(index, model)[order] if order else np.zeros((0, *image.shape[:2]), bool)
        boxes = np.array([detections[i].box for i in order], np.float32).reshape(-1, 4)
        labels = [f"{detections[i].category} {detections[i].conf:.2f}" for i in order]
        colors = [viz.color(i) for i in order]
        return viz.overlay_masks(
            image, masks, boxes, self.opacity_slider.value, labels=labels, colors=colors
        )

    def compare(
        self, models: Sequence[str], count: int = 4, zoom: float | None = 0.15
    ) -> tuple[list, list[str]]:
        """``(tiles, titles)`` for ``viz.contact_sheet(..., ncols=len(models))``: the first
        ``count`` images with a shown detection, one row each, drawn by every model of
        ``models`` (names in ``models``) side by side. With ``zoom`` each tile is cut to
        the shown boxes' union grown by that share of its side (masks are small in camera
        trap photos); None keeps the whole photo. The controls are not changed."""
        unknown = [name for name in models if name not in self.models]
        if unknown:
            raise ValueError(f"unknown model names {unknown}; known: {list(self.models)}")
        rows = [i for i in range(len(self.entries)) if self.shown(i)][:count]
        tiles, titles = [], []
        for i in rows:
            boxes = np.array([self.entries[i].detections[k].box for k in self.shown(i)])
            union = [*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0)]
            for name in models:
                tile = self.render(i, name)
                tiles.append(tile if zoom is None else viz.crop_box(tile, union, zoom))
                titles.append(f"{self.entries[i].key}: {name}")
        return tiles, titles

    def refresh(self) -> None:
        """Redraws ``view`` and ``info`` from the current control values."""
        picture = self.render()
        self.view.value = viz.encode_png(picture)
        entry, shown = self.entry, self.shown()
        problem = self.errors.get(self.image_slider.value)
        self.info.value = html.escape(
            f"{entry.file}: {len(shown)} of {len(entry.detections)} detections shown "
            f"(model: {self.model_select.value})" + (f" - {problem}" if problem else "")
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class BoxPicker:
    """Draw boxes with two range sliders and see their masks.

    ``y_range`` / ``x_range`` set the draft box (fractions of the image height / width,
    drawn in white); ``add_button`` appends it to ``boxes`` and segments all boxes with
    ``mask_fn``; ``clear_button`` removes them. ``info`` lists the boxes as numbers to
    paste into code.

    Args:
      image: ``uint8 [H, W, 3]`` RGB.
      mask_fn: ``(image, boxes [N, 4]) -> [N, H, W]`` probabilities or bool, e.g.
        ``Predictor.predict``; or a ``Predictor``-like object (see the module docstring).
      boxes: initial boxes ``[N, 4]`` normalized, or None.
      opacity: mask opacity.
      max_side: the image is shown (and segmented) at most this many pixels on a side.
    """

    def __init__(self, image: np.ndarray, mask_fn: Any, boxes=None, opacity=0.5, max_side=768):
        self.image = viz.resize_max_side(np.asarray(image, np.uint8), max_side)
        self.mask_fn, self.opacity = mask_fn, float(opacity)
        self._boxes = [
            list(map(float, b))
            for b in np.asarray([] if boxes is None else boxes, np.float32).reshape(-1, 4)
        ]
        self._masks = np.zeros((0, *self.image.shape[:2]), bool)
        slider = dict(min=0.0, max=1.0, step=0.01, continuous_update=False)
        self.y_range = w.FloatRangeSlider(
            value=(0.25, 0.75), description="y: top, bottom", **slider
        )
        self.x_range = w.FloatRangeSlider(
            value=(0.25, 0.75), description="x: left, right", **slider
        )
        for control in (self.y_range, self.x_range):
            control.style.description_width = "initial"
            control.observe(lambda _change: self.refresh(), names="value")
        self.add_button, self.clear_button = (
            w.Button(description="add box"),
            w.Button(description="clear"),
        )
        self.add_button.on_click(self.add_box)
        self.clear_button.on_click(self.clear)
        self.view, self.info = w.Image(format="png"), w.HTML()
        buttons = w.HBox([self.add_button, self.clear_button])
        self.widget = w.VBox([self.y_range, self.x_range, buttons, self.view, self.info])
        self._segment()

    @property
    def boxes(self) -> np.ndarray:
        """float32 ``[N, 4]``: the added boxes, normalized ``[ymin, xmin, ymax, xmax]``."""
        return np.array(self._boxes, np.float32).reshape(-1, 4)

    @property
    def masks(self) -> np.ndarray:
        """bool ``[N, h, w]``: masks of ``boxes`` on the (display-size) image."""
        return self._masks

    @property
    def draft_box(self) -> list[float]:
        (ymin, ymax), (xmin, xmax) = self.y_range.value, self.x_range.value
        return [float(ymin), float(xmin), float(ymax), float(xmax)]

    def add_box(self, _button: Any = None) -> None:
        """Appends the draft box and re-segments."""
        self._boxes.append(self.draft_box)
        self._segment()

    def clear(self, _button: Any = None) -> None:
        """Removes every box."""
        self._boxes = []
        self._segment()

    def _segment(self) -> None:
        self._masks = model_masks(self.mask_fn, self.image, self.boxes)
        self.refresh()

    def render(self) -> np.ndarray:
        """Masks and boxes of ``boxes`` plus the draft box in white."""
        picture = viz.overlay_masks(self.image, self._masks, self.boxes, self.opacity)
        return viz.draw_boxes(picture, [self.draft_box], colors=[(255, 255, 255)])

    def refresh(self) -> None:
        self.view.value = viz.encode_png(self.render())
        rows = ",<br>".join(f"[{', '.join(f'{v:.3f}' for v in b)}]" for b in self._boxes)
        draft = ", ".join(f"{v:.3f}" for v in self.draft_box)
        self.info.value = f"draft: [{draft}]<br>boxes = [<br>{rows}<br>]"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
