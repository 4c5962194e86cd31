"""Adapting one frozen pretrained GPT to many tasks with ~1% task parameters (M6-Rec, Cui et al. 2022).

Four ways to turn the pretrained language model of notebook 04 into a classifier of
(customer history, candidate product) pairs, from the most to the least expensive:

================  ============================================  =====================================
method            trained                                       read out
================  ============================================  =====================================
fine-tuning       every backbone weight + a linear head         ``PromptTuningHead`` (a linear layer)
prompt tuning     a soft prompt (P free vectors) + linear head  ``PromptTuningHead``
option tuning     P free vectors + C option vectors             ``OptionTuningHead``: the option
                                                                vectors ARE the classifier weights
option + adapter  the above + a low-rank FFN adapter per layer  ``OptionTuningHead``
                  with a learned per-layer scale
================  ============================================  =====================================

How the model reads one pair (:class:`AdaptedGPT`)::

    [<bos> history ... Now buys] [ CANDIDATE TEXT] [p_1 ... p_P  o_1 ... o_C]
     segment 1: history           segment 2        segment 3: the soft prompt (a suffix)
     (shared by all candidates     (one per pair)   free vectors, then the option vectors
      of one customer moment)

The soft prompt is a **suffix**: in a causal model the text's hidden states do not depend on it, so
with a frozen backbone (prompt / option tuning) the text is computed once without gradients and only
the P + C prompt positions are trained through. The final hidden state ``h`` (after ``ln_f``) at the
last prompt position is classified:

- prompt tuning / fine-tuning: ``logits = W h + b`` (``W``: C x d, a separate head);
- option tuning: ``logits = O h`` where ``O`` (C x d) are the last C prompt vectors -- the same
  tensor is an input of the transformer and the weight matrix of the classifier, exactly like the
  tied ``lm_head`` scores the next token against the token embeddings.

Adapters (:class:`LowRankAdapter`) run in parallel to every block's MLP:
``x <- x + MLP(LN2(x)) + s_l * Up(GELU(Down(LN2(x))))`` with ``Up`` initialised at zero, so training
starts from the pretrained model exactly; ``s_l`` is one learned scalar per layer.

Parameter counts (d = d_model, C classes, P free prompt vectors, rank r, L adapted layers):
soft prompt ``P d``; options ``C d``; linear head ``C d + C``; one adapter ``2 d r + r + d + 1``.

A history is shared by several candidates (:class:`PairBatch`): its keys and values are computed once
per customer moment and reused for each candidate, the same idea as multi-segment late interaction.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .models.gpt import GPT, LayerCache

__all__ = [
    "PairBatch",
    "SoftPrompt",
    "PromptTuningHead",
    "OptionTuningHead",
    "LowRankAdapter",
    "AdaptedGPT",
    "freeze",
    "count_parameters",
    "parameter_table",
    "adapter_parameters_formula",
    "soft_prompt_parameters_formula",
    "linear_head_parameters_formula",
    "task_state_dict",
    "load_task_state_dict",
    "TuningConfig",
    "train_adapted",
    "predict_scores",
    "build_adapted",
    "METHODS",
    "load_or_train_task_model",
    "course_tuning",
    "COURSE_LEARNING_RATES",
    "COURSE_LEARNING_RATE_GRID",
]


# =============================================================================================
# the input: histories shared by candidates
# =============================================================================================

@dataclass
class PairBatch:
    """A batch of (history, candidate) pairs where several pairs share one history.

    ``history``: (G, H) token IDs, right-padded (``<bos>`` + history text); ``history_len``: (G,)
    real lengths. ``candidate``: (N, Tc) token IDs of each pair's candidate text, right-padded;
    ``candidate_len``: (N,). ``group``: (N,) which history row each pair reads. ``labels``: (N,)
    class indices (or None when predicting).
    """

    history: torch.Tensor
    history_len: torch.Tensor
    candidate: torch.Tensor
    candidate_len: torch.Tensor
    group: torch.Tensor
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        G, N = self.history.shape[0], self.candidate.shape[0]
        if self.history.dim() != 2 or self.candidate.dim() != 2:
            raise ValueError("history must be (G, H) and candidate (N, Tc) token IDs")
        if self.history_len.shape != (G,) or self.candidate_len.shape != (N,) or self.group.shape != (N,):
            raise ValueError(
                f"history_len must be ({G},), candidate_len and group ({N},); got "
                f"{tuple(self.history_len.shape)}, {tuple(self.candidate_len.shape)}, {tuple(self.group.shape)}"
            )
        if N and (int(self.group.min()) < 0 or int(self.group.max()) >= G):
            raise ValueError(f"group indices must lie in 0..{G - 1}")
        if (self.history_len < 1).any() or (self.candidate_len < 1).any():
            raise ValueError("every history and every candidate needs at least one token")
        if self.labels is not None and self.labels.shape != (N,):
            raise ValueError(f"labels must be ({N},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.candidate.shape[0]

    @staticmethod
    def pad(rows: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad token lists: ((n, max_len) long tensor, (n,) lengths)."""
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        out = torch.full((len(rows), int(lengths.max()) if len(rows) else 0), pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.as_tensor(np.asarray(r, dtype=np.int64))
        return out, lengths

    def concatenated(self, pad_id: int = 0) -> list[list[int]]:
        """Each pair as one token list ``history + candidate`` (to check against the plain GPT)."""
        out = []
        for n in range(len(self)):
            g = int(self.group[n])
            h = self.history[g, : int(self.history_len[g])].tolist()
            out.append(h + self.candidate[n, : int(self.candidate_len[n])].tolist())
        return out


# =============================================================================================
# the task parameters
# =============================================================================================

def _trainable_vectors(n: int, d: int, init: torch.Tensor | None) -> nn.Parameter:
    """An (n, d) trainable matrix: a copy of ``init`` (checked to be (n, d)), or N(0, 0.02)."""
    if init is None:
        return nn.Parameter(torch.randn(n, d) * 0.02)
    if tuple(init.shape) != (n, d):
        raise ValueError(f"init must be ({n}, {d}), got {tuple(init.shape)}")
    return nn.Parameter(init.detach().clone().float())


class SoftPrompt(nn.Module):
    """P trainable input vectors (P, d) appended after the text (Lester et al. 2021).

    ``init``: optional (P, d) tensor to start from (e.g. rows of the token embedding matrix, which
    puts the prompt where the model expects token vectors); default N(0, 0.02).
    """

    def __init__(self, n_tokens: int, d_model: int, init: torch.Tensor | None = None):
        super().__init__()
        if n_tokens < 1 or d_model < 1:
            raise ValueError(f"n_tokens and d_model must be >= 1, got {n_tokens} and {d_model}")
        self.vectors = _trainable_vectors(n_tokens, d_model, init)

    @property
    def n_tokens(self) -> int:
        return self.vectors.shape[0]

    def forward(self) -> torch.Tensor:
        """(P, d): the prompt vectors."""
        return self.vectors


class PromptTuningHead(nn.Module):
    """A separate linear classifier on the final hidden state: (N, d) -> (N, C) logits.

    The head of prompt tuning and of full fine-tuning; it adds nothing to the prompt.
    """

    def __init__(self, d_model: int, n_classes: int = 2):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs n_classes >= 2, got {n_classes}")
        self.linear = nn.Linear(d_model, n_classes)
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    @property
    def n_classes(self) -> int:
        return self.linear.out_features

    def prompt_suffix(self) -> torch.Tensor | None:
        """Vectors this head adds at the end of the soft prompt: none."""
        return None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)


