"""SASRec: a causal transformer over item-ID sequences, trained with full softmax cross-entropy.

The ID-based generative recommender of notebook 05 (Kang & McAuley, ICDM 2018), trained the way
Klenitskiy & Vasilev (RecSys 2023) showed works best: a softmax over the **whole catalogue** at
**every position** of the sequence (notebook 02's cross-entropy), instead of the original paper's
one sampled negative with a binary loss.

Reading order
-------------
1. :class:`SASRecConfig` -- the sizes.
2. :class:`CausalSelfAttentionBlock` -- pre-norm self-attention + feed-forward, each position sees
   itself and the real (non-padding) items before it.
3. :class:`SASRec` -- embeddings, blocks, and the output layer that scores every item with the
   (shared) item embedding table: ``logits = h @ E.T``.
4. :meth:`SASRec.loss` -- full softmax CE over items ``1..n_items`` at every non-padding target.
5. :func:`train_sasrec` -- windows, mini-batches, Adam, early stopping on validation NDCG@10.
6. :func:`load_or_train_sasrec` -- the same, cached in ``cache_dir()`` by configuration and split,
   so later notebooks reuse the encoder without retraining.

Conventions: item IDs ``1..n_items``, ``0`` = padding, sequences left-padded (the most recent item
is in the last column), score matrices ``(n, n_items + 1)`` with column 0 = padding (``-inf``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from m6rec_lib.data.indexing import PAD_ID
from m6rec_lib.data.sequences import pad_left, training_windows

if TYPE_CHECKING:
    from m6rec_lib.data.evalset import EvalSet
    from m6rec_lib.data.splits import Split

__all__ = [
    "SASRecConfig",
    "TrainConfig",
    "CausalSelfAttentionBlock",
    "ChunkedSoftmaxCrossEntropy",
    "full_softmax_cross_entropy",
    "SASRec",
    "train_sasrec",
    "load_or_train_sasrec",
    "default_configs",
    "basket_ids",
    "TrainingWindows",
    "build_training_windows",
    "basket_loss",
    "split_fingerprint",
    "count_parameters",
    "training_flops",
]


# =============================================================================================
# configuration
# =============================================================================================

@dataclass(frozen=True)
class SASRecConfig:
    """The model's sizes.

    ``n_items``: real items (IDs ``1..n_items``). ``max_len``: the longest history the model reads
    (older items are cut). ``d_model``: embedding width; ``n_heads`` must divide it. ``d_ff``:
    feed-forward width (default ``4 * d_model``). ``dropout``: on embeddings, attention outputs and
    feed-forward outputs. ``attention_dropout``: on the attention weights (``None``: the same as
    ``dropout``). On a CPU, dropping attention weights is costly: the ``(batch, heads, L, L)``
    random mask takes longer to draw than the attention itself. ``tie_output``: score items with
    the input item embeddings (SASRec's choice) or with a separate output table; ``output_bias``:
    add a learned score per item (its popularity, in effect). ``bag``: add to each state the mean
    of a second embedding table over the real items up to that position (a bag of items, as the
    matrix factorisation of notebook 02 builds its customer vector), so that "what this customer
    buys in general" has a direct path next to attention's "what came just before".
    """

    n_items: int
    max_len: int = 50
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    d_ff: int | None = None
    dropout: float = 0.2
    attention_dropout: float | None = None
    tie_output: bool = True
    output_bias: bool = False
    bag: bool = False

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {self.n_items}")
        for name in ("max_len", "d_model", "n_heads", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; pick n_heads "
                "among the divisors of d_model (e.g. 1, 2 or 4 for d_model=64)"
            )
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")

    @property
    def ff_width(self) -> int:
        return self.d_ff or 4 * self.d_model

    @property
    def attention_dropout_p(self) -> float:
        """The dropout rate of the attention weights (``attention_dropout``, or ``dropout`` if None)."""
        return self.dropout if self.attention_dropout is None else self.attention_dropout


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained (see :func:`train_sasrec`).

    The loss is ``next_item_weight * L_item + next_basket_weight * L_basket``:

    - ``L_item``, the classic SASRec objective: at **every** position, the full-softmax
      cross-entropy of the next item (the next purchase line);
    - ``L_basket``: at the last line of every basket that has a next basket in the training data,
      the full-softmax cross-entropy against the next basket's items as a uniform target
      distribution (notebook 02's basket loss). This is the question the course's evaluation asks.
      ``basket_targets`` chooses where (see :func:`build_training_windows`): ``"next_at_end"``
      (as just said), ``"next_everywhere"`` (every line of a basket predicts the next basket) or
      ``"rest_of_basket"`` (every line predicts the rest of its own basket).

    ``new_items_only``: both targets only count items the customer had not bought before (repeats
    are left to Buy-Again; see :mod:`m6rec_lib.mixture`). ``shuffle_within_baskets``: every epoch,
    reorder the lines inside each basket at random (they share one timestamp, so their order carries
    no time information). ``epochs`` is the maximum; training stops after ``patience`` epochs
    without a better validation NDCG@10 (on ``validation_view``: ``"new"`` or ``"all"`` items) and
    keeps the best epoch's weights. ``batch_size`` counts windows of ``max_len`` lines; windows of
    similar length are batched together and the padding columns they share are cut off.
    ``precision``: ``"fp32"``, ``"bf16"`` (the output layer's matrix products, over the whole
    catalogue, in bfloat16; the softmax, the sums and the transformer in float32: at width 64,
    converting the transformer's small products costs a CPU more than it saves) or ``"auto"`` (bf16
    where this CPU multiplies bfloat16 matrices clearly faster,
    :func:`m6rec_lib.pretraining.pick_precision`). ``lr_decay``: the learning rate falls linearly
    over the epochs, ``lr * (1 - (e - 1) / epochs)`` in epoch ``e`` (less noise at the end).
    ``windows_per_customer``: train on each customer's last windows only (``None``: all of them);
    with 1, on the last ``max_len`` lines. A few wholesale customers have thousands of lines and
    would otherwise fill most of every epoch.
    """

    epochs: int = 6
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 2
    grad_clip: float | None = 1.0
    next_item_weight: float = 1.0
    next_basket_weight: float = 0.0
    new_items_only: bool = False
    shuffle_within_baskets: bool = False
    validation_view: str = "new"
    precision: str = "fp32"
    lr_decay: bool = False
    basket_targets: str = "next_at_end"
    windows_per_customer: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.windows_per_customer is not None and self.windows_per_customer < 1:
            raise ValueError(f"windows_per_customer must be >= 1 or None, got {self.windows_per_customer}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 0:
            raise ValueError("epochs and batch_size must be >= 1 and patience >= 0")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.next_item_weight < 0 or self.next_basket_weight < 0 or \
                self.next_item_weight + self.next_basket_weight == 0:
            raise ValueError("the loss weights must be >= 0 and not both 0; e.g. next_item_weight=1.0")
        if self.validation_view not in ("all", "new"):
            raise ValueError(f"validation_view must be 'all' or 'new', got {self.validation_view!r}")
        if self.basket_targets not in BASKET_TARGETS:
            raise ValueError(f"basket_targets must be one of {BASKET_TARGETS}, got {self.basket_targets!r}")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', got {self.precision!r}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def training_flops(config: SASRecConfig, n_positions: int, n_targets: int, seq_len: int | None = None) -> int:
    """Floating-point operations of one training step (2 per multiply-add; backward = 2 x forward).

    ``n_positions``: sequence positions run through the transformer (batch x seq_len, padding
    included: it is computed too); ``n_targets``: positions with a target (the output layer and
    the softmax only run there). Per position and layer: Q/K/V and output projections
    ``2 * 4 d^2``, the feed-forward ``2 * 2 d d_ff``, attention scores and weighted values
    ``2 * 2 d L`` (the masked ``L x L`` product is computed in full). Per target: ``2 d n_items``.
    """
    d, L = config.d_model, seq_len or config.max_len
    per_position = config.n_layers * (2 * 4 * d * d + 2 * 2 * d * config.ff_width + 2 * 2 * d * L)
    forward = n_positions * per_position + n_targets * 2 * d * config.n_items
    return 3 * forward


# =============================================================================================
# the loss: full softmax cross-entropy, computed chunk by chunk
# =============================================================================================

class ChunkedSoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``softmax(hidden @ weight.T + bias)`` without storing the logits.

    ``hidden``: ``(n, d)`` sequence states, ``weight``: ``(n_classes, d)`` class embeddings,
    ``bias``: ``(n_classes,)`` or None. The targets are a target distribution ``q_r`` per row, given
    sparsely: ``target_rows`` (sorted), ``target_classes``, ``target_weights``, each ``(m,)``; a
    one-hot target is one entry of weight 1. The loss is ``mean_r -sum_j q_rj log p_rj``.

    The plain version, ``F.cross_entropy(hidden @ weight.T, targets)``, writes an
    ``(n, n_classes)`` matrix (here ~6k x 4.5k floats = 115 MB per batch) and reads it back several
    times; on a CPU that memory traffic, not the arithmetic, is the cost. Notebook 02's gradient
    makes a better way possible: ``dL/dlogits = (p - q) / n`` (``p = softmax(logits)``), hence
    ``dL/dhidden = (p - q) @ weight / n``, ``dL/dweight = (p - q).T @ hidden / n`` and
    ``dL/dbias = sum_r (p - q)_r / n``. So the forward pass goes through the rows in chunks of
    ``chunk_size``, computes each chunk's logits, loss and gradients while the chunk is still in
    the cache, and keeps only the gradients (``(n, d)``, ``(n_classes, d)``, ``(n_classes,)``).
    Backward just scales them. The result equals the plain version (a test checks it).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, target_rows: torch.Tensor,
                target_classes: torch.Tensor, target_weights: torch.Tensor, chunk_size: int = 512,
                matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
        n = hidden.shape[0]
        need_grad = any(ctx.needs_input_grad[:3])
        grad_hidden = torch.empty_like(hidden) if need_grad else None
        grad_weight = torch.zeros_like(weight) if need_grad else None
        grad_bias = torch.zeros_like(bias) if need_grad and bias is not None else None
        total = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
        mm = matmul_dtype or hidden.dtype            # the products' input type (bfloat16 is faster on some CPUs)
        hidden_mm, weight_mm = hidden.to(mm), weight.to(mm)
        starts = torch.arange(0, n + chunk_size, chunk_size, device=hidden.device).clamp(max=n)
        bounds = torch.searchsorted(target_rows, starts).tolist()         # target entries of each chunk
        for k, start in enumerate(range(0, n, chunk_size)):
            h = hidden_mm[start:start + chunk_size]
            lo, hi = bounds[k], bounds[k + 1]
            r, c, w = target_rows[lo:hi] - start, target_classes[lo:hi], target_weights[lo:hi].to(hidden.dtype)
            q_mass = torch.zeros(len(h), dtype=hidden.dtype, device=hidden.device).index_add_(0, r, w)
            logits = (h @ weight_mm.T).to(hidden.dtype)                    # (chunk, n_classes)
            if bias is not None:
                logits += bias
            top = logits.amax(dim=1, keepdim=True)                         # log-sum-exp, in place:
            total -= (w * logits[r, c]).sum()                              # sum of -q log p =
            p = logits.sub_(top).exp_()                                    #   sum_r q_r log Z_r - sum q logit
            z = p.sum(dim=1, keepdim=True)
            total += (q_mass * (z.log() + top).squeeze(1)).sum()
            if need_grad:
                g = p.mul_(q_mass[:, None] / z)                            # p (times each row's target mass)
                g.index_put_((r, c), -w, accumulate=True)                  # p - q
                if grad_bias is not None:
                    grad_bias += g.sum(dim=0)
                g = g.to(mm)
                grad_hidden[start:start + chunk_size] = g @ weight_mm
                grad_weight += (g.T @ h).to(weight.dtype)
        if need_grad:
            ctx.save_for_backward(grad_hidden / n, grad_weight / n, None if grad_bias is None else grad_bias / n)
        return total / n

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        return (grad_hidden * grad_output, grad_weight * grad_output,
                None if grad_bias is None else grad_bias * grad_output, None, None, None, None, None)


def full_softmax_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor,
                               targets: torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                               bias: torch.Tensor | None = None, chunk_size: int = 512) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T + bias, targets)`` computed in chunks.

    ``hidden`` (n, d), ``weight`` (C, d), ``bias`` (C,) or None -> scalar. ``targets``: (n,) class
    indices, or a target distribution per row as ``(rows, classes, weights)``, three (m,) tensors
    with ``rows`` sorted (each row's weights summing to 1). Inside ``torch.autocast("cpu",
    dtype=torch.bfloat16)`` the matrix products take bfloat16 inputs; the softmax and the sums
    stay in float32.
    """
    if hidden.shape[0] == 0:
        raise ValueError("no target to compute the loss on")
    if isinstance(targets, torch.Tensor):
        rows = torch.arange(len(targets), device=hidden.device)
        targets = (rows, targets, torch.ones(len(targets), dtype=hidden.dtype, device=hidden.device))
    rows, classes, weights = targets
    if len(rows) > 1 and bool((rows[1:] < rows[:-1]).any()):
        raise ValueError("target rows must be sorted; sort the (rows, classes, weights) entries by row")
    matmul_dtype = None
    if hidden.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        matmul_dtype = torch.get_autocast_dtype("cpu")
    if hidden.dtype in (torch.bfloat16, torch.float16):      # autocast's output: back to float32
        hidden = hidden.float()
    with torch.autocast("cpu", enabled=False):
        return ChunkedSoftmaxCrossEntropy.apply(hidden, weight, bias, rows, classes, weights, chunk_size,
                                                matmul_dtype)


# =============================================================================================
# the model
# =============================================================================================

def attention_mask(inputs: torch.Tensor) -> torch.Tensor:
    """(batch, seq_len) item IDs -> (batch, 1, seq_len, seq_len) bool, True = may attend.

    Position ``i`` attends to positions ``j <= i`` that hold a real item (causal + key padding),
    and always to itself, so that no row is empty (padding rows only see themselves; their outputs
    are never used).
    """
    seq_len = inputs.shape[1]
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=inputs.device).tril()
    real_key = (inputs != PAD_ID)[:, None, None, :]                       # (b, 1, 1, L)
    itself = torch.eye(seq_len, dtype=torch.bool, device=inputs.device)
    return (causal & real_key) | itself                                  # (b, 1, L, L)


def init_weights(module: nn.Module) -> None:
    """GPT-style initialisation (``model.apply(init_weights)``): N(0, 0.02) weights, zero biases, zero padding row."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()


class CausalSelfAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))``, then ``x + ffn(LN(x))``.

    ``(batch, seq_len, d_model) -> (batch, seq_len, d_model)``.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = attention_dropout

    def attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Multi-head attention: ``(b, L, d)``, mask ``(b, 1, L, L)`` -> ``(b, L, d)``."""
        b, L, d = x.shape
        q, k, v = self.qkv(x).view(b, L, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(                    # softmax(q k^T / sqrt(d_h)) v
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, L, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm1(x), mask))
        return x + self.dropout(self.ff(self.norm2(x)))


class SASRec(nn.Module):
    """Item IDs in, a next-item score for every catalogue item out, at every position.

    ``encode``: ``(batch, seq_len)`` left-padded item IDs -> ``(batch, seq_len, d_model)``, where
    the state at position ``t`` has read items ``0..t``. ``item_logits``: ``(..., d_model)`` ->
    ``(..., n_items + 1)`` with column 0 (padding) at ``-inf``. The output layer reuses the input
    item embeddings (weight tying): an item's score is the dot product of the sequence state and
    its embedding.
    """

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.item_embedding = nn.Embedding(c.n_items + 1, c.d_model, padding_idx=PAD_ID)
        self.position_embedding = nn.Embedding(c.max_len, c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            CausalSelfAttentionBlock(c.d_model, c.n_heads, c.ff_width, c.dropout, c.attention_dropout_p)
            for _ in range(c.n_layers)
        )
        self.final_norm = nn.LayerNorm(c.d_model)
        self.output_embedding = None if c.tie_output else nn.Embedding(c.n_items + 1, c.d_model)
        self.output_bias = nn.Parameter(torch.zeros(c.n_items + 1)) if c.output_bias else None
        self.bag_embedding = nn.Embedding(c.n_items + 1, c.d_model, padding_idx=PAD_ID) if c.bag else None
        self.apply(init_weights)

    # ---------------------------------------------------------------- forward pieces
    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(batch, seq_len)`` item IDs -> ``(batch, seq_len, d_model)`` sequence states."""
        if inputs.dim() != 2:
            raise ValueError(f"inputs must be (batch, seq_len) item IDs, got shape {tuple(inputs.shape)}")
        L = inputs.shape[1]
        if L > self.config.max_len:
            raise ValueError(f"sequences of length {L} exceed max_len={self.config.max_len}; "
                             "cut them with m6rec_lib.data.pad_left(sequences, max_len)")
        # positions count from the right: the most recent item always has position max_len - 1
        positions = torch.arange(self.config.max_len - L, self.config.max_len, device=inputs.device)
        x = self.item_embedding(inputs) * math.sqrt(self.config.d_model) + self.position_embedding(positions)
        x = self.dropout(x)
        mask = attention_mask(inputs)
        for block in self.blocks:
            x = block(x, mask)
        states = self.final_norm(x)
        if self.bag_embedding is not None:
            states = states + self.bag_means(inputs)
        return states

    def bag_means(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(batch, seq_len)`` -> ``(batch, seq_len, d_model)``: at position ``t``, the mean bag
        embedding of the real items at positions ``<= t`` (padding embeds to zero and is not counted)."""
        total = torch.cumsum(self.bag_embedding(inputs), dim=1)
        count = torch.cumsum((inputs != PAD_ID).to(total.dtype), dim=1).clamp(min=1.0)
        return total / count[..., None]

    def output_layer(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The items' output vectors ``(n_items, d)`` and biases ``(n_items,)`` (or None), padding left out."""
        table = self.item_embedding if self.output_embedding is None else self.output_embedding
        bias = None if self.output_bias is None else self.output_bias[1:]
        return table.weight[1:], bias

    def item_logits(self, states: torch.Tensor) -> torch.Tensor:
        """``(..., d_model)`` -> ``(..., n_items + 1)`` scores, column 0 = ``-inf``."""
        weight, bias = self.output_layer()
        logits = states @ weight.T
        if bias is not None:
            logits = logits + bias
        pad = torch.full((*logits.shape[:-1], 1), float("-inf"), dtype=logits.dtype, device=logits.device)
        return torch.cat([pad, logits], dim=-1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(batch, seq_len)`` -> ``(batch, n_items + 1)``: next-item scores after the last position."""
        return self.item_logits(self.encode(inputs)[:, -1])

    # ---------------------------------------------------------------- training objective
    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean full-softmax cross-entropy over every non-padding target.

        ``inputs``, ``targets``: ``(batch, seq_len)``; ``targets[b, t]`` is the item after
        ``inputs[b, t]`` (``0`` = no target there). The softmax runs over items ``1..n_items``
        (padding is not a class), and logits are only computed where there is a target.
        """
        states = self.encode(inputs)
        keep = targets != PAD_ID
        if not keep.any():
            raise ValueError("the batch has no target; every row is padding")
        h = states[keep]                                              # (n_targets, d)
        # = F.cross_entropy(h @ E[1:].T, targets - 1), without the (n_targets, n_items) matrix
        weight, bias = self.output_layer()
        return full_softmax_cross_entropy(h, weight, targets[keep] - 1, bias)

    # ---------------------------------------------------------------- scoring
    @torch.no_grad()
    def score_sequences(self, sequences: Sequence[np.ndarray], batch_size: int = 512) -> torch.Tensor:
        """``n`` item-ID sequences (oldest first) -> ``(n, n_items + 1)`` next-item logits.

        Only the last ``max_len`` items of each sequence are read. An empty sequence gets the
        scores of a sequence of padding (a popularity-like prior the model learned).
        """
        was_training = self.training
        self.eval()
        device = self.item_embedding.weight.device
        padded = torch.as_tensor(pad_left(list(sequences), self.config.max_len))
        out = [self(padded[s:s + batch_size].to(device)).cpu() for s in range(0, len(padded), batch_size)]
        self.train(was_training)
        if not out:
            return torch.empty(0, self.config.n_items + 1)
        return torch.cat(out)

    def score(self, eval_set: "EvalSet", batch_size: int = 512) -> torch.Tensor:
        """Scores for the evaluator: ``(len(eval_set), n_items + 1)`` from ``eval_set.sequences``."""
        if eval_set.n_items != self.config.n_items:
            raise ValueError(
                f"the eval set has {eval_set.n_items} items but the model was built for "
                f"{self.config.n_items}; score an eval set of the split the model was trained on"
            )
        return self.score_sequences(eval_set.sequences, batch_size)


# =============================================================================================
# training
# =============================================================================================

def make_windows(sequences: Sequence[np.ndarray], max_len: int, stride: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Classic SASRec windows (:func:`m6rec_lib.data.training_windows`): ``(n_windows, max_len)``
    inputs and next-item targets, 0 = no target."""
    inputs, targets = training_windows(sequences, max_len, min_len=2, stride=stride)
    return torch.as_tensor(inputs), torch.as_tensor(targets)


def basket_ids(split: "Split") -> list[np.ndarray]:
    """Per user row, the basket (invoice) number of each line of ``split.train_sequences``.

    Aligned with ``split.train_sequences`` (same lines, same order): ``basket_ids(split)[u][t]`` is
    the basket of the ``t``-th training line of user ``u``. In the invoice-sequence protocol every
    sequence is one invoice, so each row is constant.
    """
    from m6rec_lib.data.splits import group_sequences

    codes = pd.factorize(split.train["invoice"])[0] + 1                  # 0 would read as padding
    out = group_sequences(split.train["user"].to_numpy(), codes, split.n_users)
    if [len(b) for b in out] != [len(s) for s in split.train_sequences]:
        raise ValueError("split.train and split.train_sequences disagree; rebuild the split")
    return out


BASKET_TARGETS = ("next_at_end", "next_everywhere", "rest_of_basket")


@dataclass
class TrainingWindows:
    """One epoch of training data.

    ``inputs``: ``(n_windows, max_len)`` left-padded item IDs; ``next_items``: the same shape, the
    item after each input (0 = no target). The basket targets are target *distributions* at some
    positions, stored sparsely and grouped by window: the entries of window ``w`` are
    ``set_offsets[w]:set_offsets[w + 1]`` of ``set_columns`` (position in the window),
    ``set_items`` and ``set_weights`` (each position's weights sum to 1).
    """

    inputs: torch.Tensor
    next_items: torch.Tensor
    set_offsets: np.ndarray
    set_columns: np.ndarray
    set_items: np.ndarray
    set_weights: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def basket_targets(self) -> np.ndarray:
        """All basket targets as rows ``(window, position, item, weight)``: an ``(m, 4)`` array."""
        windows = np.repeat(np.arange(len(self)), np.diff(self.set_offsets))
        return np.column_stack([windows, self.set_columns, self.set_items, self.set_weights]).astype(np.float64)

    @property
    def n_set_rows(self) -> int:
        """Number of positions that carry a basket target."""
        windows = np.repeat(np.arange(len(self)), np.diff(self.set_offsets))
        return len(np.unique(windows * self.inputs.shape[1] + self.set_columns))

    def batch_targets(self, idx: np.ndarray) -> np.ndarray:
        """The basket targets of windows ``idx`` as ``(window in the batch, position, item, weight)`` rows."""
        lo, hi = self.set_offsets[idx], self.set_offsets[idx + 1]
        lengths = hi - lo
        flat = np.repeat(lo - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(lengths.sum())
        rows = np.repeat(np.arange(len(idx)), lengths)
        return np.column_stack([rows, self.set_columns[flat], self.set_items[flat], self.set_weights[flat]])


def _set_targets(seq: np.ndarray, starts: np.ndarray, ends: np.ndarray, is_new: np.ndarray,
                 kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Basket targets of one sequence: ``(positions, items, weights)``, sorted by position."""
    positions, items, weights = [], [], []

    def add(at: np.ndarray, targets: np.ndarray) -> None:
        targets = np.unique(targets)
        if len(targets) and len(at):
            positions.append(np.repeat(at, len(targets)))
            items.append(np.tile(targets, len(at)))
            weights.append(np.full(len(at) * len(targets), 1.0 / len(targets)))

    for b in range(len(starts)):
        a, e = starts[b], ends[b]
        if kind == "rest_of_basket":                  # every line -> the lines after it in its basket
            for p in range(a, e - 1):
                add(np.array([p]), seq[p + 1:e][is_new[p + 1:e]])
        elif b + 1 < len(starts):                      # the next basket's (new) items
            na, ne = starts[b + 1], ends[b + 1]
            at = np.array([e - 1]) if kind == "next_at_end" else np.arange(a, e)
            add(at, seq[na:ne][is_new[na:ne]])
    if not positions:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return (np.concatenate(positions), np.concatenate(items).astype(np.int64),
            np.concatenate(weights).astype(np.float32))


def build_training_windows(
    sequences: Sequence[np.ndarray],
    baskets: Sequence[np.ndarray] | None,
    max_len: int,
    new_items_only: bool = False,
    rng: np.random.Generator | None = None,
    basket_targets: str = "next_at_end",
    max_windows: int | None = None,
) -> TrainingWindows:
    """Cut every sequence into windows of ``max_len`` lines, from its end, with both kinds of target.

    ``baskets``: per sequence, the basket number of each line (:func:`basket_ids`); ``None`` means
    each sequence is one basket. With ``rng`` the lines inside each basket are shuffled first.
    ``new_items_only``: a target (next item or basket item) counts only where it is the customer's
    first purchase of the item. ``basket_targets`` says which positions get which set of items:

    - ``"next_at_end"``: the last line of each basket -> the next basket's items;
    - ``"next_everywhere"``: every line of a basket -> the next basket's items;
    - ``"rest_of_basket"``: every line -> the lines after it in its own basket (for baskets whose
      order is random, like the shuffled invoice protocol, this is the set the next line is drawn from).

    Windows do not overlap, so every line is an input once per epoch; each window's first lines
    see only the window (as in SASRec). ``max_windows``: keep only each sequence's last
    ``max_windows`` windows (its most recent ``max_windows * max_len`` lines; a line still counts
    as new or not by the whole sequence).
    """
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}")
    if basket_targets not in BASKET_TARGETS:
        raise ValueError(f"basket_targets must be one of {BASKET_TARGETS}, got {basket_targets!r}")
    inputs, next_items = [], []
    offsets, columns, items, weights = [0], [], [], []
    for idx, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) < 2:
            continue
        bask = np.zeros(len(seq), dtype=np.int64) if baskets is None else np.asarray(baskets[idx])
        starts = np.flatnonzero(np.r_[True, bask[1:] != bask[:-1]])      # first line of each basket
        ends = np.r_[starts[1:], len(seq)]                                 # one past its last line
        if rng is not None:
            seq = np.concatenate([seq[a:b][rng.permutation(b - a)] for a, b in zip(starts, ends)])
        # a line is "new" when it is the customer's first purchase of that item
        first_seen = np.zeros(len(seq), dtype=bool)
        first_seen[np.unique(seq, return_index=True)[1]] = True
        is_new = first_seen if new_items_only else np.ones(len(seq), dtype=bool)
        nxt = np.r_[seq[1:], PAD_ID]                                       # the last line has no next item
        nxt = np.where(np.r_[is_new[1:], False], nxt, PAD_ID)
        set_pos, set_items, set_weights = _set_targets(seq, starts, ends, is_new, basket_targets)
        end, n_windows = len(seq), 0
        while end > 0 and (max_windows is None or n_windows < max_windows):
            n_windows += 1
            start = max(0, end - max_len)
            x = np.zeros(max_len, dtype=np.int64)
            y = np.zeros(max_len, dtype=np.int64)
            x[max_len - (end - start):] = seq[start:end]
            y[max_len - (end - start):] = nxt[start:end]
            inputs.append(x)
            next_items.append(y)
            lo, hi = np.searchsorted(set_pos, [start, end])
            columns.append(max_len - (end - set_pos[lo:hi]))
            items.append(set_items[lo:hi])
            weights.append(set_weights[lo:hi])
            offsets.append(offsets[-1] + hi - lo)
            end = start
    if not inputs:
        raise ValueError("no sequence has at least 2 lines: nothing to train on")
    return TrainingWindows(torch.as_tensor(np.stack(inputs)), torch.as_tensor(np.stack(next_items)),
                           np.array(offsets, dtype=np.int64), np.concatenate(columns).astype(np.int64),
                           np.concatenate(items), np.concatenate(weights))


def basket_loss(model: "SASRec", states: torch.Tensor, targets: np.ndarray) -> torch.Tensor:
    """Mean cross-entropy of the basket target distributions.

    ``states``: ``(batch, seq_len, d)``; ``targets``: ``(m, 4)`` rows ``(window in the batch,
    position, item, weight)`` (:meth:`TrainingWindows.batch_targets`). For each distinct (window,
    position) ``r`` with target distribution ``q_r``: ``-sum_j q_rj log softmax_j(logits(h_r))``, the
    softmax over items ``1..n_items``, computed chunk by chunk (:func:`full_softmax_cross_entropy`).
    """
    keys = targets[:, 0].astype(np.int64) * states.shape[1] + targets[:, 1].astype(np.int64)
    unique_keys, row_of = np.unique(keys, return_inverse=True)
    order = np.argsort(row_of, kind="stable")                                         # entries by row
    h = states.reshape(-1, states.shape[-1])[torch.as_tensor(unique_keys)]          # (r, d)
    weight, bias = model.output_layer()
    soft = (torch.as_tensor(row_of[order]), torch.as_tensor(targets[order, 2].astype(np.int64) - 1),
            torch.as_tensor(targets[order, 3], dtype=torch.float32))
    return full_softmax_cross_entropy(h, weight, soft, bias)


def _validation_ndcg(model: SASRec, eval_set: "EvalSet", view: str) -> dict[str, float]:
    from m6rec_lib.metrics import evaluate

    result = evaluate(model.score(eval_set), eval_set, ks=(10,), exclude_seen=(view == "new"))
    return {"NDCG@10": result["NDCG@10"], "Recall@10": result["Recall@10"]}


def train_sasrec(
    model: SASRec,
    train_sequences: Sequence[np.ndarray],
    validation: "EvalSet | None",
    config: TrainConfig = TrainConfig(),
    baskets: Sequence[np.ndarray] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train ``model`` in place; return the history (one row per epoch).

    ``train_sequences``: item-ID arrays, oldest first; ``baskets``: the basket number of each of
    their lines (:func:`basket_ids`; ``None``: each sequence is one basket). Every epoch builds
    the windows (:func:`build_training_windows`, reshuffled inside baskets when the configuration
    asks), visits them in a seeded random order in batches of ``config.batch_size``, and minimises
    the weighted sum of :meth:`SASRec.loss` (next item, every position) and :func:`basket_loss`
    with Adam. With ``validation``, NDCG@10 on ``config.validation_view`` picks the best epoch.
    The history's ``attrs`` hold ``n_windows``, ``n_positions``, ``n_item_targets`` and
    ``n_basket_targets`` per epoch (for throughput numbers).
    """
    from m6rec_lib.training import EarlyStopping, train_loop

    device = model.item_embedding.weight.device
    torch.manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = None
    if config.lr_decay:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: 1.0 - done / config.epochs)
    precision = config.precision
    if precision == "auto":
        from m6rec_lib.pretraining import pick_precision

        precision = pick_precision("auto")
    fixed = None if config.shuffle_within_baskets else build_training_windows(
        train_sequences, baskets, model.config.max_len, config.new_items_only,
        basket_targets=config.basket_targets, max_windows=config.windows_per_customer)
    sizes: dict[str, int] = {}
    per_batch: dict[str, float] = {}

    def batches(epoch: int):
        rng = np.random.default_rng([config.seed, epoch])
        data = fixed if fixed is not None else build_training_windows(
            train_sequences, baskets, model.config.max_len, config.new_items_only, rng=rng,
            basket_targets=config.basket_targets, max_windows=config.windows_per_customer)
        lengths = (data.inputs != PAD_ID).sum(dim=1).numpy()
        sizes.update(n_windows=len(data), n_positions=int(lengths.sum()),
                     n_item_targets=int((data.next_items != PAD_ID).sum()),
                     n_basket_targets=data.n_set_rows)
        # Batches of similar-length windows hold very different numbers of targets; each batch's
        # mean loss is rescaled by (its targets / the average per batch), so that every target
        # weighs the same over an epoch, as with randomly mixed batches.
        n_batches = -(-len(data) // config.batch_size)
        per_batch.update(item=sizes["n_item_targets"] / n_batches, basket=sizes["n_basket_targets"] / n_batches)
        for idx in _length_buckets(lengths, config.batch_size, rng):
            # cut the padding columns the whole batch shares (positions still count from the right)
            width = int(lengths[idx].max())
            cut = model.config.max_len - width
            rows = data.batch_targets(idx)            # (window in the batch, position, item, weight)
            rows[:, 1] -= cut
            yield data.inputs[idx, cut:].to(device), data.next_items[idx, cut:].to(device), rows

    def step(batch) -> torch.Tensor:
        inputs, next_items, rows = batch
        states = model.encode(inputs)
        loss = states.sum() * 0.0                 # a batch without targets of a kind adds nothing
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):  # the output layer
            keep = next_items != PAD_ID
            if config.next_item_weight > 0 and keep.any():
                weight, bias = model.output_layer()
                share = int(keep.sum()) / per_batch["item"]
                loss = loss + config.next_item_weight * share * full_softmax_cross_entropy(
                    states[keep], weight, next_items[keep] - 1, bias)
            if config.next_basket_weight > 0 and len(rows):
                share = len(np.unique(rows[:, :2], axis=0)) / per_batch["basket"]
                loss = loss + config.next_basket_weight * share * basket_loss(model, states, rows)
        return loss

    validate = None
    if validation is not None:
        validate = lambda: _validation_ndcg(model, validation, config.validation_view)  # noqa: E731
    with _no_memory_fill():
        history = train_loop(
            model, optimizer, batches, step, config.epochs,
            validate=validate, monitor="NDCG@10" if validate else None,
            early_stopping=EarlyStopping(patience=config.patience) if validate else None,
            grad_clip=config.grad_clip, progress=progress, desc="SASRec", scheduler=scheduler,
        )
    history.attrs.update(sizes, precision=precision)
    return history


def _length_buckets(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                    pool: int = 50) -> list[np.ndarray]:
    """Window indices in batches of similar length, in a random order.

    Windows are shuffled, every ``pool * batch_size`` of them sorted by length and cut into
    batches, and the batches shuffled: little padding per batch, and still a random order.
    """
    order = rng.permutation(len(lengths))
    out = []
    for start in range(0, len(order), pool * batch_size):
        chunk = order[start:start + pool * batch_size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[s:s + batch_size] for s in range(0, len(chunk), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


class _no_memory_fill:
    """Deterministic mode (``seed_everything``) fills every new tensor with NaN to expose reads
    of uninitialised memory; that costs ~40% of a training step here and changes no result."""

    def __enter__(self):
        self.before = torch.utils.deterministic.fill_uninitialized_memory
        torch.utils.deterministic.fill_uninitialized_memory = False

    def __exit__(self, *exc):
        torch.utils.deterministic.fill_uninitialized_memory = self.before


# =============================================================================================
# caching by configuration
# =============================================================================================

def split_fingerprint(split: "Split") -> str:
    """A short hash of what a model trained on ``split`` saw: its name, sizes and training sequences.

    Two splits with the same fingerprint give the same training data, so a cached model is valid.
    """
    h = hashlib.sha256()
    h.update(f"{split.name}|{split.n_users}|{split.n_items}|{len(split.validation)}".encode())
    for seq in split.train_sequences:
        h.update(np.asarray(seq, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def default_configs(smoke: bool = False, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """The course's SASRec on the main split: ``(model_config, train_config)`` keyword dicts.

    Chosen on validation NDCG@10 (new items) by ``scripts/sweep_sasrec.py`` (notebook 05, section
    4): two layers of width 64 over the last 200 lines plus a bag of those lines, dropout 0.5 (none
    on the attention weights), trained on both targets (next item 0.5, next basket 1.0), new items
    only, on each customer's last 200 lines, in batches of 32, the learning rate falling linearly
    over at most 10 epochs, early stopping; the output layer's products in bfloat16 where the CPU
    multiplies bfloat16 clearly faster (``precision="auto"``). With dropout 0.2 the model peaked at
    epoch 2 and then overfitted. Notebooks 05 and 11 both use it, so the model notebook 05 trains
    is the one notebook 11 loads from the cache. Smoke mode is tiny.
    """
    if smoke:
        model = dict(max_len=50, d_model=32, n_heads=2, n_layers=1, dropout=0.2)
        train = dict(epochs=1, batch_size=32, lr=5e-3, patience=1)
    else:
        model = dict(max_len=200, d_model=64, n_heads=2, n_layers=2, dropout=0.5, attention_dropout=0.0,
                     bag=True)
        train = dict(epochs=10, batch_size=32, lr=4e-3, patience=2, lr_decay=True, windows_per_customer=1,
                     precision="auto")
    train.update(next_item_weight=0.5, next_basket_weight=1.0, new_items_only=True, seed=seed)
    return model, train


def load_or_train_sasrec(
    split: "Split",
    model_config: dict[str, Any] | None = None,
    train_config: TrainConfig | dict[str, Any] | None = None,
    *,
    smoke: bool = False,
    select_on: str = "first half",
    rebuild: bool = False,
    progress: bool = True,
) -> tuple[SASRec, dict[str, Any]]:
    """The trained SASRec for ``split`` and these configurations, from the cache or trained now.

    ``model_config``: keyword arguments of :class:`SASRecConfig` except ``n_items`` (taken from the
    split). ``train_config``: a :class:`TrainConfig` or its keyword arguments. Either one left out
    (None) is the course's, :func:`default_configs` (``smoke`` picks the tiny one). The weights are
    cached in ``cache_dir()`` under a name that hashes both configurations and the split's
    fingerprint. Returns ``(model in eval mode, meta)`` with ``meta["history"]`` (one dict per
    epoch), ``meta["cached"]`` and ``meta["train_seconds"]``.

    ``select_on``: which validation customers early stopping reads, ``"first half"`` (the default),
    ``"second half"`` or ``"all"`` (:meth:`m6rec_lib.data.EvalSet.part`, seed 0). The course's
    models choose their epoch on the first half, so that whatever is tuned on top of them (notebook
    11's blend) can be tuned on the second half, which the models never saw.
    """
    from m6rec_lib.seeding import seed_everything
    from m6rec_lib.training import cached_model

    default_model, default_train = default_configs(smoke)
    mcfg = SASRecConfig(n_items=split.n_items, **(default_model if model_config is None else model_config))
    if isinstance(train_config, TrainConfig):
        tcfg = train_config
    else:
        tcfg = TrainConfig(**(default_train if train_config is None else train_config))
    validation = split.validation.part(select_on)
    key = {"model": asdict(mcfg), "train": asdict(tcfg), "split": split_fingerprint(split), "select_on": select_on}
    seed_everything(tcfg.seed)
    model = SASRec(mcfg)

    def train(m: SASRec) -> pd.DataFrame:
        return train_sasrec(m, split.train_sequences, validation, tcfg, basket_ids(split), progress=progress)

    model, meta = cached_model("sasrec", key, model, train, rebuild=rebuild)
    model.eval()
    return model, meta
