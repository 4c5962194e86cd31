"""What a model costs to store: parameters (each shared tensor once) and bytes on disk."""

from __future__ import annotations

import io
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["size_on_disk", "count_parameters"]


def size_on_disk(model_or_state: nn.Module | Mapping[str, Any]) -> int:
    """Bytes of ``torch.save(state_dict)`` (shared tensors are written once)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell()


def count_parameters(module: nn.Module) -> int:
    """Parameters, each shared tensor counted once (``module.parameters()`` de-duplicates)."""
    return sum(p.numel() for p in module.parameters())