class OptionTuningHead(nn.Module):
    """Option tuning: C option vectors that are both the last C prompt inputs and the classifier.

    ``options``: (C, d). :meth:`prompt_suffix` returns them to be appended to the soft prompt;
    :meth:`forward` scores the final hidden state against the very same tensor:
    ``logits[n, c] = <h[n], options[c]>`` -- no separate head, no bias. ``init``: optional (C, d)
    start (e.g. token embeddings, like a verbaliser).
    """

    def __init__(self, d_model: int, n_classes: int = 2, init: torch.Tensor | None = None):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs n_classes >= 2, got {n_classes}")
        self.options = _trainable_vectors(n_classes, d_model, init)

    @property
    def n_classes(self) -> int:
        return self.options.shape[0]

    @property
    def weight(self) -> torch.Tensor:
        """The classifier weight matrix (C, d): the option vectors themselves."""
        return self.options

    def prompt_suffix(self) -> torch.Tensor:
        """(C, d): the option vectors, read by the model as the last C prompt positions."""
        return self.options

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(N, d) final hidden states -> (N, C) logits ``h @ options.T``."""
        return h @ self.options.T


class LowRankAdapter(nn.Module):
    """A bottleneck added in parallel to a block's MLP: (..., d) -> (..., d).

    ``adapter(h) = scale * Up(GELU(Down(h)))`` with ``Down``: d -> r, ``Up``: r -> d. ``Up`` starts
    at zero (the adapted model starts as the pretrained one) and ``scale`` is one learned scalar of
    this layer (start ``init_scale``). Parameters: ``2 d r + r + d + 1``.
    """

    def __init__(self, d_model: int, rank: int = 8, init_scale: float = 1.0):
        super().__init__()
        if rank < 1 or rank > d_model:
            raise ValueError(f"rank must be in 1..d_model={d_model}, got {rank}")
        self.down = nn.Linear(d_model, rank)
        self.up = nn.Linear(rank, d_model)
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        nn.init.normal_(self.down.weight, std=1.0 / math.sqrt(d_model))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(F.gelu(self.down(h)))


# =============================================================================================
# counting and freezing
# =============================================================================================

def freeze(module: nn.Module) -> nn.Module:
    """Set ``requires_grad=False`` on every parameter of ``module``; returns it."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once), or only those with ``requires_grad``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def soft_prompt_parameters_formula(n_tokens: int, d_model: int) -> int:
    """P d."""
    return n_tokens * d_model


