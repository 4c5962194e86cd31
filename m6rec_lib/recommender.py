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
   (z-score over the catalogue) and the standardised scores are added with ``weights``. A product
   the customer bought before gets ``own_bonus + repeat_weight * log P_repeat`` on top, where
   ``P_repeat`` is the customer's purchase history as a distribution, each past purchase line
   weighted ``0.5 ** (age / half_life)`` (age in lines, 0 = the latest; the repeat distribution of
   notebook 05's mixture): frequent and recent products first, as in Buy-Again. Everything is
   chosen on the validation set (:func:`tune_blend`): first the component weights on items new to
   the customer, then ``half_life``, ``own_bonus`` and ``repeat_weight`` on all items.
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

from .data import DataError
from .data.evalset import EvalSet
from .metrics import evaluate
from .mixture import repeat_distribution
from .text import serializer as ser

__all__ = ["Recommender", "zscore_rows", "repeat_log_probability", "blend_scores", "tune_blend", "BlendResult"]

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


def repeat_log_probability(eval_set: EvalSet, half_life: float | None = None) -> np.ndarray:
    """``log P_repeat(i | u)`` on the products each customer bought before, 0 elsewhere.

    ``P_repeat`` is the customer's past purchase lines (``eval_set.sequences``) as a distribution over
    items, line ``l`` weighted ``0.5 ** (age_l / half_life)`` (``age`` = lines after it, 0 for the
    latest; ``None``: every line alike). Shape (n, n_items + 1); use :func:`own_mask` to tell own
    products (whose value can be 0 when it is the only one) from the others.
    """
    p = repeat_distribution(eval_set, half_life)          # (n, n_items + 1), rows sum to 1 or 0
    out = np.zeros_like(p)
    own = p > 0
    out[own] = np.log(p[own])
    return out


def own_mask(eval_set: EvalSet) -> np.ndarray:
    """(n, n_items + 1) bool: the products each customer bought before (their sequence)."""
    out = np.zeros((len(eval_set), eval_set.n_items + 1), dtype=bool)
    for row, seq in enumerate(eval_set.sequences):
        seq = np.asarray(seq, dtype=np.int64)
        out[row, seq[seq > 0]] = True
    return out


def blend_scores(
    features: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    own: np.ndarray | None = None,
    log_repeat: np.ndarray | None = None,
    own_bonus: float = 0.0,
    repeat_weight: float = 0.0,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """``sum_c weights[c] * features[c]`` plus, on own products, ``own_bonus + repeat_weight *
    log_repeat``; -inf outside ``candidates``.

    ``features``: name -> (n, n_items + 1) standardised scores (:func:`zscore_rows`); ``own``:
    :func:`own_mask`; ``log_repeat``: :func:`repeat_log_probability`; ``candidates``: (n, n_items + 1)
    bool, True for retrieved products. Column 0 (padding) is -inf.
    """
    unknown = [k for k in weights if k not in features]
    if unknown:
        raise KeyError(f"weights name unknown components {unknown}; known: {sorted(features)}")
    shape = next(iter(features.values())).shape
    out = np.zeros(shape)
    for name, w in weights.items():
        if w:
            out += w * features[name]
    if own is not None and (own_bonus or repeat_weight):
        bonus = own_bonus + (repeat_weight * log_repeat if log_repeat is not None else 0.0)
        out += np.where(own, bonus, 0.0)
    if candidates is not None:
        out[~candidates] = -np.inf
    out[:, 0] = -np.inf
    return out


@dataclass
class BlendResult:
    """What :func:`tune_blend` chose (``weights``, ``half_life``, ``own_bonus``, ``repeat_weight``)
    and the validation tables of both stages (one row per setting tried)."""

    weights: dict[str, float]
    half_life: float | None
    own_bonus: float
    repeat_weight: float
    new_table: pd.DataFrame
    all_table: pd.DataFrame

    def settings(self) -> dict:
        return {"weights": self.weights, "half_life": self.half_life, "own_bonus": self.own_bonus,
                "repeat_weight": self.repeat_weight}


def tune_blend(
    features: Mapping[str, np.ndarray],
    validation: EvalSet,
    candidates: np.ndarray | None = None,
    weight_grid: Sequence[float] = (0.0, 0.5, 1.0),
    half_lives: Sequence[float | None] = (50.0, 200.0),
    own_bonus_grid: Sequence[float] = (0.0, 20.0, 40.0, 1000.0),
    repeat_weight_grid: Sequence[float] = (2.0, 4.0, 8.0),
    metric: str = "NDCG@10",
) -> BlendResult:
    """Choose the blend on the **validation** set, in two stages.

    1. Component weights (every combination of ``weight_grid``, not all zero; combinations whose
       first non-zero weight is not the largest grid value are skipped, as rescaled duplicates) by
       ``metric`` on items new to the customer: there the repeat term plays no part.
    2. ``half_life``, ``own_bonus`` and ``repeat_weight`` (every combination) by ``metric`` on all
       items, with the weights of stage 1. A huge own bonus ranks every own product first, by its
       repeat probability (Buy-Again's idea, with recency weighting).
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
    own = own_mask(validation)
    base = blend_scores(features, weights, candidates=candidates)
    rows = []
    for half_life in half_lives:
        log_repeat = repeat_log_probability(validation, half_life)
        for bonus, rw in itertools.product(own_bonus_grid, repeat_weight_grid):
            scores = base + np.where(own, bonus + rw * log_repeat, 0.0)
            res = evaluate(scores, validation, ks=(10,), exclude_seen=False)
            rows.append({"half_life": half_life, "own_bonus": bonus, "repeat_weight": rw, metric: res[metric]})
    all_table = pd.DataFrame(rows)
    pick = all_table.iloc[int(np.argmax(all_table[metric].to_numpy()))]
    half_life = None if pd.isna(pick["half_life"]) else float(pick["half_life"])
    return BlendResult(weights, half_life, float(pick["own_bonus"]), float(pick["repeat_weight"]), new_table, all_table)


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
    weights, half_life, own_bonus, repeat_weight
        The blend (see the module docstring); typically ``**tune_blend(...).settings()``.
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
        half_life: float | None = None,
        own_bonus: float = 0.0,
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
        if not any(weights.values()):
            raise ValueError("every component weight is 0; give at least one a positive weight")
        if n_retrieve < 1:
            raise ValueError(f"n_retrieve must be >= 1, got {n_retrieve}")
        missing = [c for c in ("customer_id", "stock_code", "invoice", "invoice_date") if c not in lines.columns]
        if missing:
            raise DataError(f"lines lack column(s) {missing}; pass the cleaned lines the split was built from")
        self.split = split
        self.components = dict(components)
        self.weights = dict(weights)
        self.half_life = half_life
        self.own_bonus = float(own_bonus)
        self.repeat_weight = float(repeat_weight)
        self.retriever = retriever
        self.n_retrieve = int(min(n_retrieve, split.n_items))
        self.now = pd.Timestamp(now if now is not None else split.info.get("test_start", lines["invoice_date"].max()))
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
    def features(self, eval_set: EvalSet) -> dict[str, np.ndarray]:
        """Standardised scores of every component for ``eval_set``'s customers: name -> (n, n_items + 1)."""
        return {name: zscore_rows(fn(eval_set)) for name, fn in self.components.items()}

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
        feats = {k: v for k, v in self.features(eval_set).items() if self.weights.get(k)}
        return blend_scores(feats, {k: w for k, w in self.weights.items() if w}, own_mask(eval_set),
                            repeat_log_probability(eval_set, self.half_life), self.own_bonus,
                            self.repeat_weight, self.candidates(eval_set))

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
