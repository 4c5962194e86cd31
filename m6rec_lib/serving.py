"""Serving a pretrained GPT scorer cheaply: the mechanisms of M6-Rec's deployment (Cui et al. 2022).

The model scores (customer history, candidate product) pairs: the final hidden state at the
candidate's last token goes through a small head to one logit ("will this candidate be bought?").
This module makes that cheaper, each mechanism a few functions a notebook can show:

=========================  ==========================================================================
mechanism                  what it saves
=========================  ==========================================================================
late interaction           the first ``L'`` layers run on each text *segment alone* (profile, each
(:class:`SegmentScorer`,   invoice's time words and its lines, the prompt, each candidate); their
``split=L'``)              outputs are cached (:class:`SegmentCache`) and reused by every request that
                           contains the same segment; learned segment embeddings tell the last
                           ``L - L'`` layers which segment is which; only those run per request.
early exit (``exits``)     a head after every layer, trained with a weighted sum of the per-layer
                           losses; serve with the first ``l`` layers only.
layer sharing              one block reused at every depth (:func:`share_layers`): 1/L of the block
                           parameters, same compute.
magnitude pruning          the smallest 80% of each weight matrix set to zero
                           (:func:`magnitude_masks`), a short fine-tune with the zeros kept; stored as
                           bit mask + surviving values (:func:`save_pruned`).
int8 quantization          weights stored as 8-bit integers with one scale per row
                           (:func:`quantize_rows`); :func:`quantize_int8` serves with int8 matrix
                           products (PyTorch dynamic quantization) and int8 embedding tables.
distillation               a 1-2 layer student (:func:`make_student`) trained on the labels and on the
                           teacher's soft scores (:func:`distillation_loss`).
=========================  ==========================================================================

Latency is measured with :func:`measure_latency` (warm-up calls, then many timed calls; p50/p95),
size on disk with :func:`size_on_disk`.

Conventions: token IDs from :class:`m6rec_lib.text.tokenizer.BehaviourTokenizer` (``<pad>`` = 0,
``<bos>`` = 1); a history is written by :mod:`m6rec_lib.text.serializer`, whose segments tokenize
additively, so the segments' tokens concatenated are the history's tokens.
"""

from __future__ import annotations

import copy
import io
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .atomic import atomic_path
from .click_task import GroupedPairs
from .models.gpt import GPT, GPTConfig, LayerCache
from .text import serializer as ser

__all__ = [
    "Latency", "measure_latency", "compare_latency", "ROLES", "Segment", "segments_from_tokens", "SegmentCache",
    "SegmentedPairs", "segment_pairs", "RequestBatch", "ExitHead", "SegmentScorer", "train_scorer",
    "predict", "early_exit_weights", "share_layers", "magnitude_masks", "apply_masks", "sparsity",
    "save_pruned", "load_pruned", "quantize_rows", "dequantize_rows", "Int8Embedding", "quantize_int8",
    "distillation_loss", "make_student", "size_on_disk", "count_parameters",
]


# =============================================================================================
# 1. latency
# =============================================================================================

@dataclass
class Latency:
    """Timings of repeated calls: ``samples_ms`` (one per timed call) and their summary."""

    samples_ms: np.ndarray

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 50))

    @property
    def p95_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 95))

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.samples_ms))

    def as_dict(self) -> dict[str, float]:
        return {"p50 ms": self.p50_ms, "p95 ms": self.p95_ms, "mean ms": self.mean_ms,
                "calls": int(len(self.samples_ms))}