def linear_head_parameters_formula(d_model: int, n_classes: int) -> int:
    """C d + C."""
    return n_classes * d_model + n_classes


def adapter_parameters_formula(d_model: int, rank: int) -> int:
    """One adapter: Down (d r + r), Up (r d + d), the scale (1) = 2 d r + r + d + 1."""
    return 2 * d_model * rank + rank + d_model + 1


# =============================================================================================
# the wrapper
# =============================================================================================

class AdaptedGPT(nn.Module):
    """A pretrained :class:`GPT` plus task parameters: (pairs of texts) -> (N, C) logits.

    Parameters
    ----------
    backbone
        The pretrained GPT. It is frozen unless ``train_backbone`` (full fine-tuning). It is used by
        reference, not copied: several AdaptedGPTs can share one frozen backbone (one per task).
    head
        :class:`PromptTuningHead` or :class:`OptionTuningHead`.
    prompt
        A :class:`SoftPrompt` (or None): free vectors appended after the text, before the head's
        option vectors.
    adapter_rank
        Rank of a :class:`LowRankAdapter` in each layer of ``adapter_layers`` (default: all), or None.
    train_backbone
        True for full fine-tuning.
    prompt_position
        ``"suffix"``: the prompt follows the candidate and the head reads the last prompt position;
        ``"infix"``: the prompt sits between the history and the candidate and the head reads the
        candidate's last token. See :meth:`final_hidden`.
    """

    def __init__(
        self,
        backbone: GPT,
        head: PromptTuningHead | OptionTuningHead,
        prompt: SoftPrompt | None = None,
        adapter_rank: int | None = None,
        adapter_layers: Sequence[int] | None = None,
        train_backbone: bool = False,
        prompt_position: str = "suffix",
    ):
        super().__init__()
        if prompt_position not in ("suffix", "infix"):
            raise ValueError(f"prompt_position must be 'suffix' or 'infix', got {prompt_position!r}")
        if getattr(backbone.config, "layout", "causal") != "causal":
            raise ValueError(f"AdaptedGPT reads the text causally, but this backbone was trained with the "
                             f"{backbone.config.layout!r} layout; adapt a causal GPT (load_or_pretrain's default)")
        self.prompt_position = prompt_position
        d = backbone.config.d_model
        self.backbone = backbone
        self.head = head
        self.prompt = prompt
        self.train_backbone = train_backbone
        n_layer = len(backbone.blocks)
        if prompt is not None and prompt.vectors.shape[1] != d:
            raise ValueError(f"the prompt has width {prompt.vectors.shape[1]}, the backbone {d}")
        if isinstance(head, OptionTuningHead) and head.options.shape[1] != d:
            raise ValueError(f"the option vectors have width {head.options.shape[1]}, the backbone {d}")
        layers = list(range(n_layer)) if adapter_layers is None else sorted(set(int(i) for i in adapter_layers))
        if any(not 0 <= i < n_layer for i in layers):
            raise ValueError(f"adapter_layers must lie in 0..{n_layer - 1}, got {adapter_layers}")
        self.adapter_layers = layers if adapter_rank else []
        self.adapters = nn.ModuleDict(
            {str(i): LowRankAdapter(d, adapter_rank) for i in self.adapter_layers} if adapter_rank else {}
        )
        if not train_backbone:
            freeze(backbone)
        else:
            for p in backbone.parameters():
                p.requires_grad_(True)

    # ---------------------------------------------------------------- bookkeeping
    @property
    def n_prompt(self) -> int:
        """Prompt positions after the text: free vectors + option vectors."""
        suffix = self.head.prompt_suffix()
        return (self.prompt.n_tokens if self.prompt is not None else 0) + (0 if suffix is None else suffix.shape[0])

    def prompt_vectors(self) -> torch.Tensor | None:
        """(P + C, d) the vectors appended after the text (free prompt, then options), or None."""
        parts = [self.prompt()] if self.prompt is not None else []
        suffix = self.head.prompt_suffix()
        if suffix is not None:
            parts.append(suffix)
        return torch.cat(parts, dim=0) if parts else None

    @property
    def text_is_frozen(self) -> bool:
        """True when the text's hidden states do not depend on any trainable parameter."""
        return not self.train_backbone and not self.adapters

    def task_parameters(self) -> dict[str, int]:
        """Trainable parameters by part: prompt, options, head, adapters, backbone."""
        parts = {
            "soft prompt": self.prompt.vectors.numel() if self.prompt is not None else 0,
            "options": self.head.options.numel() if isinstance(self.head, OptionTuningHead) else 0,
            "linear head": count_parameters(self.head) if isinstance(self.head, PromptTuningHead) else 0,
            "adapters": count_parameters(self.adapters),
            "backbone": count_parameters(self.backbone, trainable_only=True),
        }
        return parts

    # ---------------------------------------------------------------- the computation
    def _block(self, i: int, x: torch.Tensor, mask: torch.Tensor | None, cache: LayerCache) -> torch.Tensor:
        """Block ``i`` of the backbone with its adapter: (B, T, d) -> (B, T, d)."""
        block = self.backbone.blocks[i]
        x = x + block.attn(block.ln_1(x), attn_mask=mask, cache=cache)
        h = block.ln_2(x)
        out = x + block.mlp(h)
        adapter = self.adapters[str(i)] if str(i) in self.adapters else None
        if adapter is not None:
            out = out + adapter(h)
        return out

    def _run_chunk(
        self, x: torch.Tensor, caches: list[LayerCache], past_valid: torch.Tensor | None
    ) -> torch.Tensor:
        """Run new positions ``x`` (B, T, d) through every block after the cached ones.

        ``past_valid``: (B, S) bool, which cached keys may be attended to (False at padding), or
        None when nothing is cached (plain causal attention). Caches are extended in place.
        """
        B, T, _ = x.shape
        mask = None
        if past_valid is not None and past_valid.shape[1] > 0:
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            mask = torch.cat([past_valid[:, None, :].expand(B, T, -1), causal.expand(B, T, T)], dim=2)
            mask = mask[:, None]  # (B, 1, T, S + T): broadcast over heads
        for i in range(len(self.backbone.blocks)):
            x = self._block(i, x, mask, caches[i])
        return x

    def final_hidden(self, batch: PairBatch) -> torch.Tensor:
        """(N, d): ``ln_f`` of the hidden state read by the head, one per pair.

        ``prompt_position="suffix"``: [history][candidate][prompt], read at the last prompt vector.
        ``"infix"``: [history][prompt][candidate], read at the candidate's last token (the prompt is
        computed once per history). Without a prompt: [history][candidate], read at the candidate's
        last token. Whatever does not depend on a trainable parameter runs without gradients.
        """
        bb = self.backbone
        ctx = bb.config.context_length
        longest = int((batch.history_len[batch.group] + batch.candidate_len).max()) + self.n_prompt
        if longest > ctx:
            raise ValueError(
                f"a pair needs {longest} positions but the backbone's context is {ctx}; build the task "
                "with a shorter max_history_tokens"
            )
        frozen = self.text_is_frozen or not torch.is_grad_enabled()
        prompt = self.prompt_vectors()
        infix = prompt is not None and self.prompt_position == "infix"
        caches = [LayerCache() for _ in bb.blocks]
        H = batch.history.shape[1]
        device = batch.history.device
        # segment 1: each history once
        with torch.set_grad_enabled(not frozen):
            self._run_chunk(bb.embed(batch.history), caches, None)
        valid = torch.arange(H, device=device)[None, :] < batch.history_len[:, None]             # (G, H)
        start = batch.history_len.clone()                                                          # (G,)
        if infix:  # segment 2 (infix): the prompt after each history, once per history
            P = prompt.shape[0]
            pos = start[:, None] + torch.arange(P, device=device)[None, :]
            self._run_chunk(prompt[None] + bb.pos_emb(pos), caches, valid)
            valid = torch.cat([valid, torch.ones(len(start), P, dtype=torch.bool, device=device)], dim=1)
            start = start + P
        # each pair reads its history's keys and values (copied per pair)
        caches = [LayerCache(c.k.index_select(0, batch.group), c.v.index_select(0, batch.group)) for c in caches]
        valid = valid.index_select(0, batch.group)                                                 # (N, S)
        start = start.index_select(0, batch.group)                                                 # (N,)
        # the candidate
        Tc = batch.candidate.shape[1]
        pos = (start[:, None] + torch.arange(Tc, device=device)[None, :]).clamp(max=ctx - 1)  # pads: never read
        with torch.set_grad_enabled(torch.is_grad_enabled() and (not frozen or infix)):
            y = self._run_chunk(bb.embed(batch.candidate, positions=pos), caches, valid)
        if prompt is None or infix:
            return bb.ln_f(y[torch.arange(len(batch)), batch.candidate_len - 1])
        # segment 3 (suffix): the soft prompt right after each candidate's last real token
        cand_valid = torch.arange(Tc, device=device)[None, :] < batch.candidate_len[:, None]
        P = prompt.shape[0]
        pos = (start + batch.candidate_len)[:, None] + torch.arange(P, device=device)[None, :]
        z = self._run_chunk(prompt[None] + bb.pos_emb(pos), caches, torch.cat([valid, cand_valid], dim=1))
        return bb.ln_f(z[:, -1])

    def forward(self, batch: PairBatch) -> torch.Tensor:
        """(N, C) logits of the pairs in ``batch``."""
        return self.head(self.final_hidden(batch))

    def loss(self, batch: PairBatch) -> torch.Tensor:
        """Mean cross-entropy of the pairs' labels (nats)."""
        if batch.labels is None:
            raise ValueError("the batch has no labels")
        return F.cross_entropy(self(batch), batch.labels)

    @torch.no_grad()
    def score(self, batch: PairBatch) -> torch.Tensor:
        """(N,) log-odds of class 1 against class 0 (for AUC), in eval mode."""
        was = self.training
        self.eval()
        logits = self(batch)
        self.train(was)
        return logits[:, 1] - logits[:, 0]


