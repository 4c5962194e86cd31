"""The seed article's 3x3 example and the seeded toy world."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec_lib.data.toy import (
    ARTICLE_CLAIMED_PROBABILITIES_USER1,
    LINE_COLUMNS,
    make_toy_world,
    seed_article_example,
    softmax,
)


def test_seed_example_reproduces_the_article_numbers():
    ex = seed_article_example()
    assert ex.R.shape == ex.scores.shape == (3, 3)
    assert set(np.unique(ex.R)) <= {0, 1}
    np.testing.assert_allclose(ex.scores[0], [0.2, 0.3, 0.5], atol=1e-12)
    np.testing.assert_allclose(ex.claimed_probabilities_user1, [0.26, 0.39, 0.35])
    assert ex.claimed_probabilities_user1.sum() == pytest.approx(1.0)
    assert ex.P.shape == (3, 2) and ex.Q.shape == (3, 2)


def test_seed_example_claims_are_wrong_and_the_correct_values_are():
    ex = seed_article_example()
    p = ex.probabilities()[0]
    np.testing.assert_allclose(p, [0.289, 0.320, 0.391], atol=5e-4)
    np.testing.assert_allclose(ex.probabilities().sum(axis=1), 1.0)
    claimed = np.array(ARTICLE_CLAIMED_PROBABILITIES_USER1)
    assert np.abs(p - claimed).max() > 0.02
    # the claimed ranking (item 2 first) is not the ranking of the scores (item 3 first)
    assert np.argmax(claimed) == 1 and np.argmax(p) == 2
    # the top-scored item of user 1 is one they already have
    assert ex.R[0, np.argmax(ex.scores[0])] == 1


def test_seed_example_table_and_provenance():
    ex = seed_article_example()
    table = ex.frame()
    assert table.shape == (3, 9)
    assert table.loc["user 1", ("score", "item 3")] == pytest.approx(0.5)
    assert ex.provenance["scores[0]"] == "article"
    assert "chosen" in ex.provenance["R"]


def test_softmax_is_stable_and_shift_invariant():
    x = np.array([[1000.0, 1001.0, 1002.0], [0.0, 0.0, 0.0]])
    p = softmax(x, axis=1)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p[0], softmax(np.array([0.0, 1.0, 2.0])))
    np.testing.assert_allclose(p[1], 1 / 3)


def test_toy_world_shapes_and_truth():
    w = make_toy_world(n_users=15, n_items=8, n_factors=3, seed=1)
    assert w.true_scores.shape == w.true_probabilities.shape == (15, 8)
    assert w.user_factors.shape == (15, 3) and w.item_factors.shape == (8, 3)
    np.testing.assert_allclose(
        w.true_scores, w.user_factors @ w.item_factors.T + w.item_bias, atol=1e-12
    )
    np.testing.assert_allclose(w.true_probabilities, softmax(w.true_scores, axis=1))
    np.testing.assert_allclose(w.true_probabilities.sum(axis=1), 1.0)
    assert len(set(w.stock_codes)) == 8 and len(set(w.descriptions)) == 8
    assert (w.n_users, w.n_items) == (15, 8)


def test_toy_world_lines_look_like_cleaned_lines():
    w = make_toy_world(n_users=10, n_items=6, seed=2)
    lines = w.lines
    assert tuple(lines.columns) == LINE_COLUMNS
    assert lines["customer_id"].dtype == "int64" and lines["quantity"].dtype == "int64"
    assert lines["price"].dtype == "float64" and (lines["price"] > 0).all()
    assert pd.api.types.is_datetime64_any_dtype(lines["invoice_date"])
    assert pd.api.types.is_string_dtype(lines["stock_code"])
    assert pd.api.types.is_string_dtype(lines["invoice"])
    assert (lines["quantity"] >= 1).all()
    assert lines["invoice_date"].is_monotonic_increasing
    assert set(lines["customer_id"]) == set(w.customer_ids)  # every user bought something
    # one customer, one date and one country per invoice; an item appears once per invoice
    per_invoice = lines.groupby("invoice")[["customer_id", "invoice_date", "country"]].nunique()
    assert (per_invoice == 1).all().all()
    assert not lines.duplicated(["invoice", "stock_code"]).any()
    # the description and price of a stock code never change
    assert (lines.groupby("stock_code")[["description", "price"]].nunique() == 1).all().all()
    assert lines["invoice_date"].dt.hour.between(8, 17).all()
    assert lines["line_no"].tolist() == list(range(len(lines)))


def test_toy_lines_fit_the_course_pipeline():
    """The toy lines pass the retail schema check and survive cleaning untouched."""
    from m6rec_lib.data.retail import clean_transactions, validate_schema

    lines = make_toy_world(n_users=8, n_items=5, seed=3).lines
    validate_schema(lines, where="toy lines")
    clean, report = clean_transactions(lines)
    assert len(clean) == len(lines)
    pd.testing.assert_frame_equal(
        clean[list(LINE_COLUMNS)].reset_index(drop=True), lines, check_dtype=False
    )


def test_toy_world_is_deterministic():
    a = make_toy_world(12, 7, 2, seed=5)
    b = make_toy_world(12, 7, 2, seed=5)
    c = make_toy_world(12, 7, 2, seed=6)
    pd.testing.assert_frame_equal(a.lines, b.lines)
    np.testing.assert_array_equal(a.true_scores, b.true_scores)
    assert not np.array_equal(a.true_scores, c.true_scores)


def test_draws_follow_the_true_softmax():
    w = make_toy_world(n_users=3, n_items=5, seed=3, baskets_per_user=300, draws_per_basket=10)
    counts = w.draw_counts()
    assert counts.sum() == w.lines["quantity"].sum()
    freq = counts / counts.sum(axis=1, keepdims=True)
    # ~3000 draws per user: total variation distance to the truth is small
    tv = 0.5 * np.abs(freq - w.true_probabilities).sum(axis=1)
    assert (tv < 0.05).all(), tv


def test_temperature_sharpens_preferences():
    cold = make_toy_world(5, 10, seed=4, temperature=0.2)
    hot = make_toy_world(5, 10, seed=4, temperature=5.0)
    assert cold.true_probabilities.max(axis=1).mean() > hot.true_probabilities.max(axis=1).mean()


def test_many_items_keep_unique_descriptions():
    w = make_toy_world(n_users=2, n_items=300, seed=0, baskets_per_user=1, draws_per_basket=1)
    assert len(set(w.descriptions)) == 300


@pytest.mark.parametrize(
    "kwargs",
    [dict(n_users=0), dict(n_items=2.5), dict(temperature=0), dict(baskets_per_user=0.5),
     dict(start="2011-01-01", end="2010-01-01")],
)
def test_toy_world_rejects_impossible_parameters(kwargs):
    with pytest.raises(ValueError):
        make_toy_world(**kwargs)
