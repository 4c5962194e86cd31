"""The latency-versus-quality table of notebook 10, in the shape of M6-Rec's Table 6, with intervals.

Each serving variant (:class:`Variant`) brings its test scores and what it costs to store; the
interleaved timing (:func:`m6rec_lib.serving.latency.compare_latency`) brings its per-request
milliseconds and work. :func:`variant_table` puts them in one frame, each variant against a
reference (the full model) with two paired intervals: the AUC difference (customers resampled,
:func:`m6rec_lib.metrics.paired_bootstrap_auc`) and the milliseconds saved per request (requests
resampled, :func:`m6rec_lib.serving.latency.latency_difference`). :func:`plot_latency_quality`
draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..metrics import PairedDifference, bootstrap_auc, paired_bootstrap_auc
from .latency import Latency, latency_difference

__all__ = ["Variant", "variant_table", "readable_table", "plot_latency_quality"]


@dataclass
class Variant:
    """One way to serve the scorer.

    ``layers_per_request``: blocks run per request (the lower layers of late interaction are run
    once per segment, not per request); ``parameters`` (each shared tensor once) and ``size_bytes``
    (on disk) of what must be stored; ``scores``: (n_pairs,) its scores of the test pairs.
    """

    layers_per_request: int
    parameters: int
    size_bytes: int
    scores: np.ndarray


def variant_table(
    variants: Mapping[str, Variant],
    latency: Mapping[str, Latency],
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    reference: str = "full",
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, dict[str, PairedDifference]]]:
    """One row per variant: cost, latency, AUC with its interval, and both differences to ``reference``.

    ``labels``, ``groups``: (n_pairs,) 0/1 labels and customer-moment ids of the test pairs (the
    bootstrap resamples groups). Returns the frame and ``{variant: {"auc": d, "latency": d}}``, the
    paired comparisons against ``reference`` (absent for the reference itself).
    """
    if reference not in variants:
        raise KeyError(f"the reference {reference!r} is not among the variants {sorted(variants)}")
    missing = sorted(set(variants) - set(latency))
    if missing:
        raise KeyError(f"no latency measured for {missing}; time every variant with compare_latency")
    ref = variants[reference]
    rows, comparisons = [], {}
    for name, v in variants.items():
        if len(v.scores) != len(labels):
            raise ValueError(f"{name}: {len(v.scores)} scores for {len(labels)} test pairs")
        quality = bootstrap_auc(labels, v.scores, groups, n_boot=n_boot, seed=seed)
        lat = latency[name]
        row = {"variant": name, "layers per request": v.layers_per_request, "parameters": v.parameters,
               "size MB": v.size_bytes / 1e6, "work per request": lat.mean_work, "p50 ms": lat.p50_ms,
               "p95 ms": lat.p95_ms, "AUC": quality.value, "AUC low": quality.low, "AUC high": quality.high}
        if name != reference:
            d_auc = paired_bootstrap_auc(labels, v.scores, ref.scores, groups, names=(name, reference),
                                         view="test", n_boot=n_boot, seed=seed)
            d_lat = latency_difference(latency, name, reference, seed=seed)
            comparisons[name] = {"auc": d_auc, "latency": d_lat}
            row.update({"AUC - full": d_auc.diff, "AUC diff low": d_auc.low, "AUC diff high": d_auc.high,
                        "AUC vs full": {"a": "better", "b": "worse", "none": "no measurable difference"}[d_auc.outcome],
                        "ms saved": d_lat.diff, "ms saved low": d_lat.low, "ms saved high": d_lat.high,
                        "time vs full": {"a": "faster", "b": "slower", "none": "no measurable difference"}[d_lat.outcome]})
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant"), comparisons


def readable_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`variant_table`'s frame for reading: each number with its interval in one column.

    Columns: layers / request, parameters, size MB, work / request, p50 and p95 ms, AUC [95%],
    AUC - full [95%] with its verdict, ms saved [95%] with its verdict (blank for the reference).
    """
    def interval(v, lo, hi, digits):
        return "" if pd.isna(v) else f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"

    has_ref = "AUC - full" in table.columns
    out = pd.DataFrame(index=table.index)
    out["layers / request"] = table["layers per request"]
    out["parameters"] = table["parameters"].map("{:,.0f}".format)
    out["size MB"] = table["size MB"].round(2)
    out["work / request"] = table["work per request"].map(lambda w: "" if pd.isna(w) else f"{w:,.0f}")
    out["p50 ms"], out["p95 ms"] = table["p50 ms"].round(1), table["p95 ms"].round(1)
    out["AUC [95%]"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in table[["AUC", "AUC low", "AUC high"]].to_numpy()]
    if has_ref:
        out["AUC - full [95%]"] = [interval(*r, 3) for r in table[["AUC - full", "AUC diff low", "AUC diff high"]].to_numpy()]
        out["AUC vs full"] = table["AUC vs full"].fillna("")
        out["ms saved [95%]"] = [interval(*r, 1) for r in table[["ms saved", "ms saved low", "ms saved high"]].to_numpy()]
        out["time vs full"] = table["time vs full"].fillna("")
    return out


def plot_latency_quality(table: pd.DataFrame, *, title: str = "latency vs quality") -> Figure:
    """Median latency (x) against AUC with its 95% interval (y), one labelled point per variant."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for name, r in table.iterrows():
        ax.errorbar(r["p50 ms"], r["AUC"], yerr=[[r["AUC"] - r["AUC low"]], [r["AUC high"] - r["AUC"]]],
                    fmt="o", capsize=3)
        ax.annotate(name, (r["p50 ms"], r["AUC"]), textcoords="offset points", xytext=(5, 3), fontsize=7.5)
    ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("median latency per request (ms, one thread)")
    ax.set_ylabel("test AUC (95% interval)")
    ax.set_title(title)
    fig.tight_layout()
    plt.close(fig)
    return fig
