"""Early exit: a head after every layer, trained together, so one model serves at several depths.

Training all heads with a weighted sum of their losses (:func:`early_exit_loss`, weights
:func:`early_exit_weights`, proportional to depth) keeps every intermediate layer's state useful on
its own; at serving time :class:`~m6rec_lib.serving.scorer.SegmentScorer` stops after ``l`` layers
(``max_layer=l``) and reads head ``l``: cost falls linearly with ``l``.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ExitHead", "early_exit_weights", "early_exit_loss"]


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


def early_exit_weights(exits: Sequence[int]) -> torch.Tensor:
    """Weights of the per-exit losses: proportional to the layer number, summing to 1.

    Deeper exits count more (they should be the most accurate); every exit still gets a gradient.
    """
    w = torch.tensor([float(e) for e in exits])
    return w / w.sum()


def early_exit_loss(model: nn.Module, batch, weights: torch.Tensor) -> torch.Tensor:
    """``sum_l w_l BCE_l``: the binary cross-entropy of every exit's logits, weighted (scalar).

    ``model(batch)`` gives (N, E) logits, one column per exit; ``batch.labels``: (N,) 0/1;
    ``weights``: (E,), e.g. :func:`early_exit_weights`.
    """
    logits = model(batch)  # (N, E)
    per_exit = F.binary_cross_entropy_with_logits(
        logits, batch.labels[:, None].expand_as(logits).to(logits.device), reduction="none").mean(0)
    return (per_exit * weights.to(per_exit.device)).sum()
