"""Int8 quantization: weights as 8-bit integers with one scale per row, int8 matrix products.

:func:`quantize_rows` is the arithmetic (symmetric, per row: ``|w - q s| <= s / 2``);
:func:`quantize_int8` makes a serving copy of a scorer: dynamically quantized linear layers
(PyTorch's ``quantize_dynamic``: int8 weights, activations quantized on the fly) and int8
embedding tables (:class:`Int8Embedding`).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..models.gpt import GPT

__all__ = ["quantize_rows", "dequantize_rows", "Int8Embedding", "quantize_int8"]


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
