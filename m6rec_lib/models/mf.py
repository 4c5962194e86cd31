"""Matrix factorisation with the user factor built from the user's history, trained three ways.

The score of item ``i`` for customer ``u`` is a dot product plus an item bias,

    s(u, i) = <p_u, q_i> + b_i,        P(i | u) = softmax_i s(u, i),

as in every matrix factorisation. What differs is where ``p_u`` comes from. A free embedding per
customer (one row of a user table) knows only what the customer did before training ended; on the
course's split a customer's validation and test histories hold purchases made *after* that (the
test history includes October), and customers first seen after training have no row at all. So
here ``p_u`` is computed from the history itself, like the item-based models (ItemKNN, EASE) do:

    p_u = sum_j w_uj e_j,     w_u = log(1 + counts_u) / sum(log(1 + counts_u))

a weighted mean of *input* item embeddings ``e_j`` over what the customer bought (the factored item
similarity model: Paterek 2007, "NSVD"; Koren 2008, "asymmetric SVD"; Kabbur et al. 2013, FISM; the
YouTube retrieval model of Covington et al. 2016 averages watch embeddings the same way). Scoring a
customer at any moment needs only their history at that moment: ``eval_set.history``.

Training examples follow the task: each training basket of a customer who bought before is one
example, with the customer's history *before that basket* as input and the basket's items as
targets (:func:`basket_examples`). Three losses (see :mod:`m6rec_lib.losses`):

- ``"full"``: the softmax over the whole catalogue; all items of a basket share one normaliser, so a
  batch costs one ``(batch, n_items + 1)`` score matrix;
- ``"sampled"``: the softmax over each positive and ``n_negatives`` items drawn per batch from a
  uniform or popularity proposal, with or without the logQ correction. A basket's items share the
  normaliser of the negatives, and a negative that is in the basket is left out (an accidental hit);
- ``"bpr"``: ``-log sigmoid(s_pos - s_neg)`` with one sampled negative per positive.

:func:`train_mf` trains any of them with :func:`m6rec_lib.training.train_loop`, choosing the epoch on
validation.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from m6rec_lib.data import DataError
from m6rec_lib.losses import (
    bpr_loss,
    popularity_proposal,
    sample_negatives,
    sampled_softmax_loss,
    softmax_cross_entropy,
    uniform_proposal,
)
from m6rec_lib.training import EarlyStopping, train_loop

__all__ = [
    "BasketExamples",
    "basket_examples",
    "history_weights",
    "HistoryMF",
    "MFConfig",
    "mf_loss",
    "train_mf",
    "LOSSES",
    "SAMPLERS",
    "WEIGHTINGS",
]

LOSSES = ("full", "sampled", "bpr")
SAMPLERS = ("uniform", "popularity")
WEIGHTINGS = ("log", "count", "binary")


# --------------------------------------------------------------------------------------------
# training examples: (history before a basket, the basket)


@dataclass(frozen=True)
class BasketExamples:
    """One example per training basket that has an earlier basket of the same customer.

    ``inputs``: (n_examples, n_items + 1) csr purchase-line counts of everything the customer bought
    strictly before the basket. ``targets``: (n_examples, n_items + 1) csr, 1 for each item in the
    basket. ``users``: (n_examples,) user rows; ``moments``: (n_examples,) basket times.
    """

    inputs: sp.csr_matrix
    targets: sp.csr_matrix
    users: np.ndarray
    moments: np.ndarray

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def n_items(self) -> int:
        return self.inputs.shape[1] - 1

    def subset(self, rows: np.ndarray) -> "BasketExamples":
        """The examples at ``rows`` (an index array or a boolean mask)."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return BasketExamples(self.inputs[rows], self.targets[rows], self.users[rows], self.moments[rows])


