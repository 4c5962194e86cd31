"""Semantic IDs and generative retrieval over them (TIGER; Rajput et al., NeurIPS 2023).

An item ID says nothing about the item; a **semantic ID** does. Every product gets a short tuple of
codes read off its text embedding, coarse to fine, so that similar products share a prefix:

    JUMBO BAG RED RETROSPOT   -> (12, 40, 7, 0)
    JUMBO BAG PINK POLKADOT   -> (12, 40, 7, 1)      same first three codes: a near twin
    JUMBO SHOPPER VINTAGE RED -> (12, 40, 31, 0)

A recommender then *generates* the next product's tuple, one code at a time, and a prefix tree (a
**trie**) over the catalogue's tuples allows only codes that lead to a real product.

Reading order
-------------
1. :func:`kmeans` and :func:`residual_kmeans` -- residual quantisation: k-means on the embeddings,
   then k-means on what the first centroids left unexplained (the residuals), and so on. Each
   level's codebook is fitted by k-means, so every code is used (an RQ-VAE trained by gradient
   descent can leave codes dead: codebook collapse).
2. :func:`collision_digits` and :class:`SemanticIds` -- products whose text is nearly the same get
   the same tuple; a last digit numbers them, so every product has a unique code.
3. :class:`CodeTrie` -- the prefix tree over the codes: which code may follow a prefix, for which
   customer (the products a customer bought can be left out).
4. :class:`SemanticIdRecommender` -- a causal transformer reads the history (each item embedded as
   the sum of its codes' embeddings) and a small causal decoder writes the next item's codes.
5. :func:`beam_search` -- trie-constrained beam search over the codes for a batch of customers: the
   ``beam_size`` finished beams are the customer's top-``beam_size`` list.
6. :func:`train_semantic_id_model` / :func:`load_or_train_semantic_id_model` -- the training run on
   the course's main split (next items and next baskets, as :mod:`m6rec_lib.models.sasrec` does),
   early stopping on validation, cached by configuration.

Conventions: item IDs ``1..n_items``, ``0`` = padding; ``codes[item]`` is the item's tuple, row 0
is padding (all ``-1``); score matrices are ``(n, n_items + 1)`` with ``-inf`` for items outside
the beam.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from m6rec_lib.data.indexing import PAD_ID
from m6rec_lib.data.sequences import pad_left
from m6rec_lib.models.sasrec import CausalSelfAttentionBlock, attention_mask, init_weights

if TYPE_CHECKING:
    from m6rec_lib.data.evalset import EvalSet
    from m6rec_lib.data.splits import Split

__all__ = [
    "kmeans", "ResidualCodes", "residual_kmeans", "collision_digits", "SemanticIds", "tree_examples",
    "code_usage_figure", "CodeTrie",
    "SemanticIdConfig", "SemanticIdRecommender", "BeamResult", "beam_search", "exact_item_log_probs", "beam_scores",
    "SemanticIdTraining", "validation_ndcg", "train_semantic_id_model", "default_configs",
    "load_or_train_semantic_id_model",
]


# =============================================================================================
# 1. residual k-means
# =============================================================================================

def _squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(n, d), (k, d) -> (n, k) squared Euclidean distances."""
    return (x * x).sum(1, keepdim=True) - 2 * x @ centroids.T + (centroids * centroids).sum(1)[None]


