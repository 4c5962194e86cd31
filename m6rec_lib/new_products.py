"""Products first sold after the training period: the catalogue a shop serves from.

An ID model knows the products of its training period and nothing else: a product first sold
later has no row in its embedding table and no column in its score matrix (the split stores such
targets as ``-1``, misses for everyone). The shop, however, knows its whole catalogue: every
product it has put on sale, with its description. :func:`extend_catalogue` builds that catalogue
for a :func:`~m6rec_lib.data.next_basket_split`:

* item IDs ``1..n_base`` are the split's own (``n_base = split.n_items``), unchanged, so every ID
  model's scores fit the first ``n_base + 1`` columns;
* IDs ``n_base + 1 .. n_items`` are the **new products**: first sold on or after the end of the
  training period (``split.info["val_start"]``), in a seeded random order;
* a product is **on sale** at a moment when it was sold at least once strictly before it
  (notebook 08's rule: a shop cannot show a product it has not yet put on sale, and a target whose
  very first sale is the customer's own basket counts as a miss for everyone);
* the validation and test sets are rebuilt on the wider catalogue, with the same customers, in the
  same order, at the same moments as the split's: targets on new products get their new IDs
  instead of ``-1``, and histories keep the new products a customer bought.

::

    cat = extend_catalogue(split, lines)
    cat.test                   # EvalSet over n_items + 1 columns, aligned with split.test
    cat.widen(ease.score(split.test))      # (n, n_base + 1) -> (n, n_items + 1), new columns -inf
    cat.on_sale(cat.test)      # (n, n_items + 1) bool
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import DataError, EvalSet, first_baskets, item_descriptions
from .data.splits import eval_set_from_baskets

__all__ = ["Catalogue", "extend_catalogue", "targets_among", "same_customers", "add_new_products"]

_NEVER = np.datetime64("2262-01-01", "ns")


@dataclass
class Catalogue:
    """The split's products plus the products first sold after its training period.

    Attributes
    ----------
    n_base : int
        The split's number of items: IDs ``1..n_base`` are the split's, ID models score them.
    codes, texts : (n_items + 1,) object arrays
        Stock code and description of every ID (index 0 = padding).
    first_sale : (n_items + 1,) datetime64[ns]
        The moment each product was first sold (in the lines the catalogue was built from).
    new_from : pd.Timestamp
        The end of the training period: a product first sold at or after it is new.
    validation, test : EvalSet
        The split's evaluation sets over the whole catalogue (same customers, order and moments).
    sale_dates, sale_items : (n_lines,) arrays
        Every purchase line of a new product (time order): when, and which product.
    """

    n_base: int
    codes: np.ndarray
    texts: np.ndarray
    first_sale: np.ndarray
    new_from: pd.Timestamp
    validation: EvalSet
    test: EvalSet
    sale_dates: np.ndarray
    sale_items: np.ndarray

    @property
    def n_items(self) -> int:
        """Number of real products (base and new); score matrices have ``n_items + 1`` columns."""
        return len(self.codes) - 1

    @property
    def n_new(self) -> int:
        return self.n_items - self.n_base

    @property
    def is_new(self) -> np.ndarray:
        """(n_items + 1,) bool: True for the products first sold after the training period."""
        out = np.zeros(self.n_items + 1, dtype=bool)
        out[self.n_base + 1:] = True
        return out

    def on_sale(self, eval_set: EvalSet) -> np.ndarray:
        """(len(eval_set), n_items + 1) bool: products sold at least once before each customer's moment.

        Every base product is on sale (it was sold in the training period); column 0 is False.
        """
        self._check(eval_set)
        moments = np.asarray(eval_set.moments).astype("datetime64[ns]")
        out = self.first_sale[None, :] < moments[:, None]
        out[:, 0] = False
        return out

    def sales_before(self, eval_set: EvalSet) -> np.ndarray:
        """(len(eval_set), n_items + 1): purchase lines of each new product strictly before each
        customer's moment (0 for base products): how well a new product has sold so far, which the
        shop knows at that moment."""
        self._check(eval_set)
        moments = np.asarray(eval_set.moments).astype("datetime64[ns]")
        out = np.zeros((len(eval_set), self.n_items + 1))
        counts, done = np.zeros(self.n_items + 1), 0
        for row in np.argsort(moments, kind="stable"):           # one sweep over the lines in time order
            k = int(np.searchsorted(self.sale_dates, moments[row], side="left"))
            if k > done:
                counts += np.bincount(self.sale_items[done:k], minlength=self.n_items + 1)
                done = k
            out[row] = counts
        return out

    def base_view(self, eval_set: EvalSet) -> EvalSet:
        """The eval set as the split's ID models see it: the split's products only.

        Histories keep the first ``n_base + 1`` columns, sequences drop new products, and a target on a
        new product becomes ``-1`` (unknown), as in the split. For ``cat.test`` this equals
        ``split.test`` except that several new products of one basket stay several ``-1`` targets.
        """
        self._check(eval_set)
        base = self.n_base
        targets = [np.where(t > base, -1, t) for t in eval_set.targets]
        return EvalSet(users=eval_set.users, targets=targets, history=eval_set.history[:, : base + 1].tocsr(),
                       sequences=[np.asarray(s)[np.asarray(s) <= base] for s in eval_set.sequences],
                       moments=eval_set.moments, name=eval_set.name, info=dict(eval_set.info))

    def widen(self, scores: np.ndarray, fill: float = -np.inf) -> np.ndarray:
        """(n, n_base + 1) scores of an ID model -> (n, n_items + 1), the new products set to ``fill``."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != self.n_base + 1:
            raise ValueError(f"expected scores of shape (n, {self.n_base + 1}) = (n, split.n_items + 1), "
                             f"got {scores.shape}; pass an ID model's scores of the split's eval set")
        out = np.full((scores.shape[0], self.n_items + 1), fill, dtype=np.float64)
        out[:, : self.n_base + 1] = scores
        return out

    def summary(self) -> pd.DataFrame:
        """One row per evaluation set: customers, target lines, how many are on new products, how
        many customers have one, how many new products are on sale at a customer's moment (median),
        and the share of new-product targets already on sale (the others nobody can recommend)."""
        rows = {}
        for es in (self.validation, self.test):
            flat = np.concatenate(es.targets) if len(es) else np.zeros(0, dtype=np.int64)
            new_t = targets_among(es, self.is_new)
            on_sale = self.on_sale(es)
            reachable = [on_sale[p, t] for p, t in zip(new_t.info["positions"], new_t.targets)]
            rows[es.name] = {
                "customers": len(es), "target lines": len(flat),
                "targets on new products": int(self.is_new[flat[flat > 0]].sum()),
                "customers with a new-product target": len(new_t),
                "new products on sale (median per customer)": float(np.median((on_sale & self.is_new).sum(1))) if len(es) else 0.0,
                "new-product targets already on sale": float(np.concatenate(reachable).mean()) if reachable else float("nan"),
            }
        return pd.DataFrame(rows).T

    def text(self, item: int) -> str:
        """The description of one product ID."""
        if not 1 <= int(item) <= self.n_items:
            raise KeyError(f"item ID {item} is not in 1..{self.n_items} (0 is padding)")
        return str(self.texts[int(item)])

    def _check(self, eval_set: EvalSet) -> None:
        if eval_set.n_items != self.n_items:
            raise ValueError(f"the eval set has {eval_set.n_items} items, the catalogue {self.n_items}: "
                             "use the catalogue's own eval sets (cat.validation, cat.test, or their subsets)")

    def __repr__(self) -> str:
        return f"Catalogue(n_base={self.n_base}, n_new={self.n_new}, new_from={self.new_from.date()})"


