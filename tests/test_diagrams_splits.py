"""The time-split diagram of notebook 01."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
from matplotlib.figure import Figure

from m6rec_lib.diagrams.splits import time_split


def _texts(fig: Figure) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_time_split_draws_both_protocols():
    fig = time_split()
    assert isinstance(fig, Figure)
    text = _texts(fig)
    assert "global time split" in text and "leave-last-basket-out" in text
    assert "val" in text and "test" in text and "the future leaks in" in text


def test_time_split_alone_is_shorter():
    both, alone = time_split(), time_split(leave_last_out=False)
    assert alone.get_size_inches()[1] < both.get_size_inches()[1]
    assert "leave-last-basket-out" not in _texts(alone)


def test_time_split_rejects_dates_out_of_order():
    with pytest.raises(ValueError, match="val_start < test_start"):
        time_split(val_start="2011-11-01", test_start="2011-10-01")
