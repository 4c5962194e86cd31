"""The losses of the course, all of them the softmax seen from different sides.

A recommender that scores every item ``i`` for a user ``u`` with a number ``s(u, i)`` turns the
scores into a distribution over the catalogue with the softmax

    P(i | u) = exp(s(u, i)) / sum_j exp(s(u, j)).

Maximising the likelihood of what customers bought is minimising the cross-entropy
``-log P(i | u)``, whose gradient with respect to the scores is ``softmax - one_hot``. Everything
else here is a way to compute that cheaply or a close relative of it:

- :func:`log_sum_exp` and :func:`log_softmax`: the normaliser, computed without overflow;
- :func:`softmax_cross_entropy`: the full softmax loss, with the gradient written by hand
  (:class:`SoftmaxCrossEntropy`, :func:`softmax_cross_entropy_grad`) instead of left to autograd;
- :func:`sampled_softmax_loss`: the softmax over the positive and a few sampled negatives, with the
  optional logQ correction that removes the bias of a non-uniform sampler (Bengio & Senecal 2008;
  Jean et al. 2015; Yi et al. 2019), plus the samplers :func:`uniform_proposal`,
  :func:`popularity_proposal` and :func:`sample_negatives`;
- :func:`bpr_loss`: Bayesian personalised ranking (Rendle et al. 2009), the pairwise alternative:
  ``-log sigmoid(s(u, i) - s(u, j))`` for a bought ``i`` and a sampled ``j``.

Scores may contain ``-inf`` (the padding column 0 of the course's score matrices): such an item
has probability 0 and receives no gradient. Targets never point at an ``-inf`` column.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "log_sum_exp",
    "log_softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "SoftmaxCrossEntropy",
    "uniform_proposal",
    "popularity_proposal",
    "sample_negatives",
    "sampled_softmax_loss",
    "bpr_loss",
]


# --------------------------------------------------------------------------------------------
# the normaliser


def log_sum_exp(scores: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """``log(sum(exp(scores)))`` along ``dim``, without overflow: ``m + log(sum(exp(scores - m)))``.

    ``m`` is the largest score, so every ``exp`` is at most 1 and at least one equals 1: nothing
    overflows and the sum is never 0. ``(..., n) -> (...)`` (or ``(..., 1)`` with ``keepdim``).
    Entries equal to ``-inf`` contribute nothing; a slice that is entirely ``-inf`` gives ``-inf``.
    """
    m = scores.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()  # all--inf slice: no shift
    out = m + torch.log(torch.exp(scores - m).sum(dim=dim, keepdim=True))
    return out if keepdim else out.squeeze(dim)


def log_softmax(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log P = scores - log_sum_exp(scores)``: same shape as ``scores``."""
    return scores - log_sum_exp(scores, dim=dim, keepdim=True)


# --------------------------------------------------------------------------------------------
# full softmax cross-entropy with a hand-written gradient


def _target_weights(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dense ``(b, n)`` target weights from class indices ``(b,)`` or weights ``(b, n)``."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be (batch, n_items), got shape {tuple(logits.shape)}")
    if targets.dim() == 1:
        if targets.shape[0] != logits.shape[0]:
            raise ValueError(
                f"{targets.shape[0]} targets for {logits.shape[0]} rows of logits; pass one item "
                "index per row, or a (batch, n_items) weight matrix"
            )
        if torch.is_floating_point(targets):
            raise ValueError("class-index targets must be integers; weights must be (batch, n_items)")
        if targets.numel() and (targets.min() < 0 or targets.max() >= logits.shape[1]):
            raise ValueError(f"target indices must lie in 0..{logits.shape[1] - 1}")
        return F.one_hot(targets.long(), logits.shape[1]).to(logits.dtype)
    if targets.shape != logits.shape:
        raise ValueError(
            f"target weights have shape {tuple(targets.shape)}, logits {tuple(logits.shape)}; "
            "they must match (or pass (batch,) class indices)"
        )
    if (targets < 0).any():
        raise ValueError("target weights must be >= 0 (they are counts or probabilities)")
    return targets.to(logits.dtype)


