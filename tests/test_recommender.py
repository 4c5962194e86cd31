"""m6rec_lib.recommender: retrieval + ranking + explanation behind recommend(customer, k)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec_lib import recommender as rc
from m6rec_lib.baselines import EASE, MostPop
from m6rec_lib.data import next_basket_split
from m6rec_lib.data.toy import make_toy_world
from m6rec_lib.metrics import evaluate

COLD = 99999


class PopularRetriever:
    """A stand-in retriever: the most popular products for everyone."""

    def __init__(self, popularity: np.ndarray):
        self.order = np.argsort(-popularity[1:], kind="stable") + 1

    def retrieve(self, sequences, top_k):
        ids = np.tile(self.order[:top_k], (len(sequences), 1))
        return ids, np.zeros(ids.shape)


@pytest.fixture(scope="module")
def world():
    w = make_toy_world(n_users=60, n_items=30, baskets_per_user=8, draws_per_basket=5, seed=0)
    lines = w.lines.copy()
    cold = lines.iloc[:2].copy()  # a customer whose only purchase is after the recommender's moment
    cold["customer_id"] = COLD
    cold["invoice"] = "C-COLD"
    cold["invoice_date"] = pd.Timestamp("2011-11-20 10:00")
    lines = pd.concat([lines, cold], ignore_index=True)
    split = next_basket_split(lines)
    ease = EASE(lam=50.0).fit(split.train_matrix)
    pop = MostPop().fit(split.train_matrix)
    retriever = PopularRetriever(pop.popularity_)
    rec = rc.Recommender(split, lines, {"EASE": ease.score, "MostPop": pop.score},
                         weights={"EASE": 1.0, "MostPop": 0.5}, half_life=20.0, own_bonus=3.0, repeat_weight=1.0,
                         retriever=retriever, n_retrieve=8)
    return lines, split, rec


def test_zscore_rows_standardises_each_row():
    s = np.array([[-np.inf, 1.0, 2.0, 3.0, 6.0], [-np.inf, 5.0, 5.0, 5.0, 5.0]])
    z = rc.zscore_rows(s)
    assert np.allclose(z[0, 1:].mean(), 0) and np.isclose(z[0, 1:].std(), 1)
    assert np.allclose(z[1, 1:], 0)  # a constant row stays 0
    assert z[0, 0] == 0


def test_repeat_log_probability_weights_recent_lines():
    from m6rec_lib.data.evalset import EvalSet
    import scipy.sparse as sp

    es = EvalSet(users=np.array([0, 1]), targets=[np.array([1]), np.array([1])],
                 history=sp.csr_matrix((2, 5)), sequences=[np.array([1, 2, 2, 3]), np.array([], dtype=np.int64)],
                 moments=np.array(["2011-01-01", "2011-01-01"], dtype="datetime64[ns]"))
    flat = rc.repeat_log_probability(es)
    assert np.allclose(np.exp(flat[0, 1:4]), [0.25, 0.5, 0.25]) and (flat[1] == 0).all()
    decayed = rc.repeat_log_probability(es, half_life=1.0)  # weights 1/8, 1/4, 1/2, 1 for the 4 lines
    assert np.allclose(np.exp(decayed[0, 1:4]), np.array([1 / 8, 3 / 4, 1]) / (15 / 8))
    assert rc.own_mask(es)[0].tolist() == [False, True, True, True, False]
    with pytest.raises(ValueError):
        rc.repeat_log_probability(es, half_life=0)


def test_a_huge_own_bonus_puts_own_products_first_by_repeat_probability(world):
    _, split, rec = world
    feats = rec.features(split.test)
    own, logp = rc.own_mask(split.test), rc.repeat_log_probability(split.test)
    scores = rc.blend_scores(feats, rec.weights, own, logp, own_bonus=1e6, repeat_weight=100.0)
    for row in range(len(split.test)):
        mine = np.flatnonzero(own[row])
        if len(mine) < 2:
            continue
        top = np.argsort(-scores[row], kind="stable")[: len(mine)]
        assert set(top) == set(mine)
        assert (np.diff(logp[row, top]) <= 1e-9).all()  # most bought first


def test_candidates_are_retrieved_or_bought_before(world):
    _, split, rec = world
    cand = rec.candidates(split.test)
    retrieved = set(rec.retriever.order[:8])
    for row in range(len(split.test)):
        own = set(np.flatnonzero(split.test.history[split.test.users[row]].toarray()[0] > 0))
        assert set(np.flatnonzero(cand[row])) == retrieved | own
    scores = rec.score(split.test)
    assert np.isneginf(scores[~cand]).all() and np.isfinite(scores[cand]).all()


def test_recommend_returns_ranked_explained_items(world):
    _, split, rec = world
    cid = int(split.users.customer_ids[split.test.users[0]])
    out = rec.recommend(cid, k=6)
    assert list(out.columns) == ["item", "description", "score", "source", "explanation"]
    assert len(out) == 6 and list(out.index) == [1, 2, 3, 4, 5, 6]
    assert (np.diff(out["score"].to_numpy()) <= 0).all()
    assert out["explanation"].str.len().min() > 10
    history = rec.history(cid)
    for _, r in out.iterrows():
        assert r["description"] == split.items.text(r["item"])
        if r["source"] == "bought before":
            assert r["item"] in set(history["item"]) and r["explanation"].startswith("You bought it")
        else:
            assert r["item"] not in set(history["item"])
    # one customer through recommend() == the same customer in the batched evaluation
    scores = rec.score(split.test)[0]
    assert list(out["item"]) == list(np.argsort(-scores, kind="stable")[:6])
    new = rec.recommend(cid, k=5, exclude_bought=True)
    assert not set(new["item"]) & set(history["item"]) and (new["source"] != "bought before").all()


def test_clear_errors_and_the_cold_fallback(world):
    _, split, rec = world
    with pytest.raises(KeyError, match="unknown"):
        rec.recommend(1, k=5)
    with pytest.raises(KeyError, match="integers"):
        rec.recommend("abc", k=5)
    cid = int(split.users.customer_ids[split.test.users[0]])
    for bad in (0, split.n_items + 1, 2.5):
        with pytest.raises(ValueError, match="k must be"):
            rec.recommend(cid, k=bad)
    cold = rec.recommend(COLD, k=5)
    assert len(cold) == 5 and (cold["source"] == "popular").all()
    assert cold["explanation"].str.startswith("Popular with").all()
    assert rec.history(COLD).empty


def test_tune_blend_picks_the_best_validation_setting(world):
    _, split, rec = world
    feats = rec.features(split.validation)
    cand = rec.candidates(split.validation)
    result = rc.tune_blend(feats, split.validation, cand, weight_grid=(0.0, 1.0), half_lives=(None, 20.0),
                           own_bonus_grid=(0.0, 1000.0), repeat_weight_grid=(1.0,))
    best_new = rc.blend_scores(feats, result.weights, candidates=cand)
    assert result.new_table["NDCG@10"].max() == pytest.approx(
        evaluate(best_new, split.validation, ks=(10,), exclude_seen=True)["NDCG@10"])
    assert len(result.all_table) == 4 and result.own_bonus in (0.0, 1000.0) and result.half_life in (None, 20.0)
    assert set(result.weights) == {"EASE", "MostPop"}
    with pytest.raises(KeyError):
        rc.blend_scores(feats, {"nope": 1.0})


def test_impossible_settings_are_refused(world):
    lines, split, rec = world
    with pytest.raises(ValueError, match="weight"):
        rc.Recommender(split, lines, rec.components, weights={"EASE": 0.0})
    with pytest.raises(KeyError, match="unknown components"):
        rc.Recommender(split, lines, rec.components, weights={"SASRec": 1.0})
    with pytest.raises(ValueError, match="n_retrieve"):
        rc.Recommender(split, lines, rec.components, weights={"EASE": 1.0}, n_retrieve=0)
