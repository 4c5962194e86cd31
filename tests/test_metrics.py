"""Tests of m6rec_lib.metrics against brute-force references, sklearn and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import ndcg_score, roc_auc_score

from m6rec_lib.data import DataError
from m6rec_lib.data.evalset import EvalSet
from m6rec_lib.metrics import (
    auc,
    coverage_at_k,
    evaluate,
    evaluate_both,
    evaluate_sampled,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    rank_items,
    recall_at_k,
    reciprocal_rank,
    results_table,
)


# ------------------------------------------------------------------------------------ helpers

def make_eval_set(targets, history_rows, n_items, users=None, name="t"):
    """EvalSet from a list of target lists and a dense (n_eval, n_items + 1) history array."""
    history_rows = np.asarray(history_rows, dtype=np.float32)
    n_eval = len(targets)
    if users is None:
        users = np.arange(n_eval)
    n_users = int(max(users)) + 1 if n_eval else 1
    full = np.zeros((n_users, n_items + 1), dtype=np.float32)
    if n_eval:
        full[users] = history_rows
    sequences = [np.flatnonzero(row) for row in history_rows]
    return EvalSet(users=np.asarray(users), targets=[np.asarray(t, dtype=np.int64) for t in targets],
                   history=sp.csr_matrix(full), sequences=sequences,
                   moments=np.zeros(n_eval, dtype="datetime64[ns]"), name=name)


def random_case(seed, n_users=25, n_items=12, tie_levels=4, p_unknown=0.1):
    """Random integer scores (many ties), histories and baskets with some -1 targets."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, tie_levels, size=(n_users, n_items + 1)).astype(np.float64)
    history = (rng.random((n_users, n_items + 1)) < 0.25) * rng.integers(1, 4, size=(n_users, n_items + 1))
    history[:, 0] = 0
    targets = []
    for _ in range(n_users):
        t = rng.choice(np.arange(1, n_items + 1), size=rng.integers(1, 5), replace=False)
        if rng.random() < p_unknown:
            t = np.r_[t, -1]
        targets.append(t)
    return make_eval_set(targets, history, n_items), scores


def brute_force_ranking(row, exclude=()):
    """Item IDs 1..n sorted by (score desc, ID asc), a plain Python sort."""
    items = [i for i in range(1, len(row)) if i not in set(exclude)]
    return sorted(items, key=lambda i: (-row[i], i))


def brute_force_evaluate(scores, es, ks, exclude_seen):
    """evaluate() written as a plain loop over users with the per-user functions."""
    n_items = es.n_items
    rows, skipped = [], 0
    top_lists = {k: [] for k in ks}
    for pos, user in enumerate(es.users):
        seen = es.history[user].indices[es.history[user].data > 0].tolist() if exclude_seen else []
        targets = [t for t in es.targets[pos].tolist() if t not in seen]
        if not targets:
            skipped += 1
            continue
        ranking = brute_force_ranking(scores[pos], exclude=seen)
        row = {}
        for k in ks:
            row[f"HR@{k}"] = hit_rate_at_k(ranking, targets, k)
            row[f"Recall@{k}"] = recall_at_k(ranking, targets, k)
            row[f"NDCG@{k}"] = ndcg_at_k(ranking, targets, k)
            top_lists[k].append(ranking[:k])
        row["MRR"] = reciprocal_rank(ranking, targets)
        rows.append(row)
    out = pd.DataFrame(rows).mean().to_dict()
    for k in ks:
        out[f"Coverage@{k}"] = coverage_at_k(top_lists[k], n_items, k)
    out["n_users"] = len(rows)
    out["n_skipped"] = skipped
    return out


def assert_results_equal(got, expected):
    assert set(got) == set(expected)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


# ------------------------------------------------------------------------ per-user functions

