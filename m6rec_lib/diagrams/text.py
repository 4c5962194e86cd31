"""Diagrams of behaviour written as text (notebooks 00 and 03).

- :func:`course_picture`: the M6-Rec idea as the map of the course: purchases written as text, one
  generative model pretrained on it, every task served by that model.
- :func:`history_segments`: one customer's history as the segments the serializer writes (profile,
  one per invoice, prompt, candidate), each with its token count.
"""

from __future__ import annotations

import textwrap
from typing import Sequence

from matplotlib.figure import Figure

from m6rec_lib.diagrams import arrow, box, canvas, finish

COURSE_TASKS = (
    "ranking / next item (05)",
    "click prediction: option tuning (07)",
    "zero-shot cold items (08)",
    "generation (09)",
    "cheap serving (10)",
)


def course_picture(tasks: Sequence[str] = COURSE_TASKS) -> Figure:
    """Purchases -> text -> one pretrained model -> many tasks, with the notebook of each step."""
    if not tasks:
        raise ValueError("give at least one task")
    fig, ax = canvas(10, 4.4, title="The course as one picture")
    box(ax, 0.1, 2.9, 2.6, 1.0, "purchases\n(01 interaction matrix)", "input")
    box(ax, 0.1, 1.5, 2.6, 1.0, "behaviour as text\n(03 serializer, tokenizer)", "input")
    box(ax, 3.4, 1.5, 2.6, 2.4, "one generative model\npretrained on text\n(02 softmax, 04 GPT,\n06 contrastive)",
        "model")
    step = 2.4 / len(tasks)
    for i, task in enumerate(tasks):
        y = 3.9 - (i + 1) * step + 0.1
        box(ax, 6.8, y, 3.1, step - 0.2, task, "task")
        arrow(ax, (6.05, 2.7), (6.75, y + (step - 0.2) / 2))
    arrow(ax, (1.4, 2.85), (1.4, 2.55))
    arrow(ax, (2.75, 2.0), (3.35, 2.0))
    box(ax, 0.1, 0.2, 9.8, 0.8, "11 the full recommender: retrieval -> ranking -> explanation, "
        "recommend(customer, k)", "accent")
    return finish(fig)


_KINDS = {"profile": "input", "invoice": "frozen", "prompt": "accent", "candidate": "task"}


def history_segments(segments: Sequence[str], kinds: Sequence[str], token_counts: Sequence[int] | None = None,
                     *, width: float = 11.0, chars_per_line: int = 32, max_lines: int = 4,
                     title: str | None = None) -> Figure:
    """A history as a row of segment boxes, wrapped onto lines: what the model reads, piece by piece.

    ``segments``: (n,) the texts (e.g. ``HistoryText.segments`` plus a candidate); ``kinds``: (n,) one
    of ``profile``, ``invoice``, ``prompt``, ``candidate`` (the colour); ``token_counts``: (n,) tokens
    per segment, written under each box. Long segments are shortened to ``max_lines`` lines.
    """
    if len(segments) != len(kinds) or (token_counts is not None and len(token_counts) != len(segments)):
        raise ValueError(f"segments, kinds and token_counts need one entry each; got {len(segments)}, "
                         f"{len(kinds)} and {None if token_counts is None else len(token_counts)}")
    unknown = sorted(set(kinds) - set(_KINDS))
    if unknown:
        raise ValueError(f"unknown segment kinds {unknown}; use {sorted(_KINDS)}")
    box_w, gap, box_h = 2.5, 0.25, 1.15
    per_row = max(1, int((width - 0.2 + gap) // (box_w + gap)))
    n_rows = -(-len(segments) // per_row)
    height = n_rows * (box_h + 0.55) + (0.5 if title else 0.2)
    fig, ax = canvas(width, height, title=title)
    for k, (text, kind) in enumerate(zip(segments, kinds)):
        row, col = divmod(k, per_row)
        x = 0.1 + col * (box_w + gap)
        y = height - (0.5 if title else 0.2) - (row + 1) * (box_h + 0.55) + 0.5
        lines = textwrap.wrap(text.strip(), chars_per_line) or [repr(text)]
        if len(lines) > max_lines:
            lines = lines[:max_lines - 1] + [lines[max_lines - 1][: chars_per_line - 3] + "..."]
        box(ax, x, y, box_w, box_h, "\n".join(lines), _KINDS[kind], fontsize=7, family="monospace")
        label = kind if token_counts is None else f"{kind}: {token_counts[k]} tokens"
        ax.text(x + box_w / 2, y - 0.08, label, ha="center", va="top", fontsize=7.5)
        if col < per_row - 1 and k < len(segments) - 1:
            arrow(ax, (x + box_w + 0.02, y + box_h / 2), (x + box_w + gap - 0.02, y + box_h / 2))
    return finish(fig)
