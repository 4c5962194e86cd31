"""The evaluation set: who is evaluated, on what target basket, from what history."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

PARTS = ("first half", "second half", "all")
"""What :meth:`EvalSet.part` can return: one of the two seeded halves, or the whole set."""


@dataclass(frozen=True)
class EvalSet:
    """One evaluation moment per evaluated customer.

    Attributes
    ----------
    users : (n_eval,) int array
        Row indices (into ``history`` and into score matrices) of the evaluated customers.
    targets : list of n_eval int arrays
        The item IDs of each customer's target basket (unique, no padding). A target that is not in
        the item index is stored as ``-1``: it stays in the denominator and can never be hit.
    history : csr_matrix, shape (n_users, n_items + 1)
        Purchase counts of each user strictly before their evaluation moment (rows of users that are
        not evaluated may be empty). Column 0 (padding) is always empty.
    sequences : list of n_eval int arrays
        Each evaluated customer's item IDs before the evaluation moment, oldest first (one entry per
        purchase line; items unknown to the index are dropped).
    moments : (n_eval,) datetime64 array
        The evaluation moment (the target basket's time) of each customer.
    name : str
        A label such as ``"validation"`` or ``"test"``.
    """

    users: np.ndarray
    targets: list[np.ndarray]
    history: sp.csr_matrix
    sequences: list[np.ndarray]
    moments: np.ndarray
    name: str = "eval"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.users)
        for attr in ("targets", "sequences", "moments"):
            if len(getattr(self, attr)) != n:
                raise ValueError(
                    f"EvalSet {self.name!r}: {attr} has {len(getattr(self, attr))} entries but "
                    f"there are {n} users; build it with one entry per evaluated user."
                )

    def __len__(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Number of real items (the padding column excluded)."""
        return self.history.shape[1] - 1

    def subset(self, mask: np.ndarray, name: str | None = None) -> "EvalSet":
        """The evaluation set restricted to the customers where ``mask`` (n_eval,) is True."""
        mask = np.asarray(mask, dtype=bool)
        idx = np.flatnonzero(mask)
        return EvalSet(
            users=self.users[idx],
            targets=[self.targets[i] for i in idx],
            history=self.history,
            sequences=[self.sequences[i] for i in idx],
            moments=self.moments[idx],
            name=name or self.name,
            info=dict(self.info),
        )

    def halves(self, seed: int = 0) -> tuple["EvalSet", "EvalSet"]:
        """Two disjoint halves of the evaluated customers, drawn at random: ``(first, second)``.

        Each customer lands in exactly one half; the halves differ in size by at most one (the first
        holds the extra one) and keep the customers' order. The same ``seed`` gives the same halves.
        Two halves let two choices be made blind to each other: e.g. a model's epochs are chosen on
        the first half, and what is tuned on top of that model (blend weights) on the second, which
        the model never saw.
        """
        n = len(self)
        if n < 2:
            raise ValueError(f"EvalSet {self.name!r} has {n} customer(s); halves need at least 2")
        order = np.random.default_rng([seed, n]).permutation(n)
        in_first = np.zeros(n, dtype=bool)
        in_first[order[:(n + 1) // 2]] = True
        return (self.subset(in_first, name=f"{self.name} (first half)"),
                self.subset(~in_first, name=f"{self.name} (second half)"))

    def part(self, which: str = "all", seed: int = 0) -> "EvalSet":
        """``"first half"`` or ``"second half"`` of :meth:`halves` (same ``seed``), or ``"all"`` (self)."""
        if which not in PARTS:
            raise ValueError(f"which must be one of {PARTS}, got {which!r}")
        if which == "all":
            return self
        return self.halves(seed)[PARTS.index(which)]
