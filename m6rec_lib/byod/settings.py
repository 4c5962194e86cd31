"""Settings of the course's SASRec that suit *your* data, derived from the data by one written rule.

The course's own settings (:func:`m6rec_lib.models.sasrec.default_configs`) were chosen for Online
Retail: a few thousand customers whose histories are invoices of ~20 lines, trained for at most
10 epochs on each customer's last 200 lines in batches of 32. On data with one item per step and
few users, such as MovieLens-100K (943 users), that is ``10 * ceil(943 / 32) = 300`` optimisation
steps: far too few for a transformer to learn anything beyond popularity. The rule below counts
**optimisation steps**, not epochs, and reads the sequence lengths off the data.

The rule (``suggest_settings``), from the training sequences of a split:

1. **Kind of data.** ``baskets`` when users take two or more items per step (the median of the
   number of training interactions per user and moment), else ``items``.
2. **History length** ``max_len``: the 90th percentile of the training sequence lengths, rounded
   up to a multiple of 10, between 10 and 200: nine users in ten are read whole, and attention's
   cost (``max_len**2``) is not spent on padding.
3. **Windows.** ``items``: every sequence is cut into windows of ``max_len`` interactions, all of
   them trained on. ``baskets``: each user's last window only (as the course does, so that a few
   users with thousands of lines do not fill every epoch).
4. **Batch size**: the largest power of two that still gives about 50 steps per epoch
   (``n_windows / 50``), between 16 and 128.
5. **Budget**: ``target_steps`` optimisation steps (2000; 20 in smoke mode), so
   ``epochs = ceil(target_steps / steps_per_epoch)``, between 2 and 200. The epoch with the best
   validation NDCG@10 is kept; training stops early only after half the epochs (at least 3) without
   a better one. A sequential model's validation curve often has a long plateau before it starts to
   use the order of items (lesson 12 shows one): a short patience would stop it there.
6. **Objective.** ``items``: full-softmax cross-entropy of the next item at every position, dropout
   0.1, as the full cross-entropy SASRec of Klenitskiy and Vasilev (2023) on MovieLens-1M, with a
   learning rate of 2e-3 (twice theirs: the budget is 2000 steps, not their ~5000). ``baskets``: the
   course's mix of next item (0.5) and next basket (1.0), a bag of items, dropout 0.5, learning rate
   4e-3, as tuned on Online Retail.
7. **Size**: two layers of width 64 with two heads, as in the course and in the published SASRec.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from m6rec_lib.data import Split

TARGET_STEPS = 2000
SMOKE_TARGET_STEPS = 20
COURSE_EPOCHS, COURSE_BATCH = 10, 32
"""The Online Retail defaults (``default_configs``): at most 10 epochs of each customer's last window, batches of 32."""


