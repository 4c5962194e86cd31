"""Full-catalogue ranking metrics and the batched evaluator.

Three layers, each written to be read:

1. **Per-user functions** on one ranked list of item IDs (best first): :func:`hit_rate_at_k`,
   :func:`recall_at_k`, :func:`ndcg_at_k`, :func:`reciprocal_rank`, plus :func:`auc` for
   click / no-click tasks and :func:`coverage_at_k` over many lists. :func:`rank_items` turns one
   score row into such a list. They are the definitions; the tests compare everything else to them.
2. **The batched evaluator** :func:`evaluate` (and :func:`evaluate_both`, :func:`results_table`),
   which computes the same numbers for thousands of customers at once with ``torch.topk``, and
   :func:`evaluate_sampled`, the sampled-negative protocol that the course shows to be misleading.
3. **Intervals**: :func:`per_user_metrics` keeps every customer's own values, and
   :func:`paired_bootstrap` (:func:`paired_bootstrap_auc` for click tasks) turns two models' values
   on the same customers into a difference with a 95% interval and a verdict. The course's rule:
   "A beats B" is said (and asserted) only when that interval excludes 0; otherwise the text says
   "no measurable difference".

Conventions (see CONTRIBUTING.md)
---------------------------------
* A score matrix has shape ``(n_users, n_items + 1)``; column 0 is the padding ID and is never
  ranked (it is dropped before ranking, which is the same as scoring it ``-inf`` and putting it last).
* **Ties** are broken by the lower item ID: the ranking is "sort by score descending, then by item ID
  ascending". Item IDs are a random permutation, so this is a reproducible random tie-break, and a
  model that gives every item the same score gets no credit it did not earn.
* A target equal to ``-1`` (an item unknown to the index) stays in every denominator and never hits.
* Per-user numbers are averaged over users: every customer counts the same.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from typing import Callable, Iterator, Mapping, Sequence, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .data import DataError, EvalSet

ScoreFn = Callable[[np.ndarray], Union[np.ndarray, torch.Tensor]]
ScoresOrFn = Union[np.ndarray, torch.Tensor, ScoreFn]

__all__ = [
    "rank_items",
    "hit_rate_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "reciprocal_rank",
    "mrr",
    "auc",
    "coverage_at_k",
    "evaluate",
    "evaluate_both",
    "evaluate_sampled",
    "results_table",
    "per_user_metrics",
    "per_user_metrics_both",
    "Interval",
    "PairedDifference",
    "bootstrap_interval",
    "paired_bootstrap",
    "bootstrap_auc",
    "paired_bootstrap_auc",
    "comparison_table",
]


# =============================================================================================
# 1. Per-user metrics on one ranked list
# =============================================================================================

def rank_items(scores: np.ndarray | Sequence[float], k: int | None = None,
               exclude: Sequence[int] | None = None) -> np.ndarray:
    """The item IDs of one score row, best first (padding excluded, ties by lower item ID).

    ``scores``: (n_items + 1,) one user's scores, column 0 = padding. ``exclude``: item IDs to leave
    out of the ranking (e.g. what the customer bought before). Returns (n,) int64 item IDs, ``n =
    n_items - len(exclude)`` or ``k`` if given. This is the reference definition of "the ranking";
    :func:`evaluate` computes the same thing much faster.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"rank_items takes one score row of shape (n_items + 1,), got {scores.shape}")
    item_ids = np.arange(1, len(scores))
    item_scores = scores[1:]
    if exclude is not None and len(exclude):
        keep = ~np.isin(item_ids, np.asarray(exclude))
        item_ids, item_scores = item_ids[keep], item_scores[keep]
    order = np.lexsort((item_ids, -item_scores))  # last key is the primary one: score descending
    ranking = item_ids[order]
    return ranking if k is None else ranking[:k]


def _check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1 (the length of the top-K list), got {k!r}")
    return int(k)


def _as_target_set(targets: Sequence[int]) -> list[int]:
    targets = [int(t) for t in np.asarray(targets).ravel()]
    if not targets:
        raise ValueError("targets is empty: a metric needs at least one target item")
    return targets


def hit_rate_at_k(ranking: Sequence[int], targets: Sequence[int], k: int) -> float:
    """HR@K: 1.0 if at least one target is among the first ``k`` ranked items, else 0.0.

    ``ranking``: (n,) item IDs best first. ``targets``: (t,) item IDs (``-1`` never hits).
    """
    k = _check_k(k)
    target_set = set(_as_target_set(targets))
    return float(any(int(item) in target_set for item in list(ranking)[:k]))


def recall_at_k(ranking: Sequence[int], targets: Sequence[int], k: int) -> float:
    """Recall@K = |top-K ∩ targets| / |targets| (``-1`` targets count in the denominator)."""
    k = _check_k(k)
    targets = _as_target_set(targets)
    target_set = set(targets)
    hits = sum(int(item) in target_set for item in list(ranking)[:k])
    return hits / len(targets)


def ndcg_at_k(ranking: Sequence[int], targets: Sequence[int], k: int) -> float:
    """NDCG@K with binary relevance.

    DCG = sum over hits at (0-based) rank r < k of 1 / log2(r + 2); IDCG is the DCG of a perfect list,
    which puts min(|targets|, k) hits first. ``-1`` targets count in |targets| but never hit.
    """
    k = _check_k(k)
    targets = _as_target_set(targets)
    target_set = set(targets)
    dcg = sum(1.0 / np.log2(r + 2) for r, item in enumerate(list(ranking)[:k]) if int(item) in target_set)
    idcg = sum(1.0 / np.log2(r + 2) for r in range(min(len(targets), k)))
    return float(dcg / idcg)


def reciprocal_rank(ranking: Sequence[int], targets: Sequence[int]) -> float:
    """1 / (1-based rank of the first target in the full ranking), 0.0 if no target is ranked.

    The mean of this over users is the MRR.
    """
    target_set = set(_as_target_set(targets))
    for r, item in enumerate(ranking):
        if int(item) in target_set:
            return 1.0 / (r + 1)
    return 0.0