def basket_examples(lines: pd.DataFrame, n_items: int) -> BasketExamples:
    """Build (history before the basket, basket) examples from training lines.

    ``lines``: purchase lines with columns ``user``, ``item`` (IDs 1..n_items; unknown ``-1`` and
    padding are dropped), ``invoice`` and ``invoice_date``, such as ``split.train``. A basket is one
    invoice; a customer's first basket has no history and gives no example.
    """
    missing = {"user", "item", "invoice", "invoice_date"} - set(lines.columns)
    if missing:
        raise DataError(
            f"lines lack the columns {sorted(missing)}; pass split.train (lines with user and item IDs)"
        )
    lines = lines[lines["item"].to_numpy() > 0]
    if len(lines) and lines["item"].max() > n_items:
        raise DataError(f"lines hold item ID {lines['item'].max()} > n_items = {n_items}; use the split's n_items")
    lines = lines.sort_values(["user", "invoice_date", "invoice"], kind="stable")
    users = lines["user"].to_numpy(np.int64)
    items = lines["item"].to_numpy(np.int64)
    invoices = lines["invoice"].to_numpy()
    times = lines["invoice_date"].to_numpy()
    # basket number of each line within its user: a new basket starts at every new (user, invoice)
    new_basket = np.r_[True, (users[1:] != users[:-1]) | (invoices[1:] != invoices[:-1])]
    new_user = np.r_[True, users[1:] != users[:-1]]
    user_starts = np.flatnonzero(new_user)
    user_ends = np.r_[user_starts[1:], len(users)]

    in_rows, in_cols, in_vals, tg_rows, tg_cols = [], [], [], [], []
    ex_users, ex_moments = [], []
    n_ex = 0
    for start, end in zip(user_starts, user_ends):
        basket = np.cumsum(new_basket[start:end]) - 1                    # (lines,) 0..n_baskets-1
        n_baskets = basket[-1] + 1
        if n_baskets < 2:
            continue
        uniq, col = np.unique(items[start:end], return_inverse=True)
        counts = np.bincount(basket * len(uniq) + col, minlength=n_baskets * len(uniq))
        counts = counts.reshape(n_baskets, len(uniq)).astype(np.float32)  # (baskets, items) per basket
        before = np.cumsum(counts, axis=0)[:-1]                          # history before baskets 1..
        r, c = np.nonzero(before)
        in_rows.append(r + n_ex), in_cols.append(uniq[c]), in_vals.append(before[r, c])
        r, c = np.nonzero(counts[1:])
        tg_rows.append(r + n_ex), tg_cols.append(uniq[c])
        first_line = start + np.flatnonzero(new_basket[start:end])
        ex_users.append(np.full(n_baskets - 1, users[start]))
        ex_moments.append(times[first_line[1:]])
        n_ex += n_baskets - 1
    if n_ex == 0:
        raise DataError("no customer has two baskets in these lines: there is nothing to learn from")
    shape = (n_ex, n_items + 1)
    cat = np.concatenate
    inputs = sp.csr_matrix((cat(in_vals).astype(np.float32), (cat(in_rows), cat(in_cols))), shape=shape)
    targets = sp.csr_matrix((np.ones(sum(map(len, tg_rows)), np.float32), (cat(tg_rows), cat(tg_cols))),
                            shape=shape)
    return BasketExamples(inputs, targets, cat(ex_users), cat(ex_moments))