# =============================================================================================
# saving only what a task adds
# =============================================================================================

def task_state_dict(model: AdaptedGPT) -> dict[str, torch.Tensor]:
    """The task's own parameters (prompt, options/head, adapters; the backbone too if fine-tuned).

    This is what has to be stored per task when one frozen backbone serves many tasks.
    """
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_task_state_dict(model: AdaptedGPT, state: dict[str, torch.Tensor]) -> AdaptedGPT:
    """Load :func:`task_state_dict` output into a model built the same way."""
    own = dict(model.named_parameters())
    missing = [k for k in state if k not in own]
    if missing:
        raise ValueError(f"the task state has parameters this model lacks: {missing[:5]}; build the model "
                         "with the same method (prompt length, head, adapter rank) it was trained with")
    with torch.no_grad():
        for k, v in state.items():
            if own[k].shape != v.shape:
                raise ValueError(f"{k}: stored shape {tuple(v.shape)}, model {tuple(own[k].shape)}")
            own[k].copy_(v)
    return model


def parameter_table(models: dict[str, AdaptedGPT], backbone_parameters: int) -> pd.DataFrame:
    """One row per method: trainable parameters by part, total and % of the backbone."""
    rows = {}
    for name, m in models.items():
        parts = m.task_parameters()
        total = count_parameters(m, trainable_only=True)
        if sum(parts.values()) != total:
            raise AssertionError(f"{name}: parts {parts} do not add up to {total}")
        rows[name] = {**parts, "trainable": total, "% of backbone": 100.0 * total / backbone_parameters}
    return pd.DataFrame.from_dict(rows, orient="index")


