"""Per-user metrics and the customer-level bootstrap intervals of m6rec_lib.metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from m6rec_lib.metrics import (
    PairedDifference,
    auc,
    bootstrap_auc,
    bootstrap_interval,
    comparison_table,
    evaluate,
    paired_bootstrap,
    paired_bootstrap_auc,
    per_user_metrics,
    per_user_metrics_both,
)

from test_metrics import make_eval_set, random_case  # noqa: E402  (shared helpers)


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_per_user_values_average_to_evaluate(exclude_seen):
    eval_set, scores = random_case(3)
    frame = per_user_metrics(scores, eval_set, ks=(3, 5), exclude_seen=exclude_seen)
    means = evaluate(scores, eval_set, ks=(3, 5), exclude_seen=exclude_seen)
    assert len(frame) == len(eval_set)
    for name in ("HR@3", "Recall@5", "NDCG@3", "NDCG@5", "MRR"):
        assert frame[name].mean() == pytest.approx(means[name], abs=1e-12)  # NaN rows are skipped
    assert frame["NDCG@3"].notna().sum() == means["n_users"]


def test_per_user_values_of_both_views_in_one_pass():
    eval_set, scores = random_case(4)
    both = per_user_metrics_both(scores, eval_set, ks=(5,))
    for view, flag in (("all", False), ("new", True)):
        one = per_user_metrics(scores, eval_set, ks=(5,), exclude_seen=flag)
        assert np.allclose(both[view]["NDCG@5"], one["NDCG@5"], equal_nan=True)


def test_a_skipped_user_is_nan_in_the_new_view():
    # user 0 re-buys only what they had: no new target, so the "new" view leaves them out
    eval_set = make_eval_set([[1], [2]], [[0, 1, 0, 0], [0, 1, 0, 0]], n_items=3)
    frame = per_user_metrics(np.ones((2, 4)), eval_set, ks=(2,), exclude_seen=True)
    assert np.isnan(frame.loc[0, "NDCG@2"]) and not np.isnan(frame.loc[1, "NDCG@2"])


def test_paired_bootstrap_finds_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    base = rng.random(2000)
    better = base + 0.02 + rng.normal(0, 0.05, 2000)
    d = paired_bootstrap(better, base, names=("better", "base"))
    assert d.outcome == "a" and d.low > 0 and d.diff == pytest.approx(np.mean(better - base))
    assert "better beats base" in str(d)
    noise = base + rng.normal(0, 0.05, 2000)              # same mean: no difference to find
    tie = paired_bootstrap(noise, base, names=("noise", "base"))
    assert tie.outcome == "none" and tie.low < 0 < tie.high
    assert tie.verdict == "no measurable difference"
    flipped = paired_bootstrap(base, better, names=("base", "better"))
    assert flipped.outcome == "b" and flipped.high < 0


def test_paired_interval_is_narrower_than_the_unpaired_one():
    # most of the spread is in which users are easy; pairing cancels it
    rng = np.random.default_rng(1)
    easy = rng.random(1500)
    a, b = easy + 0.01, easy + rng.normal(0, 0.02, 1500)
    d = paired_bootstrap(a, b)
    ia, ib = bootstrap_interval(a), bootstrap_interval(b)
    assert d.high - d.low < 0.3 * ((ia.high - ia.low) + (ib.high - ib.low))


def test_paired_bootstrap_is_seeded_and_covers_the_truth():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.1, 1, 800), rng.normal(0.0, 1, 800)
    assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)
    # coverage: over many samples with a true difference of 0.1, the 95% interval holds it ~95% of times
    hits = 0
    for s in range(60):
        r = np.random.default_rng(100 + s)
        d = paired_bootstrap(r.normal(0.1, 1, 400), r.normal(0.0, 1, 400), n_boot=400, seed=s)
        hits += d.low <= 0.1 <= d.high
    assert hits >= 50


def test_paired_bootstrap_from_scores_equals_from_per_user_values():
    eval_set, scores = random_case(6)
    other = np.random.default_rng(7).random(scores.shape)
    from_scores = paired_bootstrap(scores, other, eval_set, "NDCG@5", exclude_seen=True)
    from_values = paired_bootstrap(per_user_metrics(scores, eval_set, (5,), exclude_seen=True),
                                   per_user_metrics(other, eval_set, (5,), exclude_seen=True), metric="NDCG@5")
    assert from_scores.diff == pytest.approx(from_values.diff) and from_scores.view == "new"
    assert (from_scores.low, from_scores.high) == pytest.approx((from_values.low, from_values.high))


def test_require_asserts_what_the_text_claims():
    rng = np.random.default_rng(3)
    base = rng.random(1000)
    d = paired_bootstrap(base + 0.05, base, names=("SASRec", "EASE"))
    assert d.require("a") is d
    with pytest.raises(AssertionError, match="claims 'EASE beats SASRec', but"):
        d.require("b")
    with pytest.raises(AssertionError, match="no measurable difference"):
        d.require("none")
    d.require("b", enforce=False)                           # smoke runs only print
    assert d.require(("a", "none")) is d                    # "EASE does not beat SASRec"
    with pytest.raises(AssertionError, match="'EASE beats SASRec' or 'no measurable difference'"):
        d.require(("b", "none"))
    with pytest.raises(ValueError, match="outcome must be one of"):
        d.require("A")


def test_paired_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(np.ones(5), np.ones(6))
    with pytest.raises(ValueError, match="different users"):
        paired_bootstrap(np.array([1.0, np.nan, 1.0]), np.array([1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="eval_set"):
        paired_bootstrap(np.ones((3, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap(np.ones(5), np.ones(5), n_boot=10)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(np.ones(5), np.ones(5), confidence=95)


def test_bootstrap_auc_matches_auc_and_resamples_groups():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(300), 6)
    labels = np.tile([1, 0, 1, 0, 0, 1], 300)
    scores = np.round(rng.normal(size=1800) + 0.7 * labels, 1)       # many ties
    interval = bootstrap_auc(labels, scores, groups, n_boot=300)
    assert interval.value == pytest.approx(roc_auc_score(labels, scores))
    assert interval.low < interval.value < interval.high and interval.n == 300


def test_paired_bootstrap_auc():
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(400), 4)
    labels = np.tile([1, 0, 0, 1], 400)
    strong = rng.normal(size=1600) + 1.0 * labels
    weak = strong + rng.normal(0, 1.5, 1600)
    d = paired_bootstrap_auc(labels, strong, weak, groups, names=("strong", "weak"), n_boot=300)
    assert d.diff == pytest.approx(auc(labels, strong) - auc(labels, weak))
    assert d.outcome == "a" and d.metric == "AUC" and d.n_users == 400
    same = paired_bootstrap_auc(labels, strong, strong + 1e-9 * rng.normal(size=1600), groups, n_boot=200)
    assert same.outcome == "none"


def test_records_and_table():
    d = PairedDifference("A", "B", "NDCG@10", "new", 0.2, 0.1, 0.1, 0.05, 0.15, 100)
    rec = d.to_dict()
    assert rec["outcome"] == "a" and rec["verdict"] == "A beats B" and rec["key"] == "A vs B | new | NDCG@10"
    table = comparison_table([d])
    assert table.loc[0, "A - B"] == 0.1 and table.loc[0, "verdict"] == "A beats B"
