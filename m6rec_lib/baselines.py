"""Non-neural baselines: MostPop, Buy-Again, ItemKNN, co-occurrence, iALS, EASE, and a tuner.

Every baseline has the same two methods:

* ``fit(train_matrix, **kw) -> self`` with ``train_matrix`` a ``scipy.sparse.csr_matrix`` of shape
  ``(n_users, n_items + 1)`` (purchase-line counts of the training period, column 0 = padding, empty);
* ``score(eval_set, positions=None) -> np.ndarray`` of shape ``(len(positions), n_items + 1)``: the
  scores of the evaluated customers (all of them when ``positions`` is ``None``), float32.

Scores are computed from what each customer did **before their evaluation moment** --
``eval_set.history`` (counts) and ``eval_set.sequences`` (items in time order) -- and never from the
future. The fitted part (popularity, similarities, item factors) comes from the training period only.
Column 0 of every score matrix is ``-inf``: padding is never recommended.

``model.scorer(eval_set)`` returns the callable form that :func:`m6rec_lib.metrics.evaluate`
accepts, so that a big eval set is scored batch by batch instead of all at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from .data import DataError, EvalSet
from .metrics import evaluate

try:  # installed with scikit-learn
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = ["Baseline", "MostPop", "BuyAgain", "ItemKNN", "CoOccurrence", "IALS", "EASE", "tune",
           "check_train_matrix", "popularity", "default_grids", "tune_baselines", "LOSSES"]


# ------------------------------------------------------------------------------- shared parts

def _one_blas_thread() -> contextlib.AbstractContextManager:
    """Run small matrix products on one BLAS thread.

    iALS does thousands of tiny (n_u x f) products; a multi-threaded BLAS spends more time waking
    its threads than computing, and on a busy machine this is ~10x slower.
    """
    if threadpool_limits is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def check_train_matrix(train_matrix: sp.spmatrix) -> sp.csr_matrix:
    """Validate a (n_users, n_items + 1) interaction matrix; return it as float64 csr."""
    if not sp.issparse(train_matrix):
        raise DataError(
            f"train_matrix must be a scipy.sparse matrix of shape (n_users, n_items + 1), got "
            f"{type(train_matrix).__name__}; use split.train_matrix or scipy.sparse.csr_matrix(array)"
        )
    X = sp.csr_matrix(train_matrix).astype(np.float64, copy=True)  # never modify the caller's matrix
    if X.shape[1] < 2:
        raise DataError(f"train_matrix has {X.shape[1]} column(s); it needs n_items + 1 >= 2 (column 0 = padding)")
    X.sum_duplicates()
    if X.nnz and (X.data.min() < 0 or not np.isfinite(X.data).all()):
        raise DataError("train_matrix must hold finite non-negative counts (returns are cleaned out beforehand)")
    if X[:, 0].count_nonzero():
        raise DataError("column 0 of train_matrix (padding) holds interactions; item IDs start at 1")
    X.eliminate_zeros()
    return X


def _check_number(name: str, value: Any, low: float, *, inclusive: bool = True, integer: bool = False,
                  hint: str = "") -> None:
    """Raise a ValueError unless ``value`` is a number (an integer if asked) >= low (or > low)."""
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    ok = ok_type and not isinstance(value, bool) and np.isfinite(value) and (value >= low if inclusive else value > low)
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f">= {low}" if inclusive else f"> {low}"
        raise ValueError(f"{name} must be {kind} {bound}, got {value!r}" + (f"; {hint}" if hint else ""))


def popularity(train_matrix: sp.csr_matrix, count: str = "buyers") -> np.ndarray:
    """(n_items + 1,) item popularity: distinct buyers (``"buyers"``) or purchase lines (``"lines"``)."""
    if count == "buyers":
        return np.asarray((train_matrix > 0).sum(axis=0), dtype=np.float64).ravel()
    if count == "lines":
        return np.asarray(train_matrix.sum(axis=0), dtype=np.float64).ravel()
    raise ValueError(f"count must be 'buyers' or 'lines', got {count!r}")


class Baseline:
    """Common plumbing: parameter bookkeeping, input checks, batching, the padding column."""

    n_items_: int | None = None

    def __init__(self, **params: Any) -> None:
        self.params = params

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # --- to implement
    def fit(self, train_matrix: sp.spmatrix, **kw: Any) -> "Baseline":
        raise NotImplementedError

    def _score_rows(self, history: sp.csr_matrix, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """(b, n_items + 1) history rows and b sequences -> (b, n_items + 1) scores."""
        raise NotImplementedError

    # --- shared
    def _set_n_items(self, X: sp.csr_matrix) -> None:
        self.n_items_ = X.shape[1] - 1

    def score(self, eval_set: EvalSet, positions: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """Scores of the evaluated customers: ``(len(positions), n_items + 1)`` float32, column 0 = -inf.

        ``positions``: indices into ``eval_set`` (default: all, in eval-set order).
        """
        if self.n_items_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call .fit(train_matrix) first")
        if eval_set.history.shape[1] != self.n_items_ + 1:
            raise DataError(
                f"eval set {eval_set.name!r} has {eval_set.history.shape[1] - 1} items but the model was "
                f"fitted on {self.n_items_}; fit and evaluate on the same split (same ItemIndex)"
            )
        if positions is None:
            positions = np.arange(len(eval_set))
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= len(eval_set)):
            raise IndexError(f"positions must lie in 0..{len(eval_set) - 1}")
        if len(positions) == 0:
            return np.full((0, self.n_items_ + 1), -np.inf, dtype=np.float32)
        history = sp.csr_matrix(eval_set.history[np.asarray(eval_set.users)[positions]], dtype=np.float64)
        sequences = [np.asarray(eval_set.sequences[p], dtype=np.int64) for p in positions]
        scores = np.asarray(self._score_rows(history, sequences), dtype=np.float32)
        scores[:, 0] = -np.inf
        return scores

    def scorer(self, eval_set: EvalSet) -> Callable[[np.ndarray], np.ndarray]:
        """``fn(positions) -> (len(positions), n_items + 1)``, the batched form ``evaluate`` accepts."""
        return lambda positions: self.score(eval_set, positions)


def _binary(X: sp.csr_matrix) -> sp.csr_matrix:
    out = X.copy()
    out.data = (out.data > 0).astype(np.float64)
    out.eliminate_zeros()
    return out


def _fallback_scale(pop: np.ndarray) -> np.ndarray:
    """Popularity mapped into [0, 1): a tie-breaker that stays below any score >= 1."""
    return pop / (pop.max() + 1.0)


# ------------------------------------------------------------------------------------- MostPop

class MostPop(Baseline):
    """Everyone gets the same list: the items bought by the most customers in the training period.

    ``count="buyers"`` (default) counts distinct buyers, so that one wholesaler ordering an item
    200 times does not make it "popular"; ``count="lines"`` counts purchase lines.
    """

    def __init__(self, count: str = "buyers") -> None:
        if count not in ("buyers", "lines"):
            raise ValueError(f"count must be 'buyers' (distinct customers) or 'lines', got {count!r}")
        super().__init__(count=count)
        self.count = count

    def fit(self, train_matrix: sp.spmatrix, **kw: Any) -> "MostPop":
        X = check_train_matrix(train_matrix)
        self._set_n_items(X)
        self.popularity_ = popularity(X, self.count)  # (n_items + 1,)
        return self

    def _score_rows(self, history, sequences):
        return np.tile(self.popularity_, (history.shape[0], 1))


# ------------------------------------------------------------------------------------ BuyAgain

class BuyAgain(Baseline):
    """The customer's own past items first, then the popular items.

    Own items (history count > 0) score ``count + recency``, where ``recency`` in (0, 1) grows with
    the time of the item's last purchase in ``eval_set.sequences``: frequency first, the most recent
    purchase breaks ties. With ``by="recency"`` the count is ignored (``1 + recency``). Every other
    item scores its popularity (distinct training buyers) scaled into [0, 1), so it ranks below
    every own item.
    """

    def __init__(self, by: str = "frequency") -> None:
        if by not in ("frequency", "recency"):
            raise ValueError(f"by must be 'frequency' (count, then recency) or 'recency', got {by!r}")
        super().__init__(by=by)
        self.by = by

    def fit(self, train_matrix: sp.spmatrix, **kw: Any) -> "BuyAgain":
        X = check_train_matrix(train_matrix)
        self._set_n_items(X)
        self.popularity_ = popularity(X, "buyers")
        return self

    def _score_rows(self, history, sequences):
        scores = np.tile(_fallback_scale(self.popularity_), (history.shape[0], 1))
        for row, seq in enumerate(sequences):
            start, end = history.indptr[row], history.indptr[row + 1]
            items, counts = history.indices[start:end], history.data[start:end]
            items, counts = items[counts > 0], counts[counts > 0]
            if not len(items):
                continue
            # last position of each own item in the sequence (-1 if absent): np.unique over the
            # reversed sequence returns each item's first index from the end
            seq = seq[seq > 0]
            last = np.full(self.n_items_ + 1, -1)
            if len(seq):
                uniq, first_from_end = np.unique(seq[::-1], return_index=True)
                last[uniq] = len(seq) - 1 - first_from_end
            # recency in (0, 1): the j-th own item in order of last purchase (oldest j = 0) gets
            # (j + 1) / (n_own + 1); ranks rather than positions keep float32 scores distinct
            order = np.argsort(last[items], kind="stable")
            recency = np.empty(len(items))
            recency[order] = (np.arange(len(items)) + 1) / (len(items) + 1)
            base = counts if self.by == "frequency" else np.ones_like(counts)
            scores[row, items] = base + recency
        return scores


# -------------------------------------------------------------------------------------- ItemKNN

class ItemKNN(Baseline):
    """Item-based nearest neighbours with cosine similarity.

    On the binarised training matrix ``X`` (who bought what), ``sim(i, j) = |U_i ∩ U_j| /
    (sqrt(|U_i| |U_j|) + shrinkage)`` (``U_i`` = buyers of ``i``; shrinkage pulls similarities
    resting on few common buyers towards 0), with ``sim(i, i) = 0``. With ``k`` each item keeps only
    its ``k`` most similar items. A customer's score for item ``j`` is ``sum over items i in the
    (binarised) history of sim(i, j)``: ``(b, n_items + 1) @ (n_items + 1, n_items + 1)``.
    """

    def __init__(self, k: int | None = None, shrinkage: float = 0.0) -> None:
        if k is not None:
            _check_number("k", k, 1, integer=True, hint="pass None to keep every neighbour")
        _check_number("shrinkage", shrinkage, 0.0, hint="pass 0 for plain cosine")
        super().__init__(k=k, shrinkage=shrinkage)
        self.k, self.shrinkage = k, float(shrinkage)

    def fit(self, train_matrix: sp.spmatrix, **kw: Any) -> "ItemKNN":
        X = _binary(check_train_matrix(train_matrix))
        self._set_n_items(X)
        sim = (X.T @ X).toarray()                                 # (n+1, n+1) common buyers
        norms = np.sqrt(np.diag(sim))                              # sqrt(number of buyers)
        denominator = np.outer(norms, norms)
        denominator += self.shrinkage + 1e-12                      # 1e-12: items nobody bought
        sim /= denominator                                         # in place: these are big arrays
        del denominator
        np.fill_diagonal(sim, 0.0)
        if self.k is not None and self.k < sim.shape[1]:
            # keep, in each row i, the k largest similarities (the neighbours item i votes for)
            for lo in range(0, sim.shape[0], 512):
                block = sim[lo:lo + 512]
                drop = np.argpartition(-block, self.k, axis=1)[:, self.k:]
                np.put_along_axis(block, drop, 0.0, axis=1)
        sim = sim.astype(np.float32)
        self.similarity_ = sp.csr_matrix(sim) if self.k is not None else sim
        return self

    def _score_rows(self, history, sequences):
        out = _binary(history) @ self.similarity_
        return out.toarray() if sp.issparse(out) else np.asarray(out)


# --------------------------------------------------------------------------------- CoOccurrence

class CoOccurrence(Baseline):
    """First-order transitions: what customers buy right after the items just bought.

    ``fit`` counts, over the training sequences, how often item ``b`` follows item ``a`` within
    ``window`` positions (``window=1``: the next line only), ``T[a, b]``; with ``normalize`` each row
    becomes ``P(next = b | a)``. A customer is scored from the last ``n_last`` items of their
    sequence: ``score = sum_m decay**m * T[item_m]`` (``m = 0`` the most recent). With
    ``popularity_fallback`` items with no transition score rank below all others, by popularity.
    """

    def __init__(self, n_last: int = 3, window: int = 1, decay: float = 0.5, normalize: bool = True,
                 popularity_fallback: bool = True) -> None:
        _check_number("n_last", n_last, 1, integer=True, hint="e.g. 1 for the last item only")
        _check_number("window", window, 1, integer=True, hint="1 counts only the next item")
        _check_number("decay", decay, 0.0, inclusive=False, hint="a weight in (0, 1], e.g. 0.5")
        if decay > 1:
            raise ValueError(f"decay must be in (0, 1] (older items weigh less), got {decay!r}")
        super().__init__(n_last=n_last, window=window, decay=decay, normalize=normalize,
                         popularity_fallback=popularity_fallback)
        self.n_last, self.window, self.decay = int(n_last), int(window), float(decay)
        self.normalize, self.popularity_fallback = bool(normalize), bool(popularity_fallback)

    def fit(self, train_matrix: sp.spmatrix, train_sequences: Sequence[np.ndarray] | None = None,
            **kw: Any) -> "CoOccurrence":
        """``train_sequences``: item-ID arrays in time order (padding 0 ignored), e.g. ``split.train_sequences``."""
        X = check_train_matrix(train_matrix)
        if train_sequences is None:
            raise ValueError("CoOccurrence learns transitions from sequences: call "
                             "fit(train_matrix, train_sequences=split.train_sequences)")
        self._set_n_items(X)
        width = self.n_items_ + 1
        sources, targets = [], []
        for seq in train_sequences:
            seq = np.asarray(seq, dtype=np.int64)
            seq = seq[seq > 0]
            if len(seq) and seq.max() >= width:
                raise DataError(f"a training sequence holds item ID {seq.max()} > n_items = {self.n_items_}")
            for offset in range(1, self.window + 1):
                sources.append(seq[:-offset])
                targets.append(seq[offset:])
        src = np.concatenate(sources) if sources else np.zeros(0, np.int64)
        dst = np.concatenate(targets) if targets else np.zeros(0, np.int64)
        T = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(width, width))
        T.sum_duplicates()
        if self.normalize:
            row_sums = np.asarray(T.sum(axis=1)).ravel()
            T = sp.diags(1.0 / np.maximum(row_sums, 1e-12)) @ T
        self.transitions_ = sp.csr_matrix(T)                       # (n+1, n+1)
        self.popularity_ = popularity(X, "buyers")
        return self

    def _score_rows(self, history, sequences):
        rows, cols, weights = [], [], []
        for row, seq in enumerate(sequences):
            last = seq[seq > 0][::-1][:self.n_last]               # most recent first
            rows.append(np.full(len(last), row))
            cols.append(last)
            weights.append(self.decay ** np.arange(len(last)))
        W = sp.csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(len(sequences), self.n_items_ + 1))   # duplicates are summed
        scores = (W @ self.transitions_).toarray()
        if self.popularity_fallback:
            fallback = np.broadcast_to(_fallback_scale(self.popularity_), scores.shape)
            scores = np.where(scores > 0, 1.0 + scores, fallback)
        return scores


# ----------------------------------------------------------------------------------------- iALS

class IALS(Baseline):
    """Implicit-feedback ALS (Hu, Koren & Volinsky, 2008).

    Minimises ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + reg (sum ||x_u||^2 + sum ||y_i||^2)`` with
    preference ``p_ui = 1`` if ``r_ui > 0`` else 0 and confidence ``c_ui = 1 + alpha r_ui``
    (``r`` = purchase-line counts). Each half-step solves every user (then every item) exactly:

        x_u = (Y^T Y + Y_u^T (C_u - I) Y_u + reg I)^-1  Y_u^T C_u p_u

    The Gram trick: ``Y^T Y`` is computed once per half-step; per user only the items they bought
    (``Y_u``, a few rows) are touched, so a half-step costs O(nnz f^2 + n f^3), not O(n_users n_items f).

    Scoring *folds in* each evaluated customer: a fresh user vector is solved from their history row
    at the evaluation moment (items fixed), so histories that grew after training are used.
    ``loss_history_`` holds the loss after each iteration.
    """

    def __init__(self, factors: int = 64, reg: float = 0.1, alpha: float = 10.0, iterations: int = 10,
                 seed: int = 0, progress: bool = False) -> None:
        _check_number("factors", factors, 1, integer=True, hint="e.g. 64")
        _check_number("reg", reg, 0.0, inclusive=False, hint="a positive L2 weight such as 0.1")
        _check_number("alpha", alpha, 0.0, hint="confidence is 1 + alpha * count; 0 means unweighted")
        _check_number("iterations", iterations, 1, integer=True, hint="e.g. 10")
        _check_number("seed", seed, 0, integer=True)
        super().__init__(factors=factors, reg=reg, alpha=alpha, iterations=iterations, seed=seed)
        self.factors, self.reg, self.alpha = int(factors), float(reg), float(alpha)
        self.iterations, self.seed, self.progress = int(iterations), int(seed), bool(progress)

    def _solve(self, R: sp.csr_matrix, Y: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Exact least-squares rows: R (n_rows, n_cols) counts, Y (n_cols, f) -> X (n_rows, f)."""
        f = Y.shape[1]
        base = Y.T @ Y + self.reg * np.eye(f)                      # Y^T Y + reg I, shared by all rows
        X = np.zeros((R.shape[0], f))
        with _one_blas_thread():
            for start in range(0, R.shape[0], chunk):
                X[start:start + chunk] = self._solve_chunk(R, Y, base, start, min(start + chunk, R.shape[0]))
        return X

    def _solve_chunk(self, R: sp.csr_matrix, Y: np.ndarray, base: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the solution: build the (chunk, f, f) systems, solve them at once."""
        f = Y.shape[1]
        A = np.broadcast_to(base, (stop - start, f, f)).copy()      # (chunk, f, f)
        b = np.zeros((stop - start, f))                            # rows with no interaction: x = 0
        for row in range(start, stop):
            lo, hi = R.indptr[row], R.indptr[row + 1]
            if lo == hi:
                continue
            Yu = Y[R.indices[lo:hi]]                               # (n_u, f) factors of the bought items
            confidence = 1.0 + self.alpha * R.data[lo:hi]          # (n_u,)
            A[row - start] += (Yu.T * (confidence - 1.0)) @ Yu     # Y_u^T (C_u - I) Y_u
            b[row - start] = Yu.T @ confidence                     # Y_u^T C_u p_u, p = 1 on bought items
        return np.linalg.solve(A, b[..., None])[..., 0]

    def loss(self, R: sp.csr_matrix | None = None) -> float:
        """The objective on ``R`` (default: the training matrix), computed without a dense matrix.

        ``sum_all (p - s)^2 = sum_all s^2 - 2 sum_bought s + nnz`` and ``sum_all s^2 =
        <X^T X, Y^T Y>``; the extra confidence weight only touches bought items.
        """
        R = self._train if R is None else check_train_matrix(R)
        X, Y = self.user_factors_, self.item_factors_
        coo = R.tocoo()
        s = np.empty(R.nnz)                                         # scores of the bought items
        for lo in range(0, R.nnz, 65536):                           # in slices: bounded memory
            hi = min(lo + 65536, R.nnz)
            s[lo:hi] = np.einsum("nf,nf->n", X[coo.row[lo:hi]], Y[coo.col[lo:hi]])
        squared = float(np.sum((X.T @ X) * (Y.T @ Y))) - 2.0 * s.sum() + R.nnz
        weighted = float(np.sum(self.alpha * coo.data * (1.0 - s) ** 2))
        penalty = self.reg * (float(np.sum(X ** 2)) + float(np.sum(Y ** 2)))
        return squared + weighted + penalty

    def fit(self, train_matrix: sp.spmatrix, **kw: Any) -> "IALS":
        R = check_train_matrix(train_matrix)
        self._set_n_items(R)
        self._train = R
        rng = np.random.default_rng(self.seed)
        self.user_factors_ = rng.normal(scale=0.01, size=(R.shape[0], self.factors))
        self.item_factors_ = rng.normal(scale=0.01, size=(R.shape[1], self.factors))
        Rt = sp.csr_matrix(R.T)
        self.loss_history_: list[float] = []
        with _one_blas_thread():
            for _ in tqdm(range(self.iterations), desc="iALS", disable=not self.progress):
                self.user_factors_ = self._solve(R, self.item_factors_)
                self.item_factors_ = self._solve(Rt, self.user_factors_)
                self.loss_history_.append(self.loss())
        return self

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """(b, n_items + 1) history counts -> (b, factors) user vectors, item factors fixed."""
        return self._solve(sp.csr_matrix(history, dtype=np.float64), self.item_factors_)

    def _score_rows(self, history, sequences):
        return self.fold_in(history) @ self.item_factors_.T


# ----------------------------------------------------------------------------------------- EASE

class EASE(Baseline):
    """Embarrassingly Shallow Autoencoder (Steck, 2019): an item-item model in closed form.

    ``B = argmin ||X - X B||^2 + lam ||B||^2`` subject to ``diag(B) = 0`` is
    ``B = I - P / diag(P)`` (column j divided by ``P_jj``) with ``P = (X^T X + lam I)^-1``.
    ``X`` is the binarised training matrix (``binary=False`` uses counts). A customer's scores are
    their (binarised) history row times ``B``. Costs one dense (n_items + 1)^2 inversion.
    """

    def __init__(self, lam: float = 500.0, binary: bool = True) -> None:
        _check_number("lam", lam, 0.0, inclusive=False, hint="a positive L2 weight, e.g. 500")
        super().__init__(lam=lam, binary=binary)
        self.lam, self.binary = float(lam), bool(binary)

    def fit(self, train_matrix: sp.spmatrix, **kw: Any) -> "EASE":
        X = check_train_matrix(train_matrix)
        X = _binary(X) if self.binary else X
        self._set_n_items(X)
        G = (X.T @ X).toarray()                                    # (n+1, n+1) Gram matrix
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        B = -P / np.diag(P)[None, :]                               # B_ij = -P_ij / P_jj
        np.fill_diagonal(B, 0.0)                                   # = I - P / diag(P)
        self.B_ = B.astype(np.float32)                             # halves the memory; scores are float32
        return self

    def _score_rows(self, history, sequences):
        H = _binary(history) if self.binary else history
        return np.asarray(H @ self.B_)


# ----------------------------------------------------------------------------------------- tune

def grid_settings(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``grid`` (``{parameter: [values]}``) as keyword dicts, in grid order.

    ``grid_settings({"k": [50, None], "alpha": [1.0]})`` -> ``[{"k": 50, "alpha": 1.0}, {"k": None, "alpha": 1.0}]``.
    """
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def tune(make_model: Callable[..., Baseline], grid: Mapping[str, Sequence[Any]], train_matrix: sp.spmatrix,
         validation: EvalSet, metric: str = "NDCG@10", exclude_seen: bool = False,
         fit_kwargs: Mapping[str, Any] | None = None, ks: Sequence[int] = (10, 50),
         progress: bool = False, return_model: bool = False):
    """Grid search on the validation set (never the test set).

    ``make_model(**params)`` builds a model for each combination of ``grid`` (``{name: [values]}``);
    it is fitted on ``train_matrix`` (with ``fit_kwargs``, e.g. ``{"train_sequences": ...}``) and
    evaluated with :func:`~m6rec_lib.metrics.evaluate` on ``validation``. Returns the parameters with
    the best ``metric`` (the first one on ties) and a table with one row per combination, in grid
    order: the parameters, then every metric. With ``return_model=True`` the best fitted model comes
    third, ``(params, table, model)``, so it need not be fitted again.
    """
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise ValueError("grid must map each parameter name to a non-empty list of values, e.g. {'lam': [100, 500]}")
    if "@" in metric:
        try:
            ks = tuple(sorted(set(ks) | {int(metric.split("@")[1])}))
        except ValueError:
            raise ValueError(f"metric {metric!r} is not of the form 'NAME@K' (e.g. 'NDCG@10')") from None
    settings = grid_settings(grid)
    rows, best, best_model = [], 0, None
    for i, params in enumerate(tqdm(settings, desc="tune", disable=not progress)):
        model = make_model(**params)
        model.fit(train_matrix, **(fit_kwargs or {}))
        result = evaluate(model.scorer(validation), validation, ks=ks, exclude_seen=exclude_seen)
        if metric not in result:
            raise ValueError(f"metric {metric!r} is not computed; choose one of {sorted(result)}")
        rows.append({**params, **result})
        if i == 0 or result[metric] > rows[best][metric]:      # the first one wins ties
            best, best_model = i, model
    table = pd.DataFrame(rows)
    if return_model:
        return settings[best], table, best_model
    return settings[best], table


# ------------------------------------------------------------------------ the course's baselines

LOSSES: dict[str, str] = {
    "MostPop": "none (counts)",
    "Buy-Again": "none (own history)",
    "ItemKNN": "none (cosine)",
    "Co-occurrence": "none (transition counts)",
    "iALS": "weighted squared error, all items",
    "EASE": "squared error + L2, closed form",
    "BPR": "BPR, 1 sampled negative",
}
"""What each baseline minimises, and against which negatives (the course states it next to every number)."""


def default_grids(smoke: bool = False, protocol: str = "next basket") -> dict[str, dict[str, list]]:
    """The baselines' grids of the course: model name -> ``{parameter: values}``.

    Every combination of a model's grid is fitted and scored on validation by :func:`tune_baselines`
    (a one-value list is a fixed setting). ``protocol``: ``"next basket"`` (the course's main split;
    notebooks 05 and 06) or ``"invoice"`` (the published invoice protocol of notebook 05's
    companion, where a sequence is one invoice: no factorisation, a first-order co-occurrence).
    ``"BPR"`` is notebook 02's matrix factorisation trained with the BPR loss
    (:class:`m6rec_lib.models.mf.MFConfig` fields). Smoke mode: one small setting each.
    """
    if protocol == "invoice":
        return {"ItemKNN": {"k": [None]}, "Co-occurrence": {"n_last": [1]},
                "EASE": {"lam": [100.0] if smoke else [100.0, 300.0]}}
    if protocol != "next basket":
        raise ValueError(f"protocol must be 'next basket' or 'invoice', got {protocol!r}")
    if smoke:
        return {"ItemKNN": {"k": [None]}, "Co-occurrence": {"n_last": [3]},
                "iALS": {"alpha": [5.0], "factors": [16], "reg": [1.0], "iterations": [2]},
                "EASE": {"lam": [300.0]}, "BPR": {"lr": [0.03], "dim": [16], "epochs": [1]}}
    return {"ItemKNN": {"k": [200, None]}, "Co-occurrence": {"n_last": [3, 5]},
            "iALS": {"alpha": [5.0, 20.0], "factors": [64], "reg": [1.0], "iterations": [8]},
            "EASE": {"lam": [300.0, 1000.0]}, "BPR": {"lr": [0.01, 0.03], "dim": [64], "epochs": [5]}}


BASELINE_CLASSES: dict[str, type[Baseline]] = {"ItemKNN": ItemKNN, "Co-occurrence": CoOccurrence,
                                               "iALS": IALS, "EASE": EASE}
"""The tunable baselines by the names :func:`default_grids` uses."""


def _bpr_models(split: Any, grid: Mapping[str, Sequence[Any]], validation: EvalSet, metric: str,
                exclude_seen: bool, seed: int) -> tuple[dict, list[dict], Any]:
    """Notebook 02's BPR matrix factorisation for every combination of ``grid``; each one cached."""
    from m6rec_lib.models.mf import HistoryMF, MFConfig, basket_examples, train_mf
    from m6rec_lib.models.sasrec import split_fingerprint
    from m6rec_lib.training import cached_artifact

    examples = None
    best, rows, best_model, best_params = None, [], None, None
    for params in grid_settings(grid):
        config = MFConfig(loss="bpr", sampler="uniform", seed=seed, **params)

        def build(config=config):
            nonlocal examples
            examples = examples if examples is not None else basket_examples(split.train, split.n_items)
            model, history = train_mf(examples, config, validation, progress=False)
            return {"state": model.state_dict(), "history": history.to_dict(orient="list")}

        key = {"config": config.as_dict(), "split": split_fingerprint(split), "validation": validation.name,
               "validation_users": hashlib.sha256(np.asarray(validation.users, np.int64).tobytes()).hexdigest()[:12]}
        state = cached_artifact("mf-bpr", key, build)
        model = HistoryMF(split.n_items, config.dim, weighting=config.weighting, init_std=config.init_std, seed=seed)
        model.load_state_dict(state["state"])
        model.eval()
        k = int(metric.split("@")[1])
        result = evaluate(model.scorer(validation), validation, ks=(k,), exclude_seen=exclude_seen)
        rows.append({**params, **result})
        if best is None or result[metric] > rows[best][metric]:          # the first one wins ties
            best, best_model, best_params = len(rows) - 1, model, params
    return best_params, rows, best_model


def _fitted_state(name: str, model: Baseline) -> dict[str, np.ndarray]:
    """What scoring needs of a fitted iALS (the item factors) or EASE (the item-item weights)."""
    return {"item_factors": model.item_factors_} if name == "iALS" else {"B": model.B_}


def _restore(name: str, params: Mapping[str, Any], state: Mapping[str, Any]) -> Baseline:
    model = BASELINE_CLASSES[name](**params)
    if name == "iALS":
        model.item_factors_ = np.asarray(state["item_factors"])
        model.n_items_ = model.item_factors_.shape[0] - 1
    else:
        model.B_ = np.asarray(state["B"])
        model.n_items_ = model.B_.shape[0] - 1
    return model


def _tune_cached(name: str, grid: Mapping[str, Sequence[Any]], split: Any, validation: EvalSet, metric: str,
                 exclude_seen: bool, k: int, seed: int) -> tuple[dict, pd.DataFrame, Baseline]:
    """:func:`tune` for one of the course's baselines; the slow fits (iALS, EASE) are cached.

    iALS and EASE take seconds to fit on the main split and several notebooks fit the same settings,
    so their fitted state is kept in ``cache_dir()`` by setting and split (:func:`cached_artifact`).
    """
    from m6rec_lib.models.sasrec import split_fingerprint
    from m6rec_lib.training import cached_artifact

    settings = grid_settings(grid)
    rows, best, best_model = [], 0, None
    for i, chosen in enumerate(settings):
        params = {**chosen, "seed": seed} if name == "iALS" and "seed" not in chosen else chosen
        if name in ("iALS", "EASE"):
            key = {"params": params, "split": split_fingerprint(split)}
            build = lambda params=params: _fitted_state(name, BASELINE_CLASSES[name](**params).fit(split.train_matrix))
            model = _restore(name, params, cached_artifact(f"baseline-{name.lower()}", key, build))
        else:
            model = BASELINE_CLASSES[name](**params).fit(split.train_matrix, train_sequences=split.train_sequences)
        result = evaluate(model.scorer(validation), validation, ks=(k,), exclude_seen=exclude_seen)
        rows.append({**params, **result})
        if i == 0 or result[metric] > rows[best][metric]:      # the first one wins ties
            best, best_model = i, model
    return settings[best], pd.DataFrame(rows), best_model


def tune_baselines(
    split: Any,
    grids: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    *,
    smoke: bool = False,
    validation: EvalSet | None = None,
    metric: str = "NDCG@10",
    exclude_seen: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The course's baselines, each at its best setting on validation, fitted on the training period.

    ``split``: a next-basket split (``train_matrix``, ``train_sequences``, ``train``, ``validation``).
    ``grids``: :func:`default_grids` (``smoke`` picks which) or any subset of it; MostPop and
    Buy-Again have nothing to tune and are always included. ``validation``: the customers the
    settings are chosen on (default: the first half of ``split.validation``, where the course's
    neural models choose their epochs); ``metric`` on new items (``exclude_seen=True``) or all items.
    The test set is not read.

    Returns ``(models, table)``: ``models`` maps a name to its fitted model (each has
    ``scorer(eval_set)``), in the order MostPop, Buy-Again, then the grids'; ``table`` has one row per
    model: the chosen setting, its validation ``metric``, how many settings were tried, the loss.
    """
    grids = default_grids(smoke) if grids is None else grids
    unknown = set(grids) - set(BASELINE_CLASSES) - {"BPR"}
    if unknown:
        raise ValueError(f"no baseline called {sorted(unknown)}; "
                         f"the grids may name {sorted(BASELINE_CLASSES) + ['BPR']}")
    validation = split.validation.part("first half") if validation is None else validation
    k = int(metric.split("@")[1]) if "@" in metric else 10
    models: dict[str, Any] = {"MostPop": MostPop().fit(split.train_matrix),
                              "Buy-Again": BuyAgain().fit(split.train_matrix)}
    rows = []
    for name in ("MostPop", "Buy-Again"):
        result = evaluate(models[name].scorer(validation), validation, ks=(k,), exclude_seen=exclude_seen)
        rows.append({"model": name, "chosen": "-", f"validation {metric}": result[metric], "settings tried": 1})
    for name in tqdm(list(grids), desc="baselines", disable=not progress):
        grid = grids[name]
        if name == "BPR":
            chosen, tried, model = _bpr_models(split, grid, validation, metric, exclude_seen, seed)
            tried = pd.DataFrame(tried)
        else:
            chosen, tried, model = _tune_cached(name, grid, split, validation, metric, exclude_seen, k, seed)
        models[name] = model
        shown = {p: v for p, v in chosen.items() if len(grid[p]) > 1} or chosen
        rows.append({"model": name, "chosen": ", ".join(f"{p}={v}" for p, v in shown.items()),
                     f"validation {metric}": float(tried[metric].max()), "settings tried": len(tried)})
    table = pd.DataFrame(rows).set_index("model")
    table["loss / negatives"] = [LOSSES[n] for n in table.index]
    return models, table
