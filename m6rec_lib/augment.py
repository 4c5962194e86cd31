"""Sequence augmentations for self-supervised learning: crop, mask, reorder (CL4SRec).

CL4SRec (Xie et al., ICDE 2022) makes two random *views* of each purchase history and trains the
sequence encoder to tell the views of one customer apart from those of the others
(:func:`m6rec_lib.contrastive.nt_xent`), next to the usual next-item loss. The three operators,
for a history ``s`` of ``n`` items (oldest first):

- **crop** (``eta``): a random contiguous run of ``max(1, floor(eta * n))`` items;
- **mask** (``gamma``): ``floor(gamma * n)`` random positions replaced by ``mask_id``;
- **reorder** (``beta``): a random contiguous run of ``floor(beta * n)`` items shuffled.

Rules the tests check:

- The augmentations only ever see a model's **inputs**. Targets (the next items to predict) are never
  passed in, so no target can leak into a view, and the next-item loss keeps its original targets.
- Inputs are never modified in place; every function returns a new array.
- Randomness comes from a ``numpy.random.Generator`` (or a seed): the same seed gives the same views.
- Batched functions work on the course's left-padded ``(batch, seq_len)`` arrays: padding stays
  padding, and a view is left-padded again (a crop is shorter than the original).

``mask_id``: CL4SRec adds a special ``[mask]`` item. The course's ID models have no such item, so the
default masks with the padding ID 0, which the SASRec encoder skips: the item is dropped but keeps
its place. Pass ``mask_id = n_items + 1`` for a model with a mask embedding.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .data.indexing import PAD_ID

__all__ = [
    "AUGMENTATIONS",
    "crop",
    "mask",
    "reorder",
    "augment",
    "augment_batch",
    "two_views",
]

AUGMENTATIONS: tuple[str, ...] = ("crop", "mask", "reorder")


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise ValueError("pass a numpy Generator or an integer seed: augmentations must be reproducible")
    return np.random.default_rng(rng)


def _check_ratio(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a share in [0, 1], got {value!r}")
    return float(value)


def _as_sequence(seq: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(seq, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"a sequence is a 1-d array of item IDs, got shape {arr.shape}")
    return arr


def crop(seq: Sequence[int] | np.ndarray, eta: float = 0.6, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """A random contiguous run of ``max(1, floor(eta * n))`` items of ``seq`` ``(n,) -> (m,)``.

    An empty sequence stays empty.
    """
    seq, eta, rng = _as_sequence(seq), _check_ratio("eta", eta), _rng(rng)
    n = len(seq)
    if n == 0:
        return seq.copy()
    m = max(1, int(np.floor(eta * n)))
    start = int(rng.integers(0, n - m + 1))
    return seq[start:start + m].copy()


def mask(
    seq: Sequence[int] | np.ndarray,
    gamma: float = 0.3,
    rng: np.random.Generator | int | None = None,
    mask_id: int = PAD_ID,
) -> np.ndarray:
    """``seq`` with ``floor(gamma * n)`` random positions set to ``mask_id``: ``(n,) -> (n,)``."""
    seq, gamma, rng = _as_sequence(seq), _check_ratio("gamma", gamma), _rng(rng)
    out = seq.copy()
    k = int(np.floor(gamma * len(seq)))
    if k:
        out[rng.choice(len(seq), size=k, replace=False)] = mask_id
    return out


def reorder(seq: Sequence[int] | np.ndarray, beta: float = 0.6, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """``seq`` with a random contiguous run of ``floor(beta * n)`` items shuffled: ``(n,) -> (n,)``.

    The multiset of items is unchanged; only the order inside the run changes.
    """
    seq, beta, rng = _as_sequence(seq), _check_ratio("beta", beta), _rng(rng)
    out = seq.copy()
    n = len(seq)
    r = int(np.floor(beta * n))
    if r >= 2:
        start = int(rng.integers(0, n - r + 1))
        out[start:start + r] = rng.permutation(out[start:start + r])
    return out


def augment(
    seq: Sequence[int] | np.ndarray,
    rng: np.random.Generator | int | None = None,
    methods: Sequence[str] = AUGMENTATIONS,
    *,
    eta: float = 0.6,
    gamma: float = 0.3,
    beta: float = 0.6,
    mask_id: int = PAD_ID,
) -> np.ndarray:
    """One view of ``seq``: one of ``methods``, drawn uniformly, applied to it."""
    rng = _rng(rng)
    methods = _check_methods(methods)
    method = methods[int(rng.integers(len(methods)))]
    if method == "crop":
        return crop(seq, eta, rng)
    if method == "mask":
        return mask(seq, gamma, rng, mask_id)
    return reorder(seq, beta, rng)


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    methods = tuple(methods)
    unknown = [m for m in methods if m not in AUGMENTATIONS]
    if not methods or unknown:
        raise ValueError(f"methods must be a non-empty subset of {AUGMENTATIONS}, got {methods}")
    return methods


def augment_batch(
    inputs: np.ndarray | torch.Tensor,
    rng: np.random.Generator | int | None = None,
    methods: Sequence[str] = AUGMENTATIONS,
    *,
    eta: float = 0.6,
    gamma: float = 0.3,
    beta: float = 0.6,
    mask_id: int = PAD_ID,
    pad_id: int = PAD_ID,
) -> np.ndarray | torch.Tensor:
    """One view of every row of a left-padded batch: ``(batch, seq_len) -> (batch, seq_len)``.

    Each row's real items (the non-``pad_id`` entries, oldest first) go through :func:`augment`
    and the result is left-padded again. Returns the type it was given (a tensor stays a tensor,
    on the same device); ``inputs`` is not modified.
    """
    is_tensor = isinstance(inputs, torch.Tensor)
    arr = inputs.detach().cpu().numpy() if is_tensor else np.asarray(inputs)
    if arr.ndim != 2:
        raise ValueError(f"inputs must be (batch, seq_len) item IDs, got shape {arr.shape}")
    rng, methods = _rng(rng), _check_methods(methods)
    _check_ratio("eta", eta), _check_ratio("gamma", gamma), _check_ratio("beta", beta)
    out = np.full(arr.shape, pad_id, dtype=np.int64)
    width = arr.shape[1]
    for row in range(arr.shape[0]):
        real = arr[row][arr[row] != pad_id]
        view = augment(real, rng, methods, eta=eta, gamma=gamma, beta=beta, mask_id=mask_id)
        if len(view):
            out[row, width - len(view):] = view
    if is_tensor:
        return torch.as_tensor(out, device=inputs.device)
    return out


def two_views(
    inputs: np.ndarray | torch.Tensor,
    rng: np.random.Generator | int | None = None,
    methods: Sequence[str] = AUGMENTATIONS,
    **kwargs,
) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
    """Two independent views of a left-padded batch (CL4SRec's pair), each ``(batch, seq_len)``."""
    rng = _rng(rng)
    return augment_batch(inputs, rng, methods, **kwargs), augment_batch(inputs, rng, methods, **kwargs)
