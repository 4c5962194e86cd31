"""Mixing a next-item model with Buy-Again: repeat purchases as a second distribution.

Most of a returning customer's basket is products they bought before (notebook 01). A next-item
model spreads its probability over the whole catalogue; Buy-Again puts it on the customer's own
past products. The mixture is a proper distribution over items:

    P(i | u) = w * P_repeat(i | u) + (1 - w) * P_model(i | u)

``P_model`` is the softmax of the model's scores; ``P_repeat`` is the customer's own purchase
history, normalised, with each past purchase weighted by ``0.5 ** (age / half_life)`` (age in
purchase lines, 0 = the most recent; ``half_life=None`` counts every purchase the same). The
weight ``w`` (and the half-life) are chosen on the **validation** set (:func:`tune_repeat_mixture`),
then the same values score the test set once.

On the "new to the customer" view the mixture ranks exactly like the model (``P_repeat`` is zero
on every new item and the ranking of the others is unchanged), so it only changes "all items".
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:
    from m6rec_lib.data.evalset import EvalSet

__all__ = ["repeat_distribution", "mix_with_repeats", "tune_repeat_mixture"]


def repeat_distribution(eval_set: "EvalSet", half_life: float | None = None) -> np.ndarray:
    """``(len(eval_set), n_items + 1)``: each customer's past purchases as a distribution.

    Built from ``eval_set.sequences`` (one entry per past purchase line, oldest first): row ``u``
    is ``sum over past lines l of weight(l) * onehot(item_l)``, normalised to sum to 1, with
    ``weight = 0.5 ** (age / half_life)`` (``age`` = lines after ``l``) or 1 when ``half_life`` is
    None. A customer with no history gets a row of zeros.
    """
    if half_life is not None and not half_life > 0:
        raise ValueError(f"half_life must be a positive number of purchase lines or None, got {half_life!r}")
    out = np.zeros((len(eval_set), eval_set.n_items + 1))
    for row, seq in enumerate(eval_set.sequences):
        seq = np.asarray(seq, dtype=np.int64)
        seq = seq[seq > 0]
        if not len(seq):
            continue
        age = np.arange(len(seq) - 1, -1, -1, dtype=np.float64)
        weight = np.ones(len(seq)) if half_life is None else 0.5 ** (age / half_life)
        np.add.at(out[row], seq, weight)
        out[row] /= out[row].sum()
    return out


def mix_with_repeats(model_scores: np.ndarray | torch.Tensor, repeat: np.ndarray, weight: float) -> np.ndarray:
    """``log(w * P_repeat + (1 - w) * softmax(model_scores))``: ``(b, n_items + 1)`` scores.

    ``model_scores``: ``(b, n_items + 1)`` logits (column 0 is ignored: padding gets ``-inf``);
    ``repeat``: ``(b, n_items + 1)`` rows of :func:`repeat_distribution`; ``weight`` in [0, 1].
    Rows of customers without history (all-zero ``repeat``) are the model's alone.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight!r}")
    logits = torch.as_tensor(np.asarray(model_scores, dtype=np.float64))
    if logits.shape != repeat.shape:
        raise ValueError(f"model scores {tuple(logits.shape)} and repeat distribution {repeat.shape} differ")
    logits = logits.clone()
    logits[:, 0] = float("-inf")
    p_model = torch.softmax(logits, dim=1).numpy()
    # a customer without history has no repeat distribution: the model alone scores them
    w = np.where(repeat.sum(axis=1, keepdims=True) > 0, weight, 0.0)              # (b, 1)
    with np.errstate(divide="ignore"):
        mixed = np.log(w * repeat + (1.0 - w) * p_model)
    mixed[:, 0] = -np.inf
    return mixed


def tune_repeat_mixture(
    model_scores: np.ndarray | torch.Tensor,
    validation: "EvalSet",
    weights: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97, 0.99),
    half_lives: Sequence[float | None] = (None, 50.0),
    metric: str = "NDCG@10",
) -> tuple[dict, pd.DataFrame]:
    """Grid search of ``weight`` and ``half_life`` on the validation set ("all items" view).

    ``model_scores``: the model's ``(len(validation), n_items + 1)`` scores on ``validation``.
    Returns ``({"weight": w, "half_life": h}, table)`` with the best ``metric`` (first on ties) and
    one row per combination. ``weight=0`` is the model alone; a weight close to 1 ranks the
    customer's own past products first and every other product by the model.
    """
    from m6rec_lib.metrics import evaluate

    rows = []
    for half_life, weight in itertools.product(half_lives, weights):
        repeat = repeat_distribution(validation, half_life)
        result = evaluate(mix_with_repeats(model_scores, repeat, weight), validation, ks=(10, 50))
        rows.append({"weight": weight, "half_life": half_life, **result})
    table = pd.DataFrame(rows)
    best = int(np.argmax(table[metric].to_numpy()))
    hl = table["half_life"].iloc[best]
    return {"weight": float(table["weight"].iloc[best]), "half_life": None if pd.isna(hl) else float(hl)}, table
