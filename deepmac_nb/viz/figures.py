"""PNG bytes and files of images and figures, Jupyter display, contact sheets, tables.

Figures are built without ``pyplot`` (as in ``deepmac_nb.evaluation.plots``), so nothing
leaks into pyplot's global state; notebooks show them after ``%matplotlib inline`` or
through ``show``.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure

from deepmac_nb import _io


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
    display_png(obj)


def display_png(obj: Figure | np.ndarray):
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


def png_image(fig: Figure):
    """The Figure as an ``IPython.display.Image`` (to update a display in place)."""
    from IPython.display import Image

    return Image(data=figure_png(fig))


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython or plain Python)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
