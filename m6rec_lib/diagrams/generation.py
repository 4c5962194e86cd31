"""Diagrams of notebook 09: the prefix tree that constrains decoding, and the semantic-ID pipeline.

- :func:`prefix_tree` draws a trie from a few paths (token strings of product names, or the codes
  of semantic IDs): shared prefixes are drawn once, each leaf carries its product's name.
- :func:`semantic_id_pipeline` draws how a product gets its semantic ID and how a customer's next
  product is generated from it.
"""

from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure

from . import arrow, box, canvas, finish

__all__ = ["prefix_tree", "semantic_id_pipeline"]


def _tree(paths: Sequence[Sequence[str]]) -> tuple[list[tuple[int, ...]], dict[tuple[str, ...], int]]:
    """The distinct prefixes of ``paths`` (as tuples, in first-seen order) and each one's depth."""
    nodes: dict[tuple[str, ...], int] = {(): 0}
    for path in paths:
        for d in range(1, len(path) + 1):
            nodes.setdefault(tuple(path[:d]), d)
    return list(nodes), nodes


def prefix_tree(paths: Sequence[Sequence[str]], leaf_labels: Sequence[str], *,
                level_names: Sequence[str] | None = None, title: str | None = None,
                root_label: str = "start") -> Figure:
    """A prefix tree drawn left to right: one column per position, one row per leaf.

    ``paths``: per leaf, the labels of its edges from the root (e.g. ``["JUMBO", " BAG", " RED"]``
    or ``["12", "40", "7", "0"]``); paths sharing a prefix share its nodes. ``leaf_labels``: the
    text written next to each leaf (a product's name). ``level_names``: an optional heading per
    column (e.g. "level 1", ..., "collision digit").
    """
    if len(paths) != len(leaf_labels):
        raise ValueError(f"{len(paths)} paths but {len(leaf_labels)} leaf labels")
    if not paths or len(paths) > 12:
        raise ValueError("draw between 1 and 12 paths; a diagram of more is unreadable")
    depth = max(len(p) for p in paths)
    col_w, row_h = 1.55, 0.5
    width = 1.6 + col_w * depth + 3.6
    height = 0.9 + row_h * len(paths) + (0.4 if level_names else 0)
    fig, ax = canvas(width, height, title=title)
    # a node's row is the mean row of the leaves below it
    rows: dict[tuple[str, ...], list[int]] = {}
    for r, path in enumerate(paths):
        for d in range(len(path) + 1):
            rows.setdefault(tuple(path[:d]), []).append(r)
    top = height - 0.5 - (0.4 if level_names else 0)

    def where(prefix: tuple[str, ...]) -> tuple[float, float]:
        r = sum(rows[prefix]) / len(rows[prefix])
        return 0.9 + col_w * len(prefix), top - r * row_h

    nodes, _ = _tree(paths)
    for prefix in nodes:
        x, y = where(prefix)
        if prefix:
            px, py = where(prefix[:-1])
            arrow(ax, (px + (0.95 if prefix[:-1] else 0.45), py), (x - 0.05, y), color="0.45")
            kind = "accent" if len(prefix) < depth else "task"
            box(ax, x - 0.05, y - 0.16, 1.0, 0.32, prefix[-1], kind, fontsize=8)
        else:
            box(ax, x - 0.55, y - 0.16, 1.0, 0.32, root_label, "input", fontsize=8)
    for r, (path, label) in enumerate(zip(paths, leaf_labels)):
        x, y = where(tuple(path))
        ax.text(x + 1.05, y, label, ha="left", va="center", fontsize=8)
    if level_names:
        for d, name in enumerate(level_names[:depth]):
            ax.text(0.9 + col_w * (d + 1) + 0.45, height - 0.35, name, ha="center", va="center",
                    fontsize=8, color="0.3", style="italic")
    return finish(fig)


def semantic_id_pipeline(sizes: Sequence[int] = (64, 64, 64), collision_size: int | None = None) -> Figure:
    """From product text to a semantic ID, and from a customer's history to the next product's ID.

    ``sizes``: the codebook sizes of the levels; ``collision_size``: the collision digit's range.
    """
    fig, ax = canvas(12.5, 4.4, title="Semantic IDs: built once from text, generated per customer")
    # top row: the catalogue, once
    box(ax, 0.2, 2.9, 1.9, 0.8, "product text\n\"JUMBO BAG RED\"", "input")
    box(ax, 2.6, 2.9, 1.9, 0.8, "sentence encoder\n(MiniLM, 384-d)", "frozen")
    levels = " -> ".join(f"k-means {s}" for s in sizes)
    box(ax, 5.0, 2.9, 3.5, 0.8, f"residual k-means\n{levels}", "accent", fontsize=8)
    digit = f" (0..{collision_size - 1})" if collision_size else ""
    box(ax, 9.0, 2.9, 3.3, 0.8, f"codes + collision digit{digit}\n= a unique semantic ID", "task", fontsize=8)
    arrow(ax, (2.1, 3.3), (2.6, 3.3))
    arrow(ax, (4.5, 3.3), (5.0, 3.3), "embedding")
    arrow(ax, (8.5, 3.3), (9.0, 3.3), "codes")
    # bottom row: per customer
    box(ax, 0.2, 0.5, 1.9, 0.9, "history\n(item IDs, as the sum\nof their codes)", "input", fontsize=8)
    box(ax, 2.6, 0.5, 2.2, 0.9, "causal transformer\n(reads the history)", "model")
    box(ax, 5.3, 0.5, 3.0, 0.9, "decoder: code 1, code 2,\ncode 3, digit, one at a time", "model", fontsize=8)
    box(ax, 8.8, 0.5, 3.5, 0.9, "beam search in the trie\nof valid IDs = the top-K list", "accent", fontsize=8)
    arrow(ax, (2.1, 0.95), (2.6, 0.95))
    arrow(ax, (4.8, 0.95), (5.3, 0.95), "state")
    arrow(ax, (8.3, 0.95), (8.8, 0.95))
    arrow(ax, (10.6, 2.9), (10.6, 1.4), "the trie")
    ax.text(0.2, 3.85, "once per catalogue", fontsize=8, color="0.35", style="italic")
    ax.text(0.2, 1.55, "per customer", fontsize=8, color="0.35", style="italic")
    return finish(fig)
