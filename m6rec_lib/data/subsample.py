"""Smaller versions of the data for smoke runs and quick experiments.

Smoke mode must run the same code as full mode, only smaller. The cost of most models grows with the
number of products (EASE inverts an items x items matrix), so the handle here is the catalogue size:
keep the lines of the ``n_items`` products with the most distinct buyers before ``before``, and of a
seeded random sample of ``n_customers`` customers. Popularity is measured before ``before`` (the
main split's validation start by default) so that the subset itself does not peek at test baskets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .retail import DataError


def subsample_lines(
    lines: pd.DataFrame,
    n_items: int | None = None,
    n_customers: int | None = None,
    before: str = "2011-10-01",
    seed: int = 0,
) -> pd.DataFrame:
    """Clean lines restricted to the most bought products and/or a random set of customers.

    ``None`` keeps everything along that axis. Returns a new DataFrame in the original order.
    """
    if n_items is not None and n_items < 1:
        raise ValueError(f"n_items must be >= 1 or None, got {n_items}")
    if n_customers is not None and n_customers < 1:
        raise ValueError(f"n_customers must be >= 1 or None, got {n_customers}")
    out = lines
    if n_customers is not None:
        customers = np.sort(out["customer_id"].unique())
        if n_customers < len(customers):
            rng = np.random.default_rng(seed)
            keep = rng.choice(customers, size=n_customers, replace=False)
            out = out[out["customer_id"].isin(keep)]
    if n_items is not None:
        early = out[out["invoice_date"] < pd.Timestamp(before)]
        buyers = early.groupby("stock_code")["customer_id"].nunique().sort_values(ascending=False, kind="stable")
        out = out[out["stock_code"].isin(buyers.index[:n_items])]
    if len(out) == 0:
        raise DataError("the subsample is empty; ask for more items or customers")
    return out.reset_index(drop=True)
