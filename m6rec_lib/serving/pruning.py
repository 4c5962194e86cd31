"""Magnitude pruning: the smallest weights of every matrix set to zero, stored compactly.

:func:`magnitude_masks` drops a share of each weight matrix (per matrix, so no layer is emptied),
:func:`apply_masks` zeroes them (again after every fine-tuning step, so they stay zero), and
:func:`save_pruned` stores a bit mask plus the surviving values: at 80% sparsity 0.925 bytes per
weight instead of 4. A dense matrix product does not get faster because of zeros: pruning buys
size, not time, unless a sparse kernel runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path

__all__ = ["magnitude_masks", "apply_masks", "sparsity", "save_pruned", "load_pruned"]


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
