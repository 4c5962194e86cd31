"""Multi-segment late interaction, its segments and its cache (notebook 10).

:func:`late_interaction` draws one request as the late-interaction scorer of
:mod:`m6rec_lib.serving` computes it: the request cut into segments, the lower ``L'`` layers run
on each segment alone (so their outputs can be cached and reused by any request containing the
same segment), the upper ``L - L'`` layers on the concatenation, per request. The full model, for
comparison, runs all ``L`` layers on the whole text for every request.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from m6rec_lib.diagrams import arrow, box, canvas, finish

#: (label, role, cached in the drawing): one returning customer, two past invoices, one candidate
_SEGMENTS = [
    ("profile\n<bos> A customer\nfrom France.", "profile", False),
    ("time words\nLast Tuesday\nmorning bought", "time", True),
    ("invoice 1\nlines", "lines", True),
    ("time words\nYesterday\nbought", "time", False),
    ("invoice 2\nlines", "lines", True),
    ("prompt\nNow buys", "prompt", True),
    ("candidate\nproduct text", "candidate", True),
]


def late_interaction(split: int = 3, n_layers: int = 4) -> Figure:
    """One request through a late-interaction scorer with ``L' = split`` of ``L = n_layers`` layers.

    Green tags mark segments found in the cache (computed for an earlier request, or offline for
    the catalogue's products); red tags the ones computed now. Which ones hit is an illustration:
    notebook 10 measures the hit rates on a replayed stream of requests.
    """
    if not 0 < split < n_layers:
        raise ValueError(f"split (L') must be in 1..{n_layers - 1} for {n_layers} layers, got {split}")
    width, height = 12.6, 7.4
    fig, ax = canvas(width, height)
    x0, w, gap = 0.25, 1.38, 0.12
    xs = [x0 + i * (w + gap) for i in range(len(_SEGMENTS))]
    xs[-1] += 0.35  # the candidate stands a little apart: it changes with every product scored
    y_seg, y_low, y_cache = 6.0, 4.55, 3.65
    ax.text(x0, 7.15, "one request = one customer at one moment + a slate of candidate products, cut into "
            "segments", fontsize=9.5, fontweight="bold", va="center")
    for (label, role, hit), x in zip(_SEGMENTS, xs):
        box(ax, x, y_seg, w, 0.85, label, "input", fontsize=7.5)
        arrow(ax, (x + w / 2, y_seg), (x + w / 2, y_low + 0.75))
        box(ax, x, y_low, w, 0.72, f"lower {split} layer{'s' if split > 1 else ''}\nthis segment alone\n"
            "(positions from 0)", "frozen", fontsize=7)
        tag = "cache hit" if hit else "computed now,\nthen cached"
        box(ax, x + 0.12, y_cache, w - 0.24, 0.55, tag, color="#d9efd3" if hit else "#f8d7d3", fontsize=7)
        arrow(ax, (x + w / 2, y_low), (x + w / 2, y_cache + 0.57))
        arrow(ax, (x + w / 2, y_cache), (x + w / 2, 2.85))
    ax.text(xs[-1] + w + 0.1, y_low + 0.36, "x 100\nproducts", fontsize=7.5, va="center")
    ax.text(xs[-1] + w + 0.1, y_cache + 0.27, "products:\nprecomputed\noffline", fontsize=7, va="center")
    right = xs[-1] + w
    box(ax, x0, 2.35, right - x0, 0.5, "+ a learned role embedding (profile, time, lines, prompt, candidate) and "
        "recency embedding (which invoice) per segment; then concatenate", "accent", fontsize=8)
    arrow(ax, ((x0 + right) / 2, 2.35), ((x0 + right) / 2, 1.75))
    upper = n_layers - split
    box(ax, x0, 1.0, right - x0, 0.75, f"upper {upper} layer{'s' if upper > 1 else ''} on the whole request "
        "(history, then each candidate attending to it): the only layers run per request", "model", fontsize=8.5)
    arrow(ax, ((x0 + right) / 2, 1.0), ((x0 + right) / 2, 0.55))
    box(ax, (x0 + right) / 2 - 1.6, 0.05, 3.2, 0.5, "head at the candidate's last token -> score", "task",
        fontsize=8)
    ax.text(right + 0.05, 0.3, f"full model: all {n_layers}\nlayers on the whole\ntext, every request",
            fontsize=7.5, va="center", color="0.3")
    return finish(fig)
