"""A synthetic sequential source whose best possible hit rate is known: a seeded second-order chain.

Each user's sequence is a Markov chain of order two over ``n_items`` items: the next item ``c``
depends on the last item ``b`` **and** the one before it, ``a``::

    P(c | a, b) = (1 - noise) * softmax_c( (u_b + beta v_a) . w_c / temperature ) + noise / n_items

with seeded random vectors ``u``, ``v`` (``rank`` numbers each, variance ``1 / rank``) and ``w``
(variance 1), and ``beta = previous_weight`` (0 makes it a first-order chain: only the last item counts). The first item is uniform, the second follows ``u`` alone (no ``a`` yet).
Because ``v_a`` moves the distribution, the order matters: a model that sees only the last item
(first-order co-occurrence) mixes the distributions of every possible ``a``, and a model that
ignores order (ItemKNN, EASE) mixes even more. Because the distribution is known, so is the best
any model can do: no ranking can expect more hits in its top ``k`` than the probability mass of the
``k`` most likely items, :meth:`MarkovSource.top_k_mass`. The average of that mass over the test
contexts is the **bound** on HR@k.

Interactions get times (exponential gaps of mean one day from a random start in a year), so both
the leave-one-out and the temporal split apply, and a text (``"item 0042"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from m6rec_lib.data import UNKNOWN_ID, EvalSet, Split
from m6rec_lib.metrics import PairedDifference

START = pd.Timestamp("2024-01-01")


@dataclass(frozen=True)
class MarkovSource:
    """The second-order chain described in the module docstring (items are ``0..n_items - 1``)."""

    n_items: int = 400
    rank: int = 8
    temperature: float = 0.5
    noise: float = 0.05
    previous_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_items < 11:
            raise ValueError(f"n_items must be at least 11 (a top 10 must leave items out), got {self.n_items}")
        if self.rank < 1 or not self.temperature > 0 or not 0 <= self.noise < 1:
            raise ValueError("need rank >= 1, temperature > 0 and 0 <= noise < 1")
        rng = np.random.default_rng(self.seed)
        u = rng.normal(size=(self.n_items, self.rank)) / np.sqrt(self.rank)
        v = rng.normal(size=(self.n_items, self.rank)) / np.sqrt(self.rank)
        w = rng.normal(size=(self.n_items, self.rank))
        object.__setattr__(self, "_u", u)
        object.__setattr__(self, "_v", v)
        object.__setattr__(self, "_w", w)

    # ------------------------------------------------------------------ the distribution
    def probabilities(self, previous: np.ndarray, last: np.ndarray) -> np.ndarray:
        """``P(next | previous, last)``: (m,) and (m,) item indices -> (m, n_items) rows summing to 1.

        ``previous = -1`` means there is no item before ``last`` (the second step of a sequence).
        """
        previous = np.asarray(previous, dtype=np.int64)
        last = np.asarray(last, dtype=np.int64)
        before = np.where(previous[:, None] >= 0, self._v[np.maximum(previous, 0)], 0.0)
        state = self._u[last] + self.previous_weight * before
        logits = state @ self._w.T / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return (1 - self.noise) * p + self.noise / self.n_items

    def top_k_mass(self, previous: np.ndarray, last: np.ndarray, k: int = 10) -> np.ndarray:
        """(m,) probability of the ``k`` most likely next items: the best expected hit of any top-``k`` list."""
        p = self.probabilities(previous, last)
        return np.sort(p, axis=1)[:, -k:].sum(axis=1)

    # ------------------------------------------------------------------ sampling
    def sample_sequences(self, n_users: int, min_len: int = 20, max_len: int = 60, seed: int = 1) -> list[np.ndarray]:
        """``n_users`` sequences of item indices, lengths uniform in ``[min_len, max_len]``."""
        if n_users < 1 or not 3 <= min_len <= max_len:
            raise ValueError("need n_users >= 1 and 3 <= min_len <= max_len")
        rng = np.random.default_rng(seed)
        lengths = rng.integers(min_len, max_len + 1, size=n_users)
        seqs = np.full((n_users, max_len), -1, dtype=np.int64)
        seqs[:, 0] = rng.integers(0, self.n_items, size=n_users)
        for t in range(1, max_len):
            p = self.probabilities(seqs[:, t - 2] if t >= 2 else np.full(n_users, -1), seqs[:, t - 1])
            u = rng.random((n_users, 1))
            seqs[:, t] = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), self.n_items - 1)
        return [seqs[i, :lengths[i]] for i in range(n_users)]

    def sample_table(self, n_users: int = 3000, min_len: int = 20, max_len: int = 60, seed: int = 1) -> pd.DataFrame:
        """A table like :func:`~m6rec_lib.byod.load_table` returns: ``user, item, time, text, row``."""
        sequences = self.sample_sequences(n_users, min_len, max_len, seed)
        rng = np.random.default_rng([seed, 7])
        users, items, times = [], [], []
        for i, seq in enumerate(sequences):
            start = rng.uniform(0, 365 * 86400)
            gaps = rng.exponential(86400.0, size=len(seq))
            users.append(np.full(len(seq), i))
            items.append(seq)
            times.append(start + np.cumsum(gaps))
        item = np.concatenate(items)
        table = pd.DataFrame({
            "user": np.char.add("user ", np.char.zfill(np.concatenate(users).astype(str), 5)),
            "item": self.item_keys()[item],
            "time": START + pd.to_timedelta(np.concatenate(times), unit="s"),
            "text": np.char.add("item ", np.char.zfill(item.astype(str), 4)),
        })
        table["row"] = np.arange(len(table), dtype=np.int64)
        return table.sort_values(["user", "time", "row"], kind="stable").reset_index(drop=True)

    def item_keys(self) -> np.ndarray:
        """The item IDs written in the table: ``"i0000" .. "i0399"``."""
        return np.char.add("i", np.char.zfill(np.arange(self.n_items).astype(str), 4)).astype(object)

    # ------------------------------------------------------------------ against a split
    def contexts(self, split: Split, eval_set: EvalSet) -> tuple[np.ndarray, np.ndarray]:
        """The (previous, last) item indices before each evaluated user's target ((n_eval,) each).

        Read from the evaluated users' sequences in ``split``'s ID space and mapped back to the
        source's item indices; every item of the source must be in the split's index (checked), so
        that no sequence lost an item.
        """
        index = self._index_of_ids(split)
        prev, last = [], []
        for seq in eval_set.sequences:
            if len(seq) < 2:
                raise ValueError("an evaluated sequence has fewer than two items; sample longer sequences")
            prev.append(index[seq[-2]])
            last.append(index[seq[-1]])
        return np.array(prev), np.array(last)

    def _index_of_ids(self, split: Split) -> np.ndarray:
        """(n_items + 1,) source index of every item ID of ``split`` (-1 for padding)."""
        if split.n_items != self.n_items:
            raise ValueError(
                f"the split knows {split.n_items} of the source's {self.n_items} items; the contexts of some "
                "users would lose an item. Sample more users or longer sequences, so that every item is seen.")
        keys = pd.Index(self.item_keys())
        where = keys.get_indexer(split.items.codes[1:].astype(object))
        if (where < 0).any():
            raise ValueError("the split's items are not this source's items; build the split from sample_table()")
        return np.concatenate([[-1], where])

    def bound(self, split: Split, eval_set: EvalSet, k: int = 10) -> np.ndarray:
        """(n_eval,) the best expected hit at ``k`` for each evaluated user: the mean is the bound on HR@k."""
        return self.top_k_mass(*self.contexts(split, eval_set), k=k)

    def oracle_scores(self, split: Split, eval_set: EvalSet) -> np.ndarray:
        """(n_eval, n_items + 1) the true next-item probabilities in ``split``'s ID space (column 0 = -inf).

        Ranking by them is the best possible model; items missing from the index cannot be ranked
        (targets that are such items count as misses for every model, this one included).
        """
        p = self.probabilities(*self.contexts(split, eval_set))
        index = self._index_of_ids(split)
        scores = np.full((len(eval_set), split.n_items + 1), -np.inf, dtype=np.float64)
        scores[:, 1:] = p[:, index[1:]]
        return scores

    def first_order_bound(self, split: Split, eval_set: EvalSet, k: int = 10) -> np.ndarray:
        """(n_eval,) the expected hit at ``k`` of the best model that sees only the last item.

        Such a model can at best know ``P(next | last) = sum_a P(a | last) P(next | a, last)``; the
        weights ``P(a | last)`` are counted on the training sequences. Its expected hit is the true
        mass of *its* top ``k``. The gap to :meth:`bound` is what the item before the last is worth.
        """
        index = self._index_of_ids(split)
        pairs = np.zeros((self.n_items, self.n_items))            # [last, previous] counts
        for seq in split.train_sequences:
            s = index[np.asarray(seq)]
            s = s[s >= 0]
            if len(s) >= 2:
                np.add.at(pairs, (s[1:], s[:-1]), 1.0)
        previous, last = self.contexts(split, eval_set)
        true = self.probabilities(previous, last)
        hits = np.empty(len(last))
        for b in np.unique(last):                                    # one first-order top k per last item
            weights = pairs[b]
            a = np.flatnonzero(weights)
            if len(a) == 0:
                marginal = self.probabilities(np.array([-1]), np.array([b]))[0]
            else:
                marginal = (weights[a] / weights[a].sum()) @ self.probabilities(a, np.full(len(a), b))
            top = np.argsort(-marginal, kind="stable")[:k]
            rows = np.flatnonzero(last == b)
            hits[rows] = true[np.ix_(rows, top)].sum(axis=1)
        return hits


def unknown_targets(eval_set: EvalSet) -> int:
    """How many targets are not in the item index (they count as misses for every model)."""
    return int(sum((t == UNKNOWN_ID).sum() for t in eval_set.targets))


def require_near_bound(difference: PairedDifference, distance: float, enforce: bool = True) -> PairedDifference:
    """Assert that a model comes within ``distance`` of the best possible one, with 95% confidence.

    ``difference``: :func:`~m6rec_lib.metrics.paired_bootstrap` of the best possible model (A, e.g.
    the ranking by the source's true probabilities) against the model (B), on the same users. The
    claim "B is within ``distance`` of the bound" holds when the whole interval of ``A - B`` lies
    below ``distance``. As with :meth:`PairedDifference.require`, pass ``enforce=not SMOKE``: a smoke
    run only prints. Returns ``difference``.
    """
    if not distance > 0:
        raise ValueError(f"distance must be positive, got {distance}")
    if enforce and not difference.high < distance:
        raise AssertionError(
            f"the text claims {difference.name_b} comes within {distance} of {difference.name_a}, but the "
            f"95% interval of the gap reaches {difference.high:+.4f}: {difference}")
    return difference