def kmeans(x: np.ndarray | torch.Tensor, k: int, n_iter: int = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ starts: ``(n, d)`` points -> ``(k, d)`` centroids, ``(n,)`` codes.

    Every iteration assigns each point to its nearest centroid and moves each centroid to the
    mean of its points. A centroid left with no point is moved onto the point that is farthest
    from its own centroid, so every one of the ``k`` codes is used (no dead codes).
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of points ({n}), got {k}")
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    rng = np.random.default_rng(seed)
    # k-means++: each new start is drawn with probability proportional to its squared distance
    # to the nearest start so far (spread-out starts, fewer bad local optima)
    squares = (x * x).sum(1)
    chosen = [int(rng.integers(n))]
    nearest = (squares - 2 * x @ x[chosen[0]] + squares[chosen[0]]).clamp(min=0)
    for _ in range(1, k):
        weight = nearest.double().numpy()
        p = weight / weight.sum() if weight.sum() > 0 else np.full(n, 1.0 / n)
        chosen.append(int(rng.choice(n, p=p)))
        nearest = torch.minimum(nearest, (squares - 2 * x @ x[chosen[-1]] + squares[chosen[-1]]).clamp(min=0))
    centroids = x[chosen].clone()
    for _ in range(n_iter):
        distances = _squared_distances(x, centroids)                          # (n, k)
        codes = distances.argmin(1)
        counts = torch.bincount(codes, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, codes, x)
        moved = sums / counts.clamp(min=1)[:, None].to(x.dtype)
        empty = torch.nonzero(counts == 0)[:, 0]
        if len(empty):                                                        # re-seed empty codes
            own = distances.gather(1, codes[:, None])[:, 0]
            moved[empty] = x[torch.topk(own, len(empty)).indices]
        if torch.equal(moved, centroids):
            break
        centroids = moved
    codes = _squared_distances(x, centroids).argmin(1)
    return centroids.numpy(), codes.numpy().astype(np.int64)


@dataclass
class ResidualCodes:
    """What :func:`residual_kmeans` returns.

    ``codes``: ``(n, levels)``; ``codebooks``: per level a ``(size, d)`` array; ``residual_norms``:
    ``(levels + 1,)`` the mean norm of what is left unexplained before level 1 (the embeddings
    themselves) and after each level. ``reconstruction``: ``(n, d)`` the sum of each point's
    centroids.
    """

    codes: np.ndarray
    codebooks: list[np.ndarray]
    residual_norms: np.ndarray
    reconstruction: np.ndarray


def residual_kmeans(x: np.ndarray, sizes: Sequence[int], n_iter: int = 25, seed: int = 0) -> ResidualCodes:
    """Residual quantisation with one k-means per level: ``(n, d)`` -> ``(n, len(sizes))`` codes.

    Level 1 clusters the points; level ``l + 1`` clusters the residuals ``r_l = x - sum of the
    centroids chosen at levels 1..l``. So ``x ~ C_1[c_1] + C_2[c_2] + ... + C_L[c_L]``, and each
    level refines what the previous ones left over.
    """
    if len(sizes) < 1:
        raise ValueError("sizes must list at least one codebook size, e.g. (64, 64, 64)")
    residual = np.asarray(x, dtype=np.float32)
    norms = [float(np.linalg.norm(residual, axis=1).mean())]
    codes, books = [], []
    for level, size in enumerate(sizes):
        centroids, c = kmeans(residual, int(size), n_iter=n_iter, seed=seed + level)
        residual = residual - centroids[c]                                     # what is left
        codes.append(c)
        books.append(centroids)
        norms.append(float(np.linalg.norm(residual, axis=1).mean()))
    return ResidualCodes(np.stack(codes, axis=1), books, np.array(norms), np.asarray(x, np.float32) - residual)


def collision_digits(codes: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """``(n, levels)`` codes -> ``(n,)`` digits that make ``(codes, digit)`` unique.

    Items sharing a tuple get ``0, 1, 2, ...`` in the order of ``order`` (``(n,)`` sort keys,
    smallest first; default: the row order).
    """
    codes = np.asarray(codes)
    order = np.arange(len(codes)) if order is None else np.asarray(order)
    ranked = np.lexsort((order, *codes.T[::-1]))                # by tuple, then by order
    sorted_codes = codes[ranked]
    new_group = np.r_[True, (sorted_codes[1:] != sorted_codes[:-1]).any(axis=1)]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(codes)), 0))
    digits = np.empty(len(codes), dtype=np.int64)
    digits[ranked] = np.arange(len(codes)) - group_start
    return digits