def test_rank_items_matches_python_sort_with_ties_and_skips_padding():
    rng = np.random.default_rng(0)
    for _ in range(20):
        row = rng.integers(0, 3, size=15).astype(float)
        row[0] = 99.0  # padding: never ranked
        exclude = rng.choice(np.arange(1, 15), size=3, replace=False).tolist()
        assert rank_items(row).tolist() == brute_force_ranking(row)
        assert rank_items(row, exclude=exclude).tolist() == brute_force_ranking(row, exclude)
        assert rank_items(row, k=4).tolist() == brute_force_ranking(row)[:4]
        assert 0 not in rank_items(row)


def test_hand_worked_metrics():
    ranking = [3, 1, 2, 4]
    assert hit_rate_at_k(ranking, [1], 1) == 0.0
    assert hit_rate_at_k(ranking, [1], 2) == 1.0
    assert recall_at_k(ranking, [1, 4], 2) == 0.5
    assert recall_at_k(ranking, [1, -1], 4) == 0.5          # -1 stays in the denominator
    assert ndcg_at_k(ranking, [1], 2) == pytest.approx(1 / math.log2(3))
    # two targets, one at rank 0 and one at rank 3; IDCG@4 uses min(2, 4) = 2 ideal hits
    assert ndcg_at_k(ranking, [3, 4], 4) == pytest.approx((1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    # more targets than K: IDCG uses K ideal hits
    assert ndcg_at_k(ranking, [3, 1, 2], 2) == pytest.approx(1.0)
    assert reciprocal_rank(ranking, [2, 4]) == pytest.approx(1 / 3)
    assert reciprocal_rank(ranking, [-1]) == 0.0
    assert mrr is reciprocal_rank
    assert coverage_at_k([[1, 2, 3], [2, 5, 6]], n_items=10, k=2) == pytest.approx(3 / 10)


def test_per_user_functions_reject_bad_arguments():
    with pytest.raises(ValueError, match="k must be"):
        hit_rate_at_k([1, 2], [1], 0)
    with pytest.raises(ValueError, match="targets is empty"):
        recall_at_k([1, 2], [], 1)
    with pytest.raises(ValueError, match="one score row"):
        rank_items(np.zeros((2, 3)))


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_sklearn_on_tie_free_scores(seed):
    rng = np.random.default_rng(seed)
    n_items = 30
    for _ in range(10):
        row = rng.standard_normal(n_items + 1)
        targets = rng.choice(np.arange(1, n_items + 1), size=rng.integers(1, 8), replace=False)
        relevance = np.zeros(n_items + 1)
        relevance[targets] = 1
        for k in (1, 5, 10, 40):
            expected = ndcg_score(relevance[None, 1:], row[None, 1:], k=k)
            assert ndcg_at_k(rank_items(row), targets, k) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    for n in (2, 5, 50, 300):
        labels = rng.integers(0, 2, size=n)
        labels[:2] = [0, 1]  # both classes present
        scores = rng.integers(0, 5, size=n).astype(float)  # heavy ties
        assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
        scores = rng.standard_normal(n)
        assert auc(labels.astype(bool), scores) == pytest.approx(roc_auc_score(labels, scores))


def test_auc_errors():
    with pytest.raises(ValueError, match="one positive and one negative"):
        auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0/1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        auc([0, 1], [0.1])


# ------------------------------------------------------------------------------- evaluator

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("exclude_seen", [False, True])
def test_evaluate_matches_brute_force(seed, exclude_seen):
    es, scores = random_case(seed)
    ks = (1, 3, 5, 20)  # 20 > n_items: the whole catalogue
    got = evaluate(scores, es, ks=ks, exclude_seen=exclude_seen, batch_size=7)
    assert_results_equal(got, brute_force_evaluate(scores, es, ks, exclude_seen))


def test_evaluate_continuous_scores_and_large_catalogue():
    rng = np.random.default_rng(1)
    es, _ = random_case(1, n_users=40, n_items=300)
    scores = rng.standard_normal((40, 301)).astype(np.float32)
    got = evaluate(scores, es, ks=(10, 50), exclude_seen=True, batch_size=16)
    assert_results_equal(got, brute_force_evaluate(scores, es, (10, 50), True))


def test_constant_scores_get_no_free_credit():
    # every item tied: the ranking is by item ID, so only targets with small IDs hit
    es = make_eval_set([[1], [5]], np.zeros((2, 6)), n_items=5)
    got = evaluate(np.zeros((2, 6)), es, ks=(1,))
    assert got["HR@1"] == 0.5
    assert got["MRR"] == pytest.approx((1 + 1 / 5) / 2)


def test_padding_column_is_never_ranked():
    es, scores = random_case(3)
    reference = evaluate(scores, es, ks=(1, 5))
    for pad_value in (1e9, -np.inf, np.inf, 0.0):
        s = scores.copy()
        s[:, 0] = pad_value
        assert evaluate(s, es, ks=(1, 5)) == reference
    assert reference["Coverage@1"] <= 1.0


def test_callable_tensor_and_array_agree():
    es, scores = random_case(4)
    calls = []

    def fn(positions):
        calls.append(len(positions))
        return torch.as_tensor(scores[positions])

    a = evaluate(scores, es, batch_size=4)
    b = evaluate(fn, es, batch_size=4)
    c = evaluate(torch.as_tensor(scores, dtype=torch.float32), es, batch_size=100)
    d = evaluate(scores.astype(np.int64), es)  # integer scores are accepted
    for other in (b, c, d):  # same numbers up to the order of the floating-point sums
        assert_results_equal(other, a)
    assert max(calls) <= 4 and sum(calls) == len(es)


def test_exclusion_semantics_hand_case():
    n_items = 6
    history = np.zeros((3, n_items + 1))
    history[0, [2]] = 1        # user 0 bought item 2 before; basket {2, 5}
    history[1, [1, 3]] = 2     # user 1's basket {1, 3} is all re-purchases: skipped in "new"
    targets = [[2, 5], [1, 3], [4]]
    es = make_eval_set(targets, history, n_items)
    scores = np.zeros((3, n_items + 1))
    scores[:, 2] = 10.0        # the bought-before item is the top score
    scores[:, 5] = 5.0
    scores[:, 1] = 4.0
    all_view = evaluate(scores, es, ks=(1,))
    new_view = evaluate(scores, es, ks=(1,), exclude_seen=True)
    assert all_view["n_users"] == 3 and all_view["n_skipped"] == 0
    assert new_view["n_users"] == 2 and new_view["n_skipped"] == 1
    # all items: user 0 hits item 2 at rank 1; users 1 and 2 miss at K=1
    assert all_view["HR@1"] == pytest.approx(1 / 3)
    # new: user 0's item 2 is excluded, item 5 becomes first and is the only target
    assert new_view["HR@1"] == pytest.approx(1 / 2)
    assert new_view["Recall@1"] == pytest.approx(1 / 2)
    # user 2 (history empty): item 4 ranks after 2, 5, 1, then by ID (3 before 4) -> rank 5
    assert new_view["MRR"] == pytest.approx((1.0 + 1 / 5) / 2)


def test_unknown_targets_stay_in_denominators_and_never_hit():
    n_items = 4
    es = make_eval_set([[3, -1], [-1]], np.zeros((2, n_items + 1)), n_items)
    scores = np.zeros((2, n_items + 1))
    scores[:, 3] = 1.0
    got = evaluate(scores, es, ks=(1, 4))
    assert got["n_users"] == 2
    assert got["HR@1"] == 0.5
    assert got["Recall@4"] == pytest.approx((0.5 + 0.0) / 2)
    # user 0: one hit at rank 0 out of 2 targets; IDCG@1 uses min(2, 1) = 1 -> NDCG@1 = 1
    assert got["NDCG@1"] == pytest.approx(0.5)
    assert got["MRR"] == pytest.approx(0.5)
    new = evaluate(scores, es, ks=(1,), exclude_seen=True)  # -1 is never "bought before"
    assert new["n_users"] == 2


def test_coverage_counts_only_items_recommended():
    es = make_eval_set([[1], [2], [3]], np.zeros((3, 11)), n_items=10)
    scores = np.tile(np.arange(11, dtype=float), (3, 1))  # everyone gets items 10, 9, ...
    got = evaluate(scores, es, ks=(2, 5))
    assert got["Coverage@2"] == pytest.approx(2 / 10)
    assert got["Coverage@5"] == pytest.approx(5 / 10)
    # a user left with fewer than K allowed items: -inf items do not count as recommended
    history = np.ones((1, 11))
    history[0, [0, 1, 2]] = 0
    es1 = make_eval_set([[1]], history, n_items=10)
    got = evaluate(np.ones((1, 11)), es1, ks=(5,), exclude_seen=True)
    assert got["Coverage@5"] == pytest.approx(2 / 10)


def test_evaluate_both_and_results_table():
    es, scores = random_case(5)
    both = evaluate_both(scores, es, ks=(3,))
    assert list(both.index) == ["all", "new"]
    assert both.loc["all"].to_dict() == pytest.approx(evaluate(scores, es, ks=(3,)))
    assert both.loc["new"].to_dict() == pytest.approx(evaluate(scores, es, ks=(3,), exclude_seen=True))

    flat = results_table({"a": evaluate(scores, es, ks=(3,)), "b": evaluate(-scores, es, ks=(3,))})
    assert list(flat.index) == ["a", "b"] and "NDCG@3" in flat.columns
    nested = results_table({"a": both, "b": evaluate_both(-scores, es, ks=(3,))})
    assert nested.loc["a", ("new", "HR@3")] == both.loc["new", "HR@3"]
    with pytest.raises(ValueError, match="mix"):
        results_table({"a": both, "b": evaluate(scores, es)})
    with pytest.raises(ValueError, match="empty"):
        results_table({})


def test_evaluate_rejects_bad_inputs():
    es, scores = random_case(6)
    with pytest.raises(ValueError, match="shape"):
        evaluate(scores[:-1], es)
    with pytest.raises(ValueError, match="n_items \\+ 1"):
        evaluate(scores[:, 1:], es)
    with pytest.raises(ValueError, match="score function returned"):
        evaluate(lambda pos: scores[pos, 1:], es)
    with pytest.raises(TypeError, match="sparse"):
        evaluate(sp.csr_matrix(scores), es)
    nan_scores = scores.copy()
    nan_scores[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(nan_scores, es)
    with pytest.raises(ValueError, match="k must be"):
        evaluate(scores, es, ks=(0,))
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(scores, es, batch_size=0)
    bad = make_eval_set([[7]], np.zeros((1, 6)), n_items=5)
    with pytest.raises(DataError, match="outside 1..5"):
        evaluate(np.zeros((1, 6)), bad)
    bad0 = make_eval_set([[0]], np.zeros((1, 6)), n_items=5)
    with pytest.raises(DataError, match="outside"):
        evaluate(np.zeros((1, 6)), bad0)


def test_empty_target_lists_are_skipped_in_both_views():
    es = make_eval_set([[1], []], np.zeros((2, 4)), n_items=3)
    got = evaluate(np.zeros((2, 4)), es, ks=(1,))
    assert got["n_users"] == 1 and got["n_skipped"] == 1 and got["HR@1"] == 1.0


# ------------------------------------------------------------------------ sampled evaluation

def brute_force_sampled_rank(row, target, negatives):
    """0-based rank of ``target`` among itself and ``negatives`` (ties: lower ID first)."""
    return sum((row[j], -j) > (row[target], -target) for j in negatives)


def test_sampled_with_all_negatives_equals_ranking_among_non_targets():
    # every user has exactly 2 known targets: n_negatives = n_items - 2 draws every non-target item
    rng = np.random.default_rng(7)
    n_items, n_users = 15, 20
    targets = [rng.choice(np.arange(1, n_items + 1), size=2, replace=False) for _ in range(n_users)]
    es = make_eval_set(targets, np.zeros((n_users, n_items + 1)), n_items)
    scores = rng.integers(0, 4, size=(n_users, n_items + 1)).astype(float)
    got = evaluate_sampled(scores, es, n_negatives=n_items - 2, ks=(1, 5), batch_size=6)
    per_user = []
    for pos, t in enumerate(targets):
        negatives = [j for j in range(1, n_items + 1) if j not in t]
        ranks = [brute_force_sampled_rank(scores[pos], int(x), negatives) for x in t]
        per_user.append({
            "HR@1": np.mean([r < 1 for r in ranks]), "HR@5": np.mean([r < 5 for r in ranks]),
            "NDCG@5": np.mean([1 / math.log2(r + 2) if r < 5 else 0 for r in ranks]),
            "MRR": np.mean([1 / (r + 1) for r in ranks]),
        })
    expected = pd.DataFrame(per_user).mean()
    for key in expected.index:
        assert got[key] == pytest.approx(expected[key]), key
    assert got["n_users"] == n_users and got["n_pairs"] == 2 * n_users


def test_sampled_popularity_draws_only_weighted_items_and_unknown_targets_miss():
    n_items = 10
    es = make_eval_set([[1, 2], [1, 2, -1]], np.zeros((2, n_items + 1)), n_items)
    popularity = np.zeros(n_items + 1)
    popularity[[1, 2, 7, 8, 9]] = [5, 5, 1, 2, 3]
    # targets are never negatives and weight-0 items are never drawn: the negatives are {7, 8, 9}
    scores = np.zeros((2, n_items + 1))
    scores[:, [7, 8, 9]] = [1.0, 3.0, -1.0]
    scores[:, 1] = 2.0   # beaten by item 8 -> rank 1
    scores[:, 2] = 0.5   # beaten by items 7 and 8 -> rank 2
    got = evaluate_sampled(scores, es, n_negatives=3, ks=(1, 2), sampling="popularity", popularity=popularity)
    # per user, the mean over its targets (the -1 target of user 1 is a miss), then the mean over users
    assert got["HR@2"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert got["HR@1"] == 0.0
    assert got["MRR"] == pytest.approx(((1 / 2 + 1 / 3) / 2 + (1 / 2 + 1 / 3) / 3) / 2)
    assert got["n_pairs"] == 5
    with pytest.raises(ValueError, match="lower n_negatives"):
        evaluate_sampled(scores, es, n_negatives=4, sampling="popularity", popularity=popularity)


def test_sampled_is_seeded_and_flatters_a_popularity_model():
    rng = np.random.default_rng(8)
    n_items, n_users = 400, 60
    popularity = np.r_[0, np.sort(rng.pareto(1.0, n_items))[::-1] + 1e-3]
    # baskets drawn by popularity; the model scores by popularity (a MostPop)
    p = popularity[1:] / popularity[1:].sum()
    targets = [rng.choice(np.arange(1, n_items + 1), size=3, replace=False, p=p) for _ in range(n_users)]
    es = make_eval_set(targets, np.zeros((n_users, n_items + 1)), n_items)
    scores = np.tile(popularity, (n_users, 1))
    a = evaluate_sampled(scores, es, n_negatives=50, rng_seed=3)
    assert a == evaluate_sampled(scores, es, n_negatives=50, rng_seed=3)
    full = evaluate(scores, es, ks=(10,))
    uniform = evaluate_sampled(scores, es, n_negatives=50, ks=(10,))
    by_pop = evaluate_sampled(scores, es, n_negatives=50, ks=(10,), sampling="popularity", popularity=popularity)
    assert uniform["HR@10"] > by_pop["HR@10"]
    assert uniform["HR@10"] > full["Recall@10"]


def test_sampled_rejects_bad_parameters():
    es, scores = random_case(9)
    with pytest.raises(ValueError, match="n_negatives"):
        evaluate_sampled(scores, es, n_negatives=0)
    with pytest.raises(ValueError, match="sampling must be"):
        evaluate_sampled(scores, es, sampling="zipf")
    with pytest.raises(ValueError, match="needs popularity"):
        evaluate_sampled(scores, es, sampling="popularity")
    with pytest.raises(ValueError, match="finite non-negative"):
        evaluate_sampled(scores, es, sampling="popularity", popularity=np.ones(3))
    with pytest.raises(ValueError, match="only used"):
        evaluate_sampled(scores, es, popularity=np.ones(es.n_items + 1))
