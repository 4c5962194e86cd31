"""The cold-start picture of notebook 08: products new in year 2, and who can score them.

:func:`cold_start` draws the year cut on a time axis with a few products' first sales, the
candidates a fair evaluation offers at one customer's moment (products already on sale), and the
two ways to score a product: an ID model (a vector learned from year-1 purchases: none for a new
product) and a text model (a vector computed from the product's description: any product has one).
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from m6rec_lib.diagrams import COLORS, arrow, box, canvas, finish

#: (product, first sale as a fraction of the time axis): illustrations, not data
_PRODUCTS = [("JUMBO BAG RED RETROSPOT", 0.05), ("REGENCY CAKESTAND 3 TIER", 0.2),
             ("new: JUMBO BAG VINTAGE LEAF", 0.55), ("new: PAPER CHAIN KIT LONDON", 0.68),
             ("new: CHRISTMAS TREE LIGHTS", 0.9)]


def cold_start(cut: str = "2010-12-01", start: str = "2009-12-01", end: str = "2011-12-10",
               moment: float = 0.78) -> Figure:
    """Year 1 trains, year 2 brings new products; a customer's moment at ``moment`` of the axis.

    ``cut``, ``start``, ``end``: the year cut and the data's first and last day (labels of the
    axis); ``moment`` (0..1): where the drawn customer's basket falls on the axis (after the cut).
    """
    t0, tc, t1 = (pd.Timestamp(x) for x in (start, cut, end))
    if not t0 < tc < t1:
        raise ValueError(f"need start < cut < end, got {start}, {cut}, {end}")
    fc = (tc - t0) / (t1 - t0)
    if not fc < moment < 1:
        raise ValueError(f"moment must fall after the cut ({fc:.2f}) and before 1, got {moment}")
    width, height = 12.6, 5.4
    fig, ax = canvas(width, height)
    left, right = 3.1, 9.3
    x = lambda f: left + f * (right - left)  # noqa: E731 - a local shorthand
    top = height - 0.35
    box(ax, x(0), top - 0.45, x(fc) - x(0), 0.45, "year 1: ID models train here", "model", fontsize=8)
    box(ax, x(fc), top - 0.45, x(1) - x(fc), 0.45, "year 2: ~600 new products", "task", fontsize=8)
    for f, t in ((0, t0), (fc, tc), (1, t1)):
        ax.text(x(f), top - 0.55, f"{t:%Y-%m-%d}", fontsize=7, ha="center", va="top", color="0.35")
    rows_top = top - 1.15
    ax.plot([x(moment)] * 2, [rows_top - 0.52 * len(_PRODUCTS) + 0.2, top - 0.75], color="black", lw=1.2, ls="--")
    ax.text(x(moment) + 0.08, top - 0.85, "the moment we recommend\n(a customer's basket)", fontsize=7.5,
            va="center")
    ax.text(left - 0.1, rows_top + 0.3, "first sale (dot), then on sale:", fontsize=7.5, ha="right",
            va="center", color="0.35")
    for k, (name, first) in enumerate(_PRODUCTS):
        y = rows_top - 0.52 * k
        new = first > fc
        on_sale = first < moment
        ax.text(left - 0.1, y, name, fontsize=7.5, ha="right", va="center")
        ax.plot([x(first), x(1)], [y, y], color=COLORS["frozen"] if not new else "#9bc48a", lw=5,
                solid_capstyle="butt")
        ax.plot(x(first), y, "o", color="0.25", ms=4)
        if new:
            verdict = "candidate: on sale before the moment" if on_sale else "not a candidate: first sold later"
            ax.text(x(1) + 0.1, y, verdict, fontsize=7, va="center", color="0.2" if on_sale else "#b03a2e")
    # who can score a new product
    y = 0.15
    box(ax, 0.3, y, 3.1, 0.62, "ID model: one vector per product,\nlearned from year-1 purchases", "model",
        fontsize=7.5)
    arrow(ax, (3.45, y + 0.31), (3.95, y + 0.31))
    box(ax, 4.0, y, 3.1, 0.62, "a new product has no purchases:\nno vector, one score for all of them", "warn",
        fontsize=7.5)
    box(ax, 8.2, y, 3.6, 0.62, "text model: description -> encoder ->\na vector for any product, new or old",
        "accent", fontsize=7.5)
    return finish(fig)
