"""Diagrams of what the lessons build, drawn in code (matplotlib), so that nothing is downloaded.

One module per topic (``diagrams.splits``, ``diagrams.attention``, ...); each public function draws
one diagram and returns its ``matplotlib.figure.Figure``. This module holds the few drawing
primitives they share, so that every diagram of the course looks alike:

    fig, ax = canvas(10, 3)
    box(ax, 0.5, 1, 2, 1, "history\\n(text)", "input")
    arrow(ax, (2.5, 1.5), (3.5, 1.5))
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

COLORS = {
    "input": "#dde8f6",      # data and inputs
    "model": "#fbe3c8",      # models and trained parts
    "frozen": "#e6e6e6",     # frozen, shared or cached parts
    "task": "#e2f0d9",       # tasks, outputs
    "accent": "#eadcf4",     # the thing the diagram is about
    "warn": "#f8d7d3",       # what is left out, leaks, misses
}


def canvas(width: float, height: float, *, title: str | None = None) -> tuple[Figure, plt.Axes]:
    """A blank figure of ``width`` x ``height`` inches whose data coordinates are inches too."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=11)
    return fig, ax


def box(ax: plt.Axes, x: float, y: float, w: float, h: float, text: str = "", kind: str = "input",
        *, fontsize: float = 9, color: str | None = None, **text_kw) -> FancyBboxPatch:
    """A rounded box with centred text; ``kind`` picks its colour from :data:`COLORS`."""
    if kind not in COLORS and color is None:
        raise ValueError(f"kind must be one of {sorted(COLORS)}, got {kind!r}")
    patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04,rounding_size=0.08",
                           fc=color or COLORS[kind], ec="0.35", lw=1)
    ax.add_patch(patch)
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, **text_kw)
    return patch


def arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float], text: str = "",
          *, color: str = "0.3", style: str = "->", fontsize: float = 8) -> None:
    """An arrow from ``start`` to ``end``, with an optional label at its middle."""
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle=style, color=color, lw=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.08, text, ha="center",
                va="bottom", fontsize=fontsize, color=color)


def finish(fig: Figure) -> Figure:
    """Tighten the layout and return the figure, detached from pyplot.

    A notebook shows it by leaving the call last in a cell; detaching it means the inline backend
    does not show it a second time.
    """
    fig.tight_layout()
    plt.close(fig)
    return fig
