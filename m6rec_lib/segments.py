"""Evaluating by segment: which customers and which products a recommender serves well.

One number per model hides where it wins. A segment is a part of an evaluation set, chosen before
looking at any model's scores:

* **views** (notebook 01): *all items* (the whole basket) and *new to the customer* (the basket's
  products the customer never bought before, ranked with their own products left out);
* **history length**: customers with at most the median number of past purchase lines (*short*)
  and those with more (*long*), the median taken over the evaluated customers;
* **product age**: targets on products sold in the training period (*old products*) and on products
  first sold after it (*new products*; see :mod:`m6rec_lib.new_products`), each with the customers
  that have such a target, in the *new to the customer* view: a list that ranks every own product
  first (Buy-Again's habit, which the capstone's tuning adopts) has no room for anything else in
  its top 10, so product age is measured where products compete for discovery.

:func:`segment_values` gives every customer's metric per segment (NaN where a customer is not in it),
:func:`segment_table` the means, and :func:`segment_comparisons` a paired bootstrap interval for one
model against another in every segment (:func:`m6rec_lib.metrics.paired_bootstrap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .data import EvalSet
from .metrics import PairedDifference, paired_bootstrap, per_user_metrics
from .new_products import targets_among

__all__ = ["Segment", "segments", "segment_values", "segment_table", "segment_comparisons", "ablation_table"]


@dataclass
class Segment:
    """A part of an evaluation set: its ``eval_set``, the ``positions`` of its customers in the whole
    set, the view (``exclude_seen``) and a one-line ``definition``."""

    name: str
    eval_set: EvalSet
    positions: np.ndarray
    exclude_seen: bool
    definition: str
    whole: EvalSet | None = None   # set when the segment keeps the whole set's targets: values are sliced from it


def segments(eval_set: EvalSet, is_new: np.ndarray) -> list[Segment]:
    """The six segments of the module docstring for ``eval_set`` (over a catalogue whose new
    products are ``is_new``, (n_items + 1,) bool)."""
    n = len(eval_set)
    everyone = np.arange(n)
    lengths = np.array([len(s) for s in eval_set.sequences])
    median = float(np.median(lengths)) if n else 0.0
    short = lengths <= median
    old_t = targets_among(eval_set, ~np.asarray(is_new, dtype=bool) & (np.arange(len(is_new)) > 0), name="old products")
    new_t = targets_among(eval_set, is_new, name="new products")
    return [
        Segment("all items", eval_set, everyone, False, "every customer, the whole basket", whole=eval_set),
        Segment("new to the customer", eval_set, everyone, True,
                "the basket's products the customer never bought, own products left out of the ranking", whole=eval_set),
        Segment("short history", eval_set.subset(short, name="short history"), np.flatnonzero(short), False,
                f"customers with at most {median:g} past purchase lines (the median)", whole=eval_set),
        Segment("long history", eval_set.subset(~short, name="long history"), np.flatnonzero(~short), False,
                f"customers with more than {median:g} past purchase lines", whole=eval_set),
        Segment("old products", old_t, old_t.info["positions"], True,
                "targets on products sold in the training period, new to the customer"),
        Segment("new products", new_t, new_t.info["positions"], True,
                "targets on products first sold after the training period, new to the customer"),
    ]


def segment_values(scores: np.ndarray, segs: Sequence[Segment], metric: str = "NDCG@10") -> dict[str, np.ndarray]:
    """Per segment, every customer's ``metric`` (an array over the segment's customers; NaN where the
    view leaves the customer out). ``scores``: (len(whole eval set), n_items + 1)."""
    k = int(metric.split("@")[1]) if "@" in metric else 10
    scores = np.asarray(scores)
    sliced: dict[tuple[int, bool], np.ndarray] = {}   # (whole set, view) -> every customer's values
    out = {}
    for seg in segs:
        if len(seg.eval_set) == 0:
            out[seg.name] = np.zeros(0)
        elif seg.whole is not None:
            key = (id(seg.whole), seg.exclude_seen)
            if key not in sliced:
                sliced[key] = per_user_metrics(scores, seg.whole, ks=(k,), exclude_seen=seg.exclude_seen)[
                    metric].to_numpy(dtype=np.float64)
            out[seg.name] = sliced[key][seg.positions]
        else:
            vals = per_user_metrics(scores[seg.positions], seg.eval_set, ks=(k,), exclude_seen=seg.exclude_seen)
            out[seg.name] = vals[metric].to_numpy(dtype=np.float64)
    return out


def segment_table(values: Mapping[str, Mapping[str, np.ndarray]], segs: Sequence[Segment]) -> pd.DataFrame:
    """Models x segments: the mean of each model's per-customer values (:func:`segment_values`), and
    a last row with the number of customers per segment."""
    table = pd.DataFrame({seg.name: {m: float(np.nanmean(v[seg.name])) if np.isfinite(v[seg.name]).any() else np.nan
                                     for m, v in values.items()} for seg in segs})
    first = next(iter(values.values()))
    table.loc["customers"] = [int(np.isfinite(first[seg.name]).sum()) for seg in segs]
    return table


def segment_comparisons(values: Mapping[str, Mapping[str, np.ndarray]], a: str, b: str, segs: Sequence[Segment],
                        metric: str = "NDCG@10", seed: int = 0) -> list[PairedDifference]:
    """``a`` vs ``b`` in every segment: a paired bootstrap over the segment's customers."""
    out = []
    for seg in segs:
        out.append(paired_bootstrap(values[a][seg.name], values[b][seg.name], metric=metric, names=(a, b),
                                    view=seg.name, seed=seed))
    return out


def ablation_table(reference: Mapping[str, np.ndarray], variants, segs: Sequence[Segment],
                   shown: Sequence[str] = ("all items", "new to the customer", "new products"),
                   metric: str = "NDCG@10", seed: int = 0) -> pd.DataFrame:
    """What each part contributes: reference minus variant, per segment, with its paired interval.

    ``reference``: :func:`segment_values` of the full recommender; ``variants``: ``(name, scores)``
    pairs (e.g. :meth:`m6rec_lib.recommender.Recommender.ablations`, whose first item, the
    recommender itself, is skipped when named "capstone"). One row per variant; per segment of
    ``shown``, the difference and its interval as ``"+0.0123 [+0.0040, +0.0210]"``, and the verdict.
    """
    by_name = {s.name: s for s in segs}
    rows = {}
    for name, scores in variants:
        if name == "capstone":
            continue
        wanted = [by_name[s] for s in shown]
        v = segment_values(scores, wanted, metric)
        row = {}
        for seg in wanted:
            d = paired_bootstrap(reference[seg.name], v[seg.name], metric=metric, names=("full", name), view=seg.name,
                                 seed=seed)
            row[seg.name] = f"{d.diff:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"
            row[f"{seg.name}: verdict"] = {"a": "it helps", "b": "it hurts", "none": "no measurable difference"}[d.outcome]
        rows[name.removeprefix("without ")] = row
    return pd.DataFrame(rows).T.rename_axis("taken out")
