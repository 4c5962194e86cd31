"""Diagrams of the softmax and of what its normaliser runs over (notebook 02).

- :func:`softmax_steps`: scores -> exponentials -> probabilities, for one user.
- :func:`seed_denominators`: the seed article's score table, with the row a user's softmax must sum
  over next to the cells the article summed instead.
- :func:`sampled_softmax`: the full softmax sums over every item; the sampled softmax over the
  positive and a few negatives drawn from a proposal, with the logQ correction.
- :func:`temperature_curves`, :func:`gradient_per_item`, :func:`bias_vs_popularity`: what temperature
  does to a softmax, a sampled gradient against the exact one, and the item biases a loss learns
  (plots of numbers the lesson computes).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from m6rec_lib.diagrams import COLORS, box, canvas, finish


def softmax_steps(scores: Sequence[float], labels: Sequence[str] | None = None,
                  title: str | None = None) -> Figure:
    """Three bar charts: the scores ``q``, ``exp(q)``, and ``exp(q) / sum exp(q)`` (sums to 1).

    ``scores``: (n,) one user's scores; ``labels``: (n,) names of the items (default "item 1"...).
    """
    q = np.asarray(scores, dtype=float).ravel()
    if q.size == 0 or not np.isfinite(q).all():
        raise ValueError("scores must be a non-empty list of finite numbers")
    labels = list(labels) if labels is not None else [f"item {i + 1}" for i in range(len(q))]
    if len(labels) != len(q):
        raise ValueError(f"{len(labels)} labels for {len(q)} scores")
    e = np.exp(q - q.max()) * np.exp(q.max())
    p = e / e.sum()
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
    panels = [("scores q(i, u)", q, COLORS["input"]), ("exp q(i, u): positive", e, COLORS["model"]),
              ("P(i | u) = exp q / sum of exp q", p, COLORS["task"])]
    for ax, (name, values, color) in zip(axes, panels):
        ax.bar(labels, values, color=color, edgecolor="0.35")
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_ylim(0, max(values.max() * 1.25, 1e-9))
        ax.spines[["top", "right"]].set_visible(False)
    axes[2].text(0.98, 0.95, f"sum = {p.sum():.3f}", transform=axes[2].transAxes, ha="right", va="top",
                 fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return finish(fig)


def seed_denominators(scores: np.ndarray, claimed_cells: Sequence[tuple[int, int]], user: int = 0,
                      title: str | None = None) -> Figure:
    """The score table with two outlines: the row a user's softmax normalises over (green) and the
    cells the seed article summed in that user's denominator (red, hatched).

    ``scores``: (n_users, n_items); ``claimed_cells``: 0-based (user, item) pairs; ``user``: 0-based.
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or not 0 <= user < s.shape[0]:
        raise ValueError(f"need a 2-D score table and a user row in it, got shape {s.shape} and user {user}")
    n_u, n_i = s.shape
    fig, ax = plt.subplots(figsize=(1.3 * n_i + 2.4, 0.8 * n_u + 1.3))
    ax.set_xlim(-0.6, n_i + 0.1)
    ax.set_ylim(n_u + 0.1, -0.7)
    ax.axis("off")
    for u in range(n_u):
        ax.text(-0.1, u + 0.5, f"user {u + 1}", ha="right", va="center", fontsize=9)
        for i in range(n_i):
            ax.add_patch(Rectangle((i, u), 1, 1, fc="white", ec="0.6"))
            ax.text(i + 0.5, u + 0.5, f"e^{s[u, i]:g}", ha="center", va="center", fontsize=10)
    for i in range(n_i):
        ax.text(i + 0.5, -0.15, f"item {i + 1}", ha="center", va="bottom", fontsize=9)
    ax.add_patch(Rectangle((0.04, user + 0.04), n_i - 0.08, 0.92, fc=COLORS["task"], ec="green",
                           lw=2.5, alpha=0.5))
    for u, i in claimed_cells:
        ax.add_patch(Rectangle((i + 0.1, u + 0.1), 0.8, 0.8, fc="none", ec="#c0392b", lw=2.5, hatch="//"))
    handles = [Patch(fc=COLORS["task"], ec="green", label=f"user {user + 1}'s softmax sums this row"),
               Patch(fc="none", ec="#c0392b", hatch="//", label=f"the article's denominator for user {user + 1}")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=1, fontsize=8,
              frameon=False)
    ax.set_title(title or "Which exponentials go into the denominator?", fontsize=10)
    return finish(fig)


