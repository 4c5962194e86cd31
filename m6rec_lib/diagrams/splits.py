"""Diagrams of how purchases are split in time for evaluation (notebook 01).

:func:`time_split` draws the course's global time split next to the leave-last-basket-out protocol
of much of the literature, on one time axis, so that the leak of the second is visible: a customer's
test basket is predicted by a model that trained on other customers' later purchases.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from m6rec_lib.diagrams import COLORS, arrow, box, canvas, finish

_WIDTH, _LEFT, _RIGHT = 11.0, 1.9, 10.7


def _x(t: pd.Timestamp, start: pd.Timestamp, end: pd.Timestamp) -> float:
    """Inches from the left edge for moment ``t`` on an axis running from ``start`` to ``end``."""
    return _LEFT + (t - start) / (end - start) * (_RIGHT - _LEFT)


def time_split(data_start: str = "2009-12-01", val_start: str = "2011-10-01",
               test_start: str = "2011-11-01", end: str = "2011-12-10", *,
               leave_last_out: bool = True) -> Figure:
    """The global time split (top) and, optionally, leave-last-basket-out (bottom).

    Top: every invoice before ``val_start`` trains; each returning customer's first basket in
    ``[val_start, test_start)`` is a validation target and their first basket in ``[test_start, end)``
    a test target, each predicted from everything that customer bought before it. Bottom: each
    customer's own last basket is the test target, at a different date per customer, and the other
    customers' later purchases (red) are in training. The three customers are illustrations, not data.
    """
    t0, tv, tt, t1 = (pd.Timestamp(x) for x in (data_start, val_start, test_start, end))
    if not t0 < tv < tt < t1:
        raise ValueError(f"need data_start < val_start < test_start < end, got {data_start}, {val_start}, "
                         f"{test_start}, {end}")
    height = 6.0 if leave_last_out else 3.2
    fig, ax = canvas(_WIDTH, height)
    x = lambda t: _x(pd.Timestamp(t), t0, t1)  # noqa: E731 - a local shorthand

    def timeline(y: float) -> None:
        ax.plot([_LEFT, _RIGHT], [y, y], color="0.4", lw=1)
        for year in range(t0.year, t1.year + 1):
            for month in (1, 7):
                t = pd.Timestamp(year=year, month=month, day=1)
                if t0 <= t <= t1:
                    ax.plot([x(t)] * 2, [y - 0.05, y + 0.05], color="0.4", lw=1)
                    ax.text(x(t), y - 0.1, t.strftime("%Y-%m"), ha="center", va="top", fontsize=7)

    # ---- the course's split
    y = height - 0.3
    ax.text(0.1, y, "global time split (this course)", fontsize=10, fontweight="bold", va="center")
    box(ax, x(t0), y - 0.75, x(tv) - x(t0), 0.45, "training: every invoice of every customer", "model")
    box(ax, x(tv), y - 0.75, x(tt) - x(tv), 0.45, "val", "accent", fontsize=8)
    box(ax, x(tt), y - 0.75, x(t1) - x(tt), 0.45, "test", "task", fontsize=8)
    customers = [("customer A", [0.05, 0.3, 0.55, 0.8, 0.95], x(tv + 0.45 * (tt - tv))),
                 ("customer B", [0.5, 0.9], x(tt + 0.5 * (t1 - tt)))]
    for k, (name, history, tx) in enumerate(customers):
        yy = y - 1.15 - 0.38 * k
        ax.text(0.1, yy, name, fontsize=8, va="center")
        for f in history:
            ax.plot(x(t0 + f * (tv - t0)), yy, "o", color="0.3", ms=4)
        ax.plot(tx, yy, "*", color="black", ms=10)
        arrow(ax, (x(t0 + history[-1] * (tv - t0)) + 0.1, yy), (tx - 0.12, yy), color="0.5")
    ax.text(x(tv) - 0.1, y - 2.0, "* = the basket to predict, from every earlier purchase of that "
            "customer; nothing after the first val day trains", fontsize=8, ha="right", va="center")
    timeline(y - 2.35)

    if leave_last_out:
        y2 = y - 3.0
        ax.text(0.1, y2, "leave-last-basket-out (common in papers)", fontsize=10, fontweight="bold",
                va="center")
        for k, last in enumerate([0.35, 0.62, 0.9]):
            yy = y2 - 0.45 - 0.38 * k
            ax.text(0.1, yy, f"customer {'CDE'[k]}", fontsize=8, va="center")
            tl = t0 + last * (t1 - t0)
            ax.plot([x(t0), x(tl)], [yy, yy], color=COLORS["model"], lw=6, solid_capstyle="butt")
            ax.plot(x(tl), yy, "*", color="black", ms=10)
            if k == 0:  # other customers' purchases after C's test moment are in training: the future
                box(ax, x(tl) + 0.12, yy - 0.14, _RIGHT - x(tl) - 0.12, 0.28,
                    "D's and E's later purchases train the model that predicts C: the future leaks in",
                    "warn", fontsize=7.5)
        ax.text(_LEFT, y2 - 1.55, "orange = training lines of that customer; * = their own last basket, "
                "the test target", fontsize=8, va="center")
        timeline(y2 - 1.85)
    return finish(fig)
