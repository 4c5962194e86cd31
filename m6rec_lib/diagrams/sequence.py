"""Diagrams of the sequence models of notebook 05: what attention may see, what each position learns.

- :func:`causal_attention`: the attention mask over a left-padded row of item IDs, next to the two
  training targets (the next item at every position, the next basket at a basket's last line);
- :func:`invoice_protocol`: the published protocol of notebook 05's companion (each invoice a
  sequence, leave-one-out) and the two orders of the lines inside an invoice.
"""

from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import COLORS, arrow, box, canvas, finish

__all__ = ["causal_attention", "invoice_protocol"]

COLORS_TEXT = {"item": "#2a6fb0", "basket": "#3d7a2a"}    # the arrows of the two targets


def causal_attention(ids: Sequence[int] = (0, 0, 3, 7, 7, 12), baskets: Sequence[int] = (0, 0, 1, 1, 1, 2),
                     next_basket: Sequence[int] = (5, 9)) -> Figure:
    """Left: the mask of one left-padded sequence (query rows, key columns; 0 = padding).
    Right: the same sequence with its two targets.

    ``ids``: item IDs, oldest first, padding (0) on the left; ``baskets``: the basket of each
    position (ignored on padding); ``next_basket``: the items of the basket after the last one.
    """
    ids, baskets = list(ids), list(baskets)
    n = len(ids)
    if len(baskets) != n:
        raise ValueError(f"ids and baskets must have one entry per position, got {n} and {len(baskets)}")
    cell = 0.42
    fig, ax = canvas(12.5, 4.6)
    x0, y0 = 1.0, 0.6                                            # bottom-left corner of the mask grid
    ax.text(x0 + n * cell / 2, y0 + n * cell + 0.75, "attention mask: may position t look at position j?",
            ha="center", fontsize=10)
    for t in range(n):                                           # rows: queries, top = first position
        for j in range(n):
            allowed = (j <= t and ids[j] != 0) or j == t
            color = COLORS["accent"] if allowed and ids[t] != 0 else COLORS["frozen"] if allowed else "white"
            ax.add_patch(Rectangle((x0 + j * cell, y0 + (n - 1 - t) * cell), cell, cell, fc=color, ec="0.6", lw=0.6))
        ax.text(x0 - 0.12, y0 + (n - 1 - t) * cell + cell / 2, str(ids[t]) if ids[t] else "pad", ha="right",
                va="center", fontsize=8)
        ax.text(x0 + t * cell + cell / 2, y0 + n * cell + 0.12, str(ids[t]) if ids[t] else "pad", ha="center",
                va="bottom", fontsize=8)
    ax.text(x0 - 0.75, y0 + n * cell / 2, "query t", rotation=90, ha="center", va="center", fontsize=9)
    ax.text(x0 + n * cell / 2, y0 + n * cell + 0.45, "key j", ha="center", fontsize=9)
    legend = [(COLORS["accent"], "j <= t and j real: attended"), (COLORS["frozen"], "padding row sees itself only"),
              ("white", "future or padding: -inf")]
    for k, (color, text) in enumerate(legend):
        ax.add_patch(Rectangle((x0 + n * cell + 0.35, y0 + n * cell - 0.35 - 0.45 * k), 0.3, 0.3, fc=color, ec="0.6"))
        ax.text(x0 + n * cell + 0.75, y0 + n * cell - 0.2 - 0.45 * k, text, va="center", fontsize=8)

    # the two targets, on the real positions of the sequence
    real = [p for p in range(n) if ids[p] != 0]
    groups = sorted({baskets[p] for p in real})
    sx, sy, w = 6.4, 2.1, 0.95
    ax.text(sx + len(real) * w / 2 + 0.6, 4.1, "two targets from one pass", ha="center", fontsize=10)
    for k, p in enumerate(real):
        box(ax, sx + k * w, sy, w - 0.1, 0.5, str(ids[p]), "input", fontsize=9)
    for k in range(len(real) - 1):                                # next item at every position
        ax.annotate("", xy=(sx + (k + 1) * w + 0.2, sy + 0.55), xytext=(sx + k * w + 0.3, sy + 0.55),
                    arrowprops=dict(arrowstyle="->", color=COLORS_TEXT["item"], connectionstyle="arc3,rad=-0.6"))
    ax.text(sx, sy + 1.15, "next item: every position predicts the line after it (teacher forcing)",
            fontsize=8, color=COLORS_TEXT["item"])
    for g, b in enumerate(groups):                                # a bracket under each basket, and its target
        members = [k for k, p in enumerate(real) if baskets[p] == b]
        a, e = sx + members[0] * w, sx + members[-1] * w + w - 0.1
        ax.plot([a, a, e, e], [sy - 0.05, sy - 0.15, sy - 0.15, sy - 0.05], color="0.4", lw=1)
        ax.text(a, sy - 0.38, f"basket {g + 1}", fontsize=8)
        target = [ids[p] for p in real if baskets[p] == groups[g + 1]] if g + 1 < len(groups) else list(next_basket)
        centre = e - (w - 0.1) / 2                               # the basket's last line
        box(ax, centre - 0.42, sy - 1.35, 0.84, 0.45, "{" + ", ".join(map(str, dict.fromkeys(target))) + "}",
            "task", fontsize=8)
        arrow(ax, (centre, sy - 0.18), (centre, sy - 0.88), color=COLORS_TEXT["basket"])
    ax.text(sx, sy - 1.6, "next basket: the last line of each basket predicts the next basket\n"
            "(its new items, as a target distribution): the question the evaluation asks",
            fontsize=8, color=COLORS_TEXT["basket"], va="top")
    return finish(fig)


def invoice_protocol() -> Figure:
    """The invoice protocol: every invoice is a sequence; its last line is the test target, the one
    before it the validation target; the lines of an invoice share one timestamp, so their order is
    a choice (file order, or shuffled as the published preprocessing leaves it)."""
    fig, ax = canvas(12, 4.0)
    lines = ["LUNCH BAG\nRED", "LUNCH BAG\nPINK", "LUNCH BAG\nBLACK", "JAM JAR\nSET", "CAKE\nCASES", "TEA\nTOWEL"]
    kinds = ["input", "input", "input", "input", "accent", "task"]
    shuffled = [3, 0, 5, 2, 4, 1]
    for row, (title, order) in enumerate((("file order (as in the raw file): neighbours are often variants of one product",
                                           range(6)),
                                          ("shuffled order (the published script's hash order): no such neighbours",
                                           shuffled))):
        y = 2.7 - 1.45 * row
        ax.text(0.2, y + 0.85, title, fontsize=9)
        for k, i in enumerate(order):
            box(ax, 0.2 + k * 1.45, y, 1.3, 0.7, lines[i], kinds[k], fontsize=7.5)
        ax.text(0.2 + 6 * 1.45 + 0.1, y + 0.35, "one invoice,\none timestamp", fontsize=8, va="center")
    legend = [("input", "training lines"), ("accent", "validation item (second to last)"),
              ("task", "test item (last), ranked against the whole catalogue")]
    for k, (kind, text) in enumerate(legend):
        x = 0.2 + 3.2 * k
        box(ax, x, 0.2, 0.35, 0.3, "", kind)
        ax.text(x + 0.45, 0.35, text, fontsize=8, va="center")
    return finish(fig)
