"""The softmax diagrams of notebook 02."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from m6rec_lib.data.toy import seed_article_example, softmax
from m6rec_lib.diagrams.softmax import sampled_softmax, seed_denominators, softmax_steps


def test_softmax_steps_labels_the_probabilities():
    scores = [0.2, 0.3, 0.5]
    fig = softmax_steps(scores)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    shown = [t.get_text() for t in fig.axes[2].texts]
    for p in softmax(np.array(scores)):
        assert f"{p:.3f}" in shown
    assert "sum = 1.000" in shown


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")]])
def test_softmax_steps_rejects_bad_scores(bad):
    with pytest.raises(ValueError):
        softmax_steps(bad)


def test_seed_denominators_marks_the_articles_cells():
    ex = seed_article_example()
    fig = seed_denominators(ex.scores, ex.claimed_denominators[0])
    hatched = [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert sorted((round(p.get_y()), round(p.get_x())) for p in hatched) == [(0, 0), (1, 0), (2, 0)]
    with pytest.raises(ValueError):
        seed_denominators(ex.scores, [], user=5)


def test_sampled_softmax_draws_two_rows():
    fig = sampled_softmax(n_items=12, n_sampled=3)
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError):
        sampled_softmax(n_items=5, n_sampled=5)
