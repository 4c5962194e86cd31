"""The behaviour-as-text diagrams of notebooks 00 and 03."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
from matplotlib.figure import Figure

from m6rec_lib.diagrams.text import COURSE_TASKS, course_picture, history_segments


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_course_picture_names_every_task():
    texts = _texts(course_picture())
    for task in COURSE_TASKS:
        assert task in texts
    with pytest.raises(ValueError):
        course_picture(tasks=[])


def test_history_segments_shows_kinds_and_token_counts():
    segments = ["A customer from France.", " Last week bought JUMBO BAG RED RETROSPOT x10.", " Now buys",
                " REGENCY CAKESTAND 3 TIER"]
    kinds = ["profile", "invoice", "prompt", "candidate"]
    texts = _texts(history_segments(segments, kinds, [6, 14, 3, 8]))
    assert "invoice: 14 tokens" in texts and "candidate: 8 tokens" in texts
    assert any("JUMBO BAG" in t for t in texts)


def test_history_segments_shortens_long_segments():
    long = " bought " + "; ".join(f"PRODUCT NUMBER {i} x1" for i in range(40)) + "."
    texts = _texts(history_segments([long], ["invoice"], max_lines=3))
    box_text = [t for t in texts if "PRODUCT" in t][0]
    assert len(box_text.splitlines()) == 3 and box_text.endswith("...")


def test_history_segments_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one entry each"):
        history_segments(["a", "b"], ["profile"])
    with pytest.raises(ValueError, match="unknown segment kinds"):
        history_segments(["a"], ["paragraph"])