@dataclass
class SemanticIds:
    """Every catalogue item's semantic ID: ``codes`` ``(n_items + 1, depth)``, row 0 = padding (-1).

    ``sizes``: the number of values each position can take (the codebook sizes, then the
    collision digit's); ``residual``: the :class:`ResidualCodes` the first positions come from.
    """

    codes: np.ndarray
    sizes: tuple[int, ...]
    residual: ResidualCodes | None = None

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, sizes: Sequence[int], n_iter: int = 25,
                        seed: int = 0) -> "SemanticIds":
        """Residual k-means codes of ``embeddings`` ``(n_items, d)`` (row ``i`` = item ``i + 1``),
        plus a collision digit (items sharing a tuple are numbered from the one closest to its
        reconstruction, so the digit depends on the text only)."""
        rq = residual_kmeans(embeddings, sizes, n_iter=n_iter, seed=seed)
        left = np.linalg.norm(np.asarray(embeddings) - rq.reconstruction, axis=1)
        digits = collision_digits(rq.codes, order=left)
        body = np.column_stack([rq.codes, digits])
        codes = np.vstack([np.full((1, body.shape[1]), -1), body]).astype(np.int64)
        return cls(codes, tuple(int(s) for s in sizes) + (int(digits.max()) + 1,), rq)

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int64)
        if self.codes.ndim != 2 or len(self.sizes) != self.codes.shape[1]:
            raise ValueError(f"codes must be (n_items + 1, {len(self.sizes)}), got {self.codes.shape}")
        body = self.codes[1:]
        if (body < 0).any() or (body >= np.array(self.sizes)).any():
            raise ValueError("a code is outside its position's range 0..size - 1")
        if len(np.unique(body, axis=0)) != len(body):
            raise ValueError("two items share a semantic ID; add a collision digit (collision_digits)")

    @property
    def n_items(self) -> int:
        return len(self.codes) - 1

    @property
    def depth(self) -> int:
        """Codes per item (the levels plus the collision digit)."""
        return self.codes.shape[1]

    def usage(self) -> pd.DataFrame:
        """Per position: its size, how many of its values some item uses, and that share."""
        rows = []
        for j, size in enumerate(self.sizes):
            used = len(np.unique(self.codes[1:, j]))
            name = f"level {j + 1}" if j < self.depth - 1 else "collision digit"
            rows.append({"position": name, "size": size, "used": used, "share used": used / size})
        return pd.DataFrame(rows).set_index("position")

    def prefix_groups(self, length: int) -> np.ndarray:
        """How many items share each distinct prefix of ``length`` codes: ``(n_prefixes,)`` counts."""
        if not 1 <= length <= self.depth:
            raise ValueError(f"length must be in 1..{self.depth}, got {length}")
        return np.unique(self.codes[1:, :length], axis=0, return_counts=True)[1]


def tree_examples(ids: SemanticIds, texts: Sequence[str], n_leaves: int = 8) -> tuple[list[list[str]], list[str]]:
    """A few real products whose IDs branch at every depth, to draw the tree (``diagrams.generation``).

    Starts from two products of the largest group sharing all their codes but the digit, then adds
    two that part from it at the last level, two at the level before, and so on.
    ``texts``: the item texts, ``texts[i]`` for item ``i`` (index 0 unused). Returns (paths of code
    strings, product names), sorted by path.
    """
    body = ids.codes[1:]
    depth = ids.depth
    groups, counts = np.unique(body[:, :depth - 1], axis=0, return_counts=True)
    anchor = groups[np.argmax(counts)]
    chosen: list[int] = []
    for shared in range(depth - 1, -1, -1):           # share all codes but the digit, then fewer
        same = (body[:, :shared] == anchor[:shared]).all(axis=1)
        differs = np.ones(len(body), dtype=bool) if shared == depth - 1 else body[:, shared] != anchor[shared]
        for row in np.flatnonzero(same & differs)[:2]:
            if len(chosen) < n_leaves and row + 1 not in chosen:
                chosen.append(int(row) + 1)
    chosen = sorted(chosen, key=lambda i: tuple(ids.codes[i]))
    return [[str(c) for c in ids.codes[i]] for i in chosen], [str(texts[i]) for i in chosen]


def code_usage_figure(ids: SemanticIds):
    """Three panels: items per code at each level, items per full prefix, the collision digit's values."""
    import matplotlib.pyplot as plt

    from m6rec_lib.diagrams import finish

    levels = ids.depth - 1
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.2))
    for j in range(levels):
        per_code = np.sort(np.bincount(ids.codes[1:, j], minlength=ids.sizes[j]))[::-1]
        ax[0].plot(np.arange(1, len(per_code) + 1), per_code, marker=".", label=f"level {j + 1}")
    ax[0].set(xlabel="code (sorted by items)", ylabel="items", title="items per code")
    ax[0].legend(fontsize=8)
    groups = ids.prefix_groups(levels)
    ax[1].hist(groups, bins=np.arange(1, groups.max() + 2) - 0.5, color="tab:orange")
    ax[1].set(xlabel=f"items sharing one {levels}-code prefix", ylabel="prefixes", title="collisions", yscale="log")
    digits = np.bincount(ids.codes[1:, -1])
    ax[2].bar(np.arange(len(digits)), digits, color="tab:green")
    ax[2].set(xlabel="collision digit", ylabel="items", title="the collision digit", yscale="log")
    return finish(fig)


# =============================================================================================
# 3. the prefix tree over the codes
# =============================================================================================

