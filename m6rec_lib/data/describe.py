"""Describing a purchase log: repeat buying, new products, the long tail, baskets, catalogue growth.

The numbers a lesson quotes about the data (notebooks 00, 01 and 03) are computed here once, so
that every notebook says the same thing about the same lines, and the plots that show them are
drawn here, so that a notebook keeps its code for what it teaches. Every function takes the
cleaned lines of :func:`m6rec_lib.data.clean_transactions` (one row per invoice line, with
``customer_id``, ``stock_code``, ``description``, ``invoice``, ``invoice_date``) or an interaction
matrix of :func:`m6rec_lib.data.interaction_matrix`, and checks what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.figure import Figure

from m6rec_lib.data.retail import DataError


def _need(lines: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in lines.columns]
    if missing:
        raise DataError(f"{what} needs the columns {missing}, which these lines lack; pass the cleaned "
                        "lines of m6rec_lib.data.load_clean_lines() (or clean_transactions(raw)).")
    if len(lines) == 0:
        raise DataError(f"{what} got no lines; check the filter that produced them.")


def _close(fig: Figure) -> Figure:
    fig.tight_layout()
    plt.close(fig)
    return fig


# ------------------------------------------------------------------------------------ repeat buying

def repeat_flags(lines: pd.DataFrame) -> pd.Series:
    """(n_lines,) bool: the line's product was bought by the same customer in an *earlier* invoice.

    Lines of a customer's first invoice of a product are ``False``, including every line of the
    same moment (two invoices at one timestamp count as one moment)."""
    _need(lines, ["customer_id", "stock_code", "invoice_date"], "repeat_flags")
    first = lines.groupby(["customer_id", "stock_code"])["invoice_date"].transform("min")
    return (lines["invoice_date"] > first).rename("repeat")


def repeat_shares(lines: pd.DataFrame) -> pd.Series:
    """The share of repeat lines (:func:`repeat_flags`) over all lines, and over the lines of
    invoices after each customer's first one (a returning customer's later baskets)."""
    rep = repeat_flags(lines)
    later = lines["invoice_date"] > lines.groupby("customer_id")["invoice_date"].transform("min")
    return pd.Series({"all lines": float(rep.mean()),
                      "lines after the customer's first invoice": float(rep[later].mean())},
                     name="share of lines that repeat an earlier purchase")


# ------------------------------------------------------------------------------------ new products

@dataclass(frozen=True)
class NewProducts:
    """Products first sold on or after ``cut``: their stock codes and what they carry after it."""

    cut: pd.Timestamp
    codes: frozenset
    """Stock codes sold on or after ``cut`` and never before it."""
    line_share: float
    """Share of the lines on or after ``cut`` that are of such products."""
    product_share: float
    """Share of the products sold on or after ``cut`` that are such products."""
    n_before: int
    """Products sold before ``cut``."""
    n_after: int
    """Products sold on or after ``cut``."""


def new_products(lines: pd.DataFrame, cut: str | pd.Timestamp) -> NewProducts:
    """Which products are new at ``cut`` (never sold before it), and their share of later lines."""
    _need(lines, ["stock_code", "invoice_date"], "new_products")
    cut = pd.Timestamp(cut)
    before = lines["invoice_date"] < cut
    if before.all() or not before.any():
        raise DataError(f"cut {cut.date()} does not fall inside the lines ({lines['invoice_date'].min().date()} "
                        f"to {lines['invoice_date'].max().date()}); choose a date between them.")
    old, after = set(lines.loc[before, "stock_code"]), lines.loc[~before, "stock_code"]
    new = set(after) - old
    return NewProducts(cut, frozenset(new), float(after.isin(new).mean()), len(new) / after.nunique(),
                       len(old), int(after.nunique()))


def monthly_new_share(lines: pd.DataFrame) -> pd.Series:
    """Per month (a ``Period`` index): the share of lines whose product was first sold that month.

    The first month is left out: everything is new in it."""
    _need(lines, ["stock_code", "invoice_date"], "monthly_new_share")
    month = lines["invoice_date"].dt.to_period("M")
    first = lines.groupby("stock_code")["invoice_date"].transform("min").dt.to_period("M")
    share = (first == month).groupby(month).mean()
    return share.iloc[1:].rename("share of lines of products launched that month")


def plot_monthly_new_share(share: pd.Series) -> Figure:
    """The monthly share of :func:`monthly_new_share` as a line."""
    fig, ax = plt.subplots(figsize=(10, 3.0))
    share.plot(ax=ax, marker="o")
    ax.set(ylabel="share of lines", xlabel="", title="Lines of products first sold that month")
    return _close(fig)


# ------------------------------------------------------------------------------------ the long tail

@dataclass(frozen=True)
class Popularity:
    """How purchases spread over products, from a users x (items + 1) matrix (column 0 = padding)."""

    buyers: np.ndarray
    """(n_items,) distinct buyers per product, most popular first."""
    items_per_customer: np.ndarray
    """(n_users,) distinct products per customer."""

    def head_share(self, fraction: float = 0.1) -> float:
        """Share of all customer-product pairs held by the ``fraction`` most popular products."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        k = max(1, int(fraction * len(self.buyers)))
        return float(self.buyers[:k].sum() / self.buyers.sum())


