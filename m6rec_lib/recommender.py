"""The full recommender: retrieval, a text path, ranking, a blend and explanation behind one call.

::

    cat = extend_catalogue(split, lines)                   # the split's products + new ones
    rec = Recommender(split, lines, components={"EASE": ease.score, "SASRec": sasrec.score},
                      new_scorers={"MiniLM closest": minilm_fn, "recent sales": cat.sales_before},
                      catalogue=cat, retriever=two_tower, **chosen.settings())
    rec.recommend(12347, k=10)   # -> DataFrame: item, description, score, source, explanation

How a customer's list is made (:meth:`Recommender.score`):

1. **Retrieval.** The two-tower model (notebook 06) returns the ``n_retrieve`` nearest products of the
   customer's history; the products the customer bought before are added (repeat purchases are
   half of a basket, notebook 01). Other products of the training period are left out.
2. **The text path.** Products first sold after the training period (new products, see
   :mod:`m6rec_lib.new_products`) have no ID vector. Those on sale before the customer's moment
   are all candidates, scored by the *new scorers* (a pretrained text model, the product's sales so
   far), each standardised over the customer's new products on sale.
3. **Ranking.** Each ID *component* (any model that scores the training-period catalogue from an
   :class:`~m6rec_lib.data.EvalSet`: EASE, SASRec, the two-tower, ...) is standardised per customer
   (z-score over the catalogue) and the standardised scores are added with ``weights``; a new
   product gets ``new_bonus`` plus its weighted new-scorer features instead. A product the customer
   bought before gets ``own_bonus + repeat_weight * log P_repeat`` on top, where ``P_repeat`` is the
   customer's purchase history as a distribution, each past purchase line weighted
   ``0.5 ** (age / half_life)`` (age in lines, 0 = the latest; notebook 05's repeat distribution).
4. **Explanation.** Each product gets a sentence built from evidence: how often and when the
   customer bought it, the past purchase it is most often bought together with (training baskets),
   the past purchase whose description is closest (new products), or how popular it is.

Everything is chosen **blind**, on validation customers the learned models were not early-stopped
on (the second of :meth:`EvalSet.halves <m6rec_lib.data.EvalSet.halves>`; the course's SASRec and
two-tower choose their epochs on the first): :func:`tune_blend` chooses the ID weights and the
repeat terms, :func:`choose_mix` and :func:`choose_entry` the text path and where its products enter the list.

A customer unknown to the data raises ``KeyError`` (an ID of the wrong type ``TypeError``); a known
customer with no purchase before the recommender's moment (a *cold* customer) gets the products most
bought by customers of the same country, or of the whole shop.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .data import DataError
from .data.evalset import EvalSet
from .metrics import evaluate, evaluate_both
from .mixture import repeat_distribution
from .new_products import Catalogue, extend_catalogue, targets_among
from .text import serializer as ser
from .text_retrieval import standardise_over

__all__ = ["Recommender", "zscore_rows", "repeat_log_probability", "own_mask", "blend_scores", "tune_blend",
           "tune_new_path", "choose_mix", "choose_entry", "path_table", "BlendResult", "NewPathResult", "check_customer_id", "check_k", "target_recall"]

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
    new: np.ndarray | None = None,
    new_bonus: float = 0.0,
) -> np.ndarray:
    """``sum_c weights[c] * features[c]``, plus ``new_bonus`` on new products, plus on own products
    ``own_bonus + repeat_weight * log_repeat``; -inf outside ``candidates``.

    ``features``: name -> (n, n_items + 1) standardised scores (:func:`zscore_rows`); ``own``:
    :func:`own_mask`; ``log_repeat``: :func:`repeat_log_probability`; ``candidates``: (n, n_items + 1)
    bool, True for the products that may be ranked; ``new``: (n_items + 1,) or (n, n_items + 1) bool,
    the new products. Column 0 (padding) is -inf.
    """
    unknown = [k for k in weights if k not in features]
    if unknown:
        raise KeyError(f"weights name unknown components {unknown}; known: {sorted(features)}")
    shape = next(iter(features.values())).shape
    out = np.zeros(shape)
    for name, w in weights.items():
        if w:
            out += w * features[name]
    if new is not None and new_bonus:
        out += np.where(new, new_bonus, 0.0)
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


def _weight_combinations(names: Sequence[str], grid: Sequence[float]) -> list[dict[str, float]]:
    """Every combination of ``grid`` values, not all zero, up to scale (the first non-zero weight is
    the largest grid value: the others are rescaled duplicates)."""
    out = []
    for combo in itertools.product(grid, repeat=len(names)):
        if not any(combo):
            continue
        first = next(w for w in combo if w)
        if first != max(grid):
            continue
        out.append(dict(zip(names, combo)))
    return out


def _argmax_row(table: pd.DataFrame, metric: str) -> pd.Series:
    return table.iloc[int(np.argmax(table[metric].to_numpy()))]


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
    """Choose the ID blend on ``validation`` (customers no model was selected on), in two stages.

    1. Component weights (every combination of ``weight_grid``, not all zero, up to scale) by
       ``metric`` on items new to the customer: there the repeat term plays no part.
    2. ``half_life``, ``own_bonus`` and ``repeat_weight`` (every combination) by ``metric`` on all
       items, with the weights of stage 1. A huge own bonus ranks every own product first, by its
       repeat probability (Buy-Again's idea, with recency weighting).
    """
    names = list(features)
    rows = []
    for w in _weight_combinations(names, weight_grid):
        scores = blend_scores(features, w, candidates=candidates)
        res = evaluate(scores, validation, ks=(10,), exclude_seen=True)
        rows.append({**w, metric: res[metric]})
    new_table = pd.DataFrame(rows)
    best = _argmax_row(new_table, metric)
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
    pick = _argmax_row(all_table, metric)
    half_life = None if pd.isna(pick["half_life"]) else float(pick["half_life"])
    return BlendResult(weights, half_life, float(pick["own_bonus"]), float(pick["repeat_weight"]), new_table, all_table)


@dataclass
class NewPathResult:
    """What :func:`choose_mix` and :func:`choose_entry` chose: the new scorers' ``weights`` (their mix,
    times the entry's scale) and ``new_bonus`` (the offset; -inf: no new product enters);
    ``path_table`` (stage 3: each mix on the new products alone) and ``entry_table`` (stage 4: each
    scale and offset on the whole list)."""

    weights: dict[str, float]
    new_bonus: float
    path_table: pd.DataFrame
    entry_table: pd.DataFrame | None = None

    @property
    def enabled(self) -> bool:
        return any(self.weights.values()) and np.isfinite(self.new_bonus)


def choose_mix(new_features: Mapping[str, np.ndarray], new_targets: EvalSet, allowed: np.ndarray,
               weight_grid: Sequence[float] = (0.0, 0.5, 1.0), metric: str = "NDCG@10") -> NewPathResult:
    """Stage 3: which mix of new-product scorers ranks the customers' new-product targets best.

    ``new_targets``: validation customers with their new-product targets only
    (:func:`~m6rec_lib.new_products.targets_among`); ``new_features``: name -> (len(new_targets),
    n_items + 1) standardised scores (:func:`~m6rec_lib.text_retrieval.standardise_over`);
    ``allowed``: the same shape, the new products on sale. Every combination of ``weight_grid``
    (not all zero, up to scale) ranks the allowed products only, by ``metric``. The result's
    ``weights`` are the best mix (its ``new_bonus`` is -inf until :func:`choose_entry`).
    """
    if not new_features:
        raise ValueError("give at least one new-product scorer, e.g. {'recent sales': ...}")
    names = list(new_features)
    rows = []
    for w in _weight_combinations(names, weight_grid):
        mix = sum(w[n] * new_features[n] for n in names if w[n])
        value = evaluate(np.where(allowed, mix, -np.inf), new_targets, ks=(10,))[metric] if len(new_targets) else 0.0
        rows.append({**w, metric: value})
    path_table = pd.DataFrame(rows)
    best = _argmax_row(path_table, metric)
    return NewPathResult({n: float(best[n]) for n in names}, -np.inf, path_table)


def choose_entry(base_scores: np.ndarray, new_features: Mapping[str, np.ndarray], mix: NewPathResult,
                 validation: EvalSet, allowed: np.ndarray, scale_grid: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
                 bonus_grid: Sequence[float] = (-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0),
                 metric: str = "NDCG@10") -> NewPathResult:
    """Stage 4: where the new products enter the list.

    ``base_scores``: (n, n_items + 1) the ID blend on ``validation`` (new products -inf, except those
    bought before); ``new_features``: name -> (n, n_items + 1) standardised scores, at least the names
    ``mix`` weights; ``allowed``: (n, n_items + 1) the new products on sale. A new product scores
    ``b + s * mix`` (plus its own-product terms); every scale ``s`` and offset ``b``, and "never"
    (first row: no new product enters), is judged by the mean of ``metric`` over the two lists the
    recommender serves: all items and items new to the customer. Ties keep the earlier row, so
    "never" wins unless new products help.
    """
    names = [n for n, w in mix.weights.items() if w]
    if not names:
        raise ValueError("the mix weights no scorer; choose_mix first")
    path = sum(mix.weights[n] * new_features[n] for n in names)
    base_new = np.where(allowed, np.where(np.isfinite(base_scores), base_scores, 0.0), 0.0)   # own-product terms

    def judge(scores: np.ndarray) -> dict:
        both = evaluate_both(scores, validation, ks=(10,))[metric]          # one pass, both views
        return {f"{metric} all items": both["all"], f"{metric} new to the customer": both["new"],
                "mean": (both["all"] + both["new"]) / 2}

    rows = [{"scale": 0.0, "new_bonus": -np.inf, **judge(base_scores)}]
    for scale, bonus in itertools.product(scale_grid, bonus_grid):
        rows.append({"scale": scale, "new_bonus": bonus,
                     **judge(np.where(allowed, base_new + bonus + scale * path, base_scores))})
    entry_table = pd.DataFrame(rows)
    pick = _argmax_row(entry_table, "mean")
    scale, bonus = float(pick["scale"]), float(pick["new_bonus"])
    weights = {n: scale * w for n, w in mix.weights.items()}
    return NewPathResult(weights, bonus if scale else -np.inf, mix.path_table, entry_table)


def path_table(mixes: Mapping[str, NewPathResult], entries: Mapping[str, NewPathResult]) -> pd.DataFrame:
    """One row per text-path procedure: the mix :func:`choose_mix` chose and its stage-3 NDCG@10, the
    entry :func:`choose_entry` chose (scale, offset) and the mean of both lists it reached."""
    rows = {}
    for label, mix in mixes.items():
        entry = entries[label]
        best = entry.entry_table.iloc[int(entry.entry_table["mean"].to_numpy().argmax())]
        rows[label] = {"mix": ", ".join(f"{k} x {w:g}" for k, w in mix.weights.items() if w),
                       "stage 3: new products only": float(mix.path_table.iloc[:, -1].max()),
                       "stage 4: scale s": float(best["scale"]), "stage 4: offset b": float(best["new_bonus"]),
                       "stage 4: mean of both lists": float(best["mean"])}
    return pd.DataFrame(rows).T


def tune_new_path(base_scores: np.ndarray, new_features: Mapping[str, np.ndarray], validation: EvalSet,
                  allowed: np.ndarray, is_new: np.ndarray, weight_grid: Sequence[float] = (0.0, 0.5, 1.0),
                  **entry_grids) -> NewPathResult:
    """:func:`choose_mix` on ``validation``'s new-product targets, then :func:`choose_entry` on the
    whole of ``validation`` (all arrays over every customer of ``validation``)."""
    if not new_features:
        raise ValueError("give at least one new-product scorer, e.g. {'recent sales': ...}")
    new_targets = targets_among(validation, is_new)
    rows = new_targets.info["positions"]
    mix = choose_mix({k: v[rows] for k, v in new_features.items()}, new_targets, allowed[rows], weight_grid)
    return choose_entry(base_scores, new_features, mix, validation, allowed, **entry_grids)


def target_recall(rec: "Recommender", eval_set: EvalSet, n_retrieve: Sequence[int]) -> pd.DataFrame:
    """How many targets survive retrieval plus the customers' own products, for several ``n_retrieve``.

    One row per value: the mean number of candidates per customer and the share of target lines
    kept, over all targets and over targets new to the customer (new products count, and are out of
    retrieval's reach). ``rec.n_retrieve`` is restored afterwards.
    """
    kept_before = rec.n_retrieve
    seen = eval_set.history[np.asarray(eval_set.users)]
    rows = []
    try:
        for n in n_retrieve:
            rec.n_retrieve = int(min(n, rec.split.n_items))
            mask = rec.candidates(eval_set, new_products=False)
            hit = total = hit_new = total_new = 0
            for row, targets in enumerate(eval_set.targets):
                t = targets[targets > 0]
                new = t[np.asarray(seen[row, t].todense()).ravel() == 0] if len(t) else t
                hit, total = hit + int(mask[row, t].sum()), total + len(targets)
                hit_new, total_new = hit_new + int(mask[row, new].sum()), total_new + len(new)
            rows.append({"retrieved": int(n), "candidates per customer": float(mask.sum(1).mean()),
                         "targets kept (all)": hit / max(total, 1), "targets kept (new)": hit_new / max(total_new, 1)})
    finally:
        rec.n_retrieve = kept_before
    return pd.DataFrame(rows).set_index("retrieved")


# =============================================================================================
# checking what a caller passes
# =============================================================================================

def check_customer_id(customer_id) -> int:
    """The customer ID as an int; TypeError for anything but an integer (bool included)."""
    if isinstance(customer_id, (bool, np.bool_)) or not isinstance(customer_id, (int, np.integer)):
        raise TypeError(
            f"customer IDs are integers such as 12347, got {customer_id!r} ({type(customer_id).__name__}); "
            "pass the integer itself, e.g. recommend(int(cid), k=10), and pick IDs from rec.split.users.customer_ids"
        )
    return int(customer_id)


def check_k(k, n_items: int) -> int:
    """``k`` as an int in 1..n_items; TypeError for a non-integer (bool included), ValueError out of range."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer number of products such as 10, got {k!r} ({type(k).__name__})")
    if not 1 <= int(k) <= n_items:
        raise ValueError(f"k must be an integer in 1..{n_items} (the products in the catalogue), got {k}")
    return int(k)


# =============================================================================================
# the recommender
# =============================================================================================

class Recommender:
    """Retrieval, a text path for new products, ranking and explanation for the customers of one split.

    Parameters
    ----------
    split
        The :func:`~m6rec_lib.data.next_basket_split` the models were trained on (its item index,
        customers and training period).
    lines
        The cleaned lines the split was built from; the recommender knows every purchase strictly
        before ``now`` (and uses them as each customer's history in :meth:`recommend`).
    components
        name -> ``fn(eval_set) -> (len(eval_set), split.n_items + 1)`` scores of an ID model (e.g.
        ``ease.score``, ``sasrec.score``), called with eval sets over the split's products.
    weights, half_life, own_bonus, repeat_weight
        The blend (see the module docstring); typically ``**tune_blend(...).settings()``. ``weights``
        may also name ``new_scorers``.
    new_scorers
        name -> ``fn(eval_set) -> (len(eval_set), catalogue.n_items + 1)`` scores of new products,
        called with eval sets over the catalogue (e.g. a text model, ``catalogue.sales_before``).
        Standardised over each customer's new products on sale.
    new_bonus
        The offset of new products (:func:`tune_new_path`); ``-inf`` or no weighted new scorer: the
        list holds no new product except those the customer bought before.
    catalogue
        The :class:`~m6rec_lib.new_products.Catalogue` (default: built from ``split`` and ``lines``).
    retriever
        An object with ``retrieve(sequences, top_k) -> (ids, scores)`` (the two-tower model), or
        None to rank the whole catalogue.
    n_retrieve
        Products retrieved per customer (the customer's own products are added).
    embeddings
        (catalogue.n_items + 1, d) unit text vectors (MiniLM), used to explain new products; optional.
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
        *,
        new_scorers: Mapping[str, ScoreFn] | None = None,
        new_bonus: float = -np.inf,
        catalogue: Catalogue | None = None,
        embeddings: np.ndarray | None = None,
    ) -> None:
        if not components:
            raise ValueError("give at least one scoring component, e.g. {'EASE': ease.score}")
        new_scorers = dict(new_scorers or {})
        clash = set(components) & set(new_scorers)
        if clash:
            raise ValueError(f"{sorted(clash)} name both an ID component and a new-product scorer; rename one")
        unknown = [k for k in weights if k not in components and k not in new_scorers]
        if unknown:
            raise KeyError(f"weights name unknown components {unknown}; known: {sorted(components) + sorted(new_scorers)}")
        if not any(weights.get(k) for k in components):
            raise ValueError("every ID component weight is 0; give at least one a positive weight")
        if isinstance(n_retrieve, bool) or not isinstance(n_retrieve, (int, np.integer)) or n_retrieve < 1:
            raise ValueError(f"n_retrieve must be an integer >= 1, got {n_retrieve!r}")
        missing = [c for c in ("customer_id", "stock_code", "invoice", "invoice_date") if c not in lines.columns]
        if missing:
            raise DataError(f"lines lack column(s) {missing}; pass the cleaned lines the split was built from")
        self.split = split
        self.catalogue = catalogue if catalogue is not None else extend_catalogue(split, lines)
        if self.catalogue.n_base != split.n_items:
            raise ValueError(f"the catalogue was built for {self.catalogue.n_base} base products, the split has "
                             f"{split.n_items}; build it with extend_catalogue(split, lines)")
        self.components = dict(components)
        self.new_scorers = new_scorers
        self.weights = {k: float(v) for k, v in weights.items()}
        self.half_life = half_life
        self.own_bonus = float(own_bonus)
        self.repeat_weight = float(repeat_weight)
        self.new_bonus = float(new_bonus)
        self.retriever = retriever
        self.n_retrieve = int(min(n_retrieve, split.n_items))
        self.embeddings = embeddings
        self.now = pd.Timestamp(now if now is not None else split.info.get("test_start", lines["invoice_date"].max()))
        cat = self.catalogue

        known = lines[lines["invoice_date"] < self.now]
        if len(known) == 0:
            raise DataError(f"no purchase before now={self.now}; pick a later moment")
        id_of = pd.Series(np.arange(1, cat.n_items + 1), index=pd.Index(cat.codes[1:]))
        item = id_of.reindex(known["stock_code"].astype(str).to_numpy()).to_numpy()
        known = known.assign(user=split.users.rows(known["customer_id"].to_numpy()),
                             item=np.where(pd.isna(item), -1, item).astype(np.int64))
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
                                shape=(len(inv_codes), cat.n_items + 1))
        baskets.sum_duplicates()
        baskets.data[:] = 1.0
        self._baskets = baskets.tocsc()
        self.popularity = np.zeros(cat.n_items + 1, dtype=np.int64)
        self.popularity[: split.n_items + 1] = np.asarray((split.train_matrix > 0).sum(axis=0)).ravel()
        self.popularity[0] = 0
        if "country" in train.columns:
            buyers = train.drop_duplicates(["customer_id", "item"])
            self._country_pop = buyers.groupby(["country", "item"]).size()
        else:
            self._country_pop = pd.Series(dtype=np.int64)

    def variant(self, **changes) -> "Recommender":
        """A copy with some settings changed (``weights``, ``new_bonus``, ``half_life``, ``own_bonus``,
        ``repeat_weight``, ``n_retrieve``, ``retriever``); the data and models are shared, not copied.
        ``weights`` given as a mapping replaces the weights of the names it holds and keeps the others."""
        allowed = {"weights", "new_bonus", "half_life", "own_bonus", "repeat_weight", "n_retrieve", "retriever"}
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(f"variant() cannot change {sorted(unknown)}; it changes {sorted(allowed)}")
        out = copy.copy(self)
        for name, value in changes.items():
            if name == "weights":
                value = {**self.weights, **{k: float(v) for k, v in value.items()}}
                known = set(self.components) | set(self.new_scorers)
                if set(value) - known:
                    raise KeyError(f"weights name unknown components {sorted(set(value) - known)}; known: {sorted(known)}")
            elif name in ("new_bonus", "own_bonus", "repeat_weight"):
                value = float(value)
            setattr(out, name, value)
        return out

    # ------------------------------------------------------------------ scoring eval sets
    @property
    def uses_new_products(self) -> bool:
        """True when new products enter the list (a weighted new scorer and a finite ``new_bonus``)."""
        return np.isfinite(self.new_bonus) and any(self.weights.get(k) for k in self.new_scorers)

    def _check(self, eval_set: EvalSet) -> None:
        if eval_set.n_items != self.catalogue.n_items:
            raise ValueError(
                f"the eval set covers {eval_set.n_items} products, the recommender's catalogue {self.catalogue.n_items}: "
                "score the catalogue's eval sets (rec.catalogue.validation / .test, or their subsets)")

    def features(self, eval_set: EvalSet, which: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Standardised scores for ``eval_set`` (a catalogue eval set): name -> (n, catalogue.n_items + 1).

        ID components: z-scores over the split's products, 0 on new products. New scorers: standardised
        over each customer's new products on sale, 0 elsewhere. ``which``: only these names.
        """
        self._check(eval_set)
        cat = self.catalogue
        names = list(self.components) + list(self.new_scorers) if which is None else list(which)
        out = {}
        base = cat.base_view(eval_set) if any(n in self.components for n in names) else None
        allowed = cat.on_sale(eval_set) & cat.is_new[None, :] if any(n in self.new_scorers for n in names) else None
        for name in names:
            if name in self.components:
                s = self.components[name](base)
                s = s.numpy() if hasattr(s, "numpy") else np.asarray(s)
                out[name] = cat.widen(zscore_rows(s), fill=0.0)
            elif name in self.new_scorers:
                out[name] = standardise_over(self.new_scorers[name](eval_set), allowed)
            else:
                raise KeyError(f"no component or new scorer named {name!r}")
        return out

    def candidates(self, eval_set: EvalSet, new_products: bool | None = None) -> np.ndarray:
        """(n, catalogue.n_items + 1) bool: retrieved products, each customer's own past products and
        (``new_products``, default :attr:`uses_new_products`) the new products on sale."""
        self._check(eval_set)
        n, width = len(eval_set), eval_set.n_items + 1
        mask = np.zeros((n, width), dtype=bool)
        if self.retriever is None:
            mask[:, 1: self.split.n_items + 1] = True
        else:
            base = self.catalogue.base_view(eval_set)
            ids, _ = self.retriever.retrieve(base.sequences, top_k=self.n_retrieve)
            ids = np.asarray(ids)
            mask[np.repeat(np.arange(n), ids.shape[1]), ids.ravel()] = True
        mask |= own_mask(eval_set)
        if self.uses_new_products if new_products is None else new_products:
            mask |= self.catalogue.on_sale(eval_set) & self.catalogue.is_new[None, :]
        mask[:, 0] = False
        return mask

    def score(self, eval_set: EvalSet) -> np.ndarray:
        """The final scores of ``eval_set``'s customers: (n, catalogue.n_items + 1), -inf outside the candidates."""
        names = [k for k, w in self.weights.items() if w and (k in self.components or self.uses_new_products)]
        feats = self.features(eval_set, names)
        return blend_scores(feats, {k: self.weights[k] for k in names}, own_mask(eval_set),
                            repeat_log_probability(eval_set, self.half_life), self.own_bonus, self.repeat_weight,
                            self.candidates(eval_set), self.catalogue.is_new[None, :],
                            self.new_bonus if self.uses_new_products else 0.0)

    def score_many(self, eval_set: EvalSet, variants: Mapping[str, "Recommender"],
                   features: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """:meth:`score` of several variants (from :meth:`variant`) on one eval set, every feature and
        the retrieval computed once. ``features``: already computed ones (:meth:`features`), reused."""
        feats = dict(features or {})
        needed = {k for v in variants.values() for k, w in v.weights.items()
                  if w and (k in v.components or v.uses_new_products)}
        missing = sorted(needed - set(feats))
        if missing:
            feats.update(self.features(eval_set, missing))
        own, retrieved = own_mask(eval_set), {}
        out = {}
        for name, v in variants.items():
            if v.components is not self.components or v.catalogue is not self.catalogue:
                raise ValueError(f"variant {name!r} was not made by this recommender's variant(); it must share its models")
            key = (v.n_retrieve, id(v.retriever))
            if key not in retrieved:
                retrieved[key] = v.candidates(eval_set, new_products=False)
            cand = retrieved[key] | (self.catalogue.on_sale(eval_set) & self.catalogue.is_new[None, :]) \
                if v.uses_new_products else retrieved[key]
            names = [k for k, w in v.weights.items() if w and (k in v.components or v.uses_new_products)]
            out[name] = blend_scores({k: feats[k] for k in names}, {k: v.weights[k] for k in names}, own,
                                     repeat_log_probability(eval_set, v.half_life), v.own_bonus, v.repeat_weight, cand,
                                     self.catalogue.is_new[None, :], v.new_bonus if v.uses_new_products else 0.0)
        return out

    def ablations(self, eval_set: EvalSet):
        """The recommender's scores, then with one part taken out at a time, nothing re-tuned.

        Yields ``(name, scores)``: ``"capstone"``; ``"without the text path"`` (no new product but
        those bought before); ``"without <new scorer>"`` for each weighted new scorer, when another
        remains; ``"without <component>"`` for each weighted ID component, when another remains;
        ``"without the repeat term"`` (no own bonus, no repeat weight); ``"without retrieval"``
        (every product of the training period is a candidate). When a scorer or component is taken
        out, the others of its kind are scaled up to the same total weight, so that the scale the
        offsets and bonuses were tuned for stays. Features are computed once.
        """
        names = [k for k, w in self.weights.items() if w and (k in self.components or self.uses_new_products)]
        feats = self.features(eval_set, names)
        own, log_repeat = own_mask(eval_set), repeat_log_probability(eval_set, self.half_life)
        is_new = self.catalogue.is_new[None, :]
        cand = self.candidates(eval_set)
        weights = {k: self.weights[k] for k in names}
        new_bonus = self.new_bonus if self.uses_new_products else 0.0

        def blend(w, candidates=cand, own_bonus=self.own_bonus, repeat_weight=self.repeat_weight, bonus=new_bonus):
            return blend_scores(feats, w, own, log_repeat, own_bonus, repeat_weight, candidates, is_new, bonus)

        yield "capstone", blend(weights)
        id_names = [k for k in names if k in self.components]
        new_names = [k for k in names if k in self.new_scorers]
        def without(name: str, kind: list[str]) -> dict[str, float]:
            rest = [k for k in kind if k != name]
            factor = sum(weights[k] for k in kind) / sum(weights[k] for k in rest)
            return {k: (w * factor if k in rest else w) for k, w in weights.items() if k != name}

        if new_names:
            yield "without the text path", blend({k: weights[k] for k in id_names},
                                                 self.candidates(eval_set, new_products=False), bonus=0.0)
            if len(new_names) > 1:
                for name in new_names:
                    yield f"without {name}", blend(without(name, new_names))
        if len(id_names) > 1:
            for name in id_names:
                yield f"without {name}", blend(without(name, id_names))
        yield "without the repeat term", blend(weights, own_bonus=0.0, repeat_weight=0.0)
        if self.retriever is not None:
            everything = cand.copy()
            everything[:, 1: self.split.n_items + 1] = True
            yield "without retrieval", blend(weights, everything)

    # ------------------------------------------------------------------ one customer
    def history(self, customer_id: int) -> pd.DataFrame:
        """The customer's purchases before ``now`` (newest first): date, invoice, item, description, quantity."""
        row = self._row(customer_id)
        idx = self._by_user.get(row)
        cols = ["invoice_date", "invoice", "item", "description", "quantity"]
        if idx is None:
            return pd.DataFrame(columns=cols)
        out = self._known.iloc[idx]
        out = out.assign(description=[self.catalogue.text(int(i)) for i in out["item"]])
        return out[cols].iloc[::-1].reset_index(drop=True)

    def _row(self, customer_id) -> int:
        cid = check_customer_id(customer_id)
        if cid not in self.split.users:
            raise KeyError(
                f"customer {cid} is unknown: no purchase of theirs is in the data. Check the ID, or "
                "pick one from rec.split.users.customer_ids."
            )
        return int(self.split.users.rows([cid])[0])

    def _eval_set_for(self, row: int) -> EvalSet:
        """A one-customer eval set over the catalogue at ``now`` (their real row, an empty target)."""
        idx = self._by_user[row]
        items = self._known["item"].to_numpy()[idx].astype(np.int64)
        uniq, counts = np.unique(items, return_counts=True)
        history = sp.csr_matrix((counts.astype(np.float64), (np.full(len(uniq), row), uniq)),
                                shape=(self.split.n_users, self.catalogue.n_items + 1))
        return EvalSet(users=np.array([row]), targets=[np.array([], dtype=np.int64)], history=history,
                       sequences=[items], moments=np.array([np.datetime64(self.now, "ns")]), name="request")

    def recommend(self, customer_id: int, k: int = 10, exclude_bought: bool = False) -> pd.DataFrame:
        """The top ``k`` products for one customer, with scores and explanations.

        Returns a DataFrame with columns ``item`` (ID), ``description``, ``score``, ``source``
        ("bought before", "retrieved", "new product" or "popular"), ``explanation``.
        ``exclude_bought``: only products new to the customer. Raises TypeError for a customer ID or
        ``k`` that is not an integer (bool included), KeyError for a customer unknown to the data and
        ValueError for an impossible ``k``. A customer with no purchase before ``now`` gets the most
        popular products of their country (source "popular").
        """
        k = check_k(k, self.catalogue.n_items)
        row = self._row(customer_id)
        if not isinstance(exclude_bought, (bool, np.bool_)):
            raise TypeError(f"exclude_bought must be True or False, got {exclude_bought!r}")
        if row not in self._by_user:
            return self._cold(int(customer_id), k)
        es = self._eval_set_for(row)
        scores = self.score(es)[0]
        own = es.history[row].toarray()[0] > 0
        if exclude_bought:
            scores[own] = -np.inf
        n_ok = int(np.isfinite(scores).sum())
        top = np.argsort(-scores, kind="stable")[: min(k, n_ok)]
        is_new = self.catalogue.is_new
        rows = []
        for item in top:
            source = "bought before" if own[item] else "new product" if is_new[item] else "retrieved"
            rows.append({"item": int(item), "description": self.catalogue.text(int(item)),
                         "score": float(scores[item]), "source": source, "explanation": self.explain(row, int(item))})
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
            counts = pd.Series(self.popularity[1: self.split.n_items + 1], index=np.arange(1, self.split.n_items + 1))
        counts = counts[~counts.index.isin(list(exclude))].sort_values(ascending=False, kind="stable")
        rows = []
        for item, n in counts.iloc[:k].items():
            rows.append({"item": int(item), "description": self.catalogue.text(int(item)), "score": float(n),
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
        if self.catalogue.is_new[item]:
            first = pd.Timestamp(self.catalogue.first_sale[item])
            sold = int((self.catalogue.sale_items[self.catalogue.sale_dates < np.datetime64(self.now, "ns")] == item).sum())
            text = f"New in the shop since {first:%d %b %Y} (sold {sold} times since)"
            if self.embeddings is not None and len(own):
                sims = self.embeddings[own] @ self.embeddings[item]
                j = int(np.argmax(sims))
                return f"{text}; its description is close to {self.catalogue.text(int(own[j]))}, which you bought."
            return text + "."
        together = np.asarray((self._baskets[:, own].T @ self._baskets[:, [item]]).todense()).ravel()
        if together.max() > 0:
            j = int(np.argmax(together))
            other = int(own[j])
            last = mine.loc[mine["item"] == other, "invoice_date"].max()
            return (f"Often bought together with {self.catalogue.text(other)}, which you bought "
                    f"{ser.time_phrase(last, self.now)} (in {int(together[j])} baskets).")
        return f"Popular: bought by {int(self.popularity[item])} customers in the training period."