def extend_catalogue(split, lines: pd.DataFrame, seed: int = 0) -> Catalogue:
    """The catalogue of ``split`` (a :func:`~m6rec_lib.data.next_basket_split` of ``lines``) with the
    products first sold from the end of its training period on.

    ``lines``: the cleaned lines the split was built from (the same subsample in smoke mode). New
    products' descriptions are their most frequent description in their own lines (the shop's
    catalogue text); the new IDs are a seeded permutation, so an ID says nothing about when the
    product appeared beyond being new.
    """
    missing = [c for c in ("customer_id", "stock_code", "invoice", "invoice_date", "description") if c not in lines.columns]
    if missing:
        raise DataError(f"lines lack column(s) {missing}; pass the cleaned lines the split was built from")
    for key in ("val_start", "test_start", "end"):
        if key not in split.info:
            raise ValueError(f"split.info has no {key!r}: extend_catalogue needs a next_basket_split")
    new_from, test_start = pd.Timestamp(split.info["val_start"]), pd.Timestamp(split.info["test_start"])
    end = pd.Timestamp(split.info["end"])
    lines = lines[lines["invoice_date"] < end]
    n_base = split.n_items
    first = lines.groupby("stock_code", observed=True)["invoice_date"].min()
    unknown = first[~first.index.isin(split.items.codes[1:])]
    early = unknown[unknown < new_from]
    if len(early):
        raise DataError(f"{len(early)} product(s) sold before {new_from.date()} are not in the split's item "
                        f"index (e.g. {list(early.index[:3])}); pass the lines the split was built from")
    new_codes = np.array(sorted(unknown.index.astype(str)), dtype=object)
    new_codes = new_codes[np.random.default_rng(seed).permutation(len(new_codes))]
    codes = np.concatenate([split.items.codes, new_codes])
    texts = np.concatenate([split.items.texts, np.empty(len(new_codes), dtype=object)])
    if len(new_codes):
        desc = item_descriptions(lines[lines["stock_code"].isin(set(new_codes))])
        texts[n_base + 1:] = [str(desc.get(c, c)) for c in new_codes]
    first_sale = np.full(len(codes), _NEVER, dtype="datetime64[ns]")
    first_sale[1:] = first.reindex(codes[1:]).to_numpy(dtype="datetime64[ns]")

    id_of = pd.Series(np.arange(1, len(codes)), index=pd.Index(codes[1:]))
    with_ids = lines.assign(user=split.users.rows(lines["customer_id"].to_numpy()),
                            item=id_of.reindex(lines["stock_code"].astype(str).to_numpy()).to_numpy().astype(np.int64))
    n_items = len(codes) - 1
    new_lines = with_ids[with_ids["item"] > n_base].sort_values("invoice_date", kind="stable")
    sets = {}
    for name, start, stop, ref in (("validation", new_from, test_start, split.validation),
                                   ("test", test_start, end, split.test)):
        keys = first_baskets(with_ids, start, stop)
        es = eval_set_from_baskets(with_ids, keys, split.n_users, n_items, name)
        if not (np.array_equal(es.users, ref.users) and np.array_equal(es.moments, ref.moments)):
            raise DataError(f"the {name} set rebuilt on the wider catalogue does not match the split's; pass the "
                            "lines the split was built from")
        sets[name] = es
    return Catalogue(n_base, codes, texts, first_sale, new_from, sets["validation"], sets["test"],
                     new_lines["invoice_date"].to_numpy(dtype="datetime64[ns]"), new_lines["item"].to_numpy(np.int64))


