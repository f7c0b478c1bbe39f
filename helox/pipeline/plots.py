"""The report's figures as PNG files, drawn on bare matplotlib Figures (the Agg renderer).

No pyplot: nothing global is touched, so no display or backend setting is needed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from helox.common.io import atomic_path

log = logging.getLogger(__name__)

DPI = 110
SIZE = (6.4, 3.6)


def save_png(figure: Figure, path: str | os.PathLike) -> None:
    """Write `figure` to `path` as a PNG, atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    log.info("wrote %s", path)


def new_axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=SIZE, layout="constrained")
    axes = figure.subplots()
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    return figure, axes


def add_tokens_axis(axes: Axes, tokens_per_step: float) -> None:
    """A top axis reading the step axis in training tokens."""
    if tokens_per_step > 0:
        top = axes.secondary_xaxis(
            "top", functions=(lambda s: s * tokens_per_step, lambda t: t / tokens_per_step)
        )
        top.set_xlabel("tokens")


def note_no_data(axes: Axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)


def plot_series(
    path: str | os.PathLike,
    title: str,
    ylabel: str,
    series: Sequence[tuple[str, Sequence[float], Sequence[float], str]],
    tokens_per_step: float,
    log_y: bool = False,
) -> None:
    """Lines against steps (and tokens on top): each series is (label, steps, values, style)."""
    figure, axes = new_axes(title, "step", ylabel)
    drawn = False
    for label, steps, values, style in series:
        if len(steps):
            axes.plot(steps, values, style, label=label, linewidth=1.2, markersize=4)
            drawn = True
    if drawn:
        axes.legend(fontsize=8)
        if log_y:
            axes.set_yscale("log")
        add_tokens_axis(axes, tokens_per_step)
    else:
        note_no_data(axes, "not recorded by this run")
    save_png(figure, path)


def plot_bars(
    path: str | os.PathLike,
    title: str,
    xlabel: str,
    ylabel: str,
    labels: Sequence[str],
    values: Sequence[float],
    annotations: Sequence[str] | None = None,
    empty_message: str = "nothing to show",
) -> None:
    """One bar per label, each annotated (with its value unless `annotations` says otherwise)."""
    figure, axes = new_axes(title, xlabel, ylabel)
    if len(values):
        bars = axes.bar([str(label) for label in labels], values, color="#4c72b0")
        texts = annotations or [f"{value:,.0f}" for value in values]
        axes.bar_label(bars, labels=list(texts), fontsize=8, padding=2)
        axes.margins(y=0.15)
    else:
        note_no_data(axes, empty_message)
    save_png(figure, path)