# =============================================================================================
# building and training
# =============================================================================================

#: the four methods of the lesson
METHODS = ("fine-tuning", "prompt tuning", "option tuning", "option + adapters")


def build_adapted(
    backbone: GPT,
    method: str,
    *,
    n_prompt: int = 8,
    n_classes: int = 2,
    adapter_rank: int = 8,
    prompt_position: str = "suffix",
    seed: int = 0,
) -> AdaptedGPT:
    """One of :data:`METHODS` on ``backbone`` (fine-tuning trains a copy of it; the others share it).

    Prompt vectors start as rows of the token embedding matrix drawn with ``seed`` (where the model
    expects inputs); option vectors too. Prompt tuning gets ``n_prompt`` free vectors and a linear
    head; option tuning ``n_prompt - n_classes`` free vectors and ``n_classes`` options, so both read
    the same number of prompt positions.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    d = backbone.config.d_model
    g = torch.Generator().manual_seed(seed)
    emb = backbone.tok_emb.weight.detach()

    def rows(n: int) -> torch.Tensor:
        return emb[torch.randint(4, emb.shape[0], (n,), generator=g)].clone()

    torch.manual_seed(seed)
    if method == "fine-tuning":  # a private copy: the shared backbone stays pretrained and frozen
        return AdaptedGPT(copy.deepcopy(backbone), PromptTuningHead(d, n_classes), train_backbone=True)
    if method == "prompt tuning":
        return AdaptedGPT(backbone, PromptTuningHead(d, n_classes), SoftPrompt(n_prompt, d, rows(n_prompt)),
                          prompt_position=prompt_position)
    n_free = n_prompt - n_classes
    if n_free < 0:
        raise ValueError(f"n_prompt={n_prompt} must be >= n_classes={n_classes} for option tuning")
    prompt = SoftPrompt(n_free, d, rows(n_free)) if n_free else None
    head = OptionTuningHead(d, n_classes, rows(n_classes))
    return AdaptedGPT(backbone, head, prompt, adapter_rank=adapter_rank if method == "option + adapters" else None,
                      prompt_position=prompt_position)


@dataclass(frozen=True)
class TuningConfig:
    """How a task model is trained.

    ``rounds`` of ``steps_per_round`` batches (a batch = ``groups_per_batch`` customer moments
    with all their pairs); validation AUC after each round; the best round's parameters are kept.
    Adam with ``lr`` (the backbone's own parameters use ``backbone_lr`` when fine-tuned).
    """

    lr: float = 1e-2
    backbone_lr: float = 3e-4
    rounds: int = 6
    steps_per_round: int = 10
    groups_per_batch: int = 16
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    patience: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.backbone_lr <= 0:
            raise ValueError("learning rates must be > 0")
        if self.rounds < 1 or self.steps_per_round < 1 or self.groups_per_batch < 1:
            raise ValueError("rounds, steps_per_round and groups_per_batch must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


#: learning rates of the methods in notebook 07 (task parameters; the backbone of fine-tuning uses
#: ``TuningConfig.backbone_lr``)
COURSE_LEARNING_RATES = {"fine-tuning": 1e-3, "prompt tuning": 3e-2, "option tuning": 3e-2, "option + adapters": 1e-2}

#: the two candidate learning rates notebook 07 tries per method (chosen on validation): the
#: backbone's rate for fine-tuning (its head keeps ``COURSE_LEARNING_RATES``), the task
#: parameters' rate for the others
COURSE_LEARNING_RATE_GRID = {"fine-tuning": (1e-4, 3e-4), "prompt tuning": (1e-2, 3e-2),
                             "option tuning": (1e-2, 3e-2), "option + adapters": (3e-3, 1e-2)}


def course_tuning(method: str, smoke: bool, seed: int = 0, lr: float | None = None) -> TuningConfig:
    """The training configuration notebook 07 uses for ``method`` (full: 4 rounds of 8 batches of
    16 customer moments; smoke: 2 rounds of 2 batches of 4).

    ``lr``: the learning rate to try (see :data:`COURSE_LEARNING_RATE_GRID`): the backbone's for
    fine-tuning, the task parameters' otherwise; default :data:`COURSE_LEARNING_RATES` (and a
    backbone rate of 3e-4).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if lr is not None and not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    task_lr, backbone_lr = COURSE_LEARNING_RATES[method], 3e-4
    if lr is not None:
        if method == "fine-tuning":
            backbone_lr = float(lr)
        else:
            task_lr = float(lr)
    return TuningConfig(lr=task_lr, backbone_lr=backbone_lr, rounds=2 if smoke else 4,
                        steps_per_round=2 if smoke else 8, groups_per_batch=4 if smoke else 16,
                        patience=4, seed=seed)


