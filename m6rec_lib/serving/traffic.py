"""Realistic traffic to serve: customers visiting the shop in time order, each looking at a few pages.

A late-interaction cache pays off only when requests repeat segments, so its hit rate must be
measured on traffic that looks like a shop's: the same customer comes back (their old invoices
repeat), every history ends with the same prompt, and every page shows products from one catalogue.
:func:`replay_traffic` builds such a stream from real invoices: the chosen customers' first
``visits`` invoice moments from ``start`` on, ``views`` pages per visit, each page a slate of
``candidates`` products drawn in proportion to their number of buyers (like a page of suggestions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..click_task import history_token_ids
from ..text import serializer as ser
from .segments import RequestBatch, segments_from_tokens

if TYPE_CHECKING:
    from ..data import Split
    from ..text.tokenizer import BehaviourTokenizer

__all__ = ["catalogue_tokens", "replay_traffic"]


def catalogue_tokens(split: "Split", tokenizer: "BehaviourTokenizer", max_tokens: int) -> list[tuple[int, ...]]:
    """Every product's candidate text as token IDs, indexed by item ID (entry 0, the padding ID, is empty)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    texts = [ser.candidate_text(split.items.text(i)) for i in range(1, split.n_items + 1)]
    return [()] + [tuple(tokenizer.encode(t)[:max_tokens]) for t in texts]


def replay_traffic(
    lines: pd.DataFrame,
    split: "Split",
    tokenizer: "BehaviourTokenizer",
    customer_ids: Sequence[int],
    item_tokens: Sequence[tuple[int, ...]],
    *,
    start,
    max_history_tokens: int,
    visits: int = 2,
    views: int = 2,
    candidates: int = 100,
    seed: int = 0,
) -> list[RequestBatch]:
    """One :class:`RequestBatch` per page view, in time order (ties: customer, then view).

    ``customer_ids``: who visits; ``item_tokens``: from :func:`catalogue_tokens`; ``start``: the first
    moment of the stream (e.g. the test period's). Histories are written as the click task writes
    them (:func:`m6rec_lib.click_task.history_token_ids`, lines strictly before each visit, at most
    ``max_history_tokens`` tokens) and cut into segments.
    """
    if min(visits, views, candidates) < 1:
        raise ValueError(f"visits, views and candidates must be >= 1, got {visits}, {views}, {candidates}")
    buyers = np.asarray((split.train_matrix > 0).sum(axis=0), dtype=np.float64).ravel()
    buyers[0] = 0.0
    if candidates > int((buyers > 0).sum()):
        raise ValueError(f"candidates={candidates} exceeds the {int((buyers > 0).sum())} products bought in training")
    mine = lines[lines["customer_id"].isin([int(c) for c in customer_ids]) & (lines["invoice_date"] >= pd.Timestamp(start))]
    moments = (mine.drop_duplicates(["customer_id", "invoice_date"]).sort_values("invoice_date", kind="stable")
               .groupby("customer_id").head(visits))
    if moments.empty:
        raise ValueError(f"none of the {len(customer_ids)} customers bought anything from {start}; pick test customers")
    descriptions = dict(zip(split.items.codes[1:], split.items.texts[1:]))
    ids, _ = history_token_ids(lines, moments["customer_id"].to_numpy(), moments["invoice_date"].to_numpy(), tokenizer,
                               max_history_tokens, descriptions)
    visits_ = [(moment, int(cid), segments_from_tokens(hist, tokenizer))
               for cid, moment, hist in zip(moments["customer_id"], moments["invoice_date"], ids)]
    events = sorted(((moment, cid, view, segments) for moment, cid, segments in visits_ for view in range(views)),
                    key=lambda e: e[:3])
    rng = np.random.default_rng(seed)
    requests = []
    for _, _, _, segments in events:
        slate = rng.choice(len(buyers), candidates, replace=False, p=buyers / buyers.sum())
        requests.append(RequestBatch.single(segments, [item_tokens[int(i)] for i in slate]))
    return requests
