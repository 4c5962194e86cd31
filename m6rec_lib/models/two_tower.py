"""A two-tower retriever: a user tower over the history, an item tower over ID and text, InfoNCE.

M6-Rec's retrieval model (Cui et al. 2022) encodes the user and the item separately, projects
both to 128 dimensions, L2-normalises them and trains with an in-batch contrastive loss at
temperature 0.07. Because the towers never look at each other, every item vector can be computed
once, and retrieval is a nearest-neighbour search: ``top_k(U @ V^T)``.

Reading order
-------------
1. :class:`TwoTowerConfig` -- the sizes.
2. :class:`WordVocabulary` and :func:`item_token_ids` -- each item's text as a row of token IDs
   (any tokenizer with ``encode_batch``; the course's byte-level BPE of notebook 03 by default).
3. :class:`TwoTower` -- the **user tower** is the SASRec encoder of notebook 05 (causal
   self-attention over the last ``max_len`` item IDs); its state after the last item, optionally
   plus the mean "bag" embedding of every item in the history, projected to ``d_out`` and
   normalised, is the user vector. The **item tower** adds an item's ID embedding and the mean of
   its text token embeddings, projects to ``d_out`` and normalises.
4. :meth:`TwoTower.loss` -- in-batch InfoNCE: each user state must pick out its target items among
   the distinct items the batch holds as targets, with the logQ correction for how often an item
   is in a batch. :func:`make_training_windows` decides the targets: the next item at every
   position, or the items of the next basket after each basket's last item (the course's task).
5. :meth:`TwoTower.retrieve` -- brute-force top-K over the whole catalogue.
6. :func:`train_two_tower` and :func:`load_or_train_two_tower` -- training with early stopping on
   validation Recall@K, cached in ``cache_dir()`` by configuration, split and tokenizer.

Conventions: item IDs ``1..n_items``, ``0`` = padding; sequences left-padded; score matrices
``(n, n_items + 1)`` with column 0 = ``-inf``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from m6rec_lib.contrastive import in_batch_log_q, info_nce
from m6rec_lib.data.indexing import PAD_ID
from m6rec_lib.data.sequences import pad_left, training_windows
from m6rec_lib.models.sasrec import SASRec, SASRecConfig, split_fingerprint

if TYPE_CHECKING:
    from m6rec_lib.data.evalset import EvalSet
    from m6rec_lib.data.splits import Split

__all__ = [
    "TwoTowerConfig",
    "TwoTowerTrainConfig",
    "WordVocabulary",
    "item_token_ids",
    "TwoTower",
    "train_two_tower",
    "load_or_train_two_tower",
    "default_configs",
    "make_training_windows",
    "next_basket_targets",
    "split_baskets",
    "earlier_counts",
]

TEXT_PAD_ID = 0  # the <pad> token of the course's tokenizers
TARGET_ITEMS = ("all", "new", "basket", "basket-new")


# =============================================================================================
# configuration
# =============================================================================================

@dataclass(frozen=True)
class TwoTowerConfig:
    """The model's sizes.

    ``n_items``: real items. ``vocab_size``: text tokens (0 = no text in the item tower).
    ``max_len``, ``d_model``, ``n_heads``, ``n_layers``, ``dropout``: the user tower (a SASRec
    encoder, notebook 05). ``d_out``: the width both towers project to (M6-Rec: 128).
    ``temperature``: of the contrastive loss and of the scores (M6-Rec: 0.07). ``use_item_id``:
    whether the item tower has an ID embedding (without it, items are their text only).
    ``share_id_embedding``: the item tower reuses the user tower's input ID embeddings.
    ``history_bag``: the user tower also averages an embedding of *every* item in the history (not
    only the last ``max_len``): the long-term taste that item-based models (ItemKNN, EASE, notebook
    02's history MF) read, added to the encoder's state before the projection.
    """

    n_items: int
    vocab_size: int = 0
    max_len: int = 50
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    dropout: float = 0.2
    d_out: int = 128
    temperature: float = 0.07
    use_item_id: bool = True
    share_id_embedding: bool = True
    history_bag: bool = False

    def __post_init__(self) -> None:
        if self.vocab_size < 0 or self.d_out < 1:
            raise ValueError("vocab_size must be >= 0 and d_out >= 1")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not self.use_item_id and self.vocab_size == 0:
            raise ValueError("the item tower needs an ID embedding or text: set use_item_id=True or vocab_size > 0")
        self.encoder_config()  # validates the user tower's sizes

    def encoder_config(self) -> SASRecConfig:
        """The SASRec encoder of the user tower."""
        return SASRecConfig(n_items=self.n_items, max_len=self.max_len, d_model=self.d_model,
                            n_heads=self.n_heads, n_layers=self.n_layers, dropout=self.dropout)


@dataclass(frozen=True)
class TwoTowerTrainConfig:
    """How the two towers are trained.

    ``log_q``: the correction for in-batch negatives: ``"inclusion"`` (``log`` of the probability
    that an item is among the batch's distinct targets), ``"unigram"`` (``log p_i``; the same up to
    saturation for items in nearly every batch) or ``"none"``. ``epochs`` is a maximum: training
    stops after ``patience`` epochs without a better validation ``monitor`` (on
    ``validation_view``) and keeps the best epoch. ``stride``: between training windows (default
    ``max_len``). ``history_cap``: train on each customer's last ``history_cap`` items only (the
    recent past; cheaper). ``target_items``: what the state after an item must retrieve (see
    :func:`make_training_windows`): the next item (``"all"``), the next item if the customer never
    bought it before (``"new"``), or, after the last item of a basket, up to ``basket_targets``
    items of the next basket (``"basket"``, or ``"basket-new"`` for its new items only).
    ``lr_decay``: the learning rate falls linearly over the epochs, ``lr * (1 - (e - 1) / epochs)``
    in epoch ``e`` (less noise in the last epochs, where early stopping picks the model).
    """

    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 2
    stride: int | None = None
    history_cap: int | None = None
    target_items: str = "all"
    basket_targets: int = 4
    grad_clip: float | None = 1.0
    log_q: str = "inclusion"
    monitor: str = "Recall@100"
    validation_view: str = "new"
    lr_decay: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.patience < 0:
            raise ValueError("epochs must be >= 1, batch_size >= 2 (in-batch negatives) and patience >= 0")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.log_q not in ("inclusion", "unigram", "none"):
            raise ValueError(f"log_q must be 'inclusion', 'unigram' or 'none', got {self.log_q!r}")
        if self.validation_view not in ("all", "new"):
            raise ValueError(f"validation_view must be 'all' or 'new', got {self.validation_view!r}")
        if self.target_items not in TARGET_ITEMS:
            raise ValueError(f"target_items must be one of {TARGET_ITEMS}, got {self.target_items!r}")
        if self.basket_targets < 1:
            raise ValueError(f"basket_targets must be >= 1, got {self.basket_targets}")
        if self.history_cap is not None and self.history_cap < 2:
            raise ValueError(f"history_cap must be >= 2 or None, got {self.history_cap}")
        if not re.fullmatch(r"(Recall|NDCG|HR)@\d+", self.monitor):
            raise ValueError(f"monitor must look like 'Recall@100' or 'NDCG@10', got {self.monitor!r}")


# =============================================================================================
# item texts as token IDs
# =============================================================================================

class WordVocabulary:
    """A word-level vocabulary: the simplest tokenizer, and the fallback when no BPE is at hand.

    Built from training-period texts only (:meth:`build`); words seen fewer than ``min_count``
    times map to ``<unk>``. ID 0 is ``<pad>``, 1 is ``<unk>``. Same interface as the course's
    ``BehaviourTokenizer`` where the two-tower model needs it: ``encode_batch``, ``vocab_size``,
    ``pad_id``, ``fingerprint``.
    """

    pad_id, unk_id = 0, 1

    def __init__(self, words: Sequence[str]) -> None:
        self.words = ["<pad>", "<unk>", *words]
        self._id = {w: i for i, w in enumerate(self.words)}

    @staticmethod
    def split(text: str) -> list[str]:
        """Upper-cased words and numbers of ``text`` (punctuation dropped)."""
        return re.findall(r"[A-Z0-9]+", str(text).upper())

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "WordVocabulary":
        counts = Counter(w for t in texts for w in cls.split(t))
        return cls(sorted(w for w, c in counts.items() if c >= min_count))

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [[self._id.get(w, self.unk_id) for w in self.split(t)] for t in texts]

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256("\n".join(self.words).encode()).hexdigest()[:12]


def item_token_ids(texts: Sequence[str], tokenizer: Any, max_tokens: int = 16) -> np.ndarray:
    """Each item's text as token IDs: ``(n_items + 1,) texts -> (n_items + 1, max_tokens)`` int64.

    ``texts[i]`` is item ``i``'s description (``split.items.texts``; entry 0 = padding, left
    empty). Each text is encoded with a leading space (``" JUMBO BAG RED"``, as a product appears
    in the course's behaviour text), cut to ``max_tokens`` and right-padded with token 0.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    pad = getattr(tokenizer, "pad_id", TEXT_PAD_ID)
    if pad != TEXT_PAD_ID:
        raise ValueError(f"the tokenizer's padding token must have ID {TEXT_PAD_ID}, it has {pad}")
    encoded = tokenizer.encode_batch([" " + " ".join(str(t).split()) for t in texts])
    out = np.full((len(texts), max_tokens), TEXT_PAD_ID, dtype=np.int64)
    for i, ids in enumerate(encoded):
        ids = [t for t in ids[:max_tokens]]
        out[i, :len(ids)] = ids
    out[PAD_ID] = TEXT_PAD_ID
    return out


# =============================================================================================
# the model
# =============================================================================================

class TwoTower(nn.Module):
    """User tower over item-ID histories, item tower over item ID + text; ``d_out``-d unit vectors.

    ``item_tokens``: ``(n_items + 1, n_tokens)`` token IDs of each item's text (from
    :func:`item_token_ids`), required when ``config.vocab_size > 0``; stored with the weights.

    - ``user_states(inputs)``: ``(batch, seq_len)`` IDs -> ``(batch, seq_len, d_out)`` unit vectors,
      the user vector after each position.
    - ``user_vectors(sequences)``: ``n`` histories -> ``(n, d_out)``.
    - ``item_vectors(item_ids=None)``: ``(m,)`` IDs -> ``(m, d_out)``; all items ``(n_items + 1, d_out)``
      by default (row 0, padding, is zeros).
    - ``score(eval_set)`` -> ``(n, n_items + 1)`` cosine / temperature, column 0 = ``-inf``.
    - ``retrieve(sequences, top_k)`` -> ``(n, top_k)`` item IDs and their scores.
    """

    def __init__(self, config: TwoTowerConfig, item_tokens: torch.Tensor | np.ndarray | None = None) -> None:
        super().__init__()
        self.config = c = config
        self.user_encoder = SASRec(c.encoder_config())
        self.user_projection = nn.Linear(c.d_model, c.d_out)
        if c.history_bag:
            self.bag_embedding = nn.Embedding(c.n_items + 1, c.d_model, padding_idx=PAD_ID)
            nn.init.normal_(self.bag_embedding.weight, std=0.02)
            with torch.no_grad():
                self.bag_embedding.weight[PAD_ID].zero_()
        if c.use_item_id and not c.share_id_embedding:
            self.item_id_embedding = nn.Embedding(c.n_items + 1, c.d_model, padding_idx=PAD_ID)
            nn.init.normal_(self.item_id_embedding.weight, std=0.02)
            with torch.no_grad():
                self.item_id_embedding.weight[PAD_ID].zero_()
        if c.vocab_size > 0:
            if item_tokens is None:
                raise ValueError("vocab_size > 0 needs item_tokens: the token IDs of every item's text "
                                 "(m6rec_lib.models.two_tower.item_token_ids)")
            tokens = torch.as_tensor(np.asarray(item_tokens), dtype=torch.long)
            if tokens.dim() != 2 or tokens.shape[0] != c.n_items + 1:
                raise ValueError(f"item_tokens must be (n_items + 1, n_tokens) = ({c.n_items + 1}, ...), "
                                 f"got {tuple(tokens.shape)}")
            if tokens.numel() and (tokens.min() < 0 or tokens.max() >= c.vocab_size):
                raise ValueError(f"item_tokens hold IDs outside 0..{c.vocab_size - 1}: use the tokenizer "
                                 "whose vocab_size is in the configuration")
            self.register_buffer("item_tokens", tokens)
            self.token_embedding = nn.Embedding(c.vocab_size, c.d_model, padding_idx=TEXT_PAD_ID)
            nn.init.normal_(self.token_embedding.weight, std=0.02)
            with torch.no_grad():
                self.token_embedding.weight[TEXT_PAD_ID].zero_()
        elif item_tokens is not None:
            raise ValueError("item_tokens given but vocab_size = 0; set vocab_size to the tokenizer's")
        self.item_projection = nn.Linear(c.d_model, c.d_out)

    # ---------------------------------------------------------------- towers
    @property
    def device(self) -> torch.device:
        return self.user_projection.weight.device

    def user_states(self, inputs: torch.Tensor, earlier: sp.csr_matrix | None = None) -> torch.Tensor:
        """``(batch, seq_len)`` item IDs -> ``(batch, seq_len, d_out)`` unit user vectors.

        ``earlier``: with ``config.history_bag``, ``(batch, n_items + 1)`` counts of the items each
        row's customer bought *before* the window (None: nothing); the bag at position ``t`` is the
        mean bag embedding of those items and of the window's items up to ``t``.
        """
        h = self.user_encoder.encode(inputs)                                  # (b, L, d_model)
        if self.config.history_bag:
            h = h + self._bag_means(inputs, earlier)
        return F.normalize(self.user_projection(h), dim=-1)

    def _bag_means(self, inputs: torch.Tensor, earlier: sp.csr_matrix | None) -> torch.Tensor:
        """Running mean bag embedding over earlier items + the window: ``(b, L) -> (b, L, d_model)``."""
        b = inputs.shape[0]
        total = torch.cumsum(self.bag_embedding(inputs), dim=1)               # padding rows are zeros
        count = torch.cumsum((inputs != PAD_ID).to(total.dtype), dim=1).unsqueeze(-1)
        if earlier is not None:
            earlier = sp.csr_matrix(earlier)
            if earlier.shape != (b, self.config.n_items + 1):
                raise ValueError(f"earlier must be (batch, n_items + 1) = ({b}, {self.config.n_items + 1}), "
                                 f"got {earlier.shape}")
            idx = torch.as_tensor(earlier.indices, dtype=torch.long, device=inputs.device)
            offsets = torch.as_tensor(earlier.indptr[:-1], dtype=torch.long, device=inputs.device)
            weights = torch.as_tensor(earlier.data, dtype=total.dtype, device=inputs.device)
            carry = F.embedding_bag(idx, self.bag_embedding.weight, offsets, mode="sum", per_sample_weights=weights)
            total = total + carry.unsqueeze(1)
            count = count + torch.as_tensor(np.asarray(earlier.sum(axis=1)).ravel(), dtype=total.dtype,
                                            device=inputs.device).view(b, 1, 1)
        return total / count.clamp(min=1.0)

    def item_vectors(self, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``(m,)`` item IDs -> ``(m, d_out)`` unit item vectors (all ``n_items + 1`` by default)."""
        if item_ids is None:
            item_ids = torch.arange(self.config.n_items + 1, device=self.device)
        x = torch.zeros(len(item_ids), self.config.d_model, device=self.device)
        if self.config.use_item_id:
            table = (self.user_encoder.item_embedding if self.config.share_id_embedding
                     else self.item_id_embedding)
            x = x + table(item_ids)
        if self.config.vocab_size > 0:
            tokens = self.item_tokens[item_ids]                                  # (m, n_tokens)
            real = (tokens != TEXT_PAD_ID).unsqueeze(-1).to(x.dtype)
            x = x + (self.token_embedding(tokens) * real).sum(1) / real.sum(1).clamp(min=1.0)
        out = F.normalize(self.item_projection(x), dim=-1)
        return out.masked_fill((item_ids == PAD_ID).unsqueeze(-1), 0.0)

    # ---------------------------------------------------------------- training objective
    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, log_q: torch.Tensor | None = None,
             earlier: sp.csr_matrix | None = None) -> torch.Tensor:
        """In-batch InfoNCE over every non-padding target of a batch of windows. Scalar.

        ``inputs``: ``(batch, seq_len)``. ``targets``: ``(batch, seq_len)``, ``targets[b, t]`` = the
        item to retrieve from the state after ``inputs[b, t]`` (0 = none), or ``(batch, seq_len, k)``
        for up to ``k`` positives per state (e.g. the items of the next basket): each positive is one
        example, and a state's other positives are not its negatives. The candidates are the
        batch's **distinct** target items (in-batch negatives). ``log_q``: ``(n_items + 1,)`` log
        probability of an item being a candidate (the logQ correction), or None. ``earlier``: see
        :meth:`user_states`.
        """
        if targets.dim() == 2:
            targets = targets.unsqueeze(-1)
        if targets.shape[:2] != inputs.shape or targets.dim() != 3:
            raise ValueError(f"targets must be (batch, seq_len) or (batch, seq_len, k) for inputs "
                             f"{tuple(inputs.shape)}, got {tuple(targets.shape)}")
        has_target = (targets != PAD_ID).any(-1)                             # (b, L)
        if not has_target.any():
            raise ValueError("the batch has no target; every row is padding")
        states = self.user_states(inputs, earlier)[has_target]                        # (q, d_out) one per state
        per_state = targets[has_target]                                      # (q, k)
        rows, slot = (per_state != PAD_ID).nonzero(as_tuple=True)            # one row per positive
        candidates, positives = torch.unique(per_state[rows, slot], return_inverse=True)   # (u,), (p,)
        items = self.item_vectors(candidates)                                # (u, d_out)
        mask = None
        if per_state.shape[1] > 1:                                           # other positives of the state
            member = torch.zeros(len(per_state), len(candidates), dtype=torch.bool, device=inputs.device)
            member[rows, positives] = True
            mask = member[rows]
        return info_nce(states[rows], items, self.config.temperature, positives=positives, mask=mask,
                        log_q=None if log_q is None else log_q[candidates])

    # ---------------------------------------------------------------- scoring and retrieval
    @torch.no_grad()
    def user_vectors(self, sequences: Sequence[np.ndarray], batch_size: int = 512) -> torch.Tensor:
        """``n`` item-ID sequences (oldest first) -> ``(n, d_out)`` unit vectors.

        The encoder reads the last ``max_len`` items; with ``history_bag`` the bag covers them all.
        """
        was_training = self.training
        self.eval()
        sequences = [np.asarray(s, dtype=np.int64) for s in sequences]
        padded = torch.as_tensor(pad_left(sequences, self.config.max_len))
        earlier = earlier_counts([s[:-self.config.max_len] for s in sequences], self.config.n_items) \
            if self.config.history_bag else None
        out = []
        for s in range(0, len(padded), batch_size):
            part = None if earlier is None else earlier[s:s + batch_size]
            out.append(self.user_states(padded[s:s + batch_size].to(self.device), part)[:, -1].cpu())
        self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, self.config.d_out)

    @torch.no_grad()
    def all_item_vectors(self) -> torch.Tensor:
        """``(n_items + 1, d_out)``: every item's vector, computed once (row 0 = zeros)."""
        was_training = self.training
        self.eval()
        out = self.item_vectors().cpu()
        self.train(was_training)
        return out

    def score_sequences(self, sequences: Sequence[np.ndarray], item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` sequences -> ``(n, n_items + 1)`` scores ``u . v / temperature``, column 0 = ``-inf``."""
        items = self.all_item_vectors() if item_vectors is None else item_vectors
        scores = self.user_vectors(sequences) @ items.T / self.config.temperature
        scores[:, PAD_ID] = float("-inf")
        return scores

    def score(self, eval_set: "EvalSet") -> torch.Tensor:
        """Scores for the evaluator: ``(len(eval_set), n_items + 1)`` from ``eval_set.sequences``."""
        if eval_set.n_items != self.config.n_items:
            raise ValueError(f"the eval set has {eval_set.n_items} items but the model was built for "
                             f"{self.config.n_items}; score an eval set of the split it was trained on")
        return self.score_sequences(eval_set.sequences)

    @torch.no_grad()
    def retrieve(
        self,
        sequences: Sequence[np.ndarray],
        top_k: int = 100,
        exclude: sp.csr_matrix | None = None,
        item_vectors: torch.Tensor | None = None,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force top-K over the whole catalogue: ``n`` histories -> ``(n, top_k)`` IDs and scores.

        Every item is scored (a ``(batch, n_items)`` matrix product) and ``torch.topk`` keeps the
        best ``top_k``, best first. ``exclude``: ``(n, n_items + 1)`` sparse matrix whose non-zeros
        are items not to return (e.g. what each customer bought before). ``item_vectors``: the
        precomputed :meth:`all_item_vectors`, to time the search alone.
        """
        n_items = self.config.n_items
        if not 1 <= top_k <= n_items:
            raise ValueError(f"top_k must be in 1..{n_items}, got {top_k}")
        if exclude is not None and exclude.shape != (len(sequences), n_items + 1):
            raise ValueError(f"exclude must be (n, n_items + 1) = ({len(sequences)}, {n_items + 1}), "
                             f"got {exclude.shape}")
        items = self.all_item_vectors() if item_vectors is None else item_vectors
        users = self.user_vectors(sequences)
        ids, scores = [], []
        for s in range(0, len(users), batch_size):
            block = users[s:s + batch_size] @ items[1:].T / self.config.temperature   # (b, n_items)
            if exclude is not None:
                ex = exclude[s:s + batch_size].tocoo()
                keep = (ex.data > 0) & (ex.col > 0)
                block[torch.as_tensor(ex.row[keep], dtype=torch.long),
                      torch.as_tensor(ex.col[keep] - 1, dtype=torch.long)] = float("-inf")
            top = torch.topk(block, top_k, dim=1)
            ids.append(top.indices.numpy() + 1)
            scores.append(top.values.numpy())
        if not ids:
            return np.zeros((0, top_k), dtype=np.int64), np.zeros((0, top_k), dtype=np.float32)
        return np.concatenate(ids).astype(np.int64), np.concatenate(scores)


# =============================================================================================
# training
# =============================================================================================

def earlier_counts(parts: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """``n`` item-ID arrays -> ``(n, n_items + 1)`` csr counts (padding and unknown IDs dropped)."""
    lengths = [len(p) for p in parts]
    cols = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]) if parts else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(parts)), lengths)
    keep = cols > PAD_ID
    m = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (rows[keep], cols[keep])),
                      shape=(len(parts), n_items + 1))
    m.sum_duplicates()
    return m


def first_purchase_flags(sequence: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: True where the item appears for the first time in ``sequence`` (oldest first)."""
    sequence = np.asarray(sequence)
    flags = np.zeros(len(sequence), dtype=bool)
    flags[np.unique(sequence, return_index=True)[1]] = True
    return flags


def next_basket_targets(
    sequence: np.ndarray, baskets: np.ndarray, k: int, rng: np.random.Generator, new_only: bool = False,
) -> np.ndarray:
    """``(n, k)`` targets of one sequence: after the last item of each basket, up to ``k`` items of
    the next basket (drawn with ``rng``, distinct); 0 elsewhere.

    ``baskets``: ``(n,)`` basket number of each item (non-decreasing, e.g. the invoice order).
    ``new_only``: only items the customer had not bought before that basket.
    """
    sequence, baskets = np.asarray(sequence), np.asarray(baskets)
    if sequence.shape != baskets.shape:
        raise ValueError(f"sequence {sequence.shape} and baskets {baskets.shape} must have one entry per item")
    out = np.zeros((len(sequence), k), dtype=np.int64)
    ends = np.flatnonzero(baskets[:-1] != baskets[1:])               # last item of each basket
    starts = np.r_[ends + 1, len(sequence)]
    first = first_purchase_flags(sequence)
    for j, t in enumerate(ends):
        lo, hi = starts[j], starts[j + 1]
        nxt = sequence[lo:hi][first[lo:hi]] if new_only else sequence[lo:hi]
        nxt = np.unique(nxt[nxt > PAD_ID])
        if len(nxt):
            pick = rng.choice(nxt, size=min(k, len(nxt)), replace=False)
            out[t, :len(pick)] = pick
    return out


def make_training_windows(
    train_sequences: Sequence[np.ndarray],
    max_len: int,
    config: "TwoTowerTrainConfig",
    n_items: int | None = None,
    baskets: Sequence[np.ndarray] | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, sp.csr_matrix | None]:
    """Training windows for :meth:`TwoTower.loss`: inputs, targets (0 = no target), earlier items.

    ``inputs``: ``(n_windows, max_len)``. Each sequence is cut to its last ``config.history_cap``
    items. ``config.target_items``:

    - ``"all"``: ``(n_windows, max_len)`` targets, the next item after every position;
    - ``"new"``: the same, blanked where the customer had bought the item before (before the cut
      too), so only first purchases are learned;
    - ``"basket"`` / ``"basket-new"``: ``(n_windows, max_len, k)`` targets, ``k =
      config.basket_targets``: after the last item of a basket, items of the next basket
      (:func:`next_basket_targets`; needs ``baskets``, one basket-number array per sequence, and
      ``rng``, since the items are drawn anew each epoch): the next-basket task of the evaluation.

    With ``n_items`` the third value is the ``(n_windows, n_items + 1)`` counts of each window's
    customer's items *before* the window (for the history bag); otherwise None.
    """
    cap = config.history_cap
    seqs = [np.asarray(s, dtype=np.int64) for s in train_sequences]
    # windows over 1-based positions in the full sequences: every per-item array is then gathered
    positions = [np.arange(max(len(s) - cap, 0) + 1 if cap else 1, len(s) + 1) for s in seqs]
    pos_in, pos_tg = training_windows(positions, max_len, min_len=2, stride=config.stride)
    lengths = np.array([len(p) for p in positions])
    owner = np.repeat(np.arange(len(seqs)), [_n_windows(n, max_len, config.stride) if n >= 2 else 0 for n in lengths])
    offset = np.r_[0, np.cumsum([len(s) for s in seqs])][owner][:, None] - 1   # global index = offset + pos
    items = np.r_[np.concatenate(seqs) if seqs else np.zeros(0, np.int64), PAD_ID]   # last entry: padding

    def gather(array: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return array[np.where(pos > 0, offset + pos, len(items) - 1)]

    inputs = gather(items, pos_in)
    if config.target_items in ("all", "new"):
        targets = gather(items, pos_tg)
        if config.target_items == "new":
            first = np.r_[np.concatenate([first_purchase_flags(s) for s in seqs]) if seqs else [], False]
            targets = np.where(gather(first.astype(bool), pos_tg), targets, PAD_ID)
    else:
        if baskets is None or rng is None:
            raise ValueError("target_items='basket' needs the basket number of every item (`baskets`) and an rng")
        k = config.basket_targets
        per_item = np.concatenate([next_basket_targets(s, np.asarray(b), k, rng, config.target_items == "basket-new")
                                   for s, b in zip(seqs, baskets)] + [np.zeros((1, k), np.int64)])
        targets = per_item[np.where(pos_in > 0, offset + pos_in, len(per_item) - 1)]    # (w, L, k)
    earlier = None
    if n_items is not None:
        first_pos = np.where(pos_in > 0, pos_in, np.iinfo(np.int64).max).min(axis=1)     # 1-based
        earlier = earlier_counts([seqs[o][:f - 1] for o, f in zip(owner, first_pos)], n_items)
    return torch.as_tensor(inputs), torch.as_tensor(targets), earlier


def split_baskets(split: "Split") -> list[np.ndarray]:
    """Per user row of ``split``, the basket (invoice) number of each item of ``split.train_sequences``."""
    from m6rec_lib.data.splits import group_sequences

    train = split.train
    codes = pd.factorize(train["invoice"])[0] + 1          # 0 would be read as padding
    baskets = group_sequences(train["user"].to_numpy(), codes, split.n_users)
    items = group_sequences(train["user"].to_numpy(), train["item"].to_numpy(), split.n_users)
    if any(len(b) != len(s) or not np.array_equal(i, s) for b, i, s in zip(baskets, items, split.train_sequences)):
        raise ValueError("split.train does not line up with split.train_sequences; build both with the same split")
    return baskets


def _n_windows(length: int, max_len: int, stride: int | None) -> int:
    """How many windows :func:`m6rec_lib.data.training_windows` cuts from a sequence of ``length``."""
    stride = stride or max_len
    n, end = 0, length
    while True:
        n += 1
        end -= stride
        if end < 2:
            return n


def _log_q_table(targets: torch.Tensor, n_items: int, mode: str, n_draws: int) -> torch.Tensor | None:
    """``(n_items + 1,)`` log Q of every item from how often it is a training target."""
    if mode == "none":
        return None
    counts = np.bincount(targets[targets != PAD_ID].numpy(), minlength=n_items + 1)
    return in_batch_log_q(counts, n_draws=n_draws if mode == "inclusion" else None)


def _validation_metrics(model: TwoTower, eval_set: "EvalSet", config: TwoTowerTrainConfig) -> dict[str, float]:
    from m6rec_lib.metrics import evaluate

    k = int(config.monitor.split("@")[1])
    res = evaluate(model.score(eval_set), eval_set, ks=sorted({10, k}), exclude_seen=config.validation_view == "new")
    return {config.monitor: res[config.monitor], "NDCG@10": res["NDCG@10"]}


def train_two_tower(
    model: TwoTower,
    train_sequences: Sequence[np.ndarray],
    validation: "EvalSet | None",
    config: TwoTowerTrainConfig = TwoTowerTrainConfig(),
    progress: bool = True,
    baskets: Sequence[np.ndarray] | None = None,
) -> pd.DataFrame:
    """Train ``model`` in place with in-batch InfoNCE; return the history (one row per epoch).

    Windows of :func:`make_training_windows` are shuffled each epoch (seeded by ``config.seed`` and
    the epoch); with basket targets the next-basket items are drawn anew each epoch (``baskets``:
    one basket-number array per training sequence, e.g. from :func:`split_baskets`). With
    ``validation`` the best epoch's weights (by ``config.monitor`` on ``config.validation_view``)
    are kept.
    """
    from m6rec_lib.training import EarlyStopping, train_loop

    bag_items = model.config.n_items if model.config.history_bag else None

    def windows(epoch: int):
        rng = np.random.default_rng([config.seed, epoch])
        inputs, targets, earlier = make_training_windows(train_sequences, model.config.max_len, config,
                                                         bag_items, baskets, rng)
        keep = (targets != PAD_ID).flatten(1).any(1)
        return inputs[keep], targets[keep], None if earlier is None else earlier[keep.numpy()]

    inputs, targets, earlier = windows(0)
    n_per_batch = int((targets != PAD_ID).sum()) * config.batch_size // max(len(targets), 1)
    log_q = _log_q_table(targets, model.config.n_items, config.log_q, max(n_per_batch, 1))
    if log_q is not None:
        log_q = log_q.to(model.device)
    torch.manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = None
    if config.lr_decay:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: 1.0 - done / config.epochs)
    resample = config.target_items.startswith("basket")

    def batches(epoch: int):
        x, y, e = windows(epoch) if resample and epoch > 1 else (inputs, targets, earlier)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
        for s in range(0, len(order), config.batch_size):
            idx = order[s:s + config.batch_size]
            part = None if e is None else e[idx.numpy()]
            yield x[idx].to(model.device), y[idx].to(model.device), part

    validate = None
    if validation is not None:
        validate = lambda: _validation_metrics(model, validation, config)  # noqa: E731
    history = train_loop(
        model, optimizer, batches, lambda batch: model.loss(batch[0], batch[1], log_q, batch[2]), config.epochs,
        validate=validate, monitor=config.monitor if validate else None,
        early_stopping=EarlyStopping(patience=config.patience) if validate else None,
        scheduler=scheduler, grad_clip=config.grad_clip, progress=progress, desc="two-tower",
    )
    history.attrs["n_windows"] = len(inputs)
    history.attrs["targets_per_batch"] = n_per_batch
    return history


# =============================================================================================
# the course's configuration, and the cached entry point
# =============================================================================================

def default_configs(smoke: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """The course's two-tower configuration: ``(model_config, train_config)`` keyword dicts.

    Full mode is what notebook 06 trains and notebook 11 retrieves with: a two-layer SASRec user
    tower over the last 30 items plus the whole-history bag, trained on each customer's last 100
    items to retrieve the items of the next basket the customer had never bought (the retrieval
    task of the evaluation; up to 16 of them per basket), dropout 0.5, at most 16 epochs with
    early stopping. Chosen on validation Recall@100 (new items) with ``scripts/sweep_two_tower.py``:
    next-basket targets with repeats included, 8 targets per basket, 60 or 200 items of history,
    batches of 16 or 64, a decaying learning rate and dropout 0.2 all did worse. Smoke mode is tiny.
    """
    model = dict(max_len=30, d_model=64, n_heads=2, n_layers=2, dropout=0.5, d_out=128, temperature=0.07,
                 history_bag=True)
    train = dict(epochs=16, batch_size=32, lr=3e-3, patience=3, history_cap=100, target_items="basket-new",
                 basket_targets=16)
    if smoke:
        model.update(max_len=20, d_model=32, n_layers=1)
        train.update(epochs=4, history_cap=20, patience=2)
    return model, train


def load_or_train_two_tower(
    split: "Split",
    tokenizer: Any | None = None,
    model_config: dict[str, Any] | None = None,
    train_config: TwoTowerTrainConfig | dict[str, Any] | None = None,
    *,
    max_tokens: int = 16,
    smoke: bool = False,
    select_on: str = "first half",
    rebuild: bool = False,
    progress: bool = True,
) -> tuple[TwoTower, dict[str, Any]]:
    """The trained two-tower retriever for ``split``, from the cache or trained now.

    ``tokenizer``: encodes the item texts (``split.items.texts``) for the item tower; anything with
    ``encode_batch`` and ``vocab_size`` (the course's BPE of notebook 03, or a
    :class:`WordVocabulary` built from training-period descriptions). ``None``: an ID-only item
    tower. ``model_config`` / ``train_config``: keyword arguments of :class:`TwoTowerConfig` (except
    ``n_items`` and ``vocab_size``) and :class:`TwoTowerTrainConfig`; missing ones come from
    :func:`default_configs` (``smoke`` picks the tiny set). The cache key hashes both
    configurations, the split's fingerprint and the tokenizer's. ``select_on``: which validation
    customers early stopping reads, ``"first half"`` (the default), ``"second half"`` or ``"all"``
    (:meth:`m6rec_lib.data.EvalSet.part`, seed 0); see :func:`m6rec_lib.models.sasrec.load_or_train_sasrec`.

    Returns ``(model in eval mode, meta)`` with ``meta["history"]`` (one dict per epoch),
    ``meta["cached"]`` and ``meta["train_seconds"]``::

        model, meta = load_or_train_two_tower(split, tokenizer)
        ids, scores = model.retrieve(split.test.sequences, top_k=100)
    """
    from m6rec_lib.seeding import seed_everything
    from m6rec_lib.training import cached_model

    default_model, default_train = default_configs(smoke)
    if isinstance(train_config, TwoTowerTrainConfig):
        tcfg = train_config
    else:
        tcfg = TwoTowerTrainConfig(**{**default_train, **(train_config or {})})
    tokens, vocab_size, tok_fp = None, 0, None
    if tokenizer is not None:
        tokens = item_token_ids(split.items.texts, tokenizer, max_tokens)
        vocab_size = int(tokenizer.vocab_size)
        tok_fp = tokenizer.fingerprint() if hasattr(tokenizer, "fingerprint") else str(vocab_size)
    mcfg = TwoTowerConfig(n_items=split.n_items, vocab_size=vocab_size, **{**default_model, **(model_config or {})})
    key = {"model": asdict(mcfg), "train": asdict(tcfg), "split": split_fingerprint(split),
           "tokenizer": tok_fp, "max_tokens": max_tokens if tokenizer is not None else None,
           "select_on": select_on}
    validation = split.validation.part(select_on)
    seed_everything(tcfg.seed)
    model = TwoTower(mcfg, tokens)

    baskets = split_baskets(split) if tcfg.target_items.startswith("basket") else None

    def train(m: TwoTower) -> pd.DataFrame:
        return train_two_tower(m, split.train_sequences, validation, tcfg, progress=progress, baskets=baskets)

    model, meta = cached_model("two-tower", key, model, train, rebuild=rebuild)
    model.eval()
    return model, meta
