"""The scorer of (history, candidate) pairs: the full model, multi-segment late interaction, early exit.

:class:`SegmentScorer` reads ``<bos>`` + a customer's history + a candidate product's text and
turns the hidden state at the candidate's last token into one logit ("will this be bought?").

* ``split = 0``: the full model, like the plain GPT on the concatenated text.
* ``split = L' > 0``: **late interaction** (M6-Rec): the first ``L'`` layers run on each segment
  alone (:mod:`m6rec_lib.serving.segments`), so their outputs can be cached and reused; learned
  role and recency embeddings tell the last ``L - L'`` layers which segment is which; only those
  run per request.
* ``exits``: heads after several layers (:mod:`m6rec_lib.serving.early_exit`); ``max_layer=l``
  serves with the first ``l`` layers.

Every scorer counts its **work** (:class:`Work`): token positions run through a block, summed over
blocks, split into the per-segment lower layers and the per-request upper layers. Unlike wall-clock
time, that cost does not depend on how busy the machine is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..models.gpt import GPT, LayerCache
from .early_exit import ExitHead, early_exit_loss, early_exit_weights
from .pruning import apply_masks
from .segments import ROLES, RequestBatch, Segment, SegmentCache, SegmentedPairs

__all__ = ["Work", "SegmentScorer", "train_scorer", "predict"]


@dataclass
class Work:
    """Token positions run through a transformer block, summed over blocks (a machine-free cost).

    ``lower``: segment positions through the per-segment lower layers (cache misses only; a
    segment's added ``<bos>`` included); ``upper``: history and candidate positions through the
    layers run per request (for the full model: every layer). ``requests``: customer moments served.
    Padding is not counted: it is an artefact of batching, not of the method.
    """

    lower: int = 0
    upper: int = 0
    requests: int = 0

    @property
    def total(self) -> int:
        return self.lower + self.upper

    def reset(self) -> None:
        self.lower = self.upper = self.requests = 0


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
        if getattr(backbone.config, "layout", "causal") != "causal":
            raise ValueError(f"SegmentScorer reads requests causally, but this backbone was trained with the "
                             f"{backbone.config.layout!r} layout; serve a causal GPT (load_or_pretrain's default)")
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
        self.work = Work()

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
        self.work.lower += self.split * int(lengths.sum())
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
        self.work.upper += (top - first) * (int(hist_len.sum()) + int(cand_len.sum()))
        self.work.requests += len(batch.histories)
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
        loss_fn = lambda m, b: early_exit_loss(m, b, weights)  # noqa: E731
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

