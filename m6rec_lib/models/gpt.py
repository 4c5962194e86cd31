"""A small GPT: the generative language model the course pretrains on behaviour text.

One file a reader can hold in their head (after Radford et al. 2018/2019 and nanoGPT):

    idx (batch, T) --token embedding + learned position embedding--> x (batch, T, d)
    x --> n_layer x Block --> ln_f --> lm_head (tied to the token embedding) --> logits (batch, T, V)

    Block(x) = x + Attention(LN(x));  x + MLP(LN(x))          (pre-LN residual blocks)
    Attention = softmax(Q K^T / sqrt(d_head) + causal mask) V, over n_head heads in parallel
    MLP       = Linear(d, 4d) -> GELU -> Linear(4d, d)

Later lessons build on the parts, so they are plain attributes:

- ``model.embed(idx)`` -> (batch, T, d): token + position embeddings;
- ``model.blocks``: an ``nn.ModuleList``; ``block(x, attn_mask=None, cache=None)`` -> (batch, T, d);
- ``model.ln_f`` (final LayerNorm) and ``model.lm_head`` (tied output layer);
- ``model.hidden_states(idx)`` -> list of (batch, T, d), the input of every block and the final
  normalised output: what option tuning, adapters, late interaction and early exit start from.

Scoring and generation: :meth:`GPT.token_logprobs` (log-probability of every token given its
prefix), :meth:`GPT.score_continuations` (one prefix, many candidate continuations, with a
key/value cache so the prefix is computed once) and :meth:`GPT.generate` (temperature / top-k
sampling).

Two attention layouts (``GPTConfig.layout``):

- ``"causal"`` (GPT): every position sees itself and the positions before it;
- ``"prefix"`` (a prefix LM, as M6): the first P positions, the *prefix* (a customer's history),
  see each other in both directions; the positions after it (the continuation) see the whole
  prefix and, causally, each other. Training passes each row's P (``prefix_lengths``) and computes
  the loss on the continuation only; scoring and generation read the given prefix bidirectionally.
  :func:`prefix_lm_mask` builds the mask.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


LAYOUTS = ("causal", "prefix")


def prefix_lm_mask(prefix_lengths: torch.Tensor | Sequence[int], T: int) -> torch.Tensor:
    """The attention mask of a prefix LM: (batch,) prefix lengths -> (batch, 1, T, T) bool.

    Entry [b, 0, t, s] is True where query t may attend to key s: ``s <= t`` (causal) or
    ``s < P_b`` (everything in row b's prefix sees, and is seen by, the whole prefix). With
    ``P_b = 0`` or ``1`` it is the causal mask.
    """
    P = torch.as_tensor(prefix_lengths, dtype=torch.long).view(-1, 1, 1, 1)
    pos = torch.arange(T, device=P.device)
    causal = pos[None, :] <= pos[:, None]                                  # (T, T): key s <= query t
    return causal[None, None] | (pos.view(1, 1, 1, T) < P)


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT.

    ``vocab_size`` tokens, at most ``context_length`` positions, ``n_layer`` blocks of width
    ``d_model`` with ``n_head`` heads (``d_model`` must be divisible by ``n_head``); the MLP is
    ``mlp_ratio * d_model`` wide. ``dropout`` applies to embeddings, attention weights and residual
    branches. ``pad_id`` is the token ignored by :meth:`GPT.loss`. ``layout``: "causal" (GPT) or
    "prefix" (prefix LM; see the module docstring).
    """

    vocab_size: int
    context_length: int = 256
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.0
    pad_id: int = 0
    layout: str = "causal"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "d_model", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_head={self.n_head}; every head gets "
                f"d_model / n_head dimensions, so pick e.g. n_head={_divisor_hint(self.d_model, self.n_head)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id={self.pad_id} is not a token ID in 0..{self.vocab_size - 1}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS} ('causal': GPT; 'prefix': a prefix LM), "
                             f"got {self.layout!r}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


def _divisor_hint(d: int, n: int) -> int:
    return max(k for k in range(1, n + 1) if d % k == 0)


def count_parameters_formula(config: GPTConfig) -> int:
    """The number of trainable parameters of ``GPT(config)``, in closed form.

    With V = vocab_size, T = context_length, d = d_model, m = mlp_ratio, L = n_layer:

    - embeddings: V d (tokens; the output layer reuses them) + T d (positions);
    - one block: 2 LayerNorms (2 * 2d), Q/K/V projection (d * 3d + 3d), output projection
      (d * d + d), MLP (d * md + md and md * d + d)  =  (4 + 2m) d^2 + (9 + m) d;
    - the final LayerNorm: 2d.
    """
    V, T, d, m, L = config.vocab_size, config.context_length, config.d_model, config.mlp_ratio, config.n_layer
    per_block = (4 + 2 * m) * d * d + (9 + m) * d
    return V * d + T * d + L * per_block + 2 * d


def forward_flops_per_token(config: GPTConfig, seq_len: int | None = None) -> int:
    """Floating-point operations of one forward pass, per token (2 per multiply-add).

    Per layer: the Q/K/V, output and MLP matrices cost 2 (4 + 2m) d^2; causal attention costs
    2 d (T + 1) on average over a sequence of T = ``seq_len`` tokens (default: the context),
    for Q K^T and for the weighted sum of V; the output layer costs 2 d V. A training step costs
    about three times the forward pass (the backward pass computes two products per matrix).
    """
    T = config.context_length if seq_len is None else seq_len
    d, m, L, V = config.d_model, config.mlp_ratio, config.n_layer, config.vocab_size
    return L * (2 * (4 + 2 * m) * d * d + 2 * d * (T + 1)) + 2 * d * V


def grown(model: "GPT", context_length: int | None = None, layout: str | None = None) -> "GPT":
    """A copy of ``model`` with a longer context and/or another attention layout, to train further.

    Every weight is copied; the position table grows to ``context_length`` rows, the new rows
    starting as copies of the last learned one (so on any sequence that fits the old context the
    copy computes exactly what ``model`` computes, and continued training learns the new
    positions). ``layout`` (default: the model's) only changes which positions attend to which.
    """
    old = model.config
    context_length = old.context_length if context_length is None else context_length
    if context_length < old.context_length:
        raise ValueError(f"context_length={context_length} is shorter than the model's "
                         f"{old.context_length}; a context can grow, not shrink")
    config = GPTConfig(**{**old.to_dict(), "context_length": context_length,
                          "layout": old.layout if layout is None else layout})
    new = GPT(config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    pos = state["pos_emb.weight"]
    extra = pos[-1:].expand(context_length - old.context_length, -1)
    state["pos_emb.weight"] = torch.cat([pos, extra], dim=0)
    new.load_state_dict(state)
    new.train(model.training)
    return new


@dataclass
class LayerCache:
    """Keys and values one attention layer has already computed: (batch, n_head, S, d_head) each.

    Start with ``LayerCache()`` (empty); every call of the layer appends the new tokens' keys and
    values, so the next call only has to process the new tokens.
    """

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def expand(self, batch: int) -> "LayerCache":
        """The same cache for ``batch`` rows (a view, no copy), to score many continuations."""
        if self.k is None:
            return LayerCache()
        return LayerCache(self.k.expand(batch, -1, -1, -1), self.v.expand(batch, -1, -1, -1))


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t only attends to positions <= t.

    (batch, T, d) -> (batch, T, d). ``qkv`` projects to queries, keys and values for all heads at
    once; ``proj`` mixes the heads' outputs back into the residual stream.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.d_head = config.n_head, config.d_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """Attend; ``x`` is (batch, T, d).

        ``attn_mask``: None for the causal mask, or a bool tensor broadcastable to
        (batch, n_head, T, S) that is True where a query may attend to a key (S = cached + T keys);
        it replaces the causal mask. ``cache``: keys/values of earlier tokens, updated in place.
        """
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        # (B, T, d) -> (B, n_head, T, d_head): each head attends independently
        q, k, v = (t.view(B, T, self.n_head, self.d_head).transpose(1, 2) for t in (q, k, v))
        past = 0
        if cache is not None:
            past = cache.length
            if past:
                k = torch.cat([cache.k, k], dim=2)
                v = torch.cat([cache.v, v], dim=2)
            cache.k, cache.v = k, v
        dropout = self.dropout if self.training else 0.0
        if attn_mask is None and past == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            if attn_mask is None:  # new query i sits at position past + i and sees keys 0..past + i
                attn_mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        y = y.transpose(1, 2).reshape(B, T, d)  # concatenate the heads
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network: (batch, T, d) -> (batch, T, d)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = config.mlp_ratio * config.d_model
        self.fc = nn.Linear(config.d_model, hidden)
        self.proj = nn.Linear(hidden, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """A pre-LN transformer block: x + Attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, cache: LayerCache | None = None
    ) -> torch.Tensor:
        """(batch, T, d) -> (batch, T, d); see :meth:`CausalSelfAttention.forward` for the options."""
        x = x + self.attn(self.ln_1(x), attn_mask=attn_mask, cache=cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A decoder-only transformer language model; see the module docstring for the picture."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context_length, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections so the residual stream's variance does not grow
        # with depth (each block adds two branches).
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ------------------------------------------------------------------ the parts

    def num_parameters(self) -> int:
        """Trainable parameters, each shared tensor counted once (equals :func:`count_parameters_formula`)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _check(self, idx: torch.Tensor, start: int = 0) -> None:
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, T) token IDs, got shape {tuple(idx.shape)}")
        if start + idx.shape[1] > self.config.context_length:
            raise ValueError(
                f"{start + idx.shape[1]} positions do not fit the context of "
                f"{self.config.context_length} tokens; truncate the oldest tokens (keep idx[:, -"
                f"{self.config.context_length - start}:]) or build a GPT with a longer context_length"
            )

    def embed(self, idx: torch.Tensor, positions: torch.Tensor | int = 0) -> torch.Tensor:
        """Token plus position embeddings: (batch, T) int -> (batch, T, d).

        ``positions``: the first position (an int, default 0) or an explicit (T,) or (batch, T)
        tensor of positions, for segments that do not start at 0.
        """
        if isinstance(positions, int):
            self._check(idx, positions)
            positions = torch.arange(positions, positions + idx.shape[1], device=idx.device)
        elif int(positions.max()) >= self.config.context_length:
            raise ValueError(f"positions go up to {int(positions.max())}, beyond the context of "
                             f"{self.config.context_length}")
        return self.drop(self.tok_emb(idx) + self.pos_emb(positions))

    def hidden_states(
        self, idx: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Every layer's view of the sequence: a list of n_layer + 1 tensors (batch, T, d).

        Element 0 is the embedding (the first block's input), element i the output of block i
        for i < n_layer, and the last element is the final output after ``ln_f``.
        """
        x = self.embed(idx)
        states = [x]
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
            states.append(x)
        states[-1] = self.ln_f(x)
        return states

    def forward(
        self,
        idx: torch.Tensor,
        caches: list[LayerCache] | None = None,
        attn_mask: torch.Tensor | None = None,
        prefix_lengths: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Next-token logits: (batch, T) -> (batch, T, vocab_size).

        ``logits[b, t]`` scores the token that follows ``idx[b, :t + 1]``. ``caches`` (one
        :class:`LayerCache` per block, updated in place) continue a sequence whose first tokens were
        already processed; positions then start after the cached ones. ``prefix_lengths``
        ((batch,) ints) makes each row's first P tokens attend bidirectionally
        (:func:`prefix_lm_mask`), as a prefix LM is trained; it replaces ``attn_mask``.
        """
        if prefix_lengths is not None:
            if caches:
                raise ValueError("prefix_lengths is for whole sequences; with caches, run the prefix first")
            attn_mask = prefix_lm_mask(prefix_lengths, idx.shape[1]).to(idx.device)
        start = caches[0].length if caches else 0
        x = self.embed(idx, start)
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask=attn_mask, cache=caches[i] if caches else None)
        return self.lm_head(self.ln_f(x))

    @torch.no_grad()
    def attention_weights(self, idx: torch.Tensor, prefix_lengths: torch.Tensor | Sequence[int] | None = None
                          ) -> list[torch.Tensor]:
        """Every layer's attention weights, for looking at: a list of n_layer (batch, n_head, T, T).

        Entry [b, h, t, s] is how much head h of that layer mixes position s into position t
        (rows sum to 1). Computed explicitly, the way :class:`CausalSelfAttention` does inside
        PyTorch's fused kernel; ``prefix_lengths`` as in :meth:`forward`.
        """
        mask = None if prefix_lengths is None else prefix_lm_mask(prefix_lengths, idx.shape[1])
        x = self.embed(idx)
        T = idx.shape[1]
        allowed = torch.ones(T, T, dtype=torch.bool).tril() if mask is None else mask
        out = []
        for block in self.blocks:
            attn = block.attn
            B, _, d = x.shape
            q, k, _ = attn.qkv(block.ln_1(x)).split(d, dim=-1)
            q, k = (t.view(B, T, attn.n_head, attn.d_head).transpose(1, 2) for t in (q, k))
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(attn.d_head)
            out.append(torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1))
            x = block(x, attn_mask=mask)
        return out

    # ------------------------------------------------------------------ training

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy in nats; (batch, T) inputs and targets -> scalar.

        ``targets[b, t]`` is the token after ``idx[b, :t + 1]``; positions whose target is
        ``config.pad_id`` are ignored (padding).
        """
        logits = self(idx)
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
            ignore_index=self.config.pad_id,
        )

    # ------------------------------------------------------------------ scoring

    @torch.no_grad()
    def token_logprobs(self, idx: torch.Tensor) -> torch.Tensor:
        """log p(idx[:, t] | idx[:, :t]) for t = 1..T-1: (batch, T) -> (batch, T - 1).

        Right-padded rows are fine (a causal model never looks ahead); ignore the values at padding.
        """
        logp = torch.log_softmax(self(idx).float(), dim=-1)
        return logp[:, :-1].gather(-1, idx[:, 1:, None]).squeeze(-1)

    def _prompt_mask(self, T: int, device: torch.device) -> torch.Tensor | None:
        """The mask a prompt of T tokens is read with: None (causal) or all True (prefix LM)."""
        if self.config.layout == "prefix":
            return torch.ones(T, T, dtype=torch.bool, device=device)
        return None

    @torch.no_grad()
    def prefix_caches(self, prefix: Sequence[int] | torch.Tensor) -> tuple[list[LayerCache], torch.Tensor]:
        """Run a prefix once: (its per-layer key/value caches, the log-probabilities of the next token).

        ``prefix``: T int token IDs (one sequence). Returns ``(caches, next_logp)`` with
        ``next_logp`` of shape (vocab_size,). Reuse the caches to score or generate continuations
        without recomputing the prefix. A prefix-LM model (``layout="prefix"``) reads the prefix
        bidirectionally.
        """
        idx = torch.as_tensor(prefix, dtype=torch.long, device=self.tok_emb.weight.device).view(1, -1)
        if idx.shape[1] == 0:
            raise ValueError("the prefix is empty; start it with the <bos> token")
        caches = [LayerCache() for _ in self.blocks]
        logits = self(idx, caches=caches, attn_mask=self._prompt_mask(idx.shape[1], idx.device))
        return caches, torch.log_softmax(logits[0, -1].float(), dim=-1)

    @torch.no_grad()
    def score_continuations(
        self,
        prefix: Sequence[int],
        continuations: Sequence[Sequence[int]],
        batch_size: int = 256,
    ) -> np.ndarray:
        """Per-token log-probabilities of many continuations of one prefix.

        ``prefix``: token IDs (e.g. ``<bos>`` + a serialised history ending in "Now buys");
        ``continuations``: n lists of token IDs (e.g. each candidate product's text). Returns an
        (n, max_len) float array: entry [j, t] = log p(c_j[t] | prefix, c_j[:t]) and NaN beyond
        len(c_j). ``np.nansum(out, 1)`` is each continuation's log-likelihood,
        ``np.nanmean(out, 1)`` the length-normalised one. The prefix is computed once (key/value
        cache) and the continuations in batches of ``batch_size``.
        """
        if len(continuations) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        lengths = np.array([len(c) for c in continuations])
        if lengths.min() < 1:
            raise ValueError("every continuation needs at least one token")
        if len(prefix) + lengths.max() > self.config.context_length:
            raise ValueError(
                f"prefix ({len(prefix)} tokens) + the longest continuation ({lengths.max()}) exceed "
                f"the context of {self.config.context_length}; shorten the prefix"
            )
        was_training = self.training
        self.eval()
        device = self.tok_emb.weight.device
        caches, first_logp = self.prefix_caches(prefix)
        width = int(lengths.max())
        out = np.full((len(continuations), width), np.nan, dtype=np.float32)
        pad = self.config.pad_id
        for lo in range(0, len(continuations), batch_size):
            chunk = continuations[lo:lo + batch_size]
            w = max(len(c) for c in chunk)
            idx = torch.full((len(chunk), w), pad, dtype=torch.long, device=device)
            for row, c in enumerate(chunk):
                idx[row, :len(c)] = torch.as_tensor(c, dtype=torch.long)
            batch_caches = [c.expand(len(chunk)) for c in caches]
            logp = torch.log_softmax(self(idx, caches=batch_caches).float(), dim=-1)
            # token 0 is predicted by the prefix's last position, token t by continuation position t-1
            scores = torch.empty(len(chunk), w, device=device)
            scores[:, 0] = first_logp[idx[:, 0]]
            if w > 1:
                scores[:, 1:] = logp[:, :-1].gather(-1, idx[:, 1:, None]).squeeze(-1)
            scores = scores.cpu().numpy()
            for row, c in enumerate(chunk):
                out[lo + row, :len(c)] = scores[row, :len(c)]
        self.train(was_training)
        return out

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        stop_token: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample a continuation: (batch, T) -> (batch, T + n) with n <= ``max_new_tokens``.

        Each step samples from softmax(logits / temperature) restricted to the ``top_k`` most
        likely tokens (all tokens when None); ``temperature=0`` picks the most likely token
        (greedy). Generation stops early once every row has produced ``stop_token``; later tokens
        of a finished row are ``stop_token`` too. Uses a key/value cache, so each new token costs
        one position's worth of computation. A prefix-LM model reads the prompt bidirectionally
        (rows of one batch should then have prompts of one length, without padding).
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
        self._check(idx)
        room = self.config.context_length - idx.shape[1]
        if max_new_tokens > room:
            raise ValueError(
                f"{idx.shape[1]} prompt tokens + {max_new_tokens} new ones exceed the context of "
                f"{self.config.context_length}; generate at most {room} tokens or shorten the prompt"
            )
        was_training = self.training
        self.eval()
        caches = [LayerCache() for _ in self.blocks]
        logits = self(idx, caches=caches, attn_mask=self._prompt_mask(idx.shape[1], idx.device))[:, -1]
        done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        out = [idx]
        for step in range(max_new_tokens):
            logits = logits.float()
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.shape[-1]:
                    kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            if stop_token is not None:
                nxt = torch.where(done[:, None], torch.full_like(nxt, stop_token), nxt)
                done |= nxt[:, 0] == stop_token
            out.append(nxt)
            if step == max_new_tokens - 1 or (stop_token is not None and bool(done.all())):
                break
            logits = self(nxt, caches=caches)[:, -1]
        self.train(was_training)
        return torch.cat(out, dim=1)