def sampled_softmax(n_items: int = 24, n_sampled: int = 5, positive: int = 6, seed: int = 0) -> Figure:
    """Full softmax (every item in the normaliser) above sampled softmax (the positive and
    ``n_sampled`` negatives drawn from a popularity proposal ``Q``, each logit corrected by
    ``- log Q(j)``). Items are drawn more popular to the right, as the proposal's shading shows."""
    if not 0 <= positive < n_items or not 1 <= n_sampled < n_items:
        raise ValueError("need 0 <= positive < n_items and 1 <= n_sampled < n_items")
    rng = np.random.default_rng(seed)
    q = np.arange(1, n_items + 1, dtype=float) ** 1.5
    q /= q.sum()
    others = np.delete(np.arange(n_items), positive)
    drawn = rng.choice(others, size=n_sampled, replace=False, p=q[others] / q[others].sum())
    cell = 9.0 / n_items
    fig, ax = canvas(11, 3.6)
    for row, (y, name) in enumerate([(2.5, "full softmax"), (1.0, "sampled softmax")]):
        ax.text(0.1, y + cell / 2, name, fontsize=9, va="center", fontweight="bold")
        for i in range(n_items):
            x = 1.8 + i * cell
            in_sum = row == 0 or i == positive or i in drawn
            kind = "accent" if i == positive else ("model" if in_sum else "frozen")
            box(ax, x, y, cell * 0.85, cell * 0.85, "", kind)
            if row == 1:
                ax.add_patch(Rectangle((x, y - 0.32), cell * 0.85, 0.22 * q[i] / q.max(), fc="0.5"))
    ax.text(1.8, 3.3, "every one of the n items is scored and summed: O(n) per example", fontsize=8)
    ax.text(1.8, 1.75, f"the positive (purple) and {n_sampled} negatives drawn from Q (orange); "
            "logits s_j - log Q(j): O(m) per example", fontsize=8)
    ax.text(1.8, 0.45, "Q(j): the proposal, here popularity (bar height); popular items are drawn "
            "more often, and the -log Q(j) correction makes up for it", fontsize=8)
    return finish(fig)


def temperature_curves(scores: Sequence[float], temperatures: Sequence[float] = (0.1, 0.5, 1.0, 2.0, 10.0)) -> Figure:
    """Left: the softmax of ``scores`` (n,) divided by each temperature, items in score order.
    Right: its entropy (nats) over a range of temperatures, with the uniform distribution's ``log n``."""
    s = np.sort(np.asarray(scores, dtype=float).ravel())[::-1]
    if s.size < 2 or any(t <= 0 for t in temperatures):
        raise ValueError("need at least two scores and positive temperatures")

    def dist(t: float) -> np.ndarray:
        e = np.exp((s - s.max()) / t)
        return e / e.sum()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4))
    for t in temperatures:
        ax1.plot(np.arange(1, len(s) + 1), dist(t), marker="o", label=f"T = {t:g}")
    ax1.set(xlabel="item (by score)", ylabel="P(i)", title=f"the same scores at {len(temperatures)} temperatures")
    ax1.legend(fontsize=8)
    grid = np.geomspace(0.02, 50, 60)
    entropy = [float(-(p[p > 0] * np.log(p[p > 0])).sum()) for p in map(dist, grid)]
    ax2.semilogx(grid, entropy)
    ax2.axhline(np.log(len(s)), ls="--", c="grey", label=f"uniform: log {len(s)}")
    ax2.set(xlabel="temperature T", ylabel="entropy (nats)", title="entropy grows with T")
    ax2.legend(fontsize=8)
    return finish(fig)


def gradient_per_item(exact: Sequence[float], estimates: dict[str, Sequence[float]],
                      skip_first: bool = True) -> Figure:
    """The exact softmax gradient per item (thick grey) against sampled estimates, items in the
    order given (e.g. more popular to the right). ``skip_first`` leaves out item 0 (padding)."""
    start = 1 if skip_first else 0
    exact = np.asarray(exact, dtype=float)
    x = np.arange(start, len(exact))
    fig, ax = plt.subplots(figsize=(11, 3.0))
    ax.plot(x, exact[start:], "k-", lw=3, alpha=0.4, label="exact (full softmax)")
    for name, grad in estimates.items():
        grad = np.asarray(grad, dtype=float)
        if grad.shape != exact.shape:
            raise ValueError(f"estimate {name!r} has shape {grad.shape}, the exact gradient {exact.shape}")
        ax.plot(x, grad[start:], marker=".", label=name)
    ax.set(xlabel="item (more popular to the right)", ylabel="d loss / d score", title="gradient per item")
    ax.legend(fontsize=8)
    return finish(fig)


def bias_vs_popularity(log_popularity: Sequence[float], biases: dict[str, Sequence[float]]) -> Figure:
    """One scatter per model: each item's learned bias against log(times bought as a target).

    ``log_popularity``: (n,) per item; ``biases``: model name -> (n,) learned biases of the same items.
    """
    x = np.asarray(log_popularity, dtype=float)
    if not biases:
        raise ValueError("give at least one model's biases")
    fig, axes = plt.subplots(1, len(biases), figsize=(4 * len(biases), 3.0), squeeze=False)
    for ax, (name, b) in zip(axes[0], biases.items()):
        b = np.asarray(b, dtype=float)
        if b.shape != x.shape:
            raise ValueError(f"{name!r}: {b.shape} biases for {x.shape} items")
        ax.scatter(x, b, s=2, alpha=0.3)
        ax.set(title=name, xlabel="log(times bought as a target)", ylabel="learned item bias")
    return finish(fig)