def predict_scores(model: AdaptedGPT, batches: Iterable[PairBatch]) -> np.ndarray:
    """Concatenated :meth:`AdaptedGPT.score` of ``batches`` (in their order): (N,) log-odds."""
    out = [model.score(b).cpu().numpy() for b in batches]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def train_adapted(
    model: AdaptedGPT,
    train_batches: Callable[[int], Iterator[PairBatch]],
    validate: Callable[[], float],
    config: TuningConfig = TuningConfig(),
    progress: bool = True,
    desc: str = "tuning",
) -> pd.DataFrame:
    """Train the trainable parameters of ``model``; return one row per round.

    ``train_batches(round)`` yields the round's batches (1-based round; at least
    ``steps_per_round``); ``validate()`` returns the validation AUC. Columns: ``round``, ``step``,
    ``pairs`` (pairs seen), ``train_loss``, ``val_auc``, ``seconds`` (training time, validation
    excluded). The best round's parameters are restored (validation-only model selection);
    ``history.attrs`` has ``best_round``, ``best_val_auc``, ``train_seconds``.
    """
    from tqdm.auto import tqdm

    from .training import EarlyStopping

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameter")
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    groups = [
        {"params": [p for _, p in trainable if id(p) not in backbone_ids], "lr": config.lr},
        {"params": [p for _, p in trainable if id(p) in backbone_ids], "lr": config.backbone_lr},
    ]
    optimizer = torch.optim.Adam([g for g in groups if g["params"]], weight_decay=config.weight_decay)
    stopper = EarlyStopping(patience=config.patience, mode="max")
    best_state = None
    rows: list[dict] = []
    seconds, step, pairs = 0.0, 0, 0
    model.eval()
    rows.append({"round": 0, "step": 0, "pairs": 0, "train_loss": np.nan, "val_auc": float(validate()),
                 "seconds": 0.0})
    stopper.update(rows[-1]["val_auc"], 0)
    best_state = task_state_dict(model)
    bar = tqdm(range(1, config.rounds + 1), desc=desc, disable=not progress, unit="round")
    for rnd in bar:
        model.train()
        started = time.perf_counter()
        losses = []
        for i, batch in enumerate(train_batches(rnd)):
            if i >= config.steps_per_round:
                break
            loss = model.loss(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} at step {step + 1}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_([p for _, p in trainable], config.grad_clip)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            pairs += len(batch)
        seconds += time.perf_counter() - started
        model.eval()
        auc = float(validate())
        rows.append({"round": rnd, "step": step, "pairs": pairs, "train_loss": float(np.mean(losses)),
                     "val_auc": auc, "seconds": seconds})
        bar.set_postfix(loss=f"{rows[-1]['train_loss']:.3f}", val_auc=f"{auc:.3f}")
        if stopper.update(auc, rnd):
            best_state = task_state_dict(model)
        if stopper.should_stop:
            break
    bar.close()
    load_task_state_dict(model, best_state)
    model.eval()
    history = pd.DataFrame(rows)
    history.attrs.update(best_round=stopper.best_epoch, best_val_auc=stopper.best, train_seconds=seconds)
    return history


