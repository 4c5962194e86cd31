"""Diagrams of notebook 06: the two towers of a retriever, and the in-batch negatives that train them.

- :func:`two_towers`: a user tower over the purchase history and an item tower over an item's ID
  and text, each projected to ``d_out`` dimensions and L2-normalised; the score is their cosine
  divided by the temperature;
- :func:`in_batch_negatives`: the ``b x b`` score matrix of a batch, positives on the diagonal,
  every other column a negative, and what the logQ correction subtracts.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import COLORS, arrow, box, canvas, finish

__all__ = ["two_towers", "in_batch_negatives"]


def two_towers(d_out: int = 128, temperature: float = 0.07) -> Figure:
    """The course's two-tower retriever, input at the bottom, score at the top."""
    fig, ax = canvas(11, 5.2)
    # user tower (left)
    box(ax, 0.3, 0.2, 4.2, 0.6, "history: item IDs, oldest first (left-padded)", "input")
    box(ax, 0.3, 1.2, 2.5, 0.8, "SASRec encoder: state\nafter the last item", "model")
    box(ax, 3.0, 1.2, 1.5, 0.8, "bag: mean over\nthe whole history", "model")
    box(ax, 0.9, 2.45, 3.0, 0.6, f"linear to {d_out}-d, then L2-normalise", "model")
    box(ax, 1.65, 3.45, 1.5, 0.55, "user vector u", "accent")
    arrow(ax, (1.55, 0.8), (1.55, 1.2))
    arrow(ax, (3.75, 0.8), (3.75, 1.2))
    arrow(ax, (1.55, 2.0), (2.1, 2.45))
    arrow(ax, (3.75, 2.0), (3.0, 2.45), "+")
    arrow(ax, (2.4, 3.05), (2.4, 3.45))
    ax.text(2.4, 4.95, "user tower", ha="center", fontsize=10)
    # item tower (right)
    box(ax, 6.3, 0.2, 1.9, 0.6, "item ID", "input")
    box(ax, 8.4, 0.2, 2.3, 0.6, "description tokens", "input")
    box(ax, 6.3, 1.2, 1.9, 0.8, "ID embedding", "model")
    box(ax, 8.4, 1.2, 2.3, 0.8, "mean of token\nembeddings", "model")
    box(ax, 7.0, 2.45, 3.0, 0.6, f"linear to {d_out}-d, then L2-normalise", "model")
    box(ax, 7.75, 3.45, 1.5, 0.55, "item vector v", "accent")
    arrow(ax, (7.25, 0.8), (7.25, 1.2))
    arrow(ax, (9.55, 0.8), (9.55, 1.2))
    arrow(ax, (7.25, 2.0), (8.0, 2.45), "+")
    arrow(ax, (9.55, 2.0), (9.0, 2.45))
    arrow(ax, (8.5, 3.05), (8.5, 3.45))
    ax.text(8.5, 4.95, "item tower (computed once per item)", ha="center", fontsize=10)
    # the score
    box(ax, 4.0, 4.35, 3.0, 0.55, f"score = u . v / {temperature:g}", "task")
    arrow(ax, (2.4, 4.0), (4.0, 4.6))
    arrow(ax, (8.5, 4.0), (7.0, 4.6))
    ax.text(5.5, 3.7, "the towers never see each other:\nretrieval = top-K of U V^T",
            ha="center", fontsize=8, color="0.3")
    return finish(fig)


def in_batch_negatives(b: int = 5) -> Figure:
    """A batch of ``b`` (customer, next item) pairs: score every customer against every item of the
    batch; row i's softmax must pick column i."""
    fig, ax = canvas(10, 4.2)
    cell, x0, y0 = 0.55, 2.2, 0.5
    for i in range(b):
        for j in range(b):
            color = COLORS["task"] if i == j else COLORS["warn"]
            ax.add_patch(Rectangle((x0 + j * cell, y0 + (b - 1 - i) * cell), cell, cell, fc=color, ec="0.5", lw=0.7))
            ax.text(x0 + j * cell + cell / 2, y0 + (b - 1 - i) * cell + cell / 2, f"s{i + 1}{j + 1}",
                    ha="center", va="center", fontsize=7)
        ax.text(x0 - 0.1, y0 + (b - 1 - i) * cell + cell / 2, f"customer {i + 1}", ha="right", va="center", fontsize=8)
        ax.text(x0 + i * cell + cell / 2, y0 + b * cell + 0.1, f"item {i + 1}", ha="center", va="bottom",
                fontsize=7, rotation=45)
    ax.text(x0 + b * cell / 2, y0 + b * cell + 0.75, "the batch is the catalogue", ha="center", fontsize=10)
    notes = [
        (COLORS["task"], "positive: the item this customer bought next"),
        (COLORS["warn"], "negative: another customer's item (popular items are here often)"),
    ]
    for k, (color, text) in enumerate(notes):
        ax.add_patch(Rectangle((5.6, 2.9 - 0.5 * k), 0.3, 0.3, fc=color, ec="0.5"))
        ax.text(6.0, 3.05 - 0.5 * k, text, va="center", fontsize=8)
    ax.text(5.6, 1.7, "loss of row i: cross-entropy of softmax(s_i1 .. s_ib) at column i\n"
            "(InfoNCE = notebook 02's softmax with the batch as catalogue)\n\n"
            "logQ correction: use s_ij - log Q(j), Q(j) = the chance that\n"
            "item j is among the batch's candidates", va="top", fontsize=8)
    return finish(fig)
