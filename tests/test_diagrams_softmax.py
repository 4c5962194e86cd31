"""The softmax diagrams of notebook 02."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from m6rec_lib.data.toy import seed_article_example, softmax
from m6rec_lib.diagrams.softmax import (
    bias_vs_popularity,
    gradient_per_item,
    sampled_softmax,
    seed_denominators,
    softmax_steps,
    temperature_curves,
)


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


def test_temperature_curves_and_gradients():
    fig = temperature_curves([0.5, -1.0, 2.0, 0.1])
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 5
    with pytest.raises(ValueError):
        temperature_curves([1.0, 2.0], temperatures=[0.0])
    exact = np.array([0.0, 0.2, -0.5, 0.3])
    fig = gradient_per_item(exact, {"estimate": exact + 0.01})
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError, match="shape"):
        gradient_per_item(exact, {"bad": exact[:2]})


def test_bias_vs_popularity_one_panel_per_model():
    fig = bias_vs_popularity([0.0, 1.0, 2.0], {"a": [0.1, 0.2, 0.3], "b": [0.3, 0.2, 0.1]})
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    with pytest.raises(ValueError):
        bias_vs_popularity([0.0, 1.0], {"a": [0.1]})