def load_or_train_task_model(
    name: str,
    key: dict,
    model: AdaptedGPT,
    train_fn: Callable[[AdaptedGPT], pd.DataFrame],
    *,
    rebuild: bool = False,
) -> tuple[AdaptedGPT, pd.DataFrame, bool]:
    """The task parameters of ``model`` cached in ``cache_dir()`` under ``name`` and ``key``.

    ``key`` describes everything that decides the result (backbone, task data, method, training
    configuration); when a checkpoint for it exists the task parameters are loaded into ``model``,
    otherwise ``train_fn(model)`` trains it (returning :func:`train_adapted`'s history) and only
    :func:`task_state_dict` is saved -- a few kilobytes for option tuning, the whole backbone for
    fine-tuning. Returns ``(model, history, was_cached)``.
    """
    from .training import CheckpointError, artifact_path, load_checkpoint, save_checkpoint

    path = artifact_path(name, key)
    expected = {"name": name, "key": key}
    if path.is_file() and not rebuild:
        try:
            state, meta = load_checkpoint(path, expected_meta=expected)
        except CheckpointError as exc:
            import warnings

            warnings.warn(f"training {name} again: {exc}")
        else:
            load_task_state_dict(model, state)
            model.eval()
            history = pd.DataFrame(meta["history"])
            history.attrs.update(meta.get("attrs", {}))
            return model, history, True
    history = train_fn(model)
    attrs = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in history.attrs.items()}
    save_checkpoint(path, task_state_dict(model), {**expected, "history": history.to_dict(orient="list"), "attrs": attrs})
    return model, history, False
