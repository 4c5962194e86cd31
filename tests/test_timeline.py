"""The diagrams of notebook 04: the course's time cuts (read from the library) and the attention masks."""

from __future__ import annotations

import inspect

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from m6rec_lib import pretraining as pt  # noqa: E402
from m6rec_lib.click_task import PairTaskConfig  # noqa: E402
from m6rec_lib.data.splits import DATA_END, invoice_sequence_split, next_basket_split, year_cut_split  # noqa: E402
from m6rec_lib.diagrams import attention, timeline  # noqa: E402


def _default(fn, name):
    return pd.Timestamp(inspect.signature(fn).parameters[name].default)


def test_periods_come_from_the_library():
    p = timeline.course_periods().set_index(["protocol", "role"])
    assert p.loc[("main split (next basket)", "validation"), "start"] == _default(next_basket_split, "val_start")
    assert p.loc[("main split (next basket)", "test"), "start"] == _default(next_basket_split, "test_start")
    assert p.loc[("main split (next basket)", "test"), "end"] == DATA_END
    assert p.loc[("year-cut split (cold start)", "validation"), "start"] == _default(year_cut_split, "cut")
    assert p.loc[("year-cut split (cold start)", "test"), "start"] == _default(year_cut_split, "test_start")
    assert p.loc[("click task (pairs)", "train"), "start"] == pd.Timestamp(PairTaskConfig.train_from)
    assert p.loc[("published protocol (invoices)", "evaluation (leave-one-out)"), "start"] == _default(
        invoice_sequence_split, "start")
    assert p.loc[("GPT, year-1 stage", "pretraining text"), "end"] == pd.Timestamp(pt.YEAR1_CUT)
    assert p.loc[("GPT, main stage", "pretraining text"), "end"] == pd.Timestamp(pt.MAIN_CUT)
    assert (p["start"] < p["end"]).all()


def test_timeline_draws_every_protocol():
    fig = timeline.timeline()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert set(labels) == set(timeline.course_periods()["protocol"])
    assert "2011-10-01" in [t.get_text() for t in ax.get_xticklabels()]


def test_masks():
    causal = attention.mask_matrix(6)
    assert np.array_equal(causal, np.tril(np.ones((6, 6), dtype=bool)))
    prefix = attention.mask_matrix(6, prefix_length=4)
    assert prefix[:4, :4].all() and np.array_equal(prefix[4:], causal[4:]) and not prefix[1, 4]
    fig = attention.attention_masks()
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="prefix_length"):
        attention.attention_masks(prefix_length=0)
    w = np.tril(np.ones((5, 5))) / np.arange(1, 6)[:, None]
    assert attention.attention_weights(w, list("abcde")).axes
    with pytest.raises(ValueError, match="weights must be"):
        attention.attention_weights(w[:4], list("abcde"))
    assert attention.attention_flow().axes
