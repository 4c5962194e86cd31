"""Attention, drawn: who may look at whom (the masks), and where a trained model does look.

- :func:`attention_masks` -- the causal mask of a GPT next to the mask of a prefix LM (M6), on the
  tokens of a short behaviour text: a filled cell means "this query may attend to this key".
- :func:`attention_weights` -- one layer's attention weights on a real text (rows: queries,
  columns: keys), averaged over heads or for one head.
- :func:`attention_flow` -- one attention head as boxes and arrows: queries, keys and values,
  the softmax of their scaled products, the weighted sum.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from . import COLORS, arrow, box, canvas, finish

EXAMPLE_TOKENS = ("<bos>", "A", " customer", " from", " France", ".", " Last", " week", " bought",
                  " JUMBO", " BAG", " x10", ".", " Now", " buys", " PAPER", " NAPKINS")
"""A short behaviour text cut into tokens (notebook 03's format); the prefix ends at " buys"."""


def mask_matrix(n: int, prefix_length: int = 0) -> np.ndarray:
    """(n, n) bool: query t may attend to key s when s <= t, or when both lie in the prefix."""
    t = np.arange(n)
    allowed = t[None, :] <= t[:, None]
    allowed |= (t[None, :] < prefix_length) & (t[:, None] < n)
    return allowed


def _grid(ax: plt.Axes, allowed: np.ndarray, tokens: Sequence[str], title: str, prefix_length: int = 0) -> None:
    cmap = ListedColormap(["white", COLORS["model"]])
    ax.imshow(allowed.astype(int), cmap=cmap, vmin=0, vmax=1)
    n = len(tokens)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels([t.strip() or "_" for t in tokens], rotation=90, fontsize=7)
    ax.set_yticklabels([t.strip() or "_" for t in tokens], fontsize=7)
    ax.set_xticks(np.arange(-0.5, n), minor=True)
    ax.set_yticks(np.arange(-0.5, n), minor=True)
    ax.grid(which="minor", color="0.8", lw=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("key (position looked at)", fontsize=8)
    ax.set_ylabel("query (position computing)", fontsize=8)
    ax.set_title(title, fontsize=9.5)
    if prefix_length:
        ax.axvline(prefix_length - 0.5, color="0.25", lw=1.2, ls="--")
        ax.axhline(prefix_length - 0.5, color="0.25", lw=1.2, ls="--")


def attention_masks(tokens: Sequence[str] = EXAMPLE_TOKENS, prefix_length: int | None = None) -> Figure:
    """Two masks on the same tokens: causal (GPT) and prefix LM (M6; the history is the prefix).

    ``prefix_length``: tokens in the prefix (default: up to and including " buys").
    """
    tokens = list(tokens)
    if prefix_length is None:
        prefix_length = next((i + 1 for i in range(len(tokens) - 1, -1, -1) if tokens[i].strip() == "buys"),
                             len(tokens) // 2)
    if not 0 < prefix_length <= len(tokens):
        raise ValueError(f"prefix_length must be in 1..{len(tokens)}, got {prefix_length}")
    n = len(tokens)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    _grid(axes[0], mask_matrix(n), tokens, "causal mask (GPT): each token sees itself and the past")
    _grid(axes[1], mask_matrix(n, prefix_length), tokens,
          "prefix-LM mask (M6): the history sees all of itself;\nthe continuation stays causal", prefix_length)
    fig.suptitle("Attention masks: a filled cell lets the query (row) attend to the key (column)", fontsize=10.5)
    return finish(fig)


def attention_weights(weights: np.ndarray, tokens: Sequence[str], title: str = "attention weights",
                      max_tokens: int = 40) -> Figure:
    """A heat map of (T, T) attention weights over ``tokens`` (the last ``max_tokens`` of them)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] != len(tokens):
        raise ValueError(f"weights must be (T, T) for the {len(tokens)} tokens, got shape {w.shape}")
    keep = slice(max(0, len(tokens) - max_tokens), len(tokens))
    w, tokens = w[keep, keep], list(tokens)[keep]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(w, cmap="Oranges", vmin=0, vmax=max(float(w.max()), 1e-9))
    ax.set_xticks(range(len(tokens)))
    ax.set_yticks(range(len(tokens)))
    ax.set_xticklabels([t.strip() or "_" for t in tokens], rotation=90, fontsize=6.5)
    ax.set_yticklabels([t.strip() or "_" for t in tokens], fontsize=6.5)
    ax.set_xlabel("key", fontsize=8)
    ax.set_ylabel("query", fontsize=8)
    ax.set_title(title, fontsize=9.5)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return finish(fig)


def attention_flow() -> Figure:
    """One head of attention for one query position, as boxes and arrows."""
    fig, ax = canvas(10.5, 3.6, title="One attention head, for the token at position t")
    box(ax, 0.2, 1.4, 1.5, 0.9, "token vectors\nx_1 .. x_t", "input")
    box(ax, 2.4, 2.55, 1.6, 0.7, "query  q_t = x_t W_Q", "model", fontsize=8)
    box(ax, 2.4, 1.5, 1.6, 0.7, "keys  k_s = x_s W_K", "model", fontsize=8)
    box(ax, 2.4, 0.45, 1.6, 0.7, "values  v_s = x_s W_V", "model", fontsize=8)
    box(ax, 4.7, 1.9, 2.0, 1.0, "scores q_t . k_s / sqrt(d)\n+ mask (-inf for s > t)", "accent", fontsize=8)
    box(ax, 7.2, 1.9, 1.2, 1.0, "softmax\nweights a_ts", "accent", fontsize=8)
    box(ax, 8.8, 1.0, 1.5, 1.0, "output\nsum_s a_ts v_s", "task", fontsize=8)
    for y in (2.9, 1.85, 0.8):
        arrow(ax, (1.7, 1.85), (2.4, y))
    arrow(ax, (4.0, 2.9), (4.7, 2.6))
    arrow(ax, (4.0, 1.85), (4.7, 2.2))
    arrow(ax, (6.7, 2.4), (7.2, 2.4))
    arrow(ax, (8.4, 2.4), (9.3, 2.0))
    arrow(ax, (4.0, 0.8), (8.8, 1.3))
    return finish(fig)


__all__ = ["EXAMPLE_TOKENS", "mask_matrix", "attention_masks", "attention_weights", "attention_flow"]