mrr = reciprocal_rank  # the per-user quantity whose mean is the MRR


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (n,), ascending; tied values all get the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # the start of each run of equal values, and the run each sorted position belongs to
    new_run = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)                   # 0-based first position of each run
    run_end = np.r_[run_start[1:], len(values)]           # exclusive
    run_mean_rank = (run_start + 1 + run_end) / 2.0       # mean of the 1-based ranks start+1..end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = run_mean_rank[run_id]
    return ranks


def auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """ROC AUC from ranks (the Mann-Whitney statistic), ties counted as one half.

    ``labels``: (n,) 0/1 (or bool); ``scores``: (n,) higher = more likely positive. AUC is the
    probability that a random positive is scored above a random negative:
    ``(sum of positive ranks - n_pos (n_pos + 1) / 2) / (n_pos * n_neg)``.
    Equals ``sklearn.metrics.roc_auc_score(labels, scores)``.
    """
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores must have the same length, got {labels.shape} and {scores.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1 (or booleans); pass (y == positive_class) for other codes")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; fix the model output before computing AUC")
    positive = labels.astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative label")
    ranks = _average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def coverage_at_k(rankings: Sequence[Sequence[int]] | np.ndarray, n_items: int, k: int) -> float:
    """Catalogue coverage@K: the fraction of the ``n_items`` items found in at least one top-K list.

    ``rankings``: one ranked list of item IDs per user (any lengths; only the first ``k`` count).
    """
    k = _check_k(k)
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    seen: set[int] = set()
    for ranking in rankings:
        seen.update(int(i) for i in list(ranking)[:k] if 1 <= int(i) <= n_items)
    return len(seen) / n_items


# =============================================================================================
# 2. The batched evaluator
# =============================================================================================

def _check_ks(ks: Sequence[int] | int) -> tuple[int, ...]:
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    ks = tuple(_check_k(k) for k in ks)
    if not ks:
        raise ValueError("ks is empty; pass e.g. ks=(10, 50)")
    return tuple(sorted(set(ks)))


def _view_targets(eval_set: EvalSet, exclude_seen: bool) -> list[np.ndarray]:
    """Per evaluated user, the target item IDs of one view, validated.

    ``exclude_seen=False``: the whole basket. ``True``: the basket's items with no purchase in the
    user's history (``-1`` targets are unknown to the index, hence never bought before: they stay).
    """
    n_items = eval_set.n_items
    targets = [np.asarray(t, dtype=np.int64).ravel() for t in eval_set.targets]
    for pos, t in enumerate(targets):
        bad = (t == 0) | (t < -1) | (t > n_items)
        if bad.any():
            raise DataError(
                f"eval set {eval_set.name!r}, user position {pos}: target IDs {t[bad].tolist()} "
                f"are outside 1..{n_items} (and are not -1, the unknown-item ID); the targets must use "
                "the same ItemIndex as the history matrix."
            )
    if not exclude_seen or not targets:
        return targets
    # One vectorised look-up of every (user, known target) pair in the history matrix.
    history = eval_set.history[np.asarray(eval_set.users)]               # (n_eval, n_items + 1)
    lengths = [len(t) for t in targets]
    rows = np.repeat(np.arange(len(targets)), lengths)
    flat = np.concatenate(targets)
    is_new = np.ones(len(flat), dtype=bool)                               # -1 targets stay
    known = flat > 0
    if known.any():
        is_new[known] = np.asarray(history[rows[known], flat[known]]).ravel() <= 0
    return [t[new] for t, new in zip(targets, np.split(is_new, np.cumsum(lengths)[:-1]))]


def _check_eval_set(eval_set: EvalSet) -> None:
    for attr in ("users", "targets", "history", "n_items"):
        if not hasattr(eval_set, attr):
            raise TypeError(f"expected an EvalSet (m6rec_lib.data.EvalSet), got {type(eval_set).__name__}")
    users = np.asarray(eval_set.users)
    if len(users) and (users.min() < 0 or users.max() >= eval_set.history.shape[0]):
        raise DataError(
            f"eval set {eval_set.name!r}: user rows must lie in 0..{eval_set.history.shape[0] - 1} "
            "(the rows of its history matrix)"
        )


def _score_batches(scores_or_fn: ScoresOrFn, eval_set: EvalSet, positions: np.ndarray,
                   batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(batch_positions (b,), item_scores (b, n_items))``: scores with column 0 dropped.

    Column ``c`` of ``item_scores`` is item ID ``c + 1``. ``scores_or_fn`` is a dense
    (len(eval_set), n_items + 1) array / tensor, or ``fn(batch_positions) -> (b, n_items + 1)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    width = eval_set.n_items + 1
    is_fn = callable(scores_or_fn) and not isinstance(scores_or_fn, (np.ndarray, torch.Tensor))
    if not is_fn:
        if hasattr(scores_or_fn, "toarray"):
            raise TypeError("scores are a sparse matrix; pass a dense array (call .toarray()) or a callable")
        if not isinstance(scores_or_fn, torch.Tensor):
            scores_or_fn = np.asarray(scores_or_fn)
        expected = (len(eval_set), width)
        if tuple(scores_or_fn.shape) != expected:
            raise ValueError(
                f"scores have shape {tuple(scores_or_fn.shape)} but eval set {eval_set.name!r} needs "
                f"{expected}: one row per evaluated user (in eval_set order) and n_items + 1 columns "
                "(column 0 = padding). Score exactly the eval set's users, e.g. model.score(eval_set)."
            )
    for start in range(0, len(positions), batch_size):
        batch = positions[start:start + batch_size]
        if is_fn:
            block = scores_or_fn(batch)
            if not isinstance(block, torch.Tensor):
                block = np.asarray(block)
            if tuple(block.shape) != (len(batch), width):
                raise ValueError(
                    f"the score function returned shape {tuple(block.shape)} for {len(batch)} positions; "
                    f"it must return ({len(batch)}, {width}) = (len(batch_positions), n_items + 1)"
                )
        else:
            block = scores_or_fn[batch] if isinstance(scores_or_fn, np.ndarray) \
                else scores_or_fn[torch.as_tensor(batch, device=scores_or_fn.device)]
        block = torch.as_tensor(block).detach().cpu()
        if not torch.is_floating_point(block):
            block = block.to(torch.float64)  # integer scores (e.g. counts) need room for -inf
        item_scores = block[:, 1:]
        if torch.isnan(item_scores).any():
            raise ValueError("scores contain NaN; a model produced invalid numbers (check its training)")
        yield batch, item_scores


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run the metric passes on one thread, then restore the previous setting.

    They are memory-bound passes over (batch, n_items) arrays: a second thread gains little, and on
    a busy machine the thread hand-offs make them several times slower. Only the metric code runs
    inside; a scoring callable keeps every thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(b, n) scores -> (b, min(k, n)) column indices of the k best, ties broken by lower column.

    ``torch.topk`` alone does not say which of several tied items it returns, so: every item scored
    above the k-th best value is in; of the items tied with it, the lowest columns fill the rest.
    The k chosen columns are then sorted by score with a stable sort (ties stay in column order).
    """
    k = min(k, scores.shape[1])
    kth_best = torch.topk(scores, k, dim=1).values[:, -1:]          # (b, 1)
    above = scores > kth_best                                        # surely in the top k
    tied = scores == kth_best
    n_free = k - above.sum(dim=1, keepdim=True)                      # places left for tied items
    chosen = above | (tied & (tied.cumsum(dim=1) <= n_free))         # exactly k per row
    cols = chosen.nonzero()[:, 1].view(-1, k)                        # ascending columns per row
    order = torch.sort(scores.gather(1, cols), dim=1, descending=True, stable=True).indices
    return cols.gather(1, order)


def _first_hit_rank(scores: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """(b,) 0-based rank of the best-ranked target in the full ranking (-1 if the row has none).

    The best target has the highest score (lowest column among ties); its rank counts the items
    scored above it plus the tied items with a lower column.
    """
    minus_inf = torch.tensor(float("-inf"), dtype=scores.dtype)
    best_score = torch.where(is_target, scores, minus_inf).max(dim=1, keepdim=True).values
    best_col = (is_target & (scores == best_score)).to(torch.int8).argmax(dim=1, keepdim=True)
    cols = torch.arange(scores.shape[1]).unsqueeze(0)
    rank = (scores > best_score).sum(1) + ((scores == best_score) & (cols < best_col)).sum(1)
    return torch.where(is_target.any(dim=1), rank, torch.full_like(rank, -1))


class _ViewAccumulator:
    """Running sums of the per-user metrics of one view ("all" or "new")."""

    def __init__(self, ks: tuple[int, ...], n_items: int, n_positions: int | None = None) -> None:
        self.ks = ks
        self.n_items = n_items
        self.sums: dict[str, float] = {f"{m}@{k}": 0.0 for k in ks for m in ("HR", "Recall", "NDCG")}
        self.sums["MRR"] = 0.0
        self.covered = {k: torch.zeros(n_items, dtype=torch.bool) for k in ks}
        self.n_users = 0
        self.n_skipped = 0
        k_max = max(ks)
        self.discount = 1.0 / torch.log2(torch.arange(k_max, dtype=torch.float64) + 2)  # rank r -> 1/log2(r+2)
        self.ideal_dcg = torch.cumsum(self.discount, 0)          # ideal_dcg[m - 1] = IDCG with m hits
        # per-user values by eval-set position (NaN: not evaluated in this view), when asked for
        self.per_user = None if n_positions is None else {
            name: np.full(n_positions, np.nan) for name in [*self.sums, "n_targets"]}

    def _keep(self, name: str, positions: np.ndarray | None, values: torch.Tensor) -> torch.Tensor:
        if self.per_user is not None and positions is not None:
            self.per_user[name][positions] = values.numpy()
        return values

    def add(self, scores: torch.Tensor, targets: list[np.ndarray], positions: np.ndarray | None = None) -> None:
        """``scores``: (b, n_items) padding dropped, already masked; ``targets``: b item-ID arrays;
        ``positions``: (b,) their eval-set positions (needed for per-user values)."""
        n_targets = torch.tensor([len(t) for t in targets], dtype=torch.int64)
        keep = n_targets > 0
        self.n_skipped += int((~keep).sum())
        if not keep.any():
            return
        if not keep.all():
            scores = scores[keep]
            targets = [t for t, k in zip(targets, keep.tolist()) if k]
            n_targets = n_targets[keep]
        if positions is not None:
            positions = np.asarray(positions)[keep.numpy()]
            self._keep("n_targets", positions, n_targets.to(torch.float64))
        b = scores.shape[0]
        # (b, n_items) True where the column is a (known) target; -1 targets have no column
        is_target = torch.zeros(scores.shape, dtype=torch.bool)
        rows = np.repeat(np.arange(b), [len(t) for t in targets])
        items = np.concatenate(targets)
        known = items > 0
        is_target[torch.as_tensor(rows[known]), torch.as_tensor(items[known] - 1)] = True

        top = _top_k(scores, max(self.ks))                          # (b, k_max) columns, best first
        hits = is_target.gather(1, top).to(torch.float64)           # (b, k_max) 1.0 where a target
        top_is_real = torch.isfinite(scores.gather(1, top))         # -inf items are not recommended
        for k in self.ks:
            hits_k = hits[:, :k]
            dcg = (hits_k * self.discount[:hits_k.shape[1]]).sum(1)
            idcg = self.ideal_dcg[torch.clamp(n_targets, max=k) - 1]
            per_user = {f"HR@{k}": (hits_k.sum(1) > 0).to(torch.float64),
                        f"Recall@{k}": hits_k.sum(1) / n_targets,
                        f"NDCG@{k}": dcg / idcg}
            for name, values in per_user.items():
                self.sums[name] += float(self._keep(name, positions, values).sum())
            self.covered[k][top[:, :k][top_is_real[:, :k]]] = True
        rank = _first_hit_rank(scores, is_target).to(torch.float64)
        rr = torch.where(rank >= 0, 1.0 / (rank + 1.0), 0.0)
        self.sums["MRR"] += float(self._keep("MRR", positions, rr).sum())
        self.n_users += b

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k in self.ks:
            for m in ("HR", "Recall", "NDCG"):
                out[f"{m}@{k}"] = self.sums[f"{m}@{k}"] / self.n_users if self.n_users else float("nan")
        out["MRR"] = self.sums["MRR"] / self.n_users if self.n_users else float("nan")
        for k in self.ks:
            out[f"Coverage@{k}"] = float(self.covered[k].sum()) / self.n_items if self.n_users else float("nan")
        out["n_users"] = self.n_users
        out["n_skipped"] = self.n_skipped
        return out


def _mask_seen(scores: torch.Tensor, eval_set: EvalSet, batch: np.ndarray) -> torch.Tensor:
    """A copy of ``scores`` (b, n_items) with every item in the users' histories set to -inf."""
    history = eval_set.history[np.asarray(eval_set.users)[batch]].tocoo()
    seen = (history.data > 0) & (history.col > 0)
    masked = scores.clone()
    masked[torch.as_tensor(history.row[seen], dtype=torch.int64),
           torch.as_tensor(history.col[seen] - 1, dtype=torch.int64)] = float("-inf")
    return masked


def _run_views(scores_or_fn: ScoresOrFn, eval_set: EvalSet, ks: Sequence[int],
               views: Sequence[bool], batch_size: int, per_user: bool = False) -> list[_ViewAccumulator]:
    """Evaluate several views (``exclude_seen`` flags) in one pass over the scores."""
    _check_eval_set(eval_set)
    ks = _check_ks(ks)
    n_items = eval_set.n_items
    view_targets = [_view_targets(eval_set, exclude_seen) for exclude_seen in views]
    n_positions = len(eval_set) if per_user else None
    accumulators = [_ViewAccumulator(ks, n_items, n_positions) for _ in views]
    # users with no target in any view are never scored (a callable is not asked for them)
    needed = np.array([any(len(t[i]) for t in view_targets) for i in range(len(eval_set))], dtype=bool)
    for acc in accumulators:
        acc.n_skipped += int((~needed).sum())
    positions = np.flatnonzero(needed)
    for batch, scores in _score_batches(scores_or_fn, eval_set, positions, batch_size):
        with _one_torch_thread():
            for exclude_seen, acc, targets in zip(views, accumulators, view_targets):
                view_scores = _mask_seen(scores, eval_set, batch) if exclude_seen else scores
                acc.add(view_scores, [targets[i] for i in batch], batch)
    return accumulators


def _evaluate_views(scores_or_fn: ScoresOrFn, eval_set: EvalSet, ks: Sequence[int],
                    views: Sequence[bool], batch_size: int) -> list[dict[str, float]]:
    return [acc.result() for acc in _run_views(scores_or_fn, eval_set, ks, views, batch_size)]


def evaluate(scores_or_fn: ScoresOrFn, eval_set: EvalSet, ks: Sequence[int] = (10, 50),
             exclude_seen: bool = False, batch_size: int = 1024) -> dict[str, float]:
    """Full-catalogue ranking metrics of one model on one evaluation set.

    Parameters
    ----------
    scores_or_fn
        Either a dense array / tensor of shape ``(len(eval_set), n_items + 1)`` (row ``i`` = the
        ``i``-th evaluated user, column 0 = padding), or a callable
        ``fn(batch_positions: (b,) int array) -> (b, n_items + 1)`` scoring positions into ``eval_set``
        (use it when the full matrix would not fit in memory).
    eval_set
        The :class:`~m6rec_lib.data.EvalSet` (targets, and history for ``exclude_seen``).
    ks
        The cut-offs K of the top-K metrics.
    exclude_seen
        ``False`` ("all items" view): every item is ranked, targets are the whole basket.
        ``True`` ("new to the customer" view): items in the user's history are set to ``-inf``,
        targets are the basket's items not in the history, users left with no target are skipped.
    batch_size
        Users ranked at once (memory ~ ``batch_size * n_items`` floats).

    Returns
    -------
    dict with, for each K, ``"HR@K"``, ``"Recall@K"``, ``"NDCG@K"``, then ``"MRR"``, ``"Coverage@K"``,
    ``"n_users"`` (users evaluated) and ``"n_skipped"`` (users with no target in this view). Metrics
    are means over the evaluated users; coverage is over their top-K lists.
    """
    return _evaluate_views(scores_or_fn, eval_set, ks, [bool(exclude_seen)], batch_size)[0]


def evaluate_both(scores_or_fn: ScoresOrFn, eval_set: EvalSet, ks: Sequence[int] = (10, 50),
                  batch_size: int = 1024) -> pd.DataFrame:
    """Both views in one pass: a DataFrame with rows ``"all"`` and ``"new"`` and metric columns.

    Same arguments as :func:`evaluate`; a callable is asked for each batch only once.
    """
    all_items, new_items = _evaluate_views(scores_or_fn, eval_set, ks, [False, True], batch_size)
    table = pd.DataFrame([all_items, new_items], index=pd.Index(["all", "new"], name="view"))
    return table


def results_table(results: Mapping[str, Mapping[str, float] | pd.DataFrame]) -> pd.DataFrame:
    """One row per model from ``{model name: results}``.

    Each ``results`` is what :func:`evaluate` returns (a flat ``{metric: value}`` dict: the columns
    are the metrics) or what :func:`evaluate_both` returns (a view x metric DataFrame, or a
    ``{view: {metric: value}}`` dict: the columns become a (view, metric) MultiIndex).
    All models must use the same kind.
    """
    if not results:
        raise ValueError("results is empty; pass {model_name: evaluate(...) result}")
    rows: dict[str, dict] = {}
    nested_flags = set()
    for name, res in results.items():
        if isinstance(res, pd.DataFrame):
            res = {view: row.to_dict() for view, row in res.iterrows()}
        nested = all(isinstance(v, Mapping) for v in res.values())
        nested_flags.add(nested)
        if nested:
            rows[name] = {(view, metric): value for view, metrics in res.items() for metric, value in metrics.items()}
        else:
            rows[name] = dict(res)
    if len(nested_flags) > 1:
        raise ValueError("mix of evaluate() and evaluate_both() results; use one kind for every model")
    table = pd.DataFrame.from_dict(rows, orient="index")
    if nested_flags == {True}:
        table.columns = pd.MultiIndex.from_tuples(table.columns, names=["view", "metric"])
    table.index.name = "model"
    return table


# =============================================================================================
# 3. Sampled-negative evaluation (how sampled metrics mislead)
# =============================================================================================

def evaluate_sampled(scores_or_fn: ScoresOrFn, eval_set: EvalSet, n_negatives: int = 100,
                     ks: Sequence[int] = (10,), rng_seed: int = 0, sampling: str = "uniform",
                     popularity: np.ndarray | None = None, batch_size: int = 1024) -> dict[str, float]:
    """The sampled protocol: each target is ranked among ``n_negatives`` sampled non-target items.

    For every evaluated user, ``n_negatives`` distinct items that are not in the user's target
    basket are drawn (one draw per user, shared by that user's targets), either uniformly or in
    proportion to ``popularity`` (``sampling="popularity"``; items with popularity 0 are never drawn).
    Each (user, target) pair then gets the target's rank among itself and the negatives (ties
    broken by the lower item ID, as in :func:`evaluate`). A ``-1`` target has no score: it is a miss.

    ``popularity``: (n_items + 1,) non-negative weights (e.g. buyers per item in the training matrix).
    Sampling without replacement uses the Gumbel-top-k trick: keep the ``n_negatives`` items with
    the largest ``log(weight) + Gumbel noise``.

    Returns ``"HR@K"``, ``"NDCG@K"`` for each K, ``"MRR"``: averaged over each user's targets, then
    over users (every user counts the same, as in :func:`evaluate`); plus ``"n_users"``,
    ``"n_pairs"`` and ``"n_negatives"``.
    """
    _check_eval_set(eval_set)
    ks = _check_ks(ks)
    n_items = eval_set.n_items
    if not isinstance(n_negatives, (int, np.integer)) or n_negatives < 1:
        raise ValueError(f"n_negatives must be an integer >= 1 (e.g. 100), got {n_negatives!r}")
    if sampling not in ("uniform", "popularity"):
        raise ValueError(f"sampling must be 'uniform' or 'popularity', got {sampling!r}")
    log_weight = np.zeros(n_items)
    if sampling == "popularity":
        if popularity is None:
            raise ValueError("sampling='popularity' needs popularity=(n_items + 1,) item weights, "
                             "e.g. np.asarray((train_matrix > 0).sum(axis=0)).ravel()")
        popularity = np.asarray(popularity, dtype=np.float64).ravel()
        if popularity.shape != (n_items + 1,) or (popularity < 0).any() or not np.isfinite(popularity).all():
            raise ValueError(f"popularity must be {n_items + 1} finite non-negative weights (column 0 = "
                             f"padding, ignored), got shape {popularity.shape}")
        with np.errstate(divide="ignore"):
            log_weight = np.log(popularity[1:])
    elif popularity is not None:
        raise ValueError("popularity is only used with sampling='popularity'")

    targets = _view_targets(eval_set, exclude_seen=False)
    positions = np.flatnonzero([len(t) > 0 for t in targets])
    rng = np.random.default_rng(rng_seed)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("HR", "NDCG")}
    sums["MRR"] = 0.0
    n_users = n_pairs = 0
    for batch, scores in _score_batches(scores_or_fn, eval_set, positions, batch_size):
        batch_targets = [targets[i] for i in batch]
        neg_cols = _draw_negatives(log_weight, batch_targets, n_negatives, rng)
        with _one_torch_thread():
            rank, scorable, is_pair = _sampled_ranks(scores, neg_cols, batch_targets)
        n_t = is_pair.sum(axis=1)                                   # (b,) targets per user
        for k in ks:
            hit = scorable & (rank < k)
            sums[f"HR@{k}"] += float((hit.sum(axis=1) / n_t).sum())
            gain = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)
            sums[f"NDCG@{k}"] += float((gain.sum(axis=1) / n_t).sum())
        sums["MRR"] += float((np.where(scorable, 1.0 / (rank + 1.0), 0.0).sum(axis=1) / n_t).sum())
        n_users += len(batch)
        n_pairs += int(n_t.sum())
    out = {key: (value / n_users if n_users else float("nan")) for key, value in sums.items()}
    out["n_users"] = n_users
    out["n_pairs"] = n_pairs
    out["n_negatives"] = int(n_negatives)
    return out


def _draw_negatives(log_weight: np.ndarray, batch_targets: list[np.ndarray], n_negatives: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(b, n_negatives) distinct columns per user, never a target, drawn by weight (Gumbel-top-k).

    ``log_weight``: (n_items,) log sampling weights (``-inf``: never drawn; all 0: uniform).
    """
    b, n_items = len(batch_targets), len(log_weight)
    gumbel = -np.log(-np.log(rng.random((b, n_items))))
    keys = log_weight[None, :] + gumbel                                     # (b, n_items)
    rows = np.repeat(np.arange(b), [len(t) for t in batch_targets])
    items = np.concatenate(batch_targets)
    known = items > 0
    keys[rows[known], items[known] - 1] = -np.inf                           # targets are not negatives
    n_allowed = np.isfinite(keys).sum(axis=1)
    if (n_allowed < n_negatives).any():
        raise ValueError(f"some users have only {int(n_allowed.min())} items that can be drawn as "
                         f"negatives; lower n_negatives (now {n_negatives})")
    return np.argpartition(-keys, n_negatives - 1, axis=1)[:, :n_negatives]


def _sampled_ranks(scores: torch.Tensor, neg_cols: np.ndarray,
                   batch_targets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each target's 0-based rank among its user's negatives (ties: lower item ID first).

    ``scores``: (b, n_items) padding dropped; ``neg_cols``: (b, n_neg). Returns three (b, T) arrays,
    ``T`` = the largest basket: ``rank``, ``scorable`` (a known target) and ``is_pair`` (a target,
    known or ``-1``; the rest is padding).
    """
    b, max_t = len(batch_targets), max(len(t) for t in batch_targets)
    target_cols = np.full((b, max_t), -1, dtype=np.int64)                  # -1: unknown / none
    is_pair = np.zeros((b, max_t), dtype=bool)
    for r, t in enumerate(batch_targets):
        target_cols[r, :len(t)] = np.where(t > 0, t - 1, -1)
        is_pair[r, :len(t)] = True
    neg_cols_t = torch.as_tensor(neg_cols, dtype=torch.int64)
    neg_scores = scores.gather(1, neg_cols_t).unsqueeze(1)                  # (b, 1, n_neg)
    target_cols_t = torch.as_tensor(target_cols)
    t_scores = scores.gather(1, target_cols_t.clamp(min=0)).unsqueeze(2)   # (b, T, 1)
    beaten_by = (neg_scores > t_scores) | (
        (neg_scores == t_scores) & (neg_cols_t.unsqueeze(1) < target_cols_t.unsqueeze(2)))
    rank = beaten_by.sum(dim=2).numpy()                                     # (b, T)
    return rank, target_cols >= 0, is_pair


# =============================================================================================
# 4. How sure are we? Per-user values and customer-level bootstrap intervals
# =============================================================================================
#
# A metric is a mean over customers, so it has sampling noise: another month's customers would give
# another number. Two models scored on the *same* customers are compared by the mean of their
# per-customer differences; resampling customers with replacement (the bootstrap; Efron 1979)
# gives an interval for that mean. The pairing matters: most of the noise is in which customers
# are easy, and it cancels in the differences (Smucker, Allan & Carterette, CIKM 2007, compare such
# tests for ranking metrics).

VIEWS = {"all": False, "new": True}


def per_user_metrics(scores_or_fn: ScoresOrFn, eval_set: EvalSet, ks: Sequence[int] = (10, 50),
                     exclude_seen: bool = False, batch_size: int = 1024) -> pd.DataFrame:
    """Every evaluated user's own metric values: the numbers :func:`evaluate` averages.

    Same arguments as :func:`evaluate`. Returns a DataFrame with one row per eval-set position
    (``0 .. len(eval_set) - 1``, in order) and columns ``HR@K``, ``Recall@K``, ``NDCG@K``, ``MRR``
    and ``n_targets``; the rows of users this view leaves out (no target in it) are NaN. The mean of
    a column over its non-NaN rows equals :func:`evaluate`'s value.
    """
    acc = _run_views(scores_or_fn, eval_set, ks, [bool(exclude_seen)], batch_size, per_user=True)[0]
    return pd.DataFrame(acc.per_user).rename_axis("position")


def per_user_metrics_both(scores_or_fn: ScoresOrFn, eval_set: EvalSet, ks: Sequence[int] = (10, 50),
                          batch_size: int = 1024) -> dict[str, pd.DataFrame]:
    """:func:`per_user_metrics` of both views in one pass: ``{"all": frame, "new": frame}``."""
    accs = _run_views(scores_or_fn, eval_set, ks, list(VIEWS.values()), batch_size, per_user=True)
    return {view: pd.DataFrame(acc.per_user).rename_axis("position") for view, acc in zip(VIEWS, accs)}


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap interval: ``value`` in ``[low, high]`` (``confidence``, e.g. 0.95)."""

    value: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    def __str__(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"

    def __contains__(self, x: float) -> bool:
        return self.low <= x <= self.high


OUTCOMES = ("a", "b", "none")


@dataclass(frozen=True)
class PairedDifference:
    """The difference of one metric between models A and B on the same users, with its interval.

    ``diff = a - b`` (means over the ``n_users`` users both were scored on) and its
    ``confidence`` interval ``[low, high]`` from a paired bootstrap over users. ``outcome`` is
    ``"a"`` (A is better: the interval lies above 0), ``"b"`` (below 0) or ``"none"`` (it contains 0:
    no measurable difference on these users).
    """

    name_a: str
    name_b: str
    metric: str
    view: str
    a: float
    b: float
    diff: float
    low: float
    high: float
    n_users: int
    confidence: float = 0.95
    n_boot: int = 2000

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def outcome(self) -> str:
        return "a" if self.low > 0 else "b" if self.high < 0 else "none"

    @property
    def verdict(self) -> str:
        """The sentence the numbers support: "A beats B", "B beats A" or "no measurable difference"."""
        return {"a": f"{self.name_a} beats {self.name_b}", "b": f"{self.name_b} beats {self.name_a}",
                "none": "no measurable difference"}[self.outcome]

    @property
    def key(self) -> str:
        """A stable name for the record: ``"A vs B | view | metric"``."""
        return f"{self.name_a} vs {self.name_b} | {self.view} | {self.metric}"

    def __str__(self) -> str:
        where = f" ({self.view})" if self.view else ""
        return (f"{self.name_a} - {self.name_b}, {self.metric}{where}: {self.diff:+.4f} "
                f"[{self.confidence:.0%} CI {self.low:+.4f}, {self.high:+.4f}], "
                f"{self.n_users:,} users: {self.verdict}")

    def require(self, outcome: str | Sequence[str], enforce: bool = True) -> "PairedDifference":
        """Assert that the interval supports ``outcome`` ("a", "b" or "none"), when ``enforce``.

        This is how a notebook asserts a comparison its text makes: "a" for "A beats B", "none" for
        "no measurable difference". A tuple allows several outcomes, for a text that claims less:
        ``("none", "b")`` is "A does not beat B". Pass ``enforce=not SMOKE``: a smoke run has too
        few users to decide anything, so it only prints. Returns ``self``, so it can end a line
        that prints it.
        """
        allowed = (outcome,) if isinstance(outcome, str) else tuple(outcome)
        if not allowed or any(o not in OUTCOMES for o in allowed):
            raise ValueError(f"outcome must be one of {OUTCOMES} ('a': A beats B, 'b': B beats A, "
                             f"'none': no measurable difference), or a tuple of them; got {outcome!r}")
        if enforce and self.outcome not in allowed:
            said = {"a": f"{self.name_a} beats {self.name_b}", "b": f"{self.name_b} beats {self.name_a}",
                    "none": "no measurable difference"}
            wanted = " or ".join(f"'{said[o]}'" for o in allowed)
            raise AssertionError(f"the text claims {wanted}, but this run measured: {self}")
        return self

    def to_dict(self) -> dict:
        """A JSON-ready record (what :func:`m6rec_lib.recording.record_metrics` stores)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(key=self.key, outcome=self.outcome, verdict=self.verdict)
        return out


def _resample_means(values: np.ndarray, n_boot: int, rng: np.random.Generator,
                    chunk: int = 200) -> np.ndarray:
    """(n_boot,) means of ``values`` (n,) over ``n`` users drawn with replacement, per resample."""
    n = len(values)
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        drawn = rng.integers(0, n, size=(m, n))                          # (m, n) user positions
        out[start:start + m] = values[drawn].mean(axis=1)
    return out


def _check_bootstrap_args(n_boot: int, confidence: float) -> None:
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100 (e.g. 2000), got {n_boot!r}")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), e.g. 0.95; got {confidence!r}")


def bootstrap_interval(values: Sequence[float] | np.ndarray | pd.Series, n_boot: int = 2000,
                       confidence: float = 0.95, seed: int = 0) -> Interval:
    """The mean of per-user ``values`` (NaN rows ignored) with a percentile bootstrap interval."""
    _check_bootstrap_args(n_boot, confidence)
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if len(v) < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 users with a value, got {len(v)}")
    means = _resample_means(v, n_boot, np.random.default_rng(seed))
    tail = (1 - confidence) / 2 * 100
    return Interval(float(v.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)),
                    len(v), confidence)


def _per_user_column(x, eval_set: EvalSet | None, metric: str, exclude_seen: bool, what: str) -> np.ndarray:
    """Per-user values of ``metric`` from per-user values, a per-user frame, or scores to evaluate."""
    if isinstance(x, pd.DataFrame):
        if metric not in x.columns:
            raise ValueError(f"{what}: the per-user frame has no column {metric!r} (has {list(x.columns)})")
        return x[metric].to_numpy(dtype=np.float64)
    if isinstance(x, pd.Series) or (isinstance(x, np.ndarray) and x.ndim == 1) or isinstance(x, list):
        return np.asarray(x, dtype=np.float64)
    if eval_set is None:
        raise ValueError(f"{what} looks like scores: pass eval_set=... so that they can be evaluated, "
                         "or pass per-user values (per_user_metrics(...)[metric])")
    k = int(metric.split("@")[1]) if "@" in metric else 10
    return per_user_metrics(x, eval_set, ks=(k,), exclude_seen=exclude_seen)[metric].to_numpy()


def paired_bootstrap(a, b, eval_set: EvalSet | None = None, metric: str = "NDCG@10",
                     exclude_seen: bool = False, *, names: tuple[str, str] = ("A", "B"),
                     view: str | None = None, n_boot: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> PairedDifference:
    """Is A better than B? The mean per-user difference of ``metric`` with a paired bootstrap interval.

    Parameters
    ----------
    a, b
        Each model's per-user values: a 1-D array / Series aligned by eval-set position (NaN = not
        evaluated), a frame from :func:`per_user_metrics` (its ``metric`` column is used), or scores /
        a score callable as for :func:`evaluate` (then ``eval_set`` is required).
    metric
        e.g. ``"NDCG@10"``, ``"Recall@50"``, ``"MRR"``.
    exclude_seen
        The view, when scores are passed: False = all items, True = items new to the customer.
    names, view
        Labels for the printout and the record (``view`` defaults to "all" / "new" from
        ``exclude_seen``).
    n_boot, confidence, seed
        Bootstrap resamples (users drawn with replacement, the same draw for A and B), the interval's
        coverage, and the seed of the draws (the same seed gives the same interval).

    Returns
    -------
    :class:`PairedDifference`: ``diff = mean(a) - mean(b)`` over users with both values, its
    percentile interval, and the verdict ("A beats B" only when the interval lies above 0).
    """
    _check_bootstrap_args(n_boot, confidence)
    va = _per_user_column(a, eval_set, metric, exclude_seen, "a")
    vb = _per_user_column(b, eval_set, metric, exclude_seen, "b")
    if va.shape != vb.shape:
        raise ValueError(f"a and b have {len(va)} and {len(vb)} per-user values; a paired comparison needs "
                         "both models scored on the same users, in the same order")
    both = ~np.isnan(va) & ~np.isnan(vb)
    if (np.isnan(va) != np.isnan(vb)).any():
        raise ValueError(
            f"a and b were evaluated on different users ({int((~np.isnan(va)).sum())} and "
            f"{int((~np.isnan(vb)).sum())} values): compare models on the same eval set and view")
    if both.sum() < 2:
        raise ValueError(f"a paired bootstrap needs at least 2 users scored by both models, got {int(both.sum())}")
    d = va[both] - vb[both]
    means = _resample_means(d, n_boot, np.random.default_rng(seed))
    tail = (1 - confidence) / 2 * 100
    return PairedDifference(
        name_a=str(names[0]), name_b=str(names[1]), metric=metric,
        view=view if view is not None else ("new" if exclude_seen else "all"),
        a=float(va[both].mean()), b=float(vb[both].mean()), diff=float(d.mean()),
        low=float(np.percentile(means, tail)), high=float(np.percentile(means, 100 - tail)),
        n_users=int(both.sum()), confidence=confidence, n_boot=int(n_boot))


def _group_weights(groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(inverse (n,), counts (n_boot, n_groups)): how often each row's group is drawn per resample."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(inverse.max()) + 1
    drawn = rng.integers(0, n_groups, size=(n_boot, n_groups))
    counts = np.zeros((n_boot, n_groups))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n_groups), drawn.ravel()), 1.0)
    return inverse, counts


def _weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of every row of ``weights`` (m, n): each pair counted ``weight`` times, ties one half."""
    values, tie_group = np.unique(scores, return_inverse=True)            # ascending distinct scores
    pos = labels.astype(bool)
    n_u = len(values)
    # (n, n_u) one-hot of each row's tie group, split by label; weights @ it = weight per distinct score
    onehot = sp.csr_matrix((np.ones(len(scores)), (np.arange(len(scores)), tie_group)), shape=(len(scores), n_u))
    w_pos = np.asarray((onehot[pos].T @ weights[:, pos].T).T)              # (m, n_u)
    w_neg = np.asarray((onehot[~pos].T @ weights[:, ~pos].T).T)
    neg_below = np.cumsum(w_neg, axis=1) - w_neg                           # negatives scored lower
    total = w_pos.sum(1) * w_neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w_pos * (neg_below + 0.5 * w_neg)).sum(1) / total


def _check_auc_inputs(labels, groups, *score_arrays) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    labels = np.asarray(labels).ravel()
    groups = np.asarray(groups).ravel()
    arrays = [np.asarray(s, dtype=np.float64).ravel() for s in score_arrays]
    if any(len(x) != len(labels) for x in (groups, *arrays)):
        raise ValueError("labels, groups and scores must have one entry per pair")
    if not np.isin(labels, (0, 1)).all() or labels.min() == labels.max():
        raise ValueError("labels must be 0/1 with at least one of each")
    if any(np.isnan(x).any() for x in arrays):
        raise ValueError("scores contain NaN; fix the model output before computing AUC")
    return labels, groups, arrays


def bootstrap_auc(labels, scores, groups, n_boot: int = 1000, confidence: float = 0.95,
                  seed: int = 0) -> Interval:
    """AUC with a bootstrap interval that resamples whole ``groups`` (e.g. customer moments).

    Pairs of one customer are not independent, so the customers are drawn with replacement, each
    with all its pairs. ``labels``, ``scores``, ``groups``: (n,) one entry per pair.
    """
    _check_bootstrap_args(n_boot, confidence)
    labels, groups, (s,) = _check_auc_inputs(labels, groups, scores)
    inverse, counts = _group_weights(groups, n_boot, np.random.default_rng(seed))
    boots = np.concatenate([_weighted_auc(labels, s, counts[i:i + 100][:, inverse])
                            for i in range(0, n_boot, 100)])
    boots = boots[np.isfinite(boots)]
    tail = (1 - confidence) / 2 * 100
    return Interval(auc(labels, s), float(np.percentile(boots, tail)), float(np.percentile(boots, 100 - tail)),
                    int(inverse.max()) + 1, confidence)


def paired_bootstrap_auc(labels, scores_a, scores_b, groups, *, names: tuple[str, str] = ("A", "B"),
                         view: str = "", n_boot: int = 1000, confidence: float = 0.95,
                         seed: int = 0) -> PairedDifference:
    """AUC(A) - AUC(B) on the same pairs, with an interval from resampling whole ``groups``.

    Each resample draws customers (groups) with replacement and computes both AUCs on the same
    draw, so what the two models share cancels. ``n_users`` in the result is the number of groups.
    """
    _check_bootstrap_args(n_boot, confidence)
    labels, groups, (sa, sb) = _check_auc_inputs(labels, groups, scores_a, scores_b)
    inverse, counts = _group_weights(groups, n_boot, np.random.default_rng(seed))
    diffs = []
    for i in range(0, n_boot, 100):
        w = counts[i:i + 100][:, inverse]
        diffs.append(_weighted_auc(labels, sa, w) - _weighted_auc(labels, sb, w))
    diffs = np.concatenate(diffs)
    diffs = diffs[np.isfinite(diffs)]
    tail = (1 - confidence) / 2 * 100
    a, b = auc(labels, sa), auc(labels, sb)
    return PairedDifference(str(names[0]), str(names[1]), "AUC", view, a, b, a - b,
                            float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail)),
                            int(inverse.max()) + 1, confidence, int(n_boot))


def comparison_table(differences: Sequence[PairedDifference]) -> pd.DataFrame:
    """One row per comparison: A, B, metric, view, both means, the difference, its interval, verdict."""
    rows = [{"A": d.name_a, "B": d.name_b, "metric": d.metric, "view": d.view, "A value": d.a,
             "B value": d.b, "A - B": d.diff, "low": d.low, "high": d.high, "users": d.n_users,
             "verdict": d.verdict} for d in differences]
    return pd.DataFrame(rows)
