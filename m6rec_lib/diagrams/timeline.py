"""The course's time cuts on one calendar: which model reads which months, and which are judged.

Every date comes from the library itself (the defaults of the split functions, the click task's
configuration, the pretraining constants), so the picture cannot drift from the code::

    from m6rec_lib.diagrams.timeline import course_periods, timeline
    course_periods()      # a table: protocol, role, start, end, notebooks
    timeline()            # the figure
"""

from __future__ import annotations

import inspect

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.figure import Figure

from . import COLORS, finish

ROLE_COLORS = {"train": COLORS["model"], "pretraining text": COLORS["accent"], "validation": COLORS["task"],
               "test": COLORS["warn"], "evaluation (leave-one-out)": COLORS["frozen"]}


def _default(fn, name: str) -> pd.Timestamp:
    return pd.Timestamp(inspect.signature(fn).parameters[name].default)


def course_periods() -> pd.DataFrame:
    """Every period of every protocol of the course, read from the library's constants.

    Columns: ``protocol``, ``role`` (train, pretraining text, validation, test, evaluation),
    ``start`` (inclusive), ``end`` (exclusive), ``notebooks``. End dates are the first day *not*
    included: "train to 2011-09-30" is ``end = 2011-10-01``.
    """
    from m6rec_lib import pretraining as pt
    from m6rec_lib.click_task import PairTaskConfig
    from m6rec_lib.data.splits import DATA_END, invoice_sequence_split, next_basket_split, year_cut_split

    start = pd.Timestamp("2009-12-01")
    val_start, test_start = _default(next_basket_split, "val_start"), _default(next_basket_split, "test_start")
    cut, cold_test = _default(year_cut_split, "cut"), _default(year_cut_split, "test_start")
    published_start = _default(invoice_sequence_split, "start")
    year1_cut, main_cut = pd.Timestamp(pt.YEAR1_CUT), pd.Timestamp(pt.MAIN_CUT)
    examples_from = pt.default_continued(False).examples_from
    click_from = pd.Timestamp(PairTaskConfig.train_from)
    rows = [
        ("GPT, year-1 stage", "pretraining text", start, year1_cut, "04, 08"),
        ("GPT, main stage", "pretraining text",
         pd.Timestamp(examples_from) if examples_from else start, main_cut, "04, 05, 07, 09, 10, 11"),
        ("main split (next basket)", "train", start, val_start, "01, 02, 05, 06, 07, 09, 10, 11"),
        ("main split (next basket)", "validation", val_start, test_start, "01, 02, 05, 06, 07, 09, 10, 11"),
        ("main split (next basket)", "test", test_start, DATA_END, "01, 02, 05, 06, 07, 09, 10, 11"),
        ("click task (pairs)", "train", click_from, val_start, "07, 10, 11"),
        ("click task (pairs)", "validation", val_start, test_start, "07, 10, 11"),
        ("click task (pairs)", "test", test_start, DATA_END, "07, 10, 11"),
        ("year-cut split (cold start)", "train", start, cut, "08"),
        ("year-cut split (cold start)", "validation", cut, cold_test, "08"),
        ("year-cut split (cold start)", "test", cold_test, DATA_END, "08"),
        ("published protocol (invoices)", "evaluation (leave-one-out)", published_start, DATA_END, "05"),
    ]
    return pd.DataFrame(rows, columns=["protocol", "role", "start", "end", "notebooks"])


def timeline(periods: pd.DataFrame | None = None, *, width: float = 11.0) -> Figure:
    """One row per protocol, one coloured bar per period, a dashed line at every cut.

    ``periods``: default :func:`course_periods`. The main stage's pretraining text also reaches
    back to the start of the data (histories written at its invoices); its bar shows the months
    whose invoices become examples, the hatched part the older history they read.
    """
    import matplotlib.pyplot as plt

    periods = course_periods() if periods is None else periods
    protocols = list(dict.fromkeys(periods["protocol"]))
    fig, ax = plt.subplots(figsize=(width, 0.55 * len(protocols) + 1.4))
    data_start = periods["start"].min()
    for row, protocol in enumerate(protocols):
        y = len(protocols) - 1 - row
        for _, p in periods[periods["protocol"] == protocol].iterrows():
            left, span = mdates.date2num(p["start"]), mdates.date2num(p["end"]) - mdates.date2num(p["start"])
            ax.barh(y, span, left=left, height=0.6, color=ROLE_COLORS.get(p["role"], COLORS["input"]),
                    edgecolor="0.35", lw=0.8)
            ax.text(left + span / 2, y, p["role"], ha="center", va="center", fontsize=7.5)
        if protocol == "GPT, main stage" and periods.loc[periods["protocol"] == protocol, "start"].min() > data_start:
            first = periods.loc[periods["protocol"] == protocol, "start"].min()
            ax.barh(y, mdates.date2num(first) - mdates.date2num(data_start), left=mdates.date2num(data_start),
                    height=0.6, color="white", edgecolor="0.55", hatch="///", lw=0.6)
            ax.text(mdates.date2num(data_start) + 5, y, "older history", ha="left", va="center", fontsize=7, color="0.3")
    cuts = sorted(set(periods["start"]) | set(periods["end"]))
    for c in cuts:
        if c in (data_start, periods["end"].max()):
            continue
        ax.axvline(mdates.date2num(c), color="0.5", ls="--", lw=0.7, zorder=0)
    ax.set_yticks(range(len(protocols)))
    ax.set_yticklabels(protocols[::-1], fontsize=8.5)
    ax.set_xticks([mdates.date2num(c) for c in cuts])
    ax.set_xticklabels([c.strftime("%Y-%m-%d") for c in cuts], rotation=40, ha="right", fontsize=7.5)
    ax.set_xlim(mdates.date2num(data_start), mdates.date2num(periods["end"].max()))
    ax.set_title("Every time cut of the course (end dates exclusive: a bar ending at 2011-10-01 stops on 30 Sept.)",
                 fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return finish(fig)


__all__ = ["course_periods", "timeline", "ROLE_COLORS"]