def _cross_entropy_parts(logits: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, lse): ``sum_b sum_i w_bi (lse_b - s_bi) / sum w`` and the (b,) row normalisers."""
    total = weights.sum()
    if total <= 0:
        raise ValueError("the targets have no weight: every row is empty")
    lse = log_sum_exp(logits, dim=1)                                     # (b,)
    picked = torch.where(weights > 0, weights * logits, torch.zeros_like(logits)).sum(1)  # 0 * -inf = 0
    return (weights.sum(1) * lse - picked).sum() / total, lse


def _hand_gradient(logits: torch.Tensor, weights: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    probs = torch.exp(logits - lse.unsqueeze(1))                         # softmax; 0 where logits = -inf
    return (weights.sum(1, keepdim=True) * probs - weights) / weights.sum()


def softmax_cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The gradient of :func:`softmax_cross_entropy` with respect to the logits, by hand.

    For one row with a single target ``t``: ``loss = log_sum_exp(s) - s_t``, so
    ``d loss / d s_j = exp(s_j) / sum_k exp(s_k) - [j == t] = softmax(s)_j - one_hot(t)_j``.
    With target weights ``w`` (a basket, counts) the row's loss is ``sum_i w_i (lse - s_i)`` and the
    gradient ``(sum_i w_i) softmax(s) - w``. The loss is averaged over the total weight, so the
    gradient is divided by it too. ``(b, n), (b,) or (b, n) -> (b, n)``.
    """
    weights = _target_weights(logits, targets)
    return _hand_gradient(logits, weights, log_sum_exp(logits, dim=1))


class SoftmaxCrossEntropy(torch.autograd.Function):
    """Softmax cross-entropy whose backward pass is the hand-derived ``softmax - one_hot``.

    Autograd would differentiate through ``log_sum_exp`` itself; here the derived formula is used
    instead (the forward pass keeps the normaliser, so the backward pass costs one ``exp``).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        loss, lse = _cross_entropy_parts(logits, weights)
        ctx.save_for_backward(logits, weights, lse)
        return loss

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        logits, weights, lse = ctx.saved_tensors
        return grad_output * _hand_gradient(logits, weights, lse), None


def softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood under the full softmax: ``-log P(target | row)``.

    ``logits``: (b, n) scores of every item (``-inf`` allowed for items that may not be predicted,
    such as the padding column). ``targets``: (b,) item indices (then it equals
    ``torch.nn.functional.cross_entropy``), or (b, n) non-negative weights such as a basket's
    purchase counts (then the loss is ``sum w_bi (-log P(i | b)) / sum w``: every purchase is one
    example, and all the purchases of a row share one normaliser). Returns a scalar; its gradient
    is computed by :func:`softmax_cross_entropy_grad`.
    """
    weights = _target_weights(logits, targets)
    return SoftmaxCrossEntropy.apply(logits, weights)


# --------------------------------------------------------------------------------------------
# sampled softmax