class CodeTrie:
    """A prefix tree over semantic IDs, stored as arrays for batched decoding.

    Nodes are numbered ``0`` (the root) ``.. n_nodes - 1``; ``children[node, code]`` is the child
    reached by ``code`` (``-1``: no item continues so), ``leaf_item[node]`` the item a full-depth
    node stands for (``0`` elsewhere), ``n_below[node]`` how many items lie below a node, and
    ``paths[item]`` ``(depth + 1,)`` the nodes from the root to the item's leaf.
    """

    def __init__(self, ids: SemanticIds):
        self.ids = ids
        self.depth = ids.depth
        width = max(ids.sizes)
        children = [np.full(width, -1, dtype=np.int64)]
        leaf_item = [0]
        paths = np.zeros((ids.n_items + 1, self.depth + 1), dtype=np.int64)
        for item in range(1, ids.n_items + 1):
            node = 0
            for j, c in enumerate(ids.codes[item]):
                if children[node][c] < 0:
                    children[node][c] = len(children)
                    children.append(np.full(width, -1, dtype=np.int64))
                    leaf_item.append(0)
                node = int(children[node][c])
                paths[item, j + 1] = node
            leaf_item[node] = item
        self.children = np.stack(children)
        self.leaf_item = np.array(leaf_item, dtype=np.int64)
        self.paths = paths
        self.n_below = np.bincount(paths[1:].ravel(), minlength=len(children)).astype(np.int64)

    @property
    def n_nodes(self) -> int:
        return len(self.children)

    def node(self, prefix: Sequence[int]) -> int:
        """The node reached by ``prefix`` (codes), or ``-1`` when no item starts so."""
        node = 0
        for j, c in enumerate(prefix):
            if not 0 <= int(c) < self.children.shape[1]:
                return -1
            node = int(self.children[node, int(c)])
            if node < 0:
                return -1
        return node

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """The codes that may follow ``prefix`` (empty when the prefix is complete or invalid)."""
        node = self.node(prefix)
        if node < 0:
            return []
        return np.flatnonzero(self.children[node] >= 0).tolist()

    def item_of(self, codes: Sequence[int]) -> int:
        """The item with exactly these codes (``0`` if none)."""
        node = self.node(codes)
        return int(self.leaf_item[node]) if node >= 0 and len(codes) == self.depth else 0

    def alive(self, excluded: Sequence[np.ndarray] | None, n_rows: int) -> np.ndarray:
        """``(n_rows, n_nodes)``: per row, the items below each node that are not ``excluded[row]``.

        A node with 0 left is closed to that row's decoding. ``excluded``: per row, item IDs to
        leave out (e.g. what the customer bought before); ``None`` leaves nothing out.
        """
        out = np.broadcast_to(self.n_below, (n_rows, self.n_nodes)).copy()
        if excluded is None:
            return out
        for row, items in enumerate(excluded):
            items = np.unique(np.asarray(items, dtype=np.int64))
            items = items[(items > 0) & (items <= self.ids.n_items)]
            if len(items):
                np.subtract.at(out[row], self.paths[items].ravel(), 1)
        return out


# =============================================================================================
# 4. the model
# =============================================================================================