def history_weights(history: sp.spmatrix, weighting: str = "log") -> sp.csr_matrix:
    """Rows of purchase counts -> rows of weights summing to 1 (empty rows stay empty).

    ``"log"``: ``log(1 + count)`` (an item bought 20 times counts more than one bought once, but not
    20 times more); ``"count"``: the counts; ``"binary"``: 1 per distinct item. ``(b, n_items + 1) ->
    (b, n_items + 1)`` float32.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    W = sp.csr_matrix(history, dtype=np.float32, copy=True)
    W.eliminate_zeros()
    if W.nnz and W.data.min() < 0:
        raise DataError("history counts must be >= 0")
    if weighting == "log":
        W.data = np.log1p(W.data)
    elif weighting == "binary":
        W.data = np.ones_like(W.data)
    row_sums = np.asarray(W.sum(axis=1), dtype=np.float32).ravel()
    row_sums[row_sums == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / row_sums) @ W, dtype=np.float32)


def _bags(weights: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """csr rows -> (indices, offsets, per-sample weights) for ``F.embedding_bag``."""
    return (
        torch.from_numpy(weights.indices.astype(np.int64)),
        torch.from_numpy(weights.indptr[:-1].astype(np.int64)),
        torch.from_numpy(weights.data.astype(np.float32)),
    )


# --------------------------------------------------------------------------------------------
# the model


class HistoryMF(nn.Module):
    """``s(u, i) = <p_u, q_i> + b_i`` with ``p_u`` the weighted mean of input embeddings of u's history.

    Parameters: ``item_in`` (n_items + 1, dim) the history side ``e_j``; ``item_out`` (n_items + 1,
    dim) the item factors ``q_i``; ``item_bias`` (n_items + 1,) ``b_i``, which learns popularity.
    Column 0 (padding) of every score matrix is ``-inf``.
    """

    def __init__(self, n_items: int, dim: int = 64, *, weighting: str = "log", init_std: float = 0.1,
                 seed: int = 0) -> None:
        super().__init__()
        if not isinstance(n_items, (int, np.integer)) or n_items < 1:
            raise ValueError(f"n_items must be a positive integer, got {n_items!r}")
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.n_items, self.dim, self.weighting = int(n_items), int(dim), weighting
        g = torch.Generator().manual_seed(seed)
        self.item_in = nn.Parameter(torch.randn(n_items + 1, dim, generator=g) * init_std)
        self.item_out = nn.Parameter(torch.randn(n_items + 1, dim, generator=g) * init_std)
        self.item_bias = nn.Parameter(torch.zeros(n_items + 1))

    def user_vectors(self, history: sp.spmatrix, weighted: bool = False) -> torch.Tensor:
        """(b, n_items + 1) history counts -> (b, dim) user factors ``p_u``.

        ``weighted=True`` means the rows are already :func:`history_weights` (training does that once).
        """
        if history.shape[1] != self.n_items + 1:
            raise DataError(
                f"history has {history.shape[1]} columns, the model {self.n_items + 1} (n_items + 1); "
                "score with the split the model was trained on"
            )
        W = sp.csr_matrix(history, dtype=np.float32) if weighted else history_weights(history, self.weighting)
        idx, offsets, w = _bags(W)
        return F.embedding_bag(idx, self.item_in, offsets, mode="sum", per_sample_weights=w)

    def forward(self, user_vecs: torch.Tensor) -> torch.Tensor:
        """(b, dim) user factors -> (b, n_items + 1) scores of every item, column 0 = -inf."""
        scores = user_vecs @ self.item_out.T + self.item_bias
        return scores.index_fill(1, torch.tensor([0]), float("-inf"))

    def item_scores(self, user_vecs: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of a few items shared by all users: (b, dim) and (k,) -> (b, k)."""
        return user_vecs @ self.item_out[items].T + self.item_bias[items]

    def pair_scores(self, user_vecs: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """One item per user: (p, dim) and (p,) -> (p,); or (p, k) items -> (p, k)."""
        if items.shape[0] != user_vecs.shape[0]:
            raise ValueError(f"{items.shape[0]} items for {user_vecs.shape[0]} user vectors")
        vecs = user_vecs if items.dim() == 1 else user_vecs.unsqueeze(1)
        return (vecs * self.item_out[items]).sum(-1) + self.item_bias[items]

    @torch.no_grad()
    def score(self, eval_set, positions: Sequence[int] | np.ndarray | None = None,
              batch_size: int = 2048) -> np.ndarray:
        """Scores of evaluated customers from their history at the evaluation moment.

        ``eval_set.history`` rows of ``eval_set.users[positions]`` (default: all positions) ->
        ``(len(positions), n_items + 1)`` float32, column 0 = -inf. The same input ItemKNN and EASE
        use, so the comparison is fair.
        """
        if positions is None:
            positions = np.arange(len(eval_set))
        rows = np.asarray(eval_set.users)[np.asarray(positions, dtype=np.int64)]
        out = []
        was_training = self.training
        self.eval()
        for start in range(0, len(rows), batch_size):
            history = eval_set.history[rows[start:start + batch_size]]
            out.append(self(self.user_vectors(history)).numpy())
        self.train(was_training)
        if not out:
            return np.zeros((0, self.n_items + 1), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def scorer(self, eval_set) -> Callable[[np.ndarray], np.ndarray]:
        """``fn(positions) -> (len(positions), n_items + 1)``, the callable ``evaluate`` accepts."""
        return lambda positions: self.score(eval_set, positions)


# --------------------------------------------------------------------------------------------
# losses on a batch of examples


@dataclass(frozen=True)
class MFConfig:
    """Everything that defines a trained :class:`HistoryMF` (the cache key of a trained model).

    ``n_negatives``: for ``"sampled"``, the negatives drawn per batch and shared by its positives.
    ``bpr_negatives``: for ``"bpr"``, the negatives drawn per positive. ``sampler``: ``"uniform"`` or ``"popularity"`` (in
    proportion to how often an item is a training target). ``log_q``: subtract ``log Q`` of the
    sampler from the sampled logits (``"sampled"`` only). ``epochs`` is the maximum; the epoch with
    the best validation NDCG@10 is kept.
    """

    loss: str = "full"
    dim: int = 64
    lr: float = 1e-2
    weight_decay: float = 0.0
    epochs: int = 6
    batch_size: int = 256
    n_negatives: int = 256
    bpr_negatives: int = 1
    sampler: str = "uniform"
    log_q: bool = True
    weighting: str = "log"
    init_std: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        for name in ("dim", "epochs", "batch_size", "n_negatives", "bpr_negatives"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.lr > 0 or self.weight_decay < 0 or not self.init_std > 0:
            raise ValueError("need lr > 0, weight_decay >= 0 and init_std > 0")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _proposal(config: MFConfig, target_counts: np.ndarray, n_items: int) -> torch.Tensor:
    if config.sampler == "uniform":
        return uniform_proposal(n_items)
    return popularity_proposal(target_counts)


def mf_loss(
    model: HistoryMF,
    inputs: sp.csr_matrix,
    targets: sp.csr_matrix,
    config: MFConfig,
    proposal: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The training loss of one batch.

    ``inputs``: (b, n_items + 1) history weights (:func:`history_weights`); ``targets``: (b,
    n_items + 1) 0/1 basket items. ``proposal``: (n_items + 1,) sampling probabilities (needed for
    ``"sampled"`` and ``"bpr"``). Returns the mean loss per target item.
    """
    user_vecs = model.user_vectors(inputs, weighted=True)                  # (b, dim)
    if config.loss == "full":
        dense = torch.from_numpy(targets.toarray())                         # (b, n_items + 1)
        return softmax_cross_entropy(model(user_vecs), dense)
    if proposal is None:
        raise ValueError(f"loss {config.loss!r} samples negatives: pass a proposal")
    coo = targets.tocoo()
    rows = torch.from_numpy(coo.row.astype(np.int64))                       # (p,) example of each positive
    pos_items = torch.from_numpy(coo.col.astype(np.int64))                  # (p,)
    pos = model.pair_scores(user_vecs[rows], pos_items)                     # (p,)
    if config.loss == "sampled":
        negs = sample_negatives(proposal, config.n_negatives, generator)    # (m,) shared by the batch
        neg = model.item_scores(user_vecs, negs)                            # (b, m)
        in_basket = torch.from_numpy(targets.toarray())[:, negs] > 0         # (b, m) accidental hits
        kw = {}
        if config.log_q:
            log_q = torch.log(proposal)
            kw = dict(pos_log_q=log_q[pos_items], neg_log_q=log_q[negs])
        return sampled_softmax_loss(pos, neg, accidental_hits=in_basket, rows=rows, **kw)
    # BPR: bpr_negatives independent negatives per positive
    negs = sample_negatives(proposal, len(pos_items) * config.bpr_negatives, generator)
    negs = negs.view(len(pos_items), config.bpr_negatives)                 # (p, k)
    return bpr_loss(pos, model.pair_scores(user_vecs[rows], negs))           # (p,) vs (p, k)


def scores_per_epoch(examples: BasketExamples, config: MFConfig) -> int:
    """How many item scores ``<p_u, q_i> + b_i`` one epoch of :func:`mf_loss` computes: the cost of a
    loss that does not depend on the machine or its load.

    ``"full"``: every item (and the padding column) for every example; ``"sampled"``: the shared
    negatives for every example plus one score per positive; ``"bpr"``: one score per positive and
    per drawn negative.
    """
    n_positives = int(examples.targets.nnz)
    if config.loss == "full":
        return len(examples) * (examples.n_items + 1)
    if config.loss == "sampled":
        return len(examples) * config.n_negatives + n_positives
    return n_positives * (1 + config.bpr_negatives)


# --------------------------------------------------------------------------------------------
# training


def _batches(examples: BasketExamples, inputs_w: sp.csr_matrix, batch_size: int,
             seed: int) -> Callable[[int], Iterator[tuple[sp.csr_matrix, sp.csr_matrix]]]:
    def epoch_batches(epoch: int):
        order = np.random.default_rng([seed, epoch]).permutation(len(examples))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            yield inputs_w[rows], examples.targets[rows]
    return epoch_batches


def train_mf(
    examples: BasketExamples,
    config: MFConfig,
    validation=None,
    *,
    monitor: str = "NDCG@10",
    patience: int | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> tuple[HistoryMF, pd.DataFrame]:
    """Train a :class:`HistoryMF` with ``config``; return the model and its history.

    ``validation``: an :class:`~m6rec_lib.data.EvalSet`; after every epoch the model is evaluated
    on it (all-items view, full ranking) and the weights of the epoch with the best ``monitor`` are
    kept (``patience``: stop after that many epochs without improvement; default: never stop
    early). Without ``validation`` the last epoch is kept.

    The history has one row per epoch: ``train_loss``, the validation metrics, ``seconds`` (the
    whole epoch) and ``train_seconds`` (the epoch without its validation).
    """
    from m6rec_lib.metrics import evaluate

    if examples.n_items < 1 or len(examples) == 0:
        raise DataError("no training examples")
    model = HistoryMF(examples.n_items, config.dim, weighting=config.weighting,
                      init_std=config.init_std, seed=config.seed)
    inputs_w = history_weights(examples.inputs, config.weighting)
    target_counts = np.asarray(examples.targets.sum(axis=0)).ravel()
    proposal = None if config.loss == "full" else _proposal(config, target_counts, examples.n_items)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def step(batch: tuple[sp.csr_matrix, sp.csr_matrix]) -> torch.Tensor:
        return mf_loss(model, batch[0], batch[1], config, proposal, generator)

    validate = None
    if validation is not None:
        def validate() -> dict[str, float]:
            started = time.perf_counter()
            result = evaluate(model.scorer(validation), validation, ks=(10, 50))
            metrics = {monitor: result[monitor]}
            metrics.update({k: result[k] for k in ("NDCG@10", "Recall@10", "NDCG@50", "Recall@50")
                            if k != monitor})
            metrics["validation_seconds"] = time.perf_counter() - started
            return metrics

    stopping = None
    if validation is not None:
        stopping = EarlyStopping(patience=config.epochs if patience is None else patience, mode="max")
    history = train_loop(
        model, optimizer, _batches(examples, inputs_w, config.batch_size, config.seed), step,
        config.epochs, validate=validate, monitor=monitor if validation is not None else None,
        early_stopping=stopping, progress=progress, desc=desc or f"MF ({config.loss})",
    )
    if "validation_seconds" in history:
        history["train_seconds"] = history["seconds"] - history["validation_seconds"]
    else:
        history["train_seconds"] = history["seconds"]
    model.eval()
    return model, history