def targets_among(eval_set: EvalSet, keep: np.ndarray, name: str | None = None) -> EvalSet:
    """``eval_set`` with only the targets whose item is in ``keep`` ((n_items + 1,) bool); customers
    left with no target are left out. E.g. ``targets_among(cat.test, cat.is_new)``: new products only.

    The result's ``info["positions"]`` holds the kept customers' positions in ``eval_set``.
    """
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (eval_set.n_items + 1,):
        raise ValueError(f"keep must be a ({eval_set.n_items + 1},) bool array over the catalogue, got {keep.shape}")
    targets = [t[(t > 0) & keep[np.maximum(t, 0)]] for t in eval_set.targets]
    positions = np.flatnonzero([len(t) > 0 for t in targets])
    out = EvalSet(users=eval_set.users[positions], targets=[targets[i] for i in positions], history=eval_set.history,
                  sequences=[eval_set.sequences[i] for i in positions], moments=eval_set.moments[positions],
                  name=name or eval_set.name, info={**eval_set.info, "positions": positions})
    return out


def same_customers(eval_set: EvalSet, like: EvalSet) -> EvalSet:
    """The customers of ``eval_set`` that are in ``like`` (e.g. the catalogue's validation set cut to the
    customers of one validation half), in ``eval_set``'s order."""
    keep = np.isin(eval_set.users, like.users)
    if keep.sum() != len(like):
        raise ValueError(f"{len(like) - int(keep.sum())} customer(s) of {like.name!r} are not in {eval_set.name!r}; "
                         "pass two eval sets of the same period")
    return eval_set.subset(keep, name=like.name)


def add_new_products(subsample: pd.DataFrame, lines: pd.DataFrame, since: str = "2011-10-01") -> pd.DataFrame:
    """``subsample`` (e.g. :func:`~m6rec_lib.data.subsample_lines`, which keeps products sold before
    ``since`` only) plus its customers' purchases of the products first sold from ``since`` on, taken
    from ``lines``: a small world that still has new products (smoke runs)."""
    first = lines.groupby("stock_code", observed=True)["invoice_date"].min()
    new_codes = first.index[first >= pd.Timestamp(since)]
    extra = lines[lines["stock_code"].isin(new_codes) & lines["customer_id"].isin(subsample["customer_id"].unique())]
    keys = [c for c in ("invoice_date", "invoice", "line_no") if c in subsample.columns]
    return pd.concat([subsample, extra]).sort_values(keys, kind="stable").reset_index(drop=True)
