"""Contrastive learning: InfoNCE (the softmax of notebook 02 over a batch), and how to judge embeddings.

InfoNCE (van den Oord et al. 2018; SimCLR's NT-Xent, Chen et al. 2020) is the cross-entropy of
notebook 02 where the "catalogue" is a batch of candidates. For ``b`` queries ``q_i`` and ``m``
keys ``k_j`` with key ``pos(i)`` the positive of query ``i``::

    s_ij = q_i . k_j / tau                     (tau: the temperature)
    loss = mean_i [ log sum_j exp(s_ij) - s_i,pos(i) ]

With L2-normalised vectors ``q . k`` is a cosine in ``[-1, 1]``, so ``1 / tau`` sets how far apart
the logits can be: a small ``tau`` (M6-Rec uses 0.07) makes the softmax sharp and concentrates the
gradient on the hardest negatives. The gradient is the softmax one, ``P - Y``, pushed through the
dot products (:func:`info_nce_grad`, checked against autograd in the tests)::

    dL/dq_i = (1 / (b tau)) (sum_j P_ij k_j - k_pos(i))
    dL/dk_j = (1 / (b tau)) sum_i (P_ij - Y_ij) q_i

**In-batch negatives** are the other queries' positives. In a recommender they are items other
customers bought, so an item shows up as a negative in proportion to its popularity and popular
items get pushed down: the popularity bias of sampled softmax (notebook 02). The **logQ correction**
(Yi et al., RecSys 2019) subtracts ``log Q(j)``, the log-probability that item ``j`` is a candidate,
from every logit, positive included: :func:`in_batch_log_q` computes it from training counts.

**Alignment and uniformity** (Wang & Isola, ICML 2020) say what the loss achieves on the unit
sphere: positive pairs close together (:func:`alignment`, lower is better) and all points spread out
(:func:`uniformity`, lower is better).

**CL4SRec** (Xie et al. 2022) uses the same loss for self-supervision: :func:`cl4srec_loss` adds
``lambda * NT-Xent`` between two augmented views of each history (:mod:`m6rec_lib.augment`) to a
sequence model's next-item cross-entropy, and :func:`train_cl4srec` trains notebook 05's SASRec
with it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "info_nce_logits",
    "info_nce",
    "info_nce_grad",
    "nt_xent",
    "in_batch_log_q",
    "alignment",
    "alignment_per_user",
    "uniformity",
    "cl4srec_loss",
    "train_cl4srec",
]


def _check_temperature(temperature: float) -> float:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number (e.g. 0.07), got {temperature!r}")
    return float(temperature)


def _positives(b: int, m: int, positives: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    if positives is None:
        if m < b:
            raise ValueError(
                f"{b} queries but only {m} keys: without `positives` key i is query i's positive, so "
                "pass at least as many keys as queries, or give each query's positive index"
            )
        return torch.arange(b, device=device)
    positives = torch.as_tensor(positives, device=device).long()
    if positives.shape != (b,):
        raise ValueError(f"positives must be (b,) = ({b},) key indices, got shape {tuple(positives.shape)}")
    if b and (positives.min() < 0 or positives.max() >= m):
        raise ValueError(f"positive indices must lie in 0..{m - 1} (they index the keys)")
    return positives


def info_nce_logits(
    queries: torch.Tensor,
    keys: torch.Tensor,
    temperature: float = 0.07,
    *,
    positives: torch.Tensor | None = None,
    log_q: torch.Tensor | None = None,
    key_ids: torch.Tensor | None = None,
    query_ids: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits InfoNCE takes the softmax of, and each row's positive column.

    Parameters
    ----------
    queries, keys
        ``(b, d)`` and ``(m, d)``. They are used as given: normalise them first for cosines.
    positives
        ``(b,)`` index of each query's positive key; default ``arange(b)`` (key ``i`` for query ``i``).
    log_q
        ``(m,)`` log-probability that each key is drawn as a candidate: subtracted from every logit
        of its column (the logQ correction), the positive's included.
    key_ids, query_ids
        Item IDs. With ``key_ids``, any *other* column holding the same item as the row's positive
        is removed (it is not a negative: two customers bought the same item). With ``query_ids``
        as well, a column holding the query's own item is removed too (e.g. a user who is also a key).
    mask
        ``(b, m)`` bool, True = remove this candidate from the row (never the positive).

    Returns
    -------
    ``(logits (b, m), positives (b,))``; removed candidates are ``-inf``.
    """
    temperature = _check_temperature(temperature)
    if queries.dim() != 2 or keys.dim() != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(
            f"queries must be (b, d) and keys (m, d) with the same d, got {tuple(queries.shape)} and "
            f"{tuple(keys.shape)}"
        )
    b, m = queries.shape[0], keys.shape[0]
    pos = _positives(b, m, positives, queries.device)
    logits = queries @ keys.T / temperature                          # (b, m)
    if log_q is not None:
        log_q = torch.as_tensor(log_q, dtype=logits.dtype, device=logits.device)
        if log_q.shape != (m,):
            raise ValueError(f"log_q must have one entry per key, (m,) = ({m},), got {tuple(log_q.shape)}")
        if not torch.isfinite(log_q).all():
            raise ValueError("log_q has -inf or NaN: every candidate must have a sampling probability > 0")
        logits = logits - log_q
    remove = torch.zeros(b, m, dtype=torch.bool, device=logits.device)
    if key_ids is not None:
        key_ids = torch.as_tensor(key_ids, device=logits.device)
        if key_ids.shape != (m,):
            raise ValueError(f"key_ids must be (m,) = ({m},), got {tuple(key_ids.shape)}")
        remove |= key_ids[None, :] == key_ids[pos][:, None]          # duplicates of the positive
        if query_ids is not None:
            query_ids = torch.as_tensor(query_ids, device=logits.device)
            if query_ids.shape != (b,):
                raise ValueError(f"query_ids must be (b,) = ({b},), got {tuple(query_ids.shape)}")
            remove |= key_ids[None, :] == query_ids[:, None]
    if mask is not None:
        if mask.shape != (b, m):
            raise ValueError(f"mask must be (b, m) = ({b}, {m}), got {tuple(mask.shape)}")
        remove |= mask.to(logits.device, torch.bool)
    rows = torch.arange(b, device=logits.device)
    remove[rows, pos] = False                                         # the positive always stays
    if remove.any():
        logits = logits.masked_fill(remove, float("-inf"))
    return logits, pos