def measure_latency(
    fn: Callable[..., Any],
    inputs: Sequence[Any] | None = None,
    *,
    warmup: int = 3,
    repeats: int = 20,
) -> Latency:
    """Time calls of ``fn`` after ``warmup`` untimed calls (caches, allocator, lazy init).

    Without ``inputs``: ``fn()`` is timed ``repeats`` times. With ``inputs`` (e.g. a stream of
    requests): ``fn(x)`` for the first ``warmup`` inputs untimed, then ``fn(x)`` for every input,
    timed, cycling until at least ``repeats`` calls are timed. Each call is timed alone with
    :func:`time.perf_counter`; gradients are off.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got {warmup} and {repeats}")
    if inputs is not None and len(inputs) == 0:
        raise ValueError("inputs is empty: pass at least one request (or None to call fn())")
    samples = []
    with torch.inference_mode():
        if inputs is None:
            for _ in range(warmup):
                fn()
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - start)
        else:
            for i in range(warmup):
                fn(inputs[i % len(inputs)])
            n = max(repeats, len(inputs))
            for i in range(n):
                x = inputs[i % len(inputs)]
                start = time.perf_counter()
                fn(x)
                samples.append(time.perf_counter() - start)
    return Latency(np.asarray(samples) * 1000.0)


def compare_latency(
    fns: Mapping[str, Callable[[Any], Any]],
    inputs: Sequence[Any],
    *,
    warmup: int = 3,
    seed: int = 0,
) -> dict[str, Latency]:
    """Time several functions on the same stream of inputs, interleaved.

    After ``warmup`` untimed rounds (each function on each of the first ``warmup`` inputs), every
    input is given to every function once, in a new random order per input, each call timed alone.
    Interleaving makes a busy moment of the machine hit all functions alike, so their latencies
    can be compared even on a shared computer. Functions see the inputs in stream order (a cache
    inside one fills as it would in service). Returns name -> :class:`Latency`.
    """
    if not fns:
        raise ValueError("give at least one function to time")
    if len(inputs) == 0:
        raise ValueError("inputs is empty: pass at least one request")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    names = list(fns)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for i in range(warmup):
            for n in names:
                fns[n](inputs[i % len(inputs)])
        for x in inputs:
            for j in rng.permutation(len(names)):
                fn = fns[names[j]]
                start = time.perf_counter()
                fn(x)
                samples[names[j]].append(time.perf_counter() - start)
    return {n: Latency(np.asarray(v) * 1000.0) for n, v in samples.items()}


# =============================================================================================
# 2. segments
# =============================================================================================

#: What a segment is; each role has a learned embedding in :class:`SegmentScorer`.
ROLES = ("profile", "time", "lines", "prompt", "candidate")


@dataclass(frozen=True)
class Segment:
    """A piece of a request that is encoded alone by the lower layers.

    ``tokens``: its token IDs (the profile starts with ``<bos>``); ``role``: index into
    :data:`ROLES`; ``recency``: 0 for the newest invoice (and for profile, prompt, candidate),
    1 for the one before, ...
    """

    tokens: tuple[int, ...]
    role: int
    recency: int = 0

    def __len__(self) -> int:
        return len(self.tokens)


def segments_from_tokens(ids: Sequence[int], tokenizer) -> list[Segment]:
    """Cut a serialised history's token IDs (``<bos>`` + text ending in " Now buys") into segments.

    The text is decoded and cut at the serializer's boundaries: the profile, then per invoice its
    time words (" Last Tuesday morning bought") and its lines, then the prompt. Time words are
    their own segment because they change as time passes while an invoice's lines never do, so the
    lines stay cacheable. Each segment is tokenized alone; additivity makes the concatenation equal
    ``ids`` (checked: ValueError otherwise).
    """
    ids = [int(i) for i in ids]
    bos = ids[:1] == [tokenizer.bos_id]
    text = tokenizer.decode(ids[1:] if bos else ids)
    prompt = ser.PROMPT if text.endswith(ser.PROMPT) else ""
    body = text[: len(text) - len(prompt)]
    heads = list(ser.HEAD_PATTERN.finditer(body))
    pieces: list[tuple[str, int, int]] = []
    profile_end = heads[0].start() if heads else len(body)
    pieces.append((body[:profile_end], 0, 0))
    n_inv = len(heads)
    for k, head in enumerate(heads):
        end = heads[k + 1].start() if k + 1 < n_inv else len(body)
        recency = n_inv - 1 - k
        pieces.append((body[head.start():head.end()], 1, recency))
        if head.end() < end:
            pieces.append((body[head.end():end], 2, recency))
    if prompt:
        pieces.append((prompt, 3, 0))
    out = []
    for i, (piece, role, recency) in enumerate(pieces):
        tokens = tokenizer.encode(piece) if piece else []
        if i == 0 and bos:
            tokens = [tokenizer.bos_id] + tokens
        if tokens:
            out.append(Segment(tuple(tokens), role, recency))
    joined = [t for s in out for t in s.tokens]
    if joined != ids:
        raise ValueError(
            "the history's segments do not tokenize back to its token IDs; the text is not in the "
            "serializer's format (or the tokenizer is not additive over its segments)"
        )
    return out


class SegmentCache:
    """Lower-layer outputs of segments, keyed by their tokens, with hit statistics.

    ``max_entries`` bounds the size (least recently used entries leave first; None = unbounded).
    ``stats()`` counts look-ups by segment and by token: the token hit rate is the share of
    lower-layer computation the cache saved.
    """

    def __init__(self, max_entries: int | None = None) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be >= 1 or None, got {max_entries}")
        self.max_entries = max_entries
        self._store: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self.reset_stats()

    def reset_stats(self) -> None:
        self.hits = self.misses = self.hit_tokens = self.miss_tokens = 0
        self.by_role: dict[str, list[int]] = {r: [0, 0] for r in ROLES}  # [hits, misses]

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, tokens: tuple[int, ...]) -> bool:
        return tokens in self._store

    def get(self, segment: Segment) -> torch.Tensor | None:
        """The cached (T, d) output of ``segment`` or None; counts the look-up."""
        value = self._store.get(segment.tokens)
        self.count(segment, hit=value is not None)
        if value is not None:
            self._store.move_to_end(segment.tokens)
        return value

    def count(self, segment: Segment, hit: bool) -> None:
        """Record one look-up (a segment repeated within a request counts as a hit)."""
        if hit:
            self.hits += 1
            self.hit_tokens += len(segment)
        else:
            self.misses += 1
            self.miss_tokens += len(segment)
        self.by_role[ROLES[segment.role]][0 if hit else 1] += 1

    def put(self, tokens: tuple[int, ...], value: torch.Tensor) -> None:
        self._store[tokens] = value
        self._store.move_to_end(tokens)
        if self.max_entries is not None:
            while len(self._store) > self.max_entries:
                self._store.popitem(last=False)

    def clear(self) -> None:
        self._store.clear()
        self.reset_stats()

    @property
    def hit_rate(self) -> float:
        """Share of segment look-ups served from the cache."""
        n = self.hits + self.misses
        return self.hits / n if n else 0.0

    @property
    def token_hit_rate(self) -> float:
        """Share of looked-up tokens served from the cache (= lower-layer work saved)."""
        n = self.hit_tokens + self.miss_tokens
        return self.hit_tokens / n if n else 0.0

    def stats(self) -> dict[str, float]:
        out = {"entries": len(self), "lookups": self.hits + self.misses, "hit rate": self.hit_rate,
               "token hit rate": self.token_hit_rate}
        for role, (h, m) in self.by_role.items():
            if h + m:
                out[f"hit rate ({role})"] = h / (h + m)
        return out


# =============================================================================================
# 3. pairs as segmented requests
# =============================================================================================

@dataclass
class RequestBatch:
    """Several customer moments (groups), each with its history segments, and candidates.

    ``histories``: G lists of :class:`Segment`; ``candidates``: N token tuples (a candidate's text);
    ``group``: (N,) which history each candidate belongs to; ``labels``: (N,) 0/1 or None.
    """

    histories: list[list[Segment]]
    candidates: list[tuple[int, ...]]
    group: torch.Tensor
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        G, N = len(self.histories), len(self.candidates)
        if self.group.shape != (N,):
            raise ValueError(f"group must be ({N},), got {tuple(self.group.shape)}")
        if N and (int(self.group.min()) < 0 or int(self.group.max()) >= G):
            raise ValueError(f"group indices must lie in 0..{G - 1}")
        if any(len(h) == 0 for h in self.histories) or any(len(c) == 0 for c in self.candidates):
            raise ValueError("every history needs a segment and every candidate a token")
        if self.labels is not None and self.labels.shape != (N,):
            raise ValueError(f"labels must be ({N},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.candidates)

    @classmethod
    def single(cls, history: list[Segment], candidates: Sequence[Sequence[int]]) -> "RequestBatch":
        """One request: one customer moment and its candidates."""
        cands = [tuple(int(t) for t in c) for c in candidates]
        return cls([history], cands, torch.zeros(len(cands), dtype=torch.long))


@dataclass
class SegmentedPairs(GroupedPairs):
    """A :class:`m6rec_lib.click_task.PairTask` with every history cut into segments.

    ``histories``: per group a list of :class:`Segment`; ``items``, ``labels``, ``group``: per pair;
    ``item_tokens``: item ID -> token tuple of its candidate text.
    """

    histories: list[list[Segment]]
    group: np.ndarray
    items: np.ndarray
    labels: np.ndarray
    item_tokens: dict[int, tuple[int, ...]]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_groups(self) -> int:
        return len(self.histories)

    def pair_groups(self) -> np.ndarray:
        return self.group

    def batch(self, group_ids: Sequence[int]) -> RequestBatch:
        """The pairs of ``group_ids`` (in that order)."""
        starts, ends = self._bounds()
        group_ids = np.asarray(group_ids, dtype=np.int64)
        rows = np.concatenate([np.arange(starts[g], ends[g]) for g in group_ids])
        local = np.repeat(np.arange(len(group_ids)), ends[group_ids] - starts[group_ids])
        return RequestBatch([self.histories[g] for g in group_ids],
                            [self.item_tokens[int(i)] for i in self.items[rows]],
                            torch.as_tensor(local), torch.as_tensor(self.labels[rows], dtype=torch.float32))

    def batches(self, groups_per_batch: int = 32) -> Iterator[RequestBatch]:
        """Every pair in order (for prediction)."""
        return super().batches(groups_per_batch)


def segment_pairs(task, tokenizer) -> SegmentedPairs:
    """Cut every history of a ``PairTask`` (notebook 07's click task) into segments."""
    histories = [segments_from_tokens(h, tokenizer) for h in task.histories]
    return SegmentedPairs(
        histories, task.pairs["group"].to_numpy(), task.pairs["item"].to_numpy(),
        task.pairs["label"].to_numpy().astype(np.float32),
        {int(i): tuple(int(t) for t in tok) for i, tok in task.item_tokens.items()},
    )


# =============================================================================================
# 4. the scorer: full model, late interaction, early exit
# =============================================================================================

class ExitHead(nn.Module):
    """LayerNorm + linear: (N, d) hidden states of one layer -> (N,) logits."""

    def __init__(self, d_model: int, ln: nn.LayerNorm | None = None):
        super().__init__()
        self.ln = copy.deepcopy(ln) if ln is not None else nn.LayerNorm(d_model)
        self.linear = nn.Linear(d_model, 1)
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(self.ln(h)).squeeze(-1)


def _pad_stack(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(T_i, d) tensors -> ((n, T_max, d) right-padded with zeros, (n,) lengths)."""
    lengths = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
    out = rows[0].new_zeros(len(rows), int(lengths.max()), rows[0].shape[-1])
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out, lengths


def _pad_ids(rows: Sequence[Sequence[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    out = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out, lengths


class SegmentScorer(nn.Module):
    """A GPT that scores (history, candidate) pairs, with late interaction and early exits.

    Parameters
    ----------
    backbone
        The GPT whose blocks are used (not copied: pass ``copy.deepcopy(pretrained)`` to fine-tune a
        private copy). Its ``lm_head`` is not used.
    split
        ``L'``: the number of lower layers run on each segment alone. ``0`` is the full model: the
        history and each candidate form one sequence from the first layer on (global positions, no
        segment embeddings), like the plain GPT.
    exits
        Layers (1..L) with a head; default only the last. Early exit: heads on every layer.
    max_recency
        Invoices older than this share the last recency embedding.

    How a request is computed with ``split = L' > 0``::

        each segment s (alone):  [<bos>] + s  --embed (positions 0..)--> blocks[:L'] --> drop the <bos>
        history:   concat(segment outputs) + role_emb + recency_emb --> blocks[L':] (causal)
        candidate: its segment output + role_emb["candidate"] --> blocks[L':], attending to the
                   history's keys/values and causally to itself
        score:     head(hidden state at the candidate's last token)

    With ``split = 0``, ``<bos>`` + history + candidate run through all blocks as one text (the
    history once per customer moment, its keys/values shared by the candidates).
    """

    def __init__(self, backbone: GPT, split: int = 0, exits: Sequence[int] | None = None,
                 max_recency: int = 16):
        super().__init__()
        L = len(backbone.blocks)
        if not 0 <= split < L:
            raise ValueError(f"split (L') must be in 0..{L - 1} for a {L}-layer model, got {split}")
        exits = sorted(set(int(e) for e in (exits if exits is not None else [L])))
        if not exits or exits[0] <= split or exits[-1] > L:
            raise ValueError(f"exits must lie in {split + 1}..{L} (after the lower layers), got {exits}")
        d = backbone.config.d_model
        self.backbone = backbone
        self.split = split
        self.exits = exits
        self.heads = nn.ModuleDict({str(e): ExitHead(d, backbone.ln_f) for e in exits})
        self.max_recency = max_recency
        if split > 0:
            self.role_emb = nn.Embedding(len(ROLES), d)
            self.recency_emb = nn.Embedding(max_recency, d)
            nn.init.zeros_(self.role_emb.weight)
            nn.init.zeros_(self.recency_emb.weight)

    @property
    def n_layer(self) -> int:
        return len(self.backbone.blocks)

    @property
    def device(self) -> torch.device:
        for t in self.backbone.state_dict().values():  # works for quantized copies too
            if isinstance(t, torch.Tensor):
                return t.device
        return torch.device("cpu")

    # ------------------------------------------------------------- the lower layers, per segment
    def encode_segments(self, tokens: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
        """Lower-layer outputs of segments, each alone: n token tuples -> n tensors (T_i, d).

        Each segment is run as ``[<bos>] + tokens`` from position 0 through ``blocks[:split]`` (the
        ``<bos>`` gives attention a fixed place to rest, as in pretraining) and the ``<bos>`` output
        is dropped, unless the segment itself starts with ``<bos>`` (the profile).
        """
        bos = 1
        rows = [t if t[0] == bos else (bos, *t) for t in tokens]
        added = [t[0] != bos for t in tokens]
        idx, lengths = _pad_ids(rows, self.backbone.config.pad_id)
        idx = idx.to(self.device)
        x = self.backbone.embed(idx)
        for block in self.backbone.blocks[: self.split]:
            x = block(x)  # causal; padding sits after real tokens and is never attended to
        return [x[i, int(a): int(n)] for i, (a, n) in enumerate(zip(added, lengths))]

    def _segment_states(self, segments: Sequence[Segment], cache: SegmentCache | None) -> list[torch.Tensor]:
        """Lower-layer outputs + segment embeddings of ``segments`` (duplicates computed once)."""
        out: list[torch.Tensor | None] = [None] * len(segments)
        todo: dict[tuple[int, ...], list[int]] = {}
        for i, s in enumerate(segments):
            if s.tokens in todo:  # already being computed for this request
                todo[s.tokens].append(i)
                if cache is not None:
                    cache.count(s, hit=True)
                continue
            hit = cache.get(s) if cache is not None else None
            if hit is not None:
                out[i] = hit
            else:
                todo[s.tokens] = [i]
        if todo:
            keys = list(todo)
            for key, value in zip(keys, self.encode_segments(keys)):
                if cache is not None:
                    cache.put(key, value.detach())
                for i in todo[key]:
                    out[i] = value
        roles = torch.tensor([s.role for s in segments], device=self.device)
        rec = torch.tensor([min(s.recency, self.max_recency - 1) for s in segments], device=self.device)
        extra = self.role_emb(roles) + self.recency_emb(rec)  # (n, d)
        return [o + extra[i] for i, o in enumerate(out)]

    # ------------------------------------------------------------- the upper layers, per request
    def _run(self, x: torch.Tensor, caches: list[LayerCache], first: int, last: int,
             past_valid: torch.Tensor | None, taps: dict[int, torch.Tensor] | None = None,
             tap_index: torch.Tensor | None = None) -> torch.Tensor:
        """Blocks ``first..last-1`` on new positions ``x`` (B, T, d) after the cached ones.

        ``past_valid`` (B, S): which cached keys are real (None: nothing cached). ``taps``: filled
        with the state at ``tap_index`` (B,) after every block whose number (1-based) is an exit.
        """
        B, T, _ = x.shape
        mask = None
        if past_valid is not None and past_valid.shape[1] > 0:
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            mask = torch.cat([past_valid[:, None, :].expand(B, T, -1), causal.expand(B, T, T)], dim=2)[:, None]
        for i in range(first, last):
            x = self.backbone.blocks[i](x, attn_mask=mask, cache=caches[i])
            if taps is not None and str(i + 1) in self.heads:
                taps[i + 1] = x[torch.arange(B, device=x.device), tap_index]
        return x

    def forward(self, batch: RequestBatch, max_layer: int | None = None,
                cache: SegmentCache | None = None) -> torch.Tensor:
        """(N, E) logits, one column per exit up to ``max_layer`` (default: all exits).

        ``max_layer``: run only the first ``max_layer`` blocks (early exit); ``cache``: a
        :class:`SegmentCache` for the lower-layer segment outputs (late interaction only).
        """
        L = self.n_layer
        top = L if max_layer is None else int(max_layer)
        exits = [e for e in self.exits if e <= top]
        if not exits:
            raise ValueError(f"no exit at or below layer {top}; exits are {self.exits}")
        top = exits[-1]
        dev = self.device
        group = batch.group.to(dev)
        caches = [LayerCache() for _ in range(L)]
        if self.split == 0:
            hist_ids = [[t for s in h for t in s.tokens] for h in batch.histories]
            idx, hist_len = _pad_ids(hist_ids, self.backbone.config.pad_id)
            idx, hist_len = idx.to(dev), hist_len.to(dev)
            self._run(self.backbone.embed(idx), caches, 0, top, None)
            cand, cand_len = _pad_ids(batch.candidates, self.backbone.config.pad_id)
            cand, cand_len = cand.to(dev), cand_len.to(dev)
            start = hist_len.index_select(0, group)
            pos = (start[:, None] + torch.arange(cand.shape[1], device=dev)[None, :]).clamp(
                max=self.backbone.config.context_length - 1)
            y = self.backbone.embed(cand, positions=pos)
            first = 0
        else:
            flat = [s for h in batch.histories for s in h]
            states = self._segment_states(flat, cache)
            per_group, k = [], 0
            for h in batch.histories:
                per_group.append(torch.cat(states[k:k + len(h)], dim=0))
                k += len(h)
            x, hist_len = _pad_stack(per_group)
            hist_len = hist_len.to(dev)
            self._run(x, caches, self.split, top, None)
            cand_states = self._segment_states([Segment(c, ROLES.index("candidate")) for c in batch.candidates], cache)
            y, cand_len = _pad_stack(cand_states)
            cand_len = cand_len.to(dev)
            first = self.split
        H = hist_len.max()
        hist_valid = torch.arange(int(H), device=dev)[None, :] < hist_len[:, None]
        if len(batch.histories) == 1:
            caches = [c.expand(len(batch)) if c.k is not None else c for c in caches]
            past_valid = hist_valid.expand(len(batch), -1)
        else:
            caches = [LayerCache(c.k.index_select(0, group), c.v.index_select(0, group)) if c.k is not None
                      else c for c in caches]
            past_valid = hist_valid.index_select(0, group)
        taps: dict[int, torch.Tensor] = {}
        self._run(y, caches, first, top, past_valid, taps, cand_len - 1)
        return torch.stack([self.heads[str(e)](taps[e]) for e in exits], dim=1)

    @torch.no_grad()
    def score(self, batch: RequestBatch, layer: int | None = None, cache: SegmentCache | None = None) -> torch.Tensor:
        """(N,) logits of the exit at ``layer`` (default: the last), in eval mode."""
        was = self.training
        self.eval()
        out = self(batch, max_layer=layer, cache=cache)[:, -1]
        self.train(was)
        return out


def early_exit_weights(exits: Sequence[int]) -> torch.Tensor:
    """Weights of the per-exit losses: proportional to the layer number, summing to 1.

    Deeper exits count more (they should be the most accurate); every exit still gets a gradient.
    """
    w = torch.tensor([float(e) for e in exits])
    return w / w.sum()


def _scorer_loss(model: SegmentScorer, batch: RequestBatch, weights: torch.Tensor) -> torch.Tensor:
    logits = model(batch)  # (N, E)
    per_exit = F.binary_cross_entropy_with_logits(
        logits, batch.labels[:, None].expand_as(logits).to(logits.device), reduction="none").mean(0)
    return (per_exit * weights.to(per_exit.device)).sum()


def train_scorer(
    model: nn.Module,
    batches: Iterator[RequestBatch],
    steps: int,
    *,
    lr: float = 3e-4,
    head_lr: float = 3e-3,
    loss_fn: Callable[[nn.Module, RequestBatch], torch.Tensor] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    grad_clip: float = 1.0,
    progress: bool = True,
    desc: str = "training",
) -> pd.DataFrame:
    """Fine-tune every trainable parameter of ``model`` for ``steps`` batches; one row per step.

    AdamW: the backbone at ``lr``, the heads and segment embeddings (parameters outside
    ``model.backbone``) at ``head_lr``, linear warm-up over the first 10% of steps. ``loss_fn``
    (default: binary cross-entropy, summed over the exits with :func:`early_exit_weights`).
    ``masks`` (parameter name -> 0/1 tensor) are re-applied after every step: pruned weights stay 0.
    Columns: ``step``, ``loss``, ``seconds``.
    """
    from tqdm.auto import tqdm

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    backbone_ids = {id(p) for p in model.backbone.parameters()} if hasattr(model, "backbone") else set()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) in backbone_ids], "lr": lr},
              {"params": [p for p in params if id(p) not in backbone_ids], "lr": head_lr}]
    groups = [g for g in groups if g["params"]]
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    base = [g["lr"] for g in groups]
    if loss_fn is None:
        weights = early_exit_weights(model.exits)
        loss_fn = lambda m, b: _scorer_loss(m, b, weights)  # noqa: E731
    named = dict(model.named_parameters())
    rows, seconds = [], 0.0
    warm = max(1, steps // 10)
    model.train()
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, unit="step")
    for step in bar:
        batch = next(batches)
        started = time.perf_counter()
        for g, b in zip(optimizer.param_groups, base):
            g["lr"] = b * min(1.0, step / warm)
        loss = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        if masks:
            apply_masks(model, masks, named)
        seconds += time.perf_counter() - started
        rows.append({"step": step, "loss": loss.item(), "seconds": seconds})
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean([r['loss'] for r in rows[-10:]]):.3f}")
    model.eval()
    return pd.DataFrame(rows)


@torch.no_grad()
def predict(model: SegmentScorer, pairs: SegmentedPairs, layer: int | None = None,
            all_exits: bool = False, groups_per_batch: int = 32) -> np.ndarray:
    """Scores of every pair, in order: (n_pairs,) from the exit at ``layer`` (default: last), or
    (n_pairs, n_exits) with ``all_exits``."""
    was = model.training
    model.eval()
    out = []
    for batch in pairs.batches(groups_per_batch):
        logits = model(batch, max_layer=layer)
        out.append((logits if all_exits else logits[:, -1]).cpu().numpy())
    model.train(was)
    return np.concatenate(out, axis=0)


# =============================================================================================
# 5. layer sharing
# =============================================================================================

def share_layers(backbone: GPT, source: int | None = None) -> GPT:
    """A copy of ``backbone`` whose every layer is ONE block (ALBERT-style cross-layer sharing).

    The shared block starts as a copy of block ``source`` (default: the middle one). Compute is the
    same as before (the block still runs L times); the block parameters shrink L-fold.
    """
    L = len(backbone.blocks)
    source = L // 2 if source is None else source
    if not 0 <= source < L:
        raise ValueError(f"source must be in 0..{L - 1}, got {source}")
    shared = copy.deepcopy(backbone)
    block = shared.blocks[source]
    shared.blocks = nn.ModuleList([block] * L)
    return shared


def count_parameters(module: nn.Module) -> int:
    """Parameters, each shared tensor counted once (``module.parameters()`` de-duplicates)."""
    return sum(p.numel() for p in module.parameters())


# =============================================================================================
# 6. magnitude pruning
# =============================================================================================

def _prunable(model: nn.Module, include_embeddings: bool) -> dict[str, nn.Parameter]:
    out = {}
    seen = set()
    for name, module in model.named_modules():
        is_block_linear = isinstance(module, nn.Linear) and ".blocks." in f".{name}"
        is_emb = include_embeddings and isinstance(module, nn.Embedding) and name.endswith("tok_emb")
        if (is_block_linear or is_emb) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            out[f"{name}.weight"] = module.weight
    return out


def magnitude_masks(model: nn.Module, sparsity: float = 0.8, include_embeddings: bool = False) -> dict[str, torch.Tensor]:
    """0/1 masks that drop the ``sparsity`` share of smallest-magnitude weights of each matrix.

    Pruned: the weight matrices of every block's linear layers, and the token embedding table when
    ``include_embeddings`` (it holds each token's only representation, so pruning it hurts most).
    Biases, LayerNorms, position embeddings and heads are kept (they are small). Each matrix loses
    the same share (per-matrix, not global, so no layer is emptied).
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    masks = {}
    for name, w in _prunable(model, include_embeddings).items():
        k = int(round(sparsity * w.numel()))
        if k == 0:
            masks[name] = torch.ones_like(w, dtype=torch.bool)
            continue
        threshold = w.detach().abs().flatten().kthvalue(k).values
        masks[name] = w.detach().abs() > threshold
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor], named: Mapping[str, torch.Tensor] | None = None) -> None:
    """Set the masked-out weights to zero, in place."""
    named = named if named is not None else dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in named:
            raise KeyError(f"{name} is not a parameter of the model; build the masks from this model")
        named[name].mul_(mask.to(named[name].dtype))


def sparsity(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Share of exact zeros: among the masked matrices, and among all parameters."""
    named = dict(model.named_parameters())
    total = sum(p.numel() for p in model.parameters())
    zeros = sum(int((p == 0).sum()) for p in model.parameters())
    out = {"zeros among all parameters": zeros / total}
    if masks:
        n = sum(named[k].numel() for k in masks)
        z = sum(int((named[k] == 0).sum()) for k in masks)
        out["zeros among pruned matrices"] = z / n
    return out


def save_pruned(state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], target) -> int:
    """Write a state dict with the masked tensors stored compactly; returns the bytes written.

    A masked tensor is stored as its bit mask (``np.packbits``: 1 bit per weight) and its surviving
    values (fp32): at 80% sparsity, 1/8 + 0.2 * 4 = 0.925 bytes per weight instead of 4.
    ``target``: a path or a binary file object.
    """
    payload: dict[str, Any] = {}
    masked_at = {state[name].data_ptr(): name for name in masks if name in state}
    missing = [name for name in masks if name not in state]
    if missing:
        raise KeyError(f"masks name tensors the state dict lacks: {missing[:3]}")
    for name, tensor in state.items():
        if name in masks:
            m = masks[name].detach().cpu().bool()
            payload[name] = {"shape": list(tensor.shape),
                             "bits": torch.from_numpy(np.packbits(m.numpy().ravel())),
                             "values": tensor.detach().cpu()[m].clone()}
        elif tensor.data_ptr() in masked_at:  # a tied copy of a masked tensor (e.g. the LM head)
            payload[name] = {"same_as": masked_at[tensor.data_ptr()]}
        else:
            payload[name] = tensor.detach().cpu()
    if isinstance(target, (str, bytes)) or hasattr(target, "__fspath__"):
        with atomic_path(target) as tmp:
            torch.save(payload, tmp)
        return Path(target).stat().st_size
    start = target.tell()
    torch.save(payload, target)
    return target.tell() - start


def load_pruned(source) -> dict[str, torch.Tensor]:
    """The dense state dict written by :func:`save_pruned` (zeros restored)."""
    payload = torch.load(source, weights_only=True)
    out = {}
    for name, value in payload.items():
        if isinstance(value, dict) and "same_as" in value:
            continue
        if isinstance(value, dict):
            shape = tuple(value["shape"])
            n = int(np.prod(shape))
            bits = np.unpackbits(value["bits"].numpy())[:n].astype(bool)
            dense = torch.zeros(n, dtype=value["values"].dtype)
            dense[torch.from_numpy(bits)] = value["values"]
            out[name] = dense.view(shape)
        else:
            out[name] = value
    for name, value in payload.items():
        if isinstance(value, dict) and "same_as" in value:
            out[name] = out[value["same_as"]]
    return out


# =============================================================================================
# 7. int8 quantization
# =============================================================================================

def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 quantization: (rows, cols) float -> (int8 (rows, cols), scale (rows,)).

    ``scale = max|w_row| / 127`` and ``q = round(w / scale)``, so ``|w - q * scale| <= scale / 2``.
    """
    if w.dim() != 2:
        raise ValueError(f"quantize_rows expects a matrix, got shape {tuple(w.shape)}")
    scale = w.detach().abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w.detach() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale.float()


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float matrix an int8 matrix stands for: (rows, cols)."""
    return q.float() * scale[:, None]


class Int8Embedding(nn.Module):
    """An embedding table stored in int8 with one scale per row; looked-up rows are dequantized.

    (batch, T) int -> (batch, T, d). Built with :meth:`from_embedding`.
    """

    def __init__(self, q: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("q", q)
        self.register_buffer("scale", scale)

    @classmethod
    def from_embedding(cls, emb: nn.Embedding) -> "Int8Embedding":
        return cls(*quantize_rows(emb.weight))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.q[idx].float() * self.scale[idx][..., None]


class _NoLMHead(nn.Module):
    def forward(self, x):  # pragma: no cover - a guard
        raise RuntimeError("this quantized copy serves scores only; it has no language-model head")


def quantize_int8(model: nn.Module) -> nn.Module:
    """An int8 copy of a scorer for CPU serving.

    Every ``nn.Linear`` becomes a dynamically quantized one (int8 weights with per-tensor scale;
    activations quantized on the fly per batch; int8 matrix products, PyTorch's
    ``quantize_dynamic``); the GPT's token and position embeddings become :class:`Int8Embedding`;
    its (tied) language-model head is dropped, since scoring does not use it.
    """
    q = copy.deepcopy(model).eval()
    for module in list(q.modules()):
        if isinstance(module, GPT):
            module.lm_head = _NoLMHead()
            module.tok_emb = Int8Embedding.from_embedding(module.tok_emb)
            module.pos_emb = Int8Embedding.from_embedding(module.pos_emb)
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:  # pragma: no cover - depends on the PyTorch version
        raise ImportError("this PyTorch has no torch.ao.quantization.quantize_dynamic; install the "
                          "course's pinned PyTorch (requirements.txt) or use torchao") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the eager-mode API is marked deprecated in favour of torchao
        return quantize_dynamic(q, {nn.Linear}, dtype=torch.qint8)


# =============================================================================================
# 8. distillation
# =============================================================================================

def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      alpha: float = 0.5, temperature: float = 2.0) -> torch.Tensor:
    """Hinton et al. (2015) for one binary logit per pair: (N,) logits and labels -> scalar.

    ``alpha * T^2 * BCE(sigmoid(s / T), sigmoid(t / T)) + (1 - alpha) * BCE(sigmoid(s), y)``:
    the student matches the teacher's softened probability and the labels. The ``T^2`` keeps the
    soft term's gradient on the scale of the hard one: d/ds = alpha * T * (sigmoid(s/T) -
    sigmoid(t/T)) + (1 - alpha) * (sigmoid(s) - y).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    T = temperature
    soft = F.binary_cross_entropy_with_logits(student_logits / T, torch.sigmoid(teacher_logits.detach() / T))
    hard = F.binary_cross_entropy_with_logits(student_logits, labels.float())
    return alpha * T * T * soft + (1 - alpha) * hard


def make_student(teacher: GPT, n_layer: int) -> GPT:
    """A GPT with the teacher's embeddings, final LayerNorm and its first ``n_layer`` blocks (copies)."""
    if not 1 <= n_layer <= len(teacher.blocks):
        raise ValueError(f"n_layer must be in 1..{len(teacher.blocks)}, got {n_layer}")
    config = GPTConfig(**{**teacher.config.to_dict(), "n_layer": n_layer})
    student = GPT(config)
    state = {k: v for k, v in teacher.state_dict().items()
             if not k.startswith("blocks.") or int(k.split(".")[1]) < n_layer}
    student.load_state_dict(state)
    return student


# =============================================================================================
# 9. size on disk
# =============================================================================================

def size_on_disk(model_or_state: nn.Module | Mapping[str, Any]) -> int:
    """Bytes of ``torch.save(state_dict)`` (shared tensors are written once)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell()
