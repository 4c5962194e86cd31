"""Cross-layer parameter sharing (ALBERT, Lan et al. 2020; M6-Edge): one block at every depth.

The block parameters shrink L-fold; the compute does not (the block still runs L times).
"""

from __future__ import annotations

import copy

from torch import nn

from ..models.gpt import GPT

__all__ = ["share_layers"]


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
