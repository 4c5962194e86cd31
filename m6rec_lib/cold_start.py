"""Evaluating recommendations of cold products fairly: what was on sale, when (notebook 08).

A **cold** product is one never sold in the training period (year 1 of :func:`m6rec_lib.data.year_cut_split`).
Ranking cold products for a customer at a moment has a trap: products first sold *after* that
moment could not have been shown, yet a full ranking over every cold product includes them, and a
score that counts sales before the moment gives them zero, so it "knows" which products exist yet.
:class:`CatalogueTimeline` keeps each product's first sale so that candidates can be restricted to
the products on sale at each customer's moment, and counts each product's sales before it.

Shapes follow the course's conventions: score matrices are ``(n_eval, n_items + 1)`` with column 0
the padding ID; ``-inf`` marks a product that is not a candidate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import DataError, EvalSet

__all__ = ["CatalogueTimeline", "standardise", "blend", "plot_few_shot"]

_NEVER = np.datetime64("2262-01-01", "ns")


@dataclass
class CatalogueTimeline:
    """Each product's first sale, which products are cold, and the lines from the cut on.

    ``first_sale``: (n_items + 1,) datetime64[ns], the first sale of each item ID (far future for an
    item never sold, and for the padding ID); ``is_cold``: (n_items + 1,) bool; ``dates``,
    ``items``: the lines from ``cut`` on, in time order (for :meth:`popularity_before`).
    """

    first_sale: np.ndarray
    is_cold: np.ndarray
    cut: pd.Timestamp
    dates: np.ndarray
    items: np.ndarray

    @classmethod
    def from_lines(cls, lines: pd.DataFrame, is_cold: np.ndarray, cut) -> "CatalogueTimeline":
        """From cleaned lines with an ``item`` column (item IDs of the split) and ``invoice_date``."""
        missing = [c for c in ("item", "invoice_date") if c not in lines.columns]
        if missing:
            raise DataError(f"lines lack column(s) {missing}; add item IDs with "
                            "lines.assign(item=split.items.ids(lines['stock_code']))")
        is_cold = np.asarray(is_cold, dtype=bool)
        first = lines[lines["item"] > 0].groupby("item")["invoice_date"].min()
        first_sale = np.full(len(is_cold), _NEVER, dtype="datetime64[ns]")
        first_sale[first.index.to_numpy()] = first.to_numpy()
        cut = pd.Timestamp(cut)
        later = lines[(lines["invoice_date"] >= cut) & (lines["item"] > 0)].sort_values("invoice_date", kind="stable")
        return cls(first_sale, is_cold, cut, later["invoice_date"].to_numpy("datetime64[ns]"),
                   later["item"].to_numpy(np.int64))

    @property
    def n_columns(self) -> int:
        return len(self.is_cold)

    def on_sale(self, eval_set: EvalSet) -> np.ndarray:
        """(n_eval, n_items + 1) bool: the product was sold at least once before the customer's moment."""
        moments = np.asarray(eval_set.moments).astype("datetime64[ns]")
        return self.first_sale[None, :] < moments[:, None]

    def cold_view(self, eval_set: EvalSet) -> EvalSet:
        """The eval set with cold targets only; customers without one are left out."""
        keep = [t[(t > 0)][self.is_cold[t[t > 0]]] for t in eval_set.targets]
        idx = np.flatnonzero([len(k) > 0 for k in keep])
        return EvalSet(eval_set.users[idx], [keep[i] for i in idx], eval_set.history,
                       [eval_set.sequences[i] for i in idx], eval_set.moments[idx],
                       name=f"{eval_set.name}, cold products")

    def only(self, scores: np.ndarray, eval_set: EvalSet, *, cold: bool = True, available: bool = True) -> np.ndarray:
        """A float64 copy of ``scores`` (n_eval, n_items + 1) with ``-inf`` outside the candidates.

        Candidates: the cold products (``cold``) among those on sale at each moment (``available``;
        ``available=False`` is the trap: every product, including those not sold yet).
        """
        S = np.array(scores, dtype=np.float64, copy=True)
        if S.shape != (len(eval_set), self.n_columns):
            raise ValueError(f"scores must be ({len(eval_set)}, {self.n_columns}), got {S.shape}")
        allowed = self.on_sale(eval_set) if available else np.ones(S.shape, dtype=bool)
        if cold:
            allowed &= self.is_cold[None, :]
        allowed[:, 0] = False
        S[~allowed] = -np.inf
        return S

    def popularity_before(self, eval_set: EvalSet) -> np.ndarray:
        """(n_eval, n_items + 1): lines of each product from the cut to just before each moment.

        One sweep over the lines in time order ("popularity of new products": what a shop knows at
        the moment, nothing later).
        """
        moments = np.asarray(eval_set.moments).astype("datetime64[ns]")
        out = np.zeros((len(eval_set), self.n_columns))
        counts, done = np.zeros(self.n_columns), 0
        for row in np.argsort(moments, kind="stable"):
            k = int(np.searchsorted(self.dates, moments[row], side="left"))
            if k > done:
                counts += np.bincount(self.items[done:k], minlength=self.n_columns)
                done = k
            out[row] = counts
        return out


def standardise(scores: np.ndarray) -> np.ndarray:
    """Per row, (s - mean) / std over the finite entries; ``-inf`` stays ``-inf``: (n, m) -> (n, m).

    Puts scores of different models on one scale before they are added (a row whose finite
    entries are all equal becomes 0).
    """
    S = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(S)
    X = np.where(finite, S, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a row without a finite entry
        mu = np.nanmean(X, axis=1, keepdims=True)
        sd = np.nanstd(X, axis=1, keepdims=True)
    mu, sd = np.nan_to_num(mu), np.nan_to_num(sd)
    return np.where(finite, (S - mu) / (sd + 1e-9), -np.inf)


def blend(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """``standardise(a) + weight * standardise(b)`` where ``a`` is finite (``-inf`` elsewhere).

    A product ``b`` cannot score (``-inf`` in ``b`` only) keeps its ``a`` score.
    """
    za, zb = standardise(a), standardise(b)
    return np.where(np.isfinite(za), za + weight * np.where(np.isfinite(zb), zb, 0.0), -np.inf)


def plot_few_shot(curve: pd.DataFrame, lines: dict[str, float], *, metric: str = "NDCG@10"):
    """The few-shot curve: an ID model's metric against purchases kept per new product, with the
    paired interval of its difference to a reference drawn around each point, and horizontal lines.

    ``curve``: indexed by the purchases kept (the x labels), columns ``value`` (the ID model's
    metric), ``diff``, ``low``, ``high`` (its paired difference to the reference and the interval);
    ``lines``: label -> value of each horizontal line (the first is drawn dashed: the reference).
    """
    import matplotlib.pyplot as plt

    missing = [c for c in ("value", "diff", "low", "high") if c not in curve.columns]
    if missing:
        raise ValueError(f"curve lacks columns {missing}")
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    x = np.arange(len(curve))
    ax.errorbar(x, curve["value"], yerr=[curve["diff"] - curve["low"], curve["high"] - curve["diff"]], marker="o",
                capsize=3, label="ID model with the first n purchases of each new product")
    for k, (label, value) in enumerate(lines.items()):
        ax.axhline(value, c=f"C{k + 1}", ls="--" if k == 0 else ":", label=label)
    ax.set_xticks(x, [str(i) for i in curve.index])
    ax.set(xlabel="purchase lines per new product in training", ylabel=f"{metric}, test cold products",
           title="Few-shot: ID model vs zero-shot text (bars: 95% interval of the difference)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig
