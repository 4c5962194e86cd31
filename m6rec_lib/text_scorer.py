"""M6-Rec's zero-shot scorer: rank products by how likely a language model finds their text.

A customer's history is written as text ending in " Now buys" (the *prefix*, see
:mod:`m6rec_lib.text.serializer`), and each candidate product is the continuation
``" " + description``. The pretrained GPT of notebook 04 gives every continuation ``c`` with tokens
``c_1..c_m`` the log-likelihood ``sum_t log p(c_t | prefix, c_<t)``; dividing by ``m`` gives the
**length-normalised** score, so that long descriptions are not punished for having more tokens:

    score(c) = (1 / m) * sum_{t=1..m} log p(c_t | prefix, c_<t)

Scoring all ~4.5k products for every customer costs ~4.5k short forward passes per customer. The
course therefore uses the LM as a **second stage**: a cheap first stage (an ID model or a baseline)
proposes its top-N candidates, and only those are scored with text (:meth:`TextReranker.rerank`).
The prefix of a customer is run once and its key/value cache shared by all its candidates
(:meth:`m6rec_lib.models.gpt.GPT.score_continuations`), and each product's tokens are computed once.

Reading order: :func:`history_prefixes` (customers -> token prefixes), :class:`TextReranker`
(candidate tokens, :meth:`~TextReranker.candidate_scores`, :meth:`~TextReranker.rerank`).

A cheap yardstick of a language model as a recommender, with popularity taken out
(:func:`matched_candidates`, :func:`matched_win_rates`): each product of a basket that is new to
the customer is put against a few products *of the same popularity* that the customer neither
bought before nor in the basket; the per-customer **win rate** is the share of those pairs in which
the model scores the bought product higher (ties count one half). Popularity alone wins half of
them, like a coin; a model wins more only if it reads the customer's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from m6rec_lib.data import DataError
from m6rec_lib.text import serializer as ser

if TYPE_CHECKING:
    from m6rec_lib.data import EvalSet
    from m6rec_lib.models.gpt import GPT
    from m6rec_lib.text.tokenizer import BehaviourTokenizer

__all__ = ["history_prefixes", "first_stage_candidates", "TextReranker", "MatchedCandidates",
           "matched_candidates", "matched_win_rates"]


def history_prefixes(
    lines: pd.DataFrame,
    customer_ids: Sequence[int],
    moments: Sequence,
    tokenizer: "BehaviourTokenizer",
    context_length: int,
    reserve: int,
    descriptions: dict[str, str] | None = None,
    counts: bool = False,
) -> list[list[int]] | tuple[list[list[int]], pd.DataFrame]:
    """Token prefixes ``[<bos>] + history text + " Now buys"``, one per (customer, moment).

    ``lines``: cleaned purchase lines with a ``customer_id`` column (more than needed is fine: only
    lines strictly before each moment are written). ``reserve`` tokens are kept free for the
    longest candidate, so ``len(prefix) + reserve <= context_length``; the oldest lines are
    dropped first (the profile then says how many). Returns n lists of token IDs; with
    ``counts=True`` also a frame with ``n_lines`` (purchase lines written) and ``n_not_shown``
    (lines dropped to fit), one row per prefix.
    """
    if len(customer_ids) != len(moments):
        raise ValueError(f"{len(customer_ids)} customers but {len(moments)} moments; pass one moment per customer")
    if reserve < 1 or reserve >= context_length - 8:
        raise ValueError(f"reserve={reserve} leaves no room for a history in a context of {context_length}")
    wanted = set(int(c) for c in customer_ids)
    mine = lines[lines["customer_id"].isin(wanted)]
    histories = ser.customer_histories(mine, descriptions)
    prefixes, rows = [], []
    for cid, moment in zip(customer_ids, moments):
        if int(cid) not in histories:
            raise DataError(f"customer {cid} has no line in `lines`; pass the cleaned lines the split was built from")
        country, invoices = histories[int(cid)]
        history = ser.history_from_invoices(
            invoices, pd.Timestamp(moment), country, max_length=context_length - 1,
            length=tokenizer.count, reserve=reserve,
        )
        prefixes.append(tokenizer.encode_pieces(history.pieces, bos=True))
        rows.append((history.n_lines, history.n_not_shown))
    if counts:
        return prefixes, pd.DataFrame(rows, columns=["n_lines", "n_not_shown"])
    return prefixes


def first_stage_candidates(
    scores: np.ndarray | torch.Tensor, n: int, exclude: sp.csr_matrix | None = None
) -> np.ndarray:
    """The ``n`` best items of each row of a first-stage score matrix.

    ``scores``: ``(b, n_items + 1)`` (column 0 = padding, never a candidate). ``exclude``: optional
    ``(b, n_items + 1)`` matrix whose non-zeros are left out (e.g. the customers' histories, for
    the "new to the customer" view). Returns ``(b, n)`` item IDs, best first (ties: lower ID).
    """
    s = torch.as_tensor(np.asarray(scores, dtype=np.float64)).clone()
    if s.dim() != 2:
        raise ValueError(f"scores must be (b, n_items + 1), got shape {tuple(s.shape)}")
    s[:, 0] = float("-inf")
    if exclude is not None:
        coo = sp.coo_matrix(exclude)
        keep = coo.data > 0
        s[torch.as_tensor(coo.row[keep], dtype=torch.int64), torch.as_tensor(coo.col[keep], dtype=torch.int64)] = float("-inf")
    if not 1 <= n <= s.shape[1] - 1:
        raise ValueError(f"n must be in 1..{s.shape[1] - 1}, got {n}")
    # stable sort of the negated scores: equal scores keep the lower item ID first
    order = torch.sort(-s, dim=1, stable=True).indices[:, :n]
    return order.numpy()


class TextReranker:
    """Score candidate products by the length-normalised log-likelihood of their text.

    ``model``: the pretrained :class:`~m6rec_lib.models.gpt.GPT`; ``tokenizer``: its tokenizer;
    ``item_texts``: ``(n_items + 1,)`` descriptions indexed by item ID (``split.items.texts``).
    Each product's continuation ``" " + description`` is tokenized once, here.
    """

    def __init__(self, model: "GPT", tokenizer: "BehaviourTokenizer", item_texts: Sequence[str],
                 batch_size: int = 256) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        texts = [ser.candidate_text(str(t)) if i else "" for i, t in enumerate(item_texts)]
        encoded = tokenizer.encode_batch(texts[1:])
        self.item_tokens: list[list[int]] = [[]] + [list(ids) for ids in encoded]
        self.max_candidate_tokens = max(len(t) for t in self.item_tokens[1:])

    @property
    def n_items(self) -> int:
        return len(self.item_tokens) - 1

    def candidate_scores(self, prefix: Sequence[int], item_ids: Sequence[int],
                         normalize: bool = True) -> np.ndarray:
        """``(len(item_ids),)`` scores of the products ``item_ids`` after one prefix.

        ``normalize=True``: mean log-probability per token (M6-Rec's zero-shot score);
        ``False``: the total log-likelihood (which favours short descriptions).
        """
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if len(item_ids) == 0:
            return np.zeros(0)
        if item_ids.min() < 1 or item_ids.max() > self.n_items:
            raise ValueError(f"item IDs must lie in 1..{self.n_items}")
        logp = self.model.score_continuations(prefix, [self.item_tokens[i] for i in item_ids],
                                              batch_size=self.batch_size)      # (n, max_tokens), NaN-padded
        return np.nanmean(logp, axis=1) if normalize else np.nansum(logp, axis=1)

    def score_lists(self, prefixes: Sequence[Sequence[int]], item_lists: Sequence[Sequence[int]],
                    normalize: bool = True, progress: bool = True) -> list[np.ndarray]:
        """:meth:`candidate_scores` of ``item_lists[r]`` after ``prefixes[r]``, for every r."""
        if len(prefixes) != len(item_lists):
            raise ValueError(f"{len(prefixes)} prefixes but {len(item_lists)} item lists; pass one list per prefix")
        return [self.candidate_scores(p, items, normalize)
                for p, items in tqdm(zip(prefixes, item_lists), total=len(prefixes), desc="text scoring",
                                     disable=not progress, unit="customer")]

    def rerank(
        self,
        first_stage: np.ndarray | torch.Tensor,
        prefixes: Sequence[Sequence[int]],
        top_n: int = 20,
        exclude: sp.csr_matrix | None = None,
        normalize: bool = True,
        progress: bool = True,
    ) -> np.ndarray:
        """Re-rank each row's top-``top_n`` first-stage items by their text score.

        ``first_stage``: ``(b, n_items + 1)`` scores; ``prefixes``: b token prefixes
        (:func:`history_prefixes`); ``exclude``: ``(b, n_items + 1)`` items never proposed (e.g. the
        history rows, for the "new to the customer" view). Returns ``(b, n_items + 1)`` float64
        scores for the evaluator: the candidates, ordered by text score, above every other item,
        and the other items below them in first-stage order (so metrics at K > top_n still see a
        full ranking). Column 0 is ``-inf``.
        """
        first = np.asarray(first_stage, dtype=np.float64)
        if first.shape[0] != len(prefixes):
            raise ValueError(f"{first.shape[0]} score rows but {len(prefixes)} prefixes; pass one prefix per row")
        if first.shape[1] != self.n_items + 1:
            raise ValueError(f"scores have {first.shape[1]} columns, the reranker knows {self.n_items} items (+1)")
        b, width = first.shape
        # below the candidates: the first-stage order, as -(1e6 + rank) (exact in float64)
        ranking = first_stage_candidates(first, width - 1)               # (b, n_items) best first
        out = np.empty((b, width))
        np.put_along_axis(out, ranking, -(1e6 + np.arange(width - 1, dtype=np.float64))[None, :], axis=1)
        out[:, 0] = -np.inf
        candidates = first_stage_candidates(first, top_n, exclude)       # (b, top_n)
        for row in tqdm(range(b), desc="text re-ranking", disable=not progress, unit="customer"):
            out[row, candidates[row]] = self.candidate_scores(prefixes[row], candidates[row], normalize)
        return out


# --------------------------------------------------------------------------- a popularity-matched yardstick

@dataclass
class MatchedCandidates:
    """Popularity-matched candidates for some customers of an eval set (:func:`matched_candidates`).

    ``positions``: (n,) eval-set positions of the customers kept (those with a new, known basket
    item); ``items[r]``: the candidate item IDs of customer r, positives first; ``pairs[r]``:
    (m_r, 2) rows ``(index of a positive, index of a negative)`` into ``items[r]``, one per matched
    pair.
    """

    positions: np.ndarray
    items: list[np.ndarray]
    pairs: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def n_pairs(self) -> int:
        return int(sum(len(p) for p in self.pairs))

    def subset(self, rows: Sequence[int] | np.ndarray) -> "MatchedCandidates":
        """The customers ``rows`` (indices into this task) only, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return MatchedCandidates(self.positions[rows], [self.items[r] for r in rows], [self.pairs[r] for r in rows])


def matched_candidates(
    eval_set: "EvalSet",
    popularity: np.ndarray,
    n_negatives: int = 4,
    max_positives: int = 2,
    window: int = 25,
    seed: int = 0,
) -> MatchedCandidates:
    """For each customer: up to ``max_positives`` basket items new to them, each with
    ``n_negatives`` products of about its popularity.

    ``popularity``: (n_items + 1,) e.g. buyers per item in the training period. A negative of a
    positive is drawn among the ``2 * window`` products nearest to it in popularity rank, never a
    product of the basket or of the customer's history. Customers without a new item known to
    the index are left out. Seeded; the same arguments give the same candidates.
    """
    popularity = np.asarray(popularity, dtype=np.float64)
    if popularity.shape != (eval_set.history.shape[1],):
        raise ValueError(f"popularity must have shape ({eval_set.history.shape[1]},) = (n_items + 1,), "
                         f"got {popularity.shape}")
    if n_negatives < 1 or max_positives < 1 or window < 1:
        raise ValueError("n_negatives, max_positives and window must be >= 1")
    rng = np.random.default_rng(seed)
    order = np.argsort(-popularity[1:], kind="stable") + 1          # item IDs, most popular first
    rank = np.empty_like(order)
    rank[order - 1] = np.arange(len(order))                           # rank[i - 1] of item i
    history = eval_set.history.tocsr()
    positions, items, pairs = [], [], []
    for pos in range(len(eval_set)):
        user = int(eval_set.users[pos])
        seen = set(history.indices[history.indptr[user]:history.indptr[user + 1]].tolist())
        basket = set(int(t) for t in eval_set.targets[pos] if t > 0)
        new = sorted(basket - seen)
        if not new:
            continue
        positives = rng.permutation(new)[:max_positives]
        cand, rows, taken = [int(i) for i in positives], [], set(basket) | seen
        for j, item in enumerate(positives):
            r = int(rank[item - 1])
            lo, hi = max(0, r - window), min(len(order), r + window + 1)
            pool = [int(i) for i in order[lo:hi] if int(i) not in taken]
            if len(pool) < n_negatives:
                continue
            for neg in rng.choice(pool, size=n_negatives, replace=False):
                taken.add(int(neg))
                rows.append((j, len(cand)))
                cand.append(int(neg))
        if rows:
            positions.append(pos)
            items.append(np.array(cand, dtype=np.int64))
            pairs.append(np.array(rows, dtype=np.int64))
    return MatchedCandidates(np.array(positions, dtype=np.int64), items, pairs)


def matched_win_rates(task: MatchedCandidates, scores: Sequence[np.ndarray],
                      keep: np.ndarray | None = None) -> np.ndarray:
    """(n,) per customer: the share of matched pairs whose positive scores above its negative
    (ties one half). ``scores[r]``: scores of ``task.items[r]``.

    ``keep``: an optional (n_items + 1,) bool array; only pairs whose positive *and* negative are
    kept count, and a customer left without a pair gets NaN (e.g. keep = products sold before some
    day, to compare models on products they have all read about).
    """
    if len(scores) != len(task):
        raise ValueError(f"{len(scores)} score arrays for {len(task)} customers")
    out = np.empty(len(task))
    for r, (s, items, pr) in enumerate(zip(scores, task.items, task.pairs)):
        s = np.asarray(s, dtype=np.float64)
        if keep is not None:
            pr = pr[np.asarray(keep)[items[pr[:, 0]]] & np.asarray(keep)[items[pr[:, 1]]]]
            if len(pr) == 0:
                out[r] = np.nan
                continue
        a, b = s[pr[:, 0]], s[pr[:, 1]]
        out[r] = float(np.mean((a > b) + 0.5 * (a == b)))
    return out
