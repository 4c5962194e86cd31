"""Leakage-safe integer IDs for items and users.

Item IDs are a seeded random permutation of the stock codes, not the order in which products first
appear: sequential IDs would tell a model which products are new (an ID leak of time order).
ID 0 is reserved for padding in every sequence and every score matrix.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from .retail import DataError

PAD_ID = 0
UNKNOWN_ID = -1


class ItemIndex:
    """Stock code <-> item ID (1..n_items), with each item's text.

    Parameters
    ----------
    codes : iterable of str
        The catalogue (duplicates are ignored).
    descriptions : mapping stock code -> text, optional
        Each item's text (``m6rec_lib.data.item_descriptions``).
    seed : int
        Seed of the ID permutation.
    """

    def __init__(self, codes: Iterable[str], descriptions: pd.Series | dict | None = None, seed: int = 0):
        unique = np.array(sorted(set(map(str, codes))), dtype=object)
        if len(unique) == 0:
            raise DataError("ItemIndex needs at least one item; the training lines are empty.")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(unique))
        self.codes: np.ndarray = np.empty(len(unique) + 1, dtype=object)  # id -> code
        self.codes[0] = "<pad>"
        self.codes[1:] = unique[order]
        self._id_of = pd.Series(np.arange(1, len(unique) + 1), index=pd.Index(self.codes[1:]))
        self.seed = seed
        desc = pd.Series(descriptions) if descriptions is not None else pd.Series(dtype=object)
        texts = desc.reindex(self.codes[1:]).to_numpy(dtype=object, copy=True)
        missing = pd.isna(texts)
        texts[missing] = self.codes[1:][missing]  # fall back to the code itself
        self.texts: np.ndarray = np.concatenate([np.array([""], dtype=object), texts])

    @property
    def n_items(self) -> int:
        """Number of real items; score matrices have ``n_items + 1`` columns."""
        return len(self.codes) - 1

    def __len__(self) -> int:
        return self.n_items

    def __contains__(self, code: str) -> bool:
        return code in self._id_of.index

    def ids(self, codes: Iterable[str] | pd.Series, unknown: str = "raise") -> np.ndarray:
        """Item IDs of ``codes``; ``unknown="raise"`` (default) or ``"minus_one"`` for missing codes."""
        codes = pd.Series(codes, dtype=object)
        out = self._id_of.reindex(codes.to_numpy()).to_numpy()
        bad = pd.isna(out)
        if bad.any():
            if unknown == "raise":
                examples = list(codes[bad].unique()[:5])
                raise KeyError(
                    f"{int(bad.sum())} stock code(s) are not in the item index, e.g. {examples}; "
                    "they were never sold in the training period. Pass unknown='minus_one' to map "
                    "them to -1, or build the index from lines that include them."
                )
            if unknown != "minus_one":
                raise ValueError(f"unknown must be 'raise' or 'minus_one', not {unknown!r}")
            out = np.where(bad, UNKNOWN_ID, out)
        return out.astype(np.int64)

    def code(self, item_id: int) -> str:
        """The stock code of one item ID."""
        self._check_id(item_id)
        return str(self.codes[item_id])

    def text(self, item_id: int) -> str:
        """The description of one item ID."""
        self._check_id(item_id)
        return str(self.texts[item_id])

    def _check_id(self, item_id: int) -> None:
        if not 1 <= int(item_id) <= self.n_items:
            raise KeyError(f"item ID {item_id} is not in 1..{self.n_items} (0 is padding)")

    def __repr__(self) -> str:
        return f"ItemIndex(n_items={self.n_items}, seed={self.seed})"


class UserIndex:
    """Customer ID <-> row index (0..n_users-1), a seeded permutation as for items."""

    def __init__(self, customer_ids: Iterable[int], seed: int = 0):
        unique = np.array(sorted(set(int(c) for c in customer_ids)), dtype=np.int64)
        if len(unique) == 0:
            raise DataError("UserIndex needs at least one customer.")
        rng = np.random.default_rng(seed + 1)
        self.customer_ids: np.ndarray = unique[rng.permutation(len(unique))]
        self._row_of = pd.Series(np.arange(len(unique)), index=pd.Index(self.customer_ids))

    @property
    def n_users(self) -> int:
        return len(self.customer_ids)

    def __len__(self) -> int:
        return self.n_users

    def __contains__(self, customer_id: int) -> bool:
        return int(customer_id) in self._row_of.index

    def rows(self, customer_ids: Iterable[int]) -> np.ndarray:
        """Row indices of ``customer_ids``; raises KeyError naming unknown customers."""
        ids = np.asarray(list(customer_ids), dtype=np.int64)
        out = self._row_of.reindex(ids).to_numpy()
        bad = pd.isna(out)
        if bad.any():
            raise KeyError(
                f"unknown customer(s) {ids[bad][:5].tolist()}: they have no purchase in the cleaned "
                "data. Check the ID (an integer such as 12347) or pick one from the data."
            )
        return out.astype(np.int64)

    def __repr__(self) -> str:
        return f"UserIndex(n_users={self.n_users})"