@dataclass(frozen=True)
class SequentialSettings:
    """What :func:`suggest_settings` chose, and why (``reasons``: one sentence per setting)."""

    kind: str
    max_len: int
    windows_per_user: int | None
    n_windows: int
    batch_size: int
    steps_per_epoch: int
    epochs: int
    patience: int
    lr: float
    dropout: float
    bag: bool
    next_item_weight: float
    next_basket_weight: float
    view: str
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    seed: int = 0
    reasons: dict = field(default_factory=dict, compare=False)

    @property
    def max_steps(self) -> int:
        """Optimisation steps if training runs all its epochs (early stopping may end it sooner)."""
        return self.epochs * self.steps_per_epoch

    def model_config(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~m6rec_lib.models.sasrec.SASRecConfig` (``n_items`` comes from the split)."""
        return dict(max_len=self.max_len, d_model=self.d_model, n_heads=self.n_heads, n_layers=self.n_layers,
                    dropout=self.dropout, attention_dropout=0.0, bag=self.bag)

    def train_config(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~m6rec_lib.models.sasrec.TrainConfig`."""
        return dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                    next_item_weight=self.next_item_weight, next_basket_weight=self.next_basket_weight,
                    new_items_only=self.view == "new", validation_view=self.view,
                    windows_per_customer=self.windows_per_user, seed=self.seed)

    def explain(self) -> pd.DataFrame:
        """One row per setting: its value and the reason (a table for the reader)."""
        values = asdict(self)
        values.pop("reasons")
        values["optimisation steps (at most)"] = self.max_steps
        rows = [{"setting": k, "value": v, "why": self.reasons.get(k, "")} for k, v in values.items()]
        return pd.DataFrame(rows).set_index("setting")


def sequence_lengths(split: Split) -> np.ndarray:
    """Lengths of the training sequences that can teach something (two or more interactions)."""
    lengths = np.array([len(s) for s in split.train_sequences], dtype=np.int64)
    return lengths[lengths >= 2]


def items_per_step(split: Split) -> float:
    """The median number of training interactions per user and moment (1 for one item per step)."""
    return float(split.train.groupby(["user", "invoice"]).size().median())


def count_windows(lengths: np.ndarray, max_len: int, windows_per_user: int | None) -> int:
    """Training windows of ``max_len`` interactions cut from sequences of these lengths (from their ends)."""
    per_user = -(-lengths // max_len)
    if windows_per_user is not None:
        per_user = np.minimum(per_user, windows_per_user)
    return int(per_user.sum())


def course_default_steps(split: Split) -> int:
    """Optimisation steps the Online Retail defaults would give on this split (10 epochs of last windows)."""
    return COURSE_EPOCHS * math.ceil(len(sequence_lengths(split)) / COURSE_BATCH)


def suggest_settings(split: Split, *, view: str = "all", smoke: bool = False, target_steps: int | None = None,
                     seed: int = 0) -> SequentialSettings:
    """The sequential model's settings for ``split``, by the rule in this module's docstring.

    ``view``: the view that picks the best epoch ("all" items, or items "new" to the user);
    ``target_steps``: the budget in optimisation steps (default 2000, 20 in smoke mode).
    """
    if view not in ("all", "new"):
        raise ValueError(f"view must be 'all' or 'new', got {view!r}")
    lengths = sequence_lengths(split)
    if len(lengths) == 0:
        raise ValueError("no training sequence has two interactions: a sequential model has nothing to learn")
    if target_steps is None:
        target_steps = SMOKE_TARGET_STEPS if smoke else TARGET_STEPS
    if target_steps < 1:
        raise ValueError(f"target_steps must be >= 1, got {target_steps}")
    per_step = items_per_step(split)
    kind = "baskets" if per_step >= 2 else "items"
    p90 = float(np.quantile(lengths, 0.9))
    max_len = int(min(200, max(10, 10 * math.ceil(p90 / 10))))
    windows_per_user = 1 if kind == "baskets" else None
    n_windows = count_windows(lengths, max_len, windows_per_user)
    batch_size = int(min(128, max(16, 2 ** math.floor(math.log2(max(1, n_windows / 50))))))
    steps_per_epoch = math.ceil(n_windows / batch_size)
    epochs = int(min(200, max(2, math.ceil(target_steps / steps_per_epoch))))
    if smoke:
        epochs = min(epochs, 2)
    patience = max(3, math.ceil(epochs / 2))
    baskets = kind == "baskets"
    reasons = {
        "kind": f"median {per_step:g} interaction(s) per user and moment",
        "max_len": f"90% of the {len(lengths):,} training sequences have at most {p90:.0f} interactions",
        "windows_per_user": "last window only, as on Online Retail" if baskets else "every window of every sequence",
        "n_windows": f"windows of {max_len} interactions",
        "batch_size": "about 50 steps per epoch, between 16 and 128",
        "steps_per_epoch": f"{n_windows:,} windows / {batch_size}",
        "epochs": f"{target_steps:,} target steps / {steps_per_epoch} steps per epoch, between 2 and 200",
        "patience": "half the epochs, at least 3: do not stop on a plateau",
        "lr": "Online Retail's" if baskets else "twice the published 1e-3, for 2000 steps instead of ~5000",
        "dropout": "Online Retail's" if baskets else "the published full cross-entropy SASRec's (ML-1M)",
        "bag": "a bag of items helps baskets (notebook 05)" if baskets else "order carries the signal",
        "next_item_weight": "next item and next basket, as on Online Retail" if baskets else "next item only",
        "view": "the view that selects the best epoch",
    }
    return SequentialSettings(
        kind=kind, max_len=max_len, windows_per_user=windows_per_user, n_windows=n_windows,
        batch_size=batch_size, steps_per_epoch=steps_per_epoch, epochs=epochs, patience=patience,
        lr=4e-3 if baskets else 2e-3, dropout=0.5 if baskets else 0.1, bag=baskets,
        next_item_weight=0.5 if baskets else 1.0, next_basket_weight=1.0 if baskets else 0.0,
        view=view, seed=seed, reasons=reasons,
    )
