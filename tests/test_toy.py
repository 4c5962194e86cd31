"""The seed article's 3x3 example and the seeded toy world."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from m6rec_lib.data.toy import (
    LINE_COLUMNS,
    SEED_CLAIMED_PROBABILITIES,
    SEED_CLAIMED_RANKINGS,
    SEED_INTERACTIONS,
    SEED_SCORES,
    make_toy_world,
    seed_article_example,
    softmax,
)


def _brute_force_softmax(row):
    """P(i|u) by the definition, one term at a time, in plain Python floats."""
    exps = [math.exp(x) for x in row]
    total = 0.0
    for e in exps:
        total += e
    return [e / total for e in exps]


def test_seed_example_is_the_post_exactly():
    ex = seed_article_example()
    np.testing.assert_array_equal(ex.R, [[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(ex.scores, [[0.2, 0.3, 0.5], [0.4, 0.6, 0.7], [0.1, 0.2, 0.9]])
    np.testing.assert_array_equal(ex.claimed_probabilities,
                                  [[0.26, 0.39, 0.35], [0.33, 0.47, 0.20], [0.19, 0.38, 0.44]])
    np.testing.assert_array_equal(ex.claimed_rankings, [[3, 1, 2], [2, 3, 1], [3, 2, 1]])
    assert ex.R.tolist() == [list(r) for r in SEED_INTERACTIONS]
    assert ex.scores.tolist() == [list(r) for r in SEED_SCORES]
    assert ex.claimed_probabilities.tolist() == [list(r) for r in SEED_CLAIMED_PROBABILITIES]
    assert ex.claimed_rankings.tolist() == [list(r) for r in SEED_CLAIMED_RANKINGS]


def test_correct_probabilities_are_the_row_softmax():
    ex = seed_article_example()
    p = ex.probabilities()
    for u in range(3):
        np.testing.assert_allclose(p[u], _brute_force_softmax(ex.scores[u]), atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p, [[0.289, 0.320, 0.391], [0.280, 0.342, 0.378], [0.231, 0.255, 0.514]],
                               atol=5e-4)
    # every user's correct ranking puts item 3 first, then item 2, then item 1
    np.testing.assert_array_equal(ex.ranking(), [[3, 2, 1]] * 3)


def test_the_post_uses_the_item_1_column_as_user_1_denominator():
    ex = seed_article_example()
    assert ex.wrong_denominators() == [0]
    denominators = ex.claimed_denominator_values()
    assert denominators[0] == pytest.approx(math.exp(0.2) + math.exp(0.4) + math.exp(0.1))
    assert denominators[1] == pytest.approx(sum(math.exp(x) for x in (0.4, 0.6, 0.7)))
    printed = ex.as_printed()
    np.testing.assert_allclose(printed[0], [0.320, 0.354, 0.432], atol=5e-4)
    assert printed[0].sum() > 1.1                      # not a distribution at all
    np.testing.assert_allclose(printed[1:], ex.probabilities()[1:], atol=1e-12)


def test_the_claimed_values_are_wrong_for_every_user():
    ex = seed_article_example()
    gap = np.abs(ex.claimed_probabilities - ex.probabilities()).max(axis=1)
    assert (gap > 0.05).all()
    # even carried out with its own denominators, the arithmetic does not give the stated values
    assert (np.abs(ex.claimed_probabilities - ex.as_printed()).max(axis=1) > 0.05).all()
    np.testing.assert_allclose(ex.claimed_probabilities.sum(axis=1), [1.00, 1.00, 1.01], atol=1e-9)


def test_the_lists_contradict_the_claimed_probabilities():
    ex = seed_article_example()
    bad = ex.ranking_contradictions()
    pairs = {(r.user, r["placed higher"], r["placed lower"]) for _, r in bad.iterrows()}
    assert pairs == {("user 1", "item 3", "item 2"), ("user 1", "item 1", "item 2"),
                     ("user 2", "item 3", "item 1")}
    assert (bad["its claimed P"] < bad["their claimed P"]).all()


def test_the_lists_recommend_owned_items_and_masking_fixes_it():
    ex = seed_article_example()
    owned = ex.owned_in_claimed_lists()
    assert owned["owned at rank 1"].tolist() == [True, True, False]
    assert owned["already has"].tolist() == ["item 3, item 1", "item 2", "item 2, item 1"]
    masked = ex.masked_probabilities()
    assert (masked[ex.R == 1] == 0).all()
    np.testing.assert_allclose(masked.sum(axis=1), 1.0)
    top = ex.ranking(masked=True)[:, 0]
    assert [ex.R[u, i - 1] for u, i in enumerate(top)] == [0, 0, 0]
    np.testing.assert_array_equal(top, [2, 3, 3])
    assert masked[1, 2] == pytest.approx(math.exp(0.7) / (math.exp(0.4) + math.exp(0.7)))
    assert masked[0, 1] == masked[2, 2] == 1.0        # one new item left: certain


def test_seed_example_tables():
    ex = seed_article_example()
    assert ex.frame().shape == (3, 6)
    errata = ex.errata()
    assert errata.shape == (9, 7)
    assert errata.loc[("user 1", "item 2"), "claimed P"] == 0.39
    np.testing.assert_allclose(errata["claimed - correct"].to_numpy(),
                               (ex.claimed_probabilities - ex.probabilities()).ravel())


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