def uniform_proposal(n_items: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform sampling over item IDs ``1..n_items``: ``(n_items + 1,)``, 0 at the padding ID 0."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    q = torch.full((n_items + 1,), 1.0 / n_items, dtype=dtype)
    q[0] = 0.0
    return q


def popularity_proposal(counts, power: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sampling in proportion to ``counts ** power``: ``(n_items + 1,) -> (n_items + 1,)``.

    ``counts`` are per item ID (e.g. training purchases per item, column 0 = padding, forced to 0).
    ``power=1`` is pure popularity, ``0.75`` the word2vec flattening, ``0`` uniform over items with
    a count. Items with count 0 are never drawn.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64).flatten().clone()
    if counts.numel() < 2:
        raise ValueError("counts must have one entry per item ID, padding included: (n_items + 1,)")
    if (counts < 0).any():
        raise ValueError("counts must be >= 0")
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    counts[0] = 0.0
    w = torch.where(counts > 0, counts ** power, torch.zeros_like(counts))
    if w.sum() <= 0:
        raise ValueError("every item has count 0: nothing can be sampled")
    return (w / w.sum()).to(dtype)


def sample_negatives(
    proposal: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``n_samples`` item IDs with replacement from ``proposal`` (n_items + 1,) -> (n_samples,)."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if proposal.dim() != 1 or (proposal < 0).any() or proposal.sum() <= 0:
        raise ValueError("proposal must be a 1-d vector of non-negative sampling probabilities")
    return torch.multinomial(proposal, n_samples, replacement=True, generator=generator)


def sampled_softmax_loss(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    *,
    pos_log_q: torch.Tensor | None = None,
    neg_log_q: torch.Tensor | None = None,
    accidental_hits: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of the positive against sampled negatives only.

    For each example ``p`` the softmax runs over ``1 + m`` logits: the positive's score and the
    scores of ``m`` negatives drawn from a proposal ``Q``. Drawing negatives from ``Q`` estimates
    the full normaliser ``sum_j exp(s_j)`` by ``sum_k exp(s_k) / Q(k)`` (importance sampling), which
    is the softmax of the *corrected* logits ``s_k - log Q(k)``. Without the correction, items that
    ``Q`` draws often (popular ones, under popularity sampling) are pushed down too hard, and the
    model learns to under-rate them. The positive is corrected the same way (as TensorFlow's
    ``sampled_softmax_loss`` does), so a uniform ``Q`` changes nothing.

    Parameters
    ----------
    pos_scores
        (p,) score of each example's positive item.
    neg_scores
        (p, m) scores of the negatives for each example; or, with ``rows``, (b, m) negatives per
        row (a user, a basket) shared by every positive of that row.
    pos_log_q, neg_log_q
        ``log Q`` of the positive (p,) and of the negatives (same shape as ``neg_scores``, or
        (m,)): the logQ correction. Pass both or neither.
    accidental_hits
        Bool, same shape as ``neg_scores``: True where a "negative" is a positive (the example's
        own item; with ``rows``, any positive of the row). Left out of the softmax.
    weights
        (p,) example weights (e.g. purchase counts); the loss is their weighted mean.
    rows
        (p,) int: the row of ``neg_scores`` of each positive. The normaliser of the negatives is then
        computed once per row, ``log_sum_exp(negatives of row)``, and combined with each positive by
        ``logaddexp``: O(b m + p) work instead of O(p m), with the same value.

    Returns a scalar.
    """
    n_rows = pos_scores.shape[0] if rows is None else None
    if rows is not None:
        if rows.shape != pos_scores.shape or rows.dtype not in (torch.int32, torch.int64):
            raise ValueError("rows must be an integer tensor with one entry per positive: (p,)")
    if pos_scores.dim() != 1 or neg_scores.dim() != 2 or (n_rows is not None and neg_scores.shape[0] != n_rows):
        raise ValueError(
            f"expected pos_scores (p,) and neg_scores (p, m) (or (b, m) with rows), got "
            f"{tuple(pos_scores.shape)} and {tuple(neg_scores.shape)}"
        )
    if (pos_log_q is None) != (neg_log_q is None):
        raise ValueError("pass both pos_log_q and neg_log_q for the logQ correction, or neither")
    if pos_log_q is not None:
        pos_scores = pos_scores - pos_log_q
        neg_scores = neg_scores - neg_log_q
    if accidental_hits is not None:
        neg_scores = neg_scores.masked_fill(accidental_hits, float("-inf"))
    if rows is None:
        logits = torch.cat([pos_scores.unsqueeze(1), neg_scores], dim=1)   # (p, 1 + m), positive first
        nll = log_sum_exp(logits, dim=1) - pos_scores                       # (p,)
    else:
        neg_lse = log_sum_exp(neg_scores, dim=1)                            # (b,) once per row
        nll = torch.logaddexp(pos_scores, neg_lse[rows]) - pos_scores       # (p,)
    if weights is None:
        return nll.mean()
    return (weights * nll).sum() / weights.sum()


# --------------------------------------------------------------------------------------------
# BPR


def bpr_loss(
    pos_scores: torch.Tensor, neg_scores: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Bayesian personalised ranking: ``-log sigmoid(s_pos - s_neg)``, averaged.

    The probability that the customer prefers the bought item to the sampled one is modelled as
    ``sigmoid(s_pos - s_neg)``: a softmax over just the two items. The gradient with respect to
    ``s_pos`` is ``-(1 - sigmoid(s_pos - s_neg)) < 0`` (gradient descent raises the bought item) and
    the opposite for ``s_neg``. Computed as ``softplus(s_neg - s_pos)``, which does not overflow.
    ``pos_scores`` (p,), ``neg_scores`` (p,) or (p, m) (each negative one pair) -> scalar.
    """
    if neg_scores.dim() == pos_scores.dim() + 1:
        pos_scores = pos_scores.unsqueeze(-1)
    if neg_scores.shape[0] != pos_scores.shape[0]:
        raise ValueError(
            f"pos_scores {tuple(pos_scores.shape)} and neg_scores {tuple(neg_scores.shape)} must "
            "have one row per example"
        )
    loss = F.softplus(neg_scores - pos_scores)
    if loss.dim() > 1:
        loss = loss.mean(dim=tuple(range(1, loss.dim())))
    if weights is None:
        return loss.mean()
    return (weights * loss).sum() / weights.sum()
