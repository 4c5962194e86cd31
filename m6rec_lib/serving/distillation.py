"""Knowledge distillation (Hinton et al. 2015): a small student learns from a teacher's scores.

:func:`make_student` keeps the teacher's embeddings and its first blocks; :func:`distillation_loss`
mixes the labels with the teacher's softened probabilities, for one logit per pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.gpt import GPT, GPTConfig

__all__ = ["distillation_loss", "make_student"]


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