def info_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    temperature: float = 0.07,
    *,
    positives: torch.Tensor | None = None,
    log_q: torch.Tensor | None = None,
    key_ids: torch.Tensor | None = None,
    query_ids: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE: the mean cross-entropy of each query's positive among the keys. Scalar.

    ``queries (b, d)``, ``keys (m, d)``; the other arguments are those of :func:`info_nce_logits`.
    ``weights (b,)`` turns the mean into a weighted mean. With ``keys`` = the positives of a batch
    (``m = b``) this is the in-batch contrastive loss of a two-tower model.
    """
    logits, pos = info_nce_logits(queries, keys, temperature, positives=positives, log_q=log_q,
                                  key_ids=key_ids, query_ids=query_ids, mask=mask)
    rows = torch.arange(len(pos), device=logits.device)
    nll = torch.logsumexp(logits, dim=1) - logits[rows, pos]              # (b,)
    if weights is None:
        return nll.mean()
    return (weights * nll).sum() / weights.sum()


def info_nce_grad(
    queries: torch.Tensor,
    keys: torch.Tensor,
    temperature: float = 0.07,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of :func:`info_nce` (unweighted) with respect to queries and keys, by hand.

    With ``P = softmax(logits)`` row by row and ``Y`` the one-hot positives, the gradient with
    respect to the logits is ``G = (P - Y) / b`` (notebook 02), and ``logits = Q K^T / tau`` (minus
    constants), so ``dL/dQ = G K / tau`` ``(b, d)`` and ``dL/dK = G^T Q / tau`` ``(m, d)``. Removed
    candidates have ``P = 0`` and get nothing. ``kwargs``: those of :func:`info_nce_logits`.
    """
    temperature = _check_temperature(temperature)
    with torch.no_grad():
        logits, pos = info_nce_logits(queries, keys, temperature, **kwargs)
        probs = torch.softmax(logits, dim=1)   # (b, m)
        y = torch.zeros_like(probs)
        y[torch.arange(len(pos)), pos] = 1.0
        g = (probs - y) / len(pos)
        return g @ keys / temperature, g.T @ queries / temperature


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2, normalize: bool = True) -> torch.Tensor:
    """The two-view contrastive loss of SimCLR and CL4SRec. Scalar.

    ``z1``, ``z2``: ``(n, d)`` two augmented views of the same ``n`` sequences. Each of the ``2n``
    views must pick out its partner among the other ``2n - 1`` views (itself excluded): InfoNCE
    with queries = keys = ``cat(z1, z2)``, positive of ``i`` = ``(i + n) mod 2n``. With
    ``normalize`` the vectors are L2-normalised first (cosine similarity).
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be (n, d), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    if n < 2:
        raise ValueError("nt_xent needs at least 2 sequences per batch (the others are the negatives)")
    z = torch.cat([z1, z2])
    if normalize:
        z = F.normalize(z, dim=-1)
    positives = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    itself = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    return info_nce(z, z, temperature, positives=positives, mask=itself)


def in_batch_log_q(
    counts: np.ndarray | torch.Tensor,
    item_ids: np.ndarray | torch.Tensor | None = None,
    n_draws: int | None = None,
) -> torch.Tensor:
    """``log Q(i)``: how likely item ``i`` is an in-batch candidate, from training counts.

    ``counts``: ``(n_items + 1,)`` purchase counts per item ID (column 0 = padding, ignored).
    In-batch candidates are other examples' positives, i.e. draws from ``p_i = counts_i / total``.
    Without ``n_draws``: ``log p_i`` (one candidate per example, duplicates allowed: Yi et al. 2019).
    With ``n_draws = N`` (the batch's number of examples, when each *distinct* item appears once as
    a candidate): the log-probability that ``i`` is among ``N`` draws, ``log(1 - (1 - p_i)^N)``,
    which is ``log p_i + log N`` for rare items and saturates at 0 for items in nearly every batch.
    Returns ``(len(item_ids),)`` (or ``(n_items + 1,)`` with ``-inf`` at padding), float32.
    """
    counts_t = torch.as_tensor(np.asarray(counts, dtype=np.float64)).flatten().clone()
    if counts_t.numel() < 2 or (counts_t < 0).any():
        raise ValueError("counts must be (n_items + 1,) non-negative purchase counts per item ID")
    counts_t[0] = 0.0
    total = counts_t.sum()
    if total <= 0:
        raise ValueError("every count is 0: there is no purchase to estimate Q from")
    # an item with no training purchase is never a positive, so never a candidate; give it half a
    # purchase so that log Q stays finite if it is scored anyway
    p = torch.where(counts_t > 0, counts_t, torch.full_like(counts_t, 0.5)) / total
    if n_draws is None:
        log_q = torch.log(p)
    else:
        if n_draws < 1:
            raise ValueError(f"n_draws must be >= 1, got {n_draws}")
        log_q = torch.log(-torch.expm1(n_draws * torch.log1p(-p.clamp(max=1 - 1e-12))))
    log_q[0] = float("-inf")
    log_q = log_q.float()
    if item_ids is None:
        return log_q
    return log_q[torch.as_tensor(np.asarray(item_ids), dtype=torch.long)]


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    """Wang & Isola's alignment: ``E ||f(x) - f(y)||^alpha`` over positive pairs (lower = closer).

    ``x``, ``y``: ``(n, d)`` L2-normalised embeddings, row ``i`` of each a positive pair. In
    ``[0, 2^alpha]``; identical pairs give 0.
    """
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"x and y must both be (n, d) positive pairs, got {tuple(x.shape)} and {tuple(y.shape)}")
    return float((x - y).norm(dim=1).pow(alpha).mean())


def alignment_per_user(user_vectors: torch.Tensor, item_vectors: torch.Tensor, users: np.ndarray,
                       items: np.ndarray, n_users: int, alpha: float = 2.0) -> np.ndarray:
    """Alignment per user: ``(n_users,)`` mean ``||u - v||^alpha`` over each user's pairs (NaN: no pair).

    ``user_vectors``: ``(n_users, d)``; ``item_vectors``: ``(n_items + 1, d)``; ``users``, ``items``:
    ``(m,)`` the pairs (row of the user, item ID). The mean over pairs weighted by user is
    :func:`alignment` when every user has one pair; per-user values can be compared between two
    models with a paired bootstrap over users.
    """
    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    if users.shape != items.shape:
        raise ValueError(f"users and items must list the same pairs, got {users.shape} and {items.shape}")
    dist = (user_vectors[torch.as_tensor(users)] - item_vectors[torch.as_tensor(items)]).norm(dim=1).pow(alpha)
    total = np.bincount(users, weights=dist.double().numpy(), minlength=n_users)
    count = np.bincount(users, minlength=n_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def uniformity(x: torch.Tensor, t: float = 2.0, max_points: int | None = 4096, seed: int = 0) -> float:
    """Wang & Isola's uniformity: ``log E exp(-t ||f(x) - f(y)||^2)`` over all pairs (lower = more spread).

    ``x``: ``(n, d)`` L2-normalised embeddings. ``0`` when every point is the same; about ``-4``
    (``t=2``) for points spread uniformly on a high-dimensional sphere. Above ``max_points`` a seeded
    random subset is used (the number of pairs grows as ``n^2``).
    """
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"x must be (n, d) with n >= 2, got {tuple(x.shape)}")
    if max_points is not None and x.shape[0] > max_points:
        idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
        x = x[idx.to(x.device)]
    sq = torch.pdist(x.double()).pow(2)
    return float(torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel()))


# --------------------------------------------------------------------------------------------
# CL4SRec: next-item cross-entropy + lambda * InfoNCE between two augmented views


def cl4srec_loss(
    model,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    rng: np.random.Generator,
    cl_weight: float = 0.1,
    temperature: float = 0.2,
    **augment_kwargs,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The joint objective of CL4SRec (Xie et al. 2022): ``CE + cl_weight * NT-Xent``.

    ``model`` is a sequence model with ``loss(inputs, targets)`` (the next-item cross-entropy,
    e.g. :class:`m6rec_lib.models.sasrec.SASRec`) and ``encode(inputs) -> (batch, seq_len, d)``.
    ``inputs``, ``targets``: ``(batch, seq_len)`` training windows. Two views of ``inputs`` are drawn
    with :func:`m6rec_lib.augment.two_views` (``augment_kwargs``: ``methods``, ``eta``, ``gamma``,
    ``beta``, ``mask_id``); a sequence's representation is the state after its last position, and
    the two views are compared by cosine similarity at ``temperature`` (CL4SRec uses dot products
    at temperature 1; with cosines, which lie in [-1, 1], a lower temperature is needed). Targets
    only enter the cross-entropy, on the original inputs. Returns ``(total, ce, cl)``.
    """
    from .augment import two_views

    ce = model.loss(inputs, targets)
    if cl_weight == 0:
        return ce, ce, torch.zeros((), device=ce.device)
    keep = (inputs != 0).sum(1) >= 2            # one-item windows have nothing to augment
    if int(keep.sum()) < 2:
        return ce, ce, torch.zeros((), device=ce.device)
    v1, v2 = two_views(inputs[keep], rng, **augment_kwargs)
    z1, z2 = model.encode(v1)[:, -1], model.encode(v2)[:, -1]
    cl = nt_xent(z1, z2, temperature)
    return ce + cl_weight * cl, ce, cl