def popularity(matrix: sp.spmatrix) -> Popularity:
    """Buyers per product and products per customer of an interaction matrix (counts or 0/1)."""
    if not sp.issparse(matrix) or matrix.shape[1] < 2:
        raise ValueError("popularity needs the sparse users x (items + 1) matrix of interaction_matrix(...)")
    bought = (matrix > 0).astype(np.int64)
    buyers = np.sort(np.asarray(bought.sum(axis=0)).ravel()[1:])[::-1]
    return Popularity(buyers, np.asarray(bought.sum(axis=1)).ravel())


def plot_long_tail(pop: Popularity, fraction: float = 0.1) -> Figure:
    """Three panels: buyers per product (log-log), the cumulative share of pairs, products per customer."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    b = pop.buyers
    axes[0].loglog(np.arange(1, len(b) + 1), np.maximum(b, 0.8))
    axes[0].set(xlabel="product rank", ylabel="distinct buyers", title="Long tail (log-log)")
    cum = np.cumsum(b) / b.sum()
    axes[1].plot(np.linspace(0, 1, len(cum)), cum)
    axes[1].axvline(fraction, ls=":", c="grey")
    axes[1].set(xlabel="share of products (most popular first)", ylabel="share of customer-product pairs",
                title=f"Top {fraction:.0%} of products: {pop.head_share(fraction):.0%} of pairs")
    n = pop.items_per_customer
    axes[2].hist(n, bins=np.logspace(0, np.log10(n.max() + 1), 40))
    axes[2].set_xscale("log")
    axes[2].set(xlabel="distinct products bought", ylabel="customers", title="Products per customer")
    return _close(fig)


# ------------------------------------------------------------------------------------ baskets

def baskets(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per (customer, invoice): ``size`` (distinct products), ``moment``, ``repeat_share``
    (share of its lines that repeat an earlier purchase), ``later`` (not the customer's first moment)."""
    _need(lines, ["customer_id", "invoice", "stock_code", "invoice_date"], "baskets")
    with_rep = lines.assign(repeat=repeat_flags(lines))
    out = with_rep.groupby(["customer_id", "invoice"], sort=False).agg(
        size=("stock_code", "nunique"), moment=("invoice_date", "first"), repeat_share=("repeat", "mean"))
    first = out.groupby(level="customer_id")["moment"].transform("min")
    return out.assign(later=out["moment"] > first)


def basket_summary(table: pd.DataFrame) -> pd.Series:
    """The numbers of :func:`baskets` a lesson quotes."""
    per_customer = table.groupby(level="customer_id").size()
    return pd.Series({
        "baskets": len(table),
        "median basket size (distinct products)": float(table["size"].median()),
        "customers with more than one basket": float((per_customer > 1).mean()),
        "mean repeat share of a later basket": float(table.loc[table["later"], "repeat_share"].mean()),
    })


def plot_baskets(table: pd.DataFrame, clip: int = 100) -> Figure:
    """Basket sizes (clipped at ``clip``) and the repeat share of later baskets."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    axes[0].hist(table["size"].clip(upper=clip), bins=50)
    axes[0].set(xlabel=f"distinct products per basket (clipped at {clip})", ylabel="baskets",
                title="Basket sizes")
    axes[1].hist(table.loc[table["later"], "repeat_share"], bins=20)
    axes[1].set(xlabel="share of the basket bought before", ylabel="baskets",
                title="Repeat share of later baskets")
    return _close(fig)


# ------------------------------------------------------------------------------------ catalogue growth

def catalogue_growth(lines: pd.DataFrame, encode_batch: Callable[[list[str]], Iterable[Sequence[int]]],
                     to_text: Callable[[str], str] = lambda d: d) -> pd.DataFrame:
    """Per month: distinct product IDs sold so far, and distinct tokens their descriptions used so far.

    ``encode_batch`` turns a list of texts into token-ID lists (e.g. ``tokenizer.encode_batch``);
    ``to_text`` writes a description as the model reads it (e.g. ``serializer.candidate_text``).
    """
    _need(lines, ["stock_code", "description", "invoice_date"], "catalogue_growth")
    ids = lines.groupby("stock_code")["invoice_date"].min().dt.to_period("M").value_counts().sort_index().cumsum()
    desc_first = lines.groupby("description")["invoice_date"].min().dt.to_period("M").sort_values()
    seen: set[int] = set()
    tokens = {}
    for month, group in desc_first.groupby(desc_first):
        for token_ids in encode_batch([to_text(d) for d in group.index]):
            seen.update(token_ids)
        tokens[month] = len(seen)
    return pd.DataFrame({"distinct product IDs": ids, "distinct tokens used": pd.Series(tokens)}).ffill()


def plot_catalogue_growth(growth: pd.DataFrame, vocab_size: int, cut: str | pd.Timestamp | None = None) -> Figure:
    """The two curves of :func:`catalogue_growth`, the token vocabulary's size (dashed) and ``cut``."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    growth.plot(ax=ax, marker=".")
    ax.axhline(vocab_size, color="0.5", ls="--", lw=1)
    if cut is not None:
        ax.axvline(pd.Period(pd.Timestamp(cut), "M"), color="0.3", ls=":", lw=1)
    ax.set(ylabel="cumulative count", xlabel="",
           title="IDs keep growing; the token vocabulary is bounded (dashed)")
    return _close(fig)
