"""Training loss curves from TensorBoard event files, drawn once or live while training.

The event files are read with TensorBoard's own loader
(``tensorboard.backend.event_processing.event_file_loader``, TensorFlow's record reader
underneath): a file the train loop is still appending to is read up to its last complete
record, and a ``ScalarReader`` kept between reads picks up only what was appended since.
TensorFlow is imported when a file is first read, not when this module is imported.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from deepmac_nb.viz.figures import display_png, in_notebook, png_image, save_figure

LOSS_TAGS = ("total_loss", "mask_loss", "center_loss", "scale_loss", "offset_loss")


def _scalar(value) -> float | None:
    """The number in a ``Summary.Value`` whose tensor holds one number, else None.

    TensorBoard's loader turns legacy ``simple_value`` summaries into such tensors.
    """
    from tensorboard.util import tensor_util

    if not value.HasField("tensor"):
        return None
    array = tensor_util.make_ndarray(value.tensor)
    if array.size != 1 or array.dtype.kind not in "fiu":
        return None
    return float(array.reshape(-1)[0])


class ScalarReader:
    """Scalars of the ``events.out.tfevents.*`` files in ``log_dir/subdir``, read
    incrementally: each ``read()`` adds what was appended since the last one (and any new
    file, as after a resume), so a live curve does not re-read the whole history."""

    def __init__(self, log_dir: str | os.PathLike, subdir: str = "train"):
        self.folder = Path(log_dir) / subdir if subdir else Path(log_dir)
        self._loaders: dict[Path, Any] = {}
        self._found: dict[str, dict[int, float]] = {}

    def read(self) -> dict[str, list]:
        """``{tag: [(step, value), ...]}`` sorted by step, the last value kept for a step
        written twice (files in name order, i.e. creation time). Missing folder: ``{}``."""
        from tensorboard.backend.event_processing import event_file_loader

        for path in sorted(self.folder.glob("events.out.tfevents.*")):
            if path not in self._loaders:
                self._loaders[path] = event_file_loader.EventFileLoader(str(path))
            for event in self._loaders[path].Load():
                for value in event.summary.value:
                    number = _scalar(value)
                    if number is not None:
                        self._found.setdefault(value.tag, {})[int(event.step)] = number
        return {tag: sorted(steps.items()) for tag, steps in self._found.items()}


def read_scalars(log_dir: str | os.PathLike, subdir: str = "train") -> dict[str, list]:
    """Scalars of every ``events.out.tfevents.*`` file in ``log_dir/subdir``.

    Returns ``{tag: [(step, value), ...]}`` sorted by step, the last value kept for a
    step written twice (a resumed run). Missing folder: ``{}``.
    """
    return ScalarReader(log_dir, subdir).read()


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
    ``model_dir/train`` (every ``summary_interval`` steps), read every ``interval``
    seconds (only what was appended since the last read); in Jupyter one output is
    updated in place, elsewhere a line is printed.

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
        self._reader = ScalarReader(self.model_dir)

    def figure(self) -> Figure:
        """The current curves as a Figure."""
        scalars = self._reader.read()
        last = max((pts[-1][0] for pts in scalars.values() if pts), default=0)
        return plot_loss_curves(scalars, self.tags, title=f"{self.model_dir.name}: step {last}")

    def refresh(self) -> Figure:
        """Redraws the output (or prints the latest losses outside Jupyter)."""
        fig = self.figure()
        self.updates += 1
        if in_notebook():
            if self._handle is None:
                self._handle = display_png(fig)
            else:
                self._handle.update(png_image(fig))
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