def train_cl4srec(
    model,
    train_sequences,
    validation=None,
    config=None,
    *,
    cl_weight: float = 0.1,
    temperature: float = 0.2,
    history_cap: int | None = None,
    last_targets: int | None = None,
    progress: bool = True,
    **augment_kwargs,
):
    """Train a SASRec model in place with :func:`cl4srec_loss`; return the history (one row per epoch).

    Same windows, batches, optimiser and early stopping (validation NDCG@10) as
    :func:`m6rec_lib.models.sasrec.train_sasrec` with ``config`` (a ``TrainConfig``);
    ``cl_weight=0`` is plain cross-entropy training on the same batches. ``history_cap``: train on
    each customer's last ``history_cap`` items only; ``last_targets``: the cross-entropy only at the
    last ``last_targets`` positions of each window (the full softmax is the expensive part; the
    encoder still reads the whole window). The augmentation generator is seeded by
    ``config.seed``. The history has ``ce`` and ``cl`` columns (epoch means of the two terms).
    """
    import pandas as pd

    from .models.sasrec import TrainConfig, _validation_ndcg, make_windows
    from .training import EarlyStopping, train_loop

    config = config or TrainConfig()
    if cl_weight < 0:
        raise ValueError(f"cl_weight must be >= 0, got {cl_weight}")
    seqs = [np.asarray(s)[-history_cap:] if history_cap else s for s in train_sequences]
    inputs, targets = make_windows(seqs, model.config.max_len, getattr(config, "stride", None))
    if last_targets is not None:
        if last_targets < 1:
            raise ValueError(f"last_targets must be >= 1 or None, got {last_targets}")
        targets[:, :-last_targets] = 0
        keep = (targets != 0).any(1)
        inputs, targets = inputs[keep], targets[keep]
    device = model.item_embedding.weight.device
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    parts: dict[str, list[float]] = {"ce": [], "cl": []}
    epoch_parts: list[dict[str, float]] = []

    def batches(epoch: int):
        if parts["ce"]:
            epoch_parts.append({k: float(np.mean(v)) for k, v in parts.items()})
            parts["ce"].clear(), parts["cl"].clear()
        order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
        for s in range(0, len(order), config.batch_size):
            idx = order[s:s + config.batch_size]
            yield inputs[idx].to(device), targets[idx].to(device)

    def step(batch):
        total, ce, cl = cl4srec_loss(model, *batch, rng, cl_weight, temperature, **augment_kwargs)
        parts["ce"].append(ce.item()), parts["cl"].append(cl.item())
        return total

    validate = None
    if validation is not None:
        validate = lambda: _validation_ndcg(model, validation, config.validation_view)  # noqa: E731
    history = train_loop(
        model, optimizer, batches, step, config.epochs,
        validate=validate, monitor="NDCG@10" if validate else None,
        early_stopping=EarlyStopping(patience=config.patience) if validate else None,
        grad_clip=config.grad_clip, progress=progress, desc=f"CL4SRec (lambda={cl_weight})",
    )
    epoch_parts.append({k: float(np.mean(v)) for k, v in parts.items()})
    attrs = dict(history.attrs)
    history = pd.concat([history, pd.DataFrame(epoch_parts[:len(history)])], axis=1)
    history.attrs.update(attrs)
    history.attrs["n_windows"] = len(inputs)
    return history