@dataclass(frozen=True)
class SemanticIdConfig:
    """The model's sizes.

    Encoder (as :class:`~m6rec_lib.models.sasrec.SASRec`): ``max_len`` history lines, width
    ``d_model``, ``n_heads``, ``n_layers``; ``bag`` adds the mean of the history's item embeddings
    to every state; ``dropout`` applies to the encoder. Decoder: ``decoder_layers`` causal blocks
    over ``[state, code 1, ..., code depth-1]``, without dropout (four tokens; dropping them costs
    more time than it saves). ``item_ids``: embed a history item as the sum of its code embeddings plus an
    embedding of its item ID (``False``: codes only).
    """

    max_len: int = 50
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    decoder_layers: int = 1
    dropout: float = 0.2
    bag: bool = True
    item_ids: bool = False

    def __post_init__(self) -> None:
        for name in ("max_len", "d_model", "n_heads", "n_layers", "decoder_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class SemanticIdRecommender(nn.Module):
    """History in, the next item's semantic ID out, one code at a time.

    ``encode``: ``(batch, seq_len)`` left-padded item IDs -> ``(batch, seq_len, d_model)`` states
    (a causal transformer; an item enters as the sum of its codes' embeddings). ``code_logits``:
    a state ``(m, d_model)`` and a code prefix ``(m, j)`` -> ``(m, sizes[j])`` log-probabilities of
    the ``j``-th code (0-based). The output layer of position ``j`` reuses that position's code
    embeddings (weight tying), so a code is scored by the dot product of the decoder state and the
    same vector that embeds it in a history.
    """

    def __init__(self, config: SemanticIdConfig, ids: SemanticIds) -> None:
        super().__init__()
        self.config = config
        c = config
        self.sizes = tuple(ids.sizes)
        self.register_buffer("codes", torch.as_tensor(np.maximum(ids.codes, 0)), persistent=False)
        self.code_embeddings = nn.ModuleList(nn.Embedding(size, c.d_model) for size in self.sizes)
        self.id_embedding = nn.Embedding(ids.n_items + 1, c.d_model, padding_idx=PAD_ID) if c.item_ids else None
        self.position_embedding = nn.Embedding(c.max_len, c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            CausalSelfAttentionBlock(c.d_model, c.n_heads, 4 * c.d_model, c.dropout, 0.0) for _ in range(c.n_layers))
        self.final_norm = nn.LayerNorm(c.d_model)
        self.decoder_position = nn.Embedding(len(self.sizes), c.d_model)
        self.decoder_blocks = nn.ModuleList(
            CausalSelfAttentionBlock(c.d_model, c.n_heads, 4 * c.d_model, 0.0, 0.0)
            for _ in range(c.decoder_layers))
        self.decoder_norm = nn.LayerNorm(c.d_model)
        self.apply(init_weights)

    @property
    def depth(self) -> int:
        return len(self.sizes)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """``(...)`` item IDs -> ``(..., d_model)``: the sum of the item's code embeddings (+ its ID's);
        padding -> 0."""
        codes = self.codes[items]                                           # (..., depth)
        x = sum(table(codes[..., j]) for j, table in enumerate(self.code_embeddings))
        if self.id_embedding is not None:
            x = x + self.id_embedding(items)
        return x * (items != PAD_ID)[..., None].to(x.dtype)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(batch, seq_len)`` item IDs -> ``(batch, seq_len, d_model)`` states."""
        L = inputs.shape[1]
        if L > self.config.max_len:
            raise ValueError(f"sequences of length {L} exceed max_len={self.config.max_len}; cut them with pad_left")
        positions = torch.arange(self.config.max_len - L, self.config.max_len, device=inputs.device)
        items = self.item_vectors(inputs)
        x = self.dropout(items * math.sqrt(self.config.d_model) + self.position_embedding(positions))
        mask = attention_mask(inputs)
        for block in self.blocks:
            x = block(x, mask)
        states = self.final_norm(x)
        if self.config.bag:
            count = torch.cumsum((inputs != PAD_ID).to(states.dtype), dim=1).clamp(min=1.0)
            states = states + torch.cumsum(items, dim=1) / count[..., None]
        return states

    def decode(self, states: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """The decoder: ``(m, d)`` states, ``(m, j)`` codes -> ``(m, j + 1, d)`` outputs, where
        output ``t`` has read the state and codes ``0..t-1`` (it predicts code ``t``)."""
        j = prefix.shape[1]
        tokens = [states] + [self.code_embeddings[t](prefix[:, t]) for t in range(j)]
        x = torch.stack(tokens, dim=1) + self.decoder_position.weight[: j + 1]
        mask = torch.ones(j + 1, j + 1, dtype=torch.bool, device=x.device).tril()[None, None]
        for block in self.decoder_blocks:
            x = block(x, mask)
        return self.decoder_norm(x)

    def code_logits(self, states: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """``(m, d)``, ``(m, j)`` -> ``(m, sizes[j])`` log-probabilities of the next code."""
        out = self.decode(states, prefix)[:, -1]
        return torch.log_softmax(out @ self.code_embeddings[prefix.shape[1]].weight.T, dim=-1)

    def item_log_likelihood(self, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: ``(m, d)`` states, ``(m,)`` items -> ``(m,)`` ``log P(item's codes | state)``,
        the sum over positions of ``log p(code_t | state, codes_<t)``."""
        codes = self.codes[items]                                            # (m, depth)
        out = self.decode(states, codes[:, :-1])                             # (m, depth, d)
        total = torch.zeros(len(items), dtype=out.dtype, device=out.device)
        for t, table in enumerate(self.code_embeddings):
            logp = torch.log_softmax(out[:, t] @ table.weight.T, dim=-1)
            total = total + logp.gather(1, codes[:, t:t + 1])[:, 0]
        return total


# =============================================================================================
# 5. trie-constrained beam search
# =============================================================================================

@dataclass
class BeamResult:
    """Per customer, the finished beams best first: ``items`` ``(n, beam)`` (``0`` where fewer items
    were reachable) and their ``log_probs`` ``(n, beam)`` (``-inf`` there)."""

    items: np.ndarray
    log_probs: np.ndarray


@torch.no_grad()
def beam_search(model: SemanticIdRecommender, trie: CodeTrie, sequences: Sequence[np.ndarray], beam_size: int,
                exclude: Sequence[np.ndarray] | None = None, batch_size: int = 256) -> BeamResult:
    """The ``beam_size`` most likely items for each history, by beam search over the codes.

    ``sequences``: n item-ID arrays (oldest first); ``exclude``: per history, items the search must
    not reach (their branches close when no other item is left below). At each position every beam
    is extended by every allowed code, scored by ``log P(codes so far | history)`` (the model's own
    probabilities, not renormalised over the allowed codes), and the ``beam_size`` best extensions
    are kept. At the last position each beam is one item, so the beams are distinct items.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    was = model.training
    model.eval()
    n = len(sequences)
    items_out = np.zeros((n, beam_size), dtype=np.int64)
    scores_out = np.full((n, beam_size), -np.inf)
    width = trie.children.shape[1]
    for lo in range(0, n, batch_size):
        rows = np.arange(lo, min(n, lo + batch_size))
        padded = torch.as_tensor(pad_left([sequences[r] for r in rows], model.config.max_len))
        states = model.encode(padded)[:, -1]                                  # (b, d)
        alive = torch.as_tensor(trie.alive(None if exclude is None else [exclude[r] for r in rows], len(rows)))
        b = len(rows)
        node = torch.zeros(b, 1, dtype=torch.long)                             # (b, beams)
        score = torch.zeros(b, 1, dtype=torch.float64)
        prefix = torch.zeros(b, 1, 0, dtype=torch.long)                        # (b, beams, j)
        children = torch.as_tensor(trie.children)
        for t in range(model.depth):
            beams = node.shape[1]
            flat_states = states[:, None].expand(b, beams, -1).reshape(b * beams, -1)
            logp = model.code_logits(flat_states, prefix.reshape(b * beams, t)).double()
            logp = logp.reshape(b, beams, -1)
            size = logp.shape[-1]
            child = children[node][..., :size]                                  # (b, beams, size)
            ok = (child >= 0) & (alive.gather(1, child.clamp(min=0).reshape(b, -1)).reshape(child.shape) > 0)
            total = torch.where(ok, score[..., None] + logp, torch.tensor(-math.inf, dtype=torch.float64))
            keep = min(beam_size, beams * size)
            best, where = torch.topk(total.reshape(b, -1), keep, dim=1)         # (b, keep)
            parent, code = where // size, where % size
            node = child.reshape(b, -1).gather(1, where)
            score = best
            prefix = torch.cat([prefix.gather(1, parent[..., None].expand(-1, -1, t)), code[..., None]], dim=2)
        found = torch.isfinite(score)
        leaf = torch.as_tensor(trie.leaf_item)[node.clamp(min=0)]
        items = torch.where(found, leaf, torch.zeros_like(leaf)).numpy()
        items_out[rows, : items.shape[1]] = items
        scores_out[rows, : items.shape[1]] = torch.where(found, score, torch.tensor(-math.inf, dtype=torch.float64)).numpy()
    model.train(was)
    return BeamResult(items_out, scores_out)


@torch.no_grad()
def exact_item_log_probs(model: SemanticIdRecommender, sequences: Sequence[np.ndarray], chunk: int = 4096) -> np.ndarray:
    """Every catalogue item's ``log P(codes | history)``, by teacher forcing: ``(n, n_items + 1)``.

    What beam search approximates, computed exactly (one decoder pass per item and history; fine
    for a few histories, too slow to serve). Column 0 (padding) is ``-inf``.
    """
    was = model.training
    model.eval()
    n_items = model.codes.shape[0] - 1
    states = model.encode(torch.as_tensor(pad_left(list(sequences), model.config.max_len)))[:, -1]
    out = np.full((len(sequences), n_items + 1), -np.inf)
    items = torch.arange(1, n_items + 1)
    for r in range(len(sequences)):
        for lo in range(0, n_items, chunk):
            part = items[lo:lo + chunk]
            out[r, part.numpy()] = model.item_log_likelihood(states[r:r + 1].expand(len(part), -1), part).double().numpy()
    model.train(was)
    return out


def beam_scores(result: BeamResult, n_items: int) -> np.ndarray:
    """Beams as a score matrix for the evaluator: ``(n, n_items + 1)``, each beam item at its
    log-probability, everything else ``-inf``."""
    out = np.full((len(result.items), n_items + 1), -np.inf)
    rows, cols = np.nonzero(result.items > 0)
    out[rows, result.items[rows, cols]] = result.log_probs[rows, cols]
    return out


# =============================================================================================
# 6. training on the main split
# =============================================================================================

@dataclass(frozen=True)
class SemanticIdTraining:
    """How the model is trained (as :class:`m6rec_lib.models.sasrec.TrainConfig`, fewer knobs).

    Loss: ``next_item_weight`` x the mean ``-log P(next line's codes)`` at every position, plus
    ``next_basket_weight`` x the same for the next basket's items at the last line of every basket
    (uniform weights over the basket). ``new_items_only``: only items the customer had not bought
    count as targets. ``windows_per_customer``: each customer's last windows of ``max_len`` lines.
    Adam at ``lr`` (falling linearly over ``epochs``), at most ``epochs``, early stopping after
    ``patience`` epochs without a better validation NDCG@10 of the ``beam_size`` beam (items new to
    the customer).
    """

    epochs: int = 6
    batch_size: int = 64
    lr: float = 3e-3
    patience: int = 2
    next_item_weight: float = 0.0
    next_basket_weight: float = 1.0
    new_items_only: bool = True
    windows_per_customer: int | None = 1
    beam_size: int = 10
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 0 or self.beam_size < 1:
            raise ValueError("epochs, batch_size and beam_size must be >= 1 and patience >= 0")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if min(self.next_item_weight, self.next_basket_weight) < 0 or self.next_item_weight + self.next_basket_weight == 0:
            raise ValueError("the loss weights must be >= 0 and not both 0; e.g. next_basket_weight=1.0")
        if self.windows_per_customer is not None and self.windows_per_customer < 1:
            raise ValueError(f"windows_per_customer must be >= 1 or None, got {self.windows_per_customer}")


def _nll(model: SemanticIdRecommender, states: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    return -model.item_log_likelihood(states, items)


def validation_ndcg(model: SemanticIdRecommender, trie: CodeTrie, eval_set: "EvalSet", beam_size: int,
                    view: str = "new") -> dict[str, float]:
    """NDCG@10 and Recall@10 of the beams on ``eval_set`` (``view``: "new" leaves bought items out)."""
    from m6rec_lib.metrics import evaluate

    exclude = eval_set.sequences if view == "new" else None
    result = beam_search(model, trie, eval_set.sequences, beam_size, exclude=exclude)
    metrics = evaluate(beam_scores(result, eval_set.n_items), eval_set, ks=(10,), exclude_seen=view == "new")
    return {"NDCG@10": metrics["NDCG@10"], "Recall@10": metrics["Recall@10"]}


def train_semantic_id_model(model: SemanticIdRecommender, trie: CodeTrie, train_sequences: Sequence[np.ndarray],
                            baskets: Sequence[np.ndarray] | None, validation: "EvalSet | None",
                            config: SemanticIdTraining = SemanticIdTraining(), progress: bool = True) -> pd.DataFrame:
    """Train ``model`` in place on next items and next baskets; return the history (one row per epoch).

    ``train_sequences`` / ``baskets``: as for :func:`m6rec_lib.models.sasrec.train_sasrec` (the
    windows come from :func:`~m6rec_lib.models.sasrec.build_training_windows`). With
    ``validation``, the epoch with the best NDCG@10 of the beams (new items) is kept.
    """
    from m6rec_lib.models.sasrec import _length_buckets, _no_memory_fill, build_training_windows
    from m6rec_lib.training import EarlyStopping, train_loop

    torch.manual_seed(config.seed)
    data = build_training_windows(train_sequences, baskets, model.config.max_len, config.new_items_only,
                                  max_windows=config.windows_per_customer)
    lengths = (data.inputs != PAD_ID).sum(dim=1).numpy()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: 1.0 - done / config.epochs)

    def batches(epoch: int):
        rng = np.random.default_rng([config.seed, epoch])
        for idx in _length_buckets(lengths, config.batch_size, rng):
            width = int(lengths[idx].max())
            cut = model.config.max_len - width
            rows = data.batch_targets(idx)
            rows[:, 1] -= cut
            yield data.inputs[idx, cut:], data.next_items[idx, cut:], rows

    n_batches = -(-len(data) // config.batch_size)
    per_batch_items = int((data.next_items != PAD_ID).sum()) / n_batches
    per_batch_baskets = data.n_set_rows / n_batches

    def step(batch) -> torch.Tensor:
        inputs, next_items, rows = batch
        states = model.encode(inputs)
        loss = states.sum() * 0.0
        keep = next_items != PAD_ID
        if config.next_item_weight > 0 and keep.any():
            share = int(keep.sum()) / per_batch_items
            loss = loss + config.next_item_weight * share * _nll(model, states[keep], next_items[keep]).mean()
        if config.next_basket_weight > 0 and len(rows):
            w = torch.as_tensor(rows[:, 0].astype(np.int64))
            p = torch.as_tensor(rows[:, 1].astype(np.int64))
            items = torch.as_tensor(rows[:, 2].astype(np.int64))
            weights = torch.as_tensor(rows[:, 3], dtype=states.dtype)
            n_rows = len(np.unique(rows[:, :2], axis=0))
            share = n_rows / per_batch_baskets
            nll = _nll(model, states[w, p], items)
            loss = loss + config.next_basket_weight * share * (weights * nll).sum() / n_rows
        return loss

    validate = None
    if validation is not None:
        validate = lambda: validation_ndcg(model, trie, validation, config.beam_size)  # noqa: E731
    with _no_memory_fill():
        history = train_loop(model, optimizer, batches, step, config.epochs, validate=validate,
                             monitor="NDCG@10" if validate else None,
                             early_stopping=EarlyStopping(patience=config.patience) if validate else None,
                             grad_clip=config.grad_clip, progress=progress, desc="semantic-ID decoder",
                             scheduler=scheduler)
    history.attrs.update(n_windows=len(data), n_positions=int(lengths.sum()))
    return history


# =============================================================================================
# 7. the course's configuration, cached by configuration
# =============================================================================================

def default_configs(smoke: bool = False, seed: int = 0) -> tuple[tuple[int, ...], dict[str, Any], dict[str, Any]]:
    """The course's semantic IDs and model on the main split: ``(sizes, model_config, train_config)``.

    Three levels of 64 codes for a catalogue of ~4,500 products (64^3 = 262,144 possible tuples;
    near-twin descriptions still share a tuple, hence the collision digit). The model reads the last
    50 lines (two layers of width 64, a bag of the history, dropout 0.5; items enter as their codes
    only) and is trained on the next basket's new items, in batches of 64 windows, the learning rate
    3e-3 falling linearly over at most 6 epochs, early stopping after 2 epochs without a better
    validation NDCG@10 (new items). Chosen on validation by ``scripts/sweep_semantic_ids.py``: the
    next-item targets of SASRec on top, an item-ID embedding next to the codes, a learning rate of
    1e-3 or each customer's last two windows did not score higher. Smoke mode is tiny.
    """
    if smoke:
        return (8, 8, 8), dict(max_len=20, d_model=32, n_heads=2, n_layers=1), dict(
            epochs=1, batch_size=64, next_item_weight=0.0, seed=seed)
    model = dict(max_len=50, d_model=64, n_heads=2, n_layers=2, decoder_layers=1, dropout=0.5, bag=True, item_ids=False)
    train = dict(epochs=6, batch_size=64, lr=3e-3, patience=2, next_item_weight=0.0, next_basket_weight=1.0, seed=seed)
    return (64, 64, 64), model, train


def load_or_train_semantic_id_model(
    split: "Split",
    ids: SemanticIds,
    model_config: dict[str, Any] | None = None,
    train_config: SemanticIdTraining | dict[str, Any] | None = None,
    *,
    smoke: bool = False,
    rebuild: bool = False,
    progress: bool = True,
) -> tuple[SemanticIdRecommender, dict[str, Any]]:
    """The trained model for ``split``, these semantic IDs and configurations, cached or trained now.

    ``model_config`` / ``train_config``: keyword arguments of :class:`SemanticIdConfig` /
    :class:`SemanticIdTraining` (None: :func:`default_configs`). The cache key holds both, the
    split's fingerprint and a hash of the codes. Returns ``(model in eval mode, meta)`` with
    ``meta["history"]`` (one dict per epoch), ``meta["cached"]`` and ``meta["train_seconds"]``.
    """
    import hashlib

    from m6rec_lib.models.sasrec import basket_ids, split_fingerprint
    from m6rec_lib.seeding import seed_everything
    from m6rec_lib.training import cached_model

    _, default_model, default_train = default_configs(smoke)
    mcfg = SemanticIdConfig(**(default_model if model_config is None else model_config))
    if isinstance(train_config, SemanticIdTraining):
        tcfg = train_config
    else:
        tcfg = SemanticIdTraining(**(default_train if train_config is None else train_config))
    if ids.n_items != split.n_items:
        raise ValueError(f"the semantic IDs cover {ids.n_items} items, the split has {split.n_items}; "
                         "build them from this split's item texts")
    codes_hash = hashlib.sha256(np.ascontiguousarray(ids.codes).tobytes()).hexdigest()[:16]
    key = {"model": asdict(mcfg), "train": asdict(tcfg), "split": split_fingerprint(split), "codes": codes_hash}
    seed_everything(tcfg.seed)
    model = SemanticIdRecommender(mcfg, ids)
    trie = CodeTrie(ids)

    def train(m: SemanticIdRecommender) -> pd.DataFrame:
        return train_semantic_id_model(m, trie, split.train_sequences, basket_ids(split), split.validation, tcfg,
                                       progress=progress)

    model, meta = cached_model("semantic-id", key, model, train, rebuild=rebuild)
    model.eval()
    return model, meta
