"""Diagrams of lesson 12 (bring your own data): the whole path, and the two splits side by side."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import COLORS, arrow, box, canvas, finish


def pipeline() -> Figure:
    """From your table to a results table with intervals: what ``m6rec_lib.byod.run_byod`` does."""
    fig, ax = canvas(12.5, 3.4, title="Bring your own data: one path from a table to results with intervals")
    box(ax, 0.2, 1.3, 1.9, 0.9, "your table\nuser, item, time\n(+ item text)", "input")
    box(ax, 2.5, 1.3, 1.6, 0.9, "checks\nload_table", "input")
    box(ax, 4.5, 1.3, 1.9, 0.9, "split\nleave-one-out\nor temporal", "accent")
    box(ax, 6.9, 2.2, 2.3, 0.9, "baselines\ntuned on validation", "model")
    box(ax, 6.9, 0.4, 2.3, 0.9, "SASRec\nsettings from the data\nbest epoch on validation", "model")
    box(ax, 9.6, 1.3, 1.3, 0.9, "test\nscored once", "task")
    box(ax, 11.2, 1.3, 1.15, 0.9, "results\n± 95%\nintervals", "task")
    arrow(ax, (2.1, 1.75), (2.5, 1.75))
    arrow(ax, (4.1, 1.75), (4.5, 1.75))
    arrow(ax, (6.4, 1.9), (6.9, 2.6))
    arrow(ax, (6.4, 1.6), (6.9, 0.85))
    arrow(ax, (9.2, 2.6), (9.6, 1.95))
    arrow(ax, (9.2, 0.85), (9.6, 1.55))
    arrow(ax, (10.9, 1.75), (11.2, 1.75))
    ax.text(5.45, 0.95, "the validation targets\nchoose; the test\ntargets only report", ha="center", va="top",
            fontsize=8, color="0.3")
    return finish(fig)


def _cell(ax, x: float, y: float, kind: str, w: float = 0.42, h: float = 0.42) -> None:
    ax.add_patch(Rectangle((x, y), w, h, fc=COLORS[kind], ec="0.4", lw=0.8))


def splits() -> Figure:
    """Leave-one-out (per user: last = test, one before = validation) next to the course's global time cuts.

    Each row is a user, each square an interaction at its time. On the left, the targets sit at each
    user's own end, so another user's training interactions can come later than a test moment (the
    red frame): the model has seen that moment's future. On the right, one cut in time for everybody;
    each returning user's first step after a cut is the target.
    """
    fig, ax = canvas(12.5, 4.1, title="Two splits of the same interactions")
    users = [  # (name, times of the interactions on a 0..5 axis)
        ("user A", [0.2, 0.8, 1.3, 1.9, 2.5]),
        ("user B", [0.5, 1.6, 2.9, 3.6, 4.3, 4.7]),
        ("user C", [1.0, 2.2]),
        ("user D", [0.1, 0.6, 1.1, 3.9, 4.5]),
    ]
    legend = [("training", "input"), ("validation target", "task"), ("test target", "accent")]
    for panel, (x0, title) in enumerate([(0.9, "leave-one-out (the literature)"), (7.2, "temporal (the course)")]):
        ax.text(x0 + 2.5, 3.55, title, ha="center", fontsize=10)
        cut_val, cut_test = 3.4, 4.2
        for row, (name, times) in enumerate(users):
            y = 2.75 - row * 0.7
            ax.text(x0 - 0.15, y + 0.21, name, ha="right", va="center", fontsize=8)
            for i, t in enumerate(times):
                from_end = len(times) - 1 - i
                if panel == 0:
                    kind = "input" if len(times) < 3 or from_end > 1 else ("task" if from_end == 1 else "accent")
                else:
                    first_val = next((s for s in times if cut_val <= s < cut_test), None)
                    first_test = next((s for s in times if s >= cut_test), None)
                    kind = "input" if t < cut_val else "task" if t == first_val else "accent" if t == first_test \
                        else "frozen"
                    if kind != "input" and times[0] >= cut_val:
                        kind = "frozen"               # no history before the cut: not evaluated
                _cell(ax, x0 + t, y, kind)
        if panel == 0:
            a_test = x0 + users[0][1][-1] + 0.21
            ax.plot([a_test, a_test], [0.45, 3.3], color="#c0392b", lw=1.0, ls=":")
            ax.add_patch(Rectangle((x0 + 2.8, 1.97), 1.3, 0.58, fill=False, ec="#c0392b", lw=1.6, ls="--"))
            ax.text(x0 + 3.45, 0.4, "B trains on what came after\nA's test moment", ha="center", va="top",
                    fontsize=7, color="#c0392b")
            ax.text(x0 + 2.75, 1.35 + 0.21, "too short: trains only", fontsize=7, va="center", color="0.35")
        else:
            for cut, label in ((cut_val, "validation\nstarts"), (cut_test, "test\nstarts")):
                ax.plot([x0 + cut, x0 + cut], [0.45, 3.3], color="0.25", lw=1.2, ls=":")
                ax.text(x0 + cut, 0.4, label, ha="center", va="top", fontsize=7)
        ax.annotate("", xy=(x0 + 5.2, 0.5), xytext=(x0, 0.5), arrowprops=dict(arrowstyle="->", color="0.5"))
        ax.text(x0 + 5.25, 0.5, "time", va="center", fontsize=7, color="0.4")
    for i, (label, kind) in enumerate(legend + [("not a target", "frozen")]):
        _cell(ax, 0.9 + i * 2.6, -0.45, kind, 0.3, 0.3)
        ax.text(1.3 + i * 2.6, -0.3, label, va="center", fontsize=8)
    ax.set_ylim(-0.6, 4.1)
    return finish(fig)


def length_histogram(lengths, max_len: int, *, title: str = "How long the training histories are") -> Figure:
    """Histogram of training sequence lengths, with the history length the settings rule chose."""
    import numpy as np
    import matplotlib.pyplot as plt

    lengths = np.asarray(lengths)
    fig, ax = plt.subplots(figsize=(7.5, 3.0))
    ax.hist(lengths, bins=min(60, max(10, len(np.unique(lengths)))), color=COLORS["input"], ec="0.45")
    ax.axvline(max_len, color="#c0392b", lw=1.5, ls="--")
    share = float((lengths <= max_len).mean())
    ax.set_xlim(right=max(ax.get_xlim()[1], max_len * 1.05))
    ax.set_xlabel("interactions in a user's training history")
    ax.set_ylabel("users")
    ax.set_title(f"{title}\n(dashed: max_len = {max_len}; {share:.0%} of the histories are read whole)", fontsize=10)
    return finish(fig)
