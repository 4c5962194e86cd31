"""The full recommender: retrieval, ranking and explanation behind one call.

::

    rec = Recommender(split, lines, components={"EASE": ease.score, "SASRec": sasrec.score},
                      retriever=two_tower, weights={"EASE": 1.0, "SASRec": 0.5}, repeat_weight=4.0)
    rec.recommend(12347, k=10)       # -> DataFrame: item, description, score, source, explanation

How a customer's list is made (:meth:`Recommender.score`):

1. **Retrieval.** The two-tower model (notebook 06) returns the ``n_retrieve`` nearest products of the
   customer's history; the products the customer bought before are added (repeat purchases are
   half of a basket, notebook 01). Everything else is left out of the ranking.
2. **Ranking.** Each *component* (any model that scores the whole catalogue from an
   :class:`~m6rec_lib.data.EvalSet`: EASE, SASRec, the two-tower, ...) is standardised per customer
   (z-score over the catalogue) and the standardised scores are added with ``weights``; a product
   the customer bought before gets ``repeat_weight * log(1 + Buy-Again score)`` on top (Buy-Again's
   score is the number of past purchases plus a recency term in (0, 1)). Weights are chosen on the
   validation set (:func:`tune_blend`): first the components on items new to the customer, then
   the repeat weight on all items.
3. **Explanation.** Each product gets a sentence built from evidence: how often and when the
   customer bought it, or the past purchase it is most often bought together with (training
   baskets), or how popular it is.

A customer unknown to the data raises ``KeyError``; a known customer with no purchase before the
recommender's moment (a *cold* customer) gets the products most bought by customers of the same
country, or of the whole shop.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .baselines import BuyAgain
from .data import DataError
from .data.evalset import EvalSet
from .metrics import evaluate
from .text import serializer as ser

__all__ = ["Recommender", "zscore_rows", "repeat_feature", "blend_scores", "tune_blend", "BlendResult"]

ScoreFn = Callable[[EvalSet], np.ndarray]


# =============================================================================================
# the ranking features
# =============================================================================================

def zscore_rows(scores: np.ndarray) -> np.ndarray:
    """Standardise each row over the real items: (n, n_items + 1) -> same shape, column 0 = 0.

    Puts models with different score scales (logits, similarities, EASE weights) on one scale:
    within each customer's row, mean 0 and standard deviation 1. Non-finite scores become the row's
    minimum.
    """
    s = np.asarray(scores, dtype=np.float64).copy()
    real = s[:, 1:]
    finite = np.isfinite(real)
    if not finite.all():
        low = np.where(finite, real, np.inf).min(axis=1, keepdims=True)
        real[~finite] = np.broadcast_to(low, real.shape)[~finite]
    mean = real.mean(axis=1, keepdims=True)
    std = real.std(axis=1, keepdims=True)
    s[:, 1:] = (real - mean) / np.where(std > 0, std, 1.0)
    s[:, 0] = 0.0
    return s


def repeat_feature(buy_again_scores: np.ndarray) -> np.ndarray:
    """``log(1 + s)`` where Buy-Again's score ``s >= 1`` (a product bought before), else 0.

    Buy-Again (``m6rec_lib.baselines.BuyAgain``) scores an own product ``count + recency`` with
    recency in (0, 1), and every other product below 1 (its popularity). Shape (n, n_items + 1).
    """
    s = np.asarray(buy_again_scores, dtype=np.float64)
    out = np.where(s >= 1.0, np.log1p(np.where(s >= 1.0, s, 0.0)), 0.0)
    out[:, 0] = 0.0
    return out


def blend_scores(
    features: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    repeat: np.ndarray | None = None,
    repeat_weight: float = 0.0,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """``sum_c weights[c] * features[c] + repeat_weight * repeat``, -inf outside ``candidates``.

    ``features``: name -> (n, n_items + 1) standardised scores (:func:`zscore_rows`); ``repeat``:
    :func:`repeat_feature`; ``candidates``: (n, n_items + 1) bool, True for retrieved products.
    Column 0 (padding) is -inf.
    """
    unknown = [k for k in weights if k not in features]
    if unknown:
        raise KeyError(f"weights name unknown components {unknown}; known: {sorted(features)}")
    shape = next(iter(features.values())).shape
    out = np.zeros(shape)
    for name, w in weights.items():
        if w:
            out += w * features[name]
    if repeat is not None and repeat_weight:
        out += repeat_weight * repeat
    if candidates is not None:
        out[~candidates] = -np.inf
    out[:, 0] = -np.inf
    return out


@dataclass
class BlendResult:
    """What :func:`tune_blend` chose: ``weights``, ``repeat_weight``, and the validation tables of
    both stages (one row per setting tried)."""

    weights: dict[str, float]
    repeat_weight: float
    new_table: pd.DataFrame
    all_table: pd.DataFrame


def tune_blend(
    features: Mapping[str, np.ndarray],
    repeat: np.ndarray,
    candidates: np.ndarray,
    validation: EvalSet,
    weight_grid: Sequence[float] = (0.0, 0.5, 1.0),
    repeat_grid: Sequence[float] = (0.0, 1.0, 2.0, 4.0, 8.0, 1000.0),
    metric: str = "NDCG@10",
) -> BlendResult:
    """Choose the blend on the **validation** set, in two stages.

    1. Component weights (every combination of ``weight_grid``, not all zero, the first weight
       fixed at 1 when it is non-zero so that rescaled duplicates are skipped) by ``metric`` on items
       new to the customer: there the repeat term does not matter.
    2. ``repeat_weight`` in ``repeat_grid`` by ``metric`` on all items, with the weights of stage 1.
       A very large repeat weight ranks every own product first, in Buy-Again's order.
    """
    names = list(features)
    rows = []
    for combo in itertools.product(weight_grid, repeat=len(names)):
        if not any(combo):
            continue
        first = next(w for w in combo if w)
        if first != max(weight_grid):  # scale-free: normalise so the first non-zero weight is the largest
            continue
        w = dict(zip(names, combo))
        scores = blend_scores(features, w, candidates=candidates)
        res = evaluate(scores, validation, ks=(10,), exclude_seen=True)
        rows.append({**w, metric: res[metric]})
    new_table = pd.DataFrame(rows)
    best = new_table.iloc[int(np.argmax(new_table[metric].to_numpy()))]
    weights = {n: float(best[n]) for n in names}
    rows = []
    for rw in repeat_grid:
        scores = blend_scores(features, weights, repeat, rw, candidates)
        res = evaluate(scores, validation, ks=(10,), exclude_seen=False)
        rows.append({"repeat_weight": rw, metric: res[metric]})
    all_table = pd.DataFrame(rows)
    repeat_weight = float(all_table["repeat_weight"].iloc[int(np.argmax(all_table[metric].to_numpy()))])
    return BlendResult(weights, repeat_weight, new_table, all_table)


# =============================================================================================
# the recommender
# =============================================================================================

class Recommender:
    """Retrieval, ranking and explanation for the customers of one split.

    Parameters
    ----------
    split
        The :func:`~m6rec_lib.data.next_basket_split` the models were trained on (its item index,
        customers and training period).
    lines
        The cleaned lines the split was built from; the recommender knows every purchase strictly
        before ``now`` (and uses them as each customer's history in :meth:`recommend`).
    components
        name -> ``fn(eval_set) -> (len(eval_set), n_items + 1)`` scores (e.g. ``ease.score``,
        ``sasrec.score``, ``two_tower.score``).
    weights, repeat_weight
        The blend (see the module docstring); typically from :func:`tune_blend`.
    retriever
        An object with ``retrieve(sequences, top_k) -> (ids, scores)`` (the two-tower model), or
        None to rank the whole catalogue.
    n_retrieve
        Products retrieved per customer (the customer's own products are added).
    now
        The moment the recommender serves at (default: the split's test start): histories hold the
        purchases before it.
    """

    def __init__(
        self,
        split,
        lines: pd.DataFrame,
        components: Mapping[str, ScoreFn],
        weights: Mapping[str, float],
        repeat_weight: float = 0.0,
        retriever=None,
        n_retrieve: int = 300,
        now=None,
    ) -> None:
        if not components:
            raise ValueError("give at least one scoring component, e.g. {'EASE': ease.score}")
        unknown = [k for k in weights if k not in components]
        if unknown:
            raise KeyError(f"weights name unknown components {unknown}; known: {sorted(components)}")
        if n_retrieve < 1:
            raise ValueError(f"n_retrieve must be >= 1, got {n_retrieve}")
        missing = [c for c in ("customer_id", "stock_code", "invoice", "invoice_date") if c not in lines.columns]
        if missing:
            raise DataError(f"lines lack column(s) {missing}; pass the cleaned lines the split was built from")
        self.split = split
        self.components = dict(components)
        self.weights = dict(weights)
        self.repeat_weight = float(repeat_weight)
        self.retriever = retriever
        self.n_retrieve = int(min(n_retrieve, split.n_items))
        self.now = pd.Timestamp(now if now is not None else split.info.get("test_start", lines["invoice_date"].max()))
        self.buy_again = BuyAgain().fit(split.train_matrix)
        n_items = split.n_items

        known = lines[lines["invoice_date"] < self.now]
        if len(known) == 0:
            raise DataError(f"no purchase before now={self.now}; pick a later moment")
        known = known.assign(user=split.users.rows(known["customer_id"].to_numpy()),
                             item=split.items.ids(known["stock_code"], unknown="minus_one"))
        known = known[known["item"] > 0].sort_values(["invoice_date", "invoice"], kind="stable")
        self._known = known
        self._by_user = {int(u): idx for u, idx in known.groupby("user").indices.items()}
        countries = lines.sort_values("invoice_date", kind="stable").groupby("customer_id")["country"].last() \
            if "country" in lines.columns else pd.Series(dtype=object)
        self._country = countries
        # evidence for explanations: training baskets (invoices x items), popularity, per-country popularity
        train = split.train
        inv_codes, inv_index = np.unique(train["invoice"].astype(str).to_numpy(), return_inverse=True)
        baskets = sp.csr_matrix((np.ones(len(train)), (inv_index, train["item"].to_numpy())),
                                shape=(len(inv_codes), n_items + 1))
        baskets.data[:] = 1.0
        baskets.sum_duplicates()
        baskets.data[:] = 1.0
        self._baskets = baskets.tocsc()
        self.popularity = np.asarray((split.train_matrix > 0).sum(axis=0)).ravel().astype(np.int64)
        self.popularity[0] = 0
        if "country" in train.columns:
            buyers = train.drop_duplicates(["customer_id", "item"])
            self._country_pop = buyers.groupby(["country", "item"]).size()
        else:
            self._country_pop = pd.Series(dtype=np.int64)

    # ------------------------------------------------------------------ scoring eval sets
    def features(self, eval_set: EvalSet) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """(standardised component scores, repeat feature, candidate mask) of ``eval_set``'s customers."""
        feats = {name: zscore_rows(fn(eval_set)) for name, fn in self.components.items()}
        repeat = repeat_feature(self.buy_again.score(eval_set))
        return feats, repeat, self.candidates(eval_set)

    def candidates(self, eval_set: EvalSet) -> np.ndarray:
        """(n, n_items + 1) bool: retrieved products plus each customer's own past products."""
        n, width = len(eval_set), eval_set.n_items + 1
        mask = np.zeros((n, width), dtype=bool)
        if self.retriever is None:
            mask[:, 1:] = True
        else:
            ids, _ = self.retriever.retrieve(eval_set.sequences, top_k=self.n_retrieve)
            mask[np.repeat(np.arange(n), ids.shape[1]), ids.ravel()] = True
        hist = eval_set.history[np.asarray(eval_set.users)].tocoo()
        mask[hist.row[hist.data > 0], hist.col[hist.data > 0]] = True
        mask[:, 0] = False
        return mask

    def score(self, eval_set: EvalSet) -> np.ndarray:
        """The final scores of ``eval_set``'s customers: (n, n_items + 1), -inf outside the candidates."""
        feats, repeat, cand = self.features(eval_set)
        return blend_scores(feats, self.weights, repeat, self.repeat_weight, cand)

    # ------------------------------------------------------------------ one customer
    def history(self, customer_id: int) -> pd.DataFrame:
        """The customer's purchases before ``now`` (newest first): date, invoice, item, description, quantity."""
        row = self._row(customer_id)
        idx = self._by_user.get(row)
        cols = ["invoice_date", "invoice", "item", "description", "quantity"]
        if idx is None:
            return pd.DataFrame(columns=cols)
        out = self._known.iloc[idx]
        out = out.assign(description=[self.split.items.text(int(i)) for i in out["item"]])
        return out[cols].iloc[::-1].reset_index(drop=True)

    def _row(self, customer_id) -> int:
        try:
            cid = int(customer_id)
        except (TypeError, ValueError):
            raise KeyError(f"customer IDs are integers such as 12347, got {customer_id!r}") from None
        if cid not in self.split.users:
            raise KeyError(
                f"customer {cid} is unknown: no purchase of theirs is in the data. Check the ID, or "
                "pick one from rec.split.users.customer_ids."
            )
        return int(self.split.users.rows([cid])[0])

    def _eval_set_for(self, row: int) -> EvalSet:
        idx = self._by_user[row]
        items = self._known["item"].to_numpy()[idx].astype(np.int64)
        counts = np.bincount(items, minlength=self.split.n_items + 1).astype(np.float64)
        history = sp.csr_matrix(counts[None, :])
        return EvalSet(users=np.array([0]), targets=[np.array([], dtype=np.int64)], history=history,
                       sequences=[items], moments=np.array([np.datetime64(self.now)]), name="request")

    def recommend(self, customer_id: int, k: int = 10, exclude_bought: bool = False) -> pd.DataFrame:
        """The top ``k`` products for one customer, with scores and explanations.

        Returns a DataFrame with columns ``item`` (ID), ``description``, ``score``, ``source``
        ("bought before", "retrieved" or "popular"), ``explanation``. ``exclude_bought``: only
        products new to the customer. Raises KeyError for a customer unknown to the data and
        ValueError for an impossible ``k``. A customer with no purchase before ``now`` gets the
        most popular products of their country (source "popular").
        """
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= self.split.n_items:
            raise ValueError(f"k must be an integer in 1..{self.split.n_items}, got {k!r}")
        row = self._row(customer_id)
        if row not in self._by_user:
            return self._cold(int(customer_id), k)
        es = self._eval_set_for(row)
        scores = self.score(es)[0]
        own = es.history.toarray()[0] > 0
        if exclude_bought:
            scores[own] = -np.inf
        n_ok = int(np.isfinite(scores).sum())
        top = np.argsort(-scores, kind="stable")[: min(k, n_ok)]
        rows = []
        for item in top:
            rows.append({"item": int(item), "description": self.split.items.text(int(item)),
                         "score": float(scores[item]), "source": "bought before" if own[item] else "retrieved",
                         "explanation": self.explain(row, int(item))})
        out = pd.DataFrame(rows, columns=["item", "description", "score", "source", "explanation"])
        if len(out) < k:  # fewer candidates than asked: fill with popular products
            fill = self._cold(int(customer_id), k, exclude=set(out["item"]) | (set(np.flatnonzero(own)) if exclude_bought else set()))
            out = pd.concat([out, fill.iloc[: k - len(out)]], ignore_index=True)
        out.index = pd.RangeIndex(1, len(out) + 1, name="rank")
        return out

    def _cold(self, customer_id: int, k: int, exclude: set | None = None) -> pd.DataFrame:
        """The fallback: products most bought by customers of the same country (else the whole shop)."""
        exclude = exclude or set()
        country = self._country.get(customer_id)
        counts, where = None, "the shop"
        if country is not None and country in self._country_pop.index.get_level_values(0):
            per = self._country_pop.loc[country]
            if len(per) >= k:
                counts = pd.Series(per.to_numpy(), index=per.index.to_numpy())
                where = f"customers from {ser.country_name(country) or country}"
        if counts is None:
            counts = pd.Series(self.popularity[1:], index=np.arange(1, self.split.n_items + 1))
        counts = counts[~counts.index.isin(list(exclude))].sort_values(ascending=False, kind="stable")
        rows = []
        for item, n in counts.iloc[:k].items():
            rows.append({"item": int(item), "description": self.split.items.text(int(item)), "score": float(n),
                         "source": "popular",
                         "explanation": f"Popular with {where}: bought by {int(n)} of them in the training period."})
        out = pd.DataFrame(rows, columns=["item", "description", "score", "source", "explanation"])
        out.index = pd.RangeIndex(1, len(out) + 1, name="rank")
        return out

    def explain(self, row: int, item: int) -> str:
        """One sentence of evidence for recommending ``item`` to the customer in ``row``."""
        idx = self._by_user.get(row)
        if idx is None:
            return f"Popular: bought by {int(self.popularity[item])} customers in the training period."
        mine = self._known.iloc[idx]
        bought = mine[mine["item"] == item]
        if len(bought):
            n_inv = bought["invoice"].nunique()
            last = bought["invoice_date"].max()
            when = ser.time_phrase(last, self.now) if last < self.now else "recently"
            times = "once" if n_inv == 1 else "twice" if n_inv == 2 else f"{n_inv} times"
            return f"You bought it {times}, most recently {when} ({last:%d %b %Y})."
        own = np.unique(mine["item"].to_numpy())
        together = np.asarray((self._baskets[:, own].T @ self._baskets[:, [item]]).todense()).ravel()
        if together.max() > 0:
            j = int(np.argmax(together))
            other = int(own[j])
            last = mine.loc[mine["item"] == other, "invoice_date"].max()
            return (f"Often bought together with {self.split.items.text(other)}, which you bought "
                    f"{ser.time_phrase(last, self.now)} (in {int(together[j])} baskets).")
        return f"Popular: bought by {int(self.popularity[item])} customers in the training period."
