"""m6rec_lib.recommender: retrieval + ranking + explanation behind recommend(customer, k)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec_lib import recommender as rc
from m6rec_lib.baselines import EASE, MostPop
from m6rec_lib.data import next_basket_split
from m6rec_lib.metrics import evaluate, evaluate_both
from m6rec_lib.new_products import extend_catalogue, targets_among
from m6rec_lib.text_retrieval import standardise_over

from test_new_products import world_with_new_products

COLD = 99999


class PopularRetriever:
    """A stand-in retriever: the most popular products for everyone."""

    def __init__(self, popularity: np.ndarray):
        self.order = np.argsort(-popularity[1:], kind="stable") + 1

    def retrieve(self, sequences, top_k):
        ids = np.tile(self.order[:top_k], (len(sequences), 1))
        return ids, np.zeros(ids.shape)


def text_like(cat):
    """A stand-in text scorer of new products: a fixed preference per product, the same for everyone."""
    prefs = np.linspace(-1.0, 1.0, cat.n_items + 1)

    def score(es):
        out = np.full((len(es), cat.n_items + 1), -np.inf)
        out[:, cat.is_new] = prefs[cat.is_new]
        return out
    return score


@pytest.fixture(scope="module")
def world():
    lines, _ = world_with_new_products()
    cold = lines.iloc[:2].copy()  # a customer whose only purchase is after the recommender's moment
    cold["customer_id"] = COLD
    cold["invoice"] = "C-COLD"
    cold["invoice_date"] = pd.Timestamp("2011-11-20 10:00")
    lines = pd.concat([lines, cold], ignore_index=True)
    split = next_basket_split(lines)
    cat = extend_catalogue(split, lines)
    ease = EASE(lam=50.0).fit(split.train_matrix)
    pop = MostPop().fit(split.train_matrix)
    retriever = PopularRetriever(pop.popularity_)
    rec = rc.Recommender(split, lines, {"EASE": ease.score, "MostPop": pop.score},
                         weights={"EASE": 1.0, "MostPop": 0.5}, half_life=20.0, own_bonus=3.0, repeat_weight=1.0,
                         retriever=retriever, n_retrieve=8, catalogue=cat,
                         new_scorers={"text": text_like(cat), "sales": cat.sales_before})
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
    test = rec.catalogue.test
    feats = rec.features(test)
    own, logp = rc.own_mask(test), rc.repeat_log_probability(test)
    scores = rc.blend_scores(feats, rec.weights, own, logp, own_bonus=1e6, repeat_weight=100.0)
    for row in range(len(test)):
        mine = np.flatnonzero(own[row])
        if len(mine) < 2:
            continue
        top = np.argsort(-scores[row], kind="stable")[: len(mine)]
        assert set(top) == set(mine)
        assert (np.diff(logp[row, top]) <= 1e-9).all()  # most bought first


def test_candidates_are_retrieved_or_bought_before(world):
    _, split, rec = world
    test = rec.catalogue.test
    assert not rec.uses_new_products              # new_bonus is -inf by default
    cand = rec.candidates(test)
    retrieved = set(rec.retriever.order[:8])
    for row in range(len(test)):
        own = set(np.flatnonzero(test.history[test.users[row]].toarray()[0] > 0))
        assert set(np.flatnonzero(cand[row])) == retrieved | own
    scores = rec.score(test)
    assert np.isneginf(scores[~cand]).all() and np.isfinite(scores[cand]).all()
    # with the text path, the new products on sale join the candidates
    on_sale_new = rec.catalogue.on_sale(test) & rec.catalogue.is_new[None, :]
    assert on_sale_new.any()
    assert (rec.candidates(test, new_products=True) == (cand | on_sale_new)).all()
    with pytest.raises(ValueError, match="catalogue's eval sets"):
        rec.score(split.test)


def test_new_products_enter_by_their_scorers_and_bonus(world):
    lines, split, rec = world
    cat, test = rec.catalogue, rec.catalogue.test
    path = rc.Recommender(split, lines, rec.components, weights={**rec.weights, "text": 1.0}, half_life=20.0,
                          retriever=rec.retriever, n_retrieve=8, catalogue=cat,
                          new_scorers=rec.new_scorers, new_bonus=1e6)
    assert path.uses_new_products
    scores = path.score(test)
    allowed = cat.on_sale(test) & cat.is_new[None, :]
    feats = path.features(test, ["text"])
    assert np.allclose(feats["text"], standardise_over(rec.new_scorers["text"](test), allowed))
    for row in np.flatnonzero(allowed.any(axis=1)):
        n_new = int(allowed[row].sum())
        top = np.argsort(-scores[row], kind="stable")[:n_new]
        assert set(top) == set(np.flatnonzero(allowed[row]))             # a huge bonus: new products first
        assert (np.diff(feats["text"][row, top]) <= 1e-9).all()          # ordered by the text score
    cid = int(split.users.customer_ids[test.users[int(np.flatnonzero(allowed.any(axis=1))[0])]])
    out = path.recommend(cid, k=3)
    assert (out["source"] == "new product").any()
    assert out.loc[out["source"] == "new product", "explanation"].str.startswith("New in the shop since").all()


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
    scores = rec.score(rec.catalogue.test)[0]
    assert list(out["item"]) == list(np.argsort(-scores, kind="stable")[:6])
    new = rec.recommend(cid, k=5, exclude_bought=True)
    assert not set(new["item"]) & set(history["item"]) and (new["source"] != "bought before").all()


def test_clear_errors_and_the_cold_fallback(world):
    _, split, rec = world
    with pytest.raises(KeyError, match="unknown"):
        rec.recommend(1, k=5)
    cid = int(split.users.customer_ids[split.test.users[0]])
    for bad_id in ("abc", str(cid), float(cid), True, False, None, [cid]):
        with pytest.raises(TypeError, match="customer IDs are integers"):
            rec.recommend(bad_id, k=5)
    assert rec.recommend(np.int64(cid), k=3).equals(rec.recommend(cid, k=3))   # NumPy integers are fine
    for bad in (0, -1, rec.catalogue.n_items + 1):
        with pytest.raises(ValueError, match="k must be an integer in 1.."):
            rec.recommend(cid, k=bad)
    for bad in (2.5, 10.0, "10", True, None):
        with pytest.raises(TypeError, match="k must be an integer"):
            rec.recommend(cid, k=bad)
    with pytest.raises(TypeError, match="exclude_bought"):
        rec.recommend(cid, k=3, exclude_bought="yes")
    cold = rec.recommend(COLD, k=5)
    assert len(cold) == 5 and (cold["source"] == "popular").all()
    assert cold["explanation"].str.startswith("Popular with").all()
    assert rec.history(COLD).empty


def test_tune_blend_picks_the_best_validation_setting(world):
    _, split, rec = world
    val = rec.catalogue.validation
    feats = rec.features(val, ["EASE", "MostPop"])
    cand = rec.candidates(val)
    result = rc.tune_blend(feats, val, cand, weight_grid=(0.0, 1.0), half_lives=(None, 20.0),
                           own_bonus_grid=(0.0, 1000.0), repeat_weight_grid=(1.0,))
    best_new = rc.blend_scores(feats, result.weights, candidates=cand)
    assert result.new_table["NDCG@10"].max() == pytest.approx(
        evaluate(best_new, val, ks=(10,), exclude_seen=True)["NDCG@10"])
    assert len(result.all_table) == 4 and result.own_bonus in (0.0, 1000.0) and result.half_life in (None, 20.0)
    assert set(result.weights) == {"EASE", "MostPop"}
    with pytest.raises(KeyError):
        rc.blend_scores(feats, {"nope": 1.0})


def test_tune_new_path_chooses_on_validation_and_agrees_with_the_recommender(world):
    lines, split, rec = world
    cat, val = rec.catalogue, rec.catalogue.validation
    base = rec.score(val)                         # the ID blend without new products
    allowed = cat.on_sale(val) & cat.is_new[None, :]
    feats = rec.features(val, ["text", "sales"])
    result = rc.tune_new_path(base, feats, val, allowed, cat.is_new, weight_grid=(0.0, 1.0),
                              scale_grid=(1.0,), bonus_grid=(-1e6, 1e6))
    assert len(result.path_table) == 3 and len(result.entry_table) == 3
    new_targets = targets_among(val, cat.is_new)
    best = {n: float(result.path_table.iloc[int(np.argmax(result.path_table["NDCG@10"]))][n]) for n in feats}
    mix = sum(w * feats[n] for n, w in best.items())
    path_only = np.where(allowed, mix, -np.inf)[new_targets.info["positions"]]
    assert result.path_table["NDCG@10"].max() == pytest.approx(evaluate(path_only, new_targets, ks=(10,))["NDCG@10"])
    chosen = rc.Recommender(split, lines, rec.components, weights={**rec.weights, **result.weights},
                            half_life=rec.half_life, own_bonus=rec.own_bonus, repeat_weight=rec.repeat_weight,
                            retriever=rec.retriever, n_retrieve=8, catalogue=cat, new_scorers=rec.new_scorers,
                            new_bonus=result.new_bonus)
    got = evaluate_both(chosen.score(val), val, ks=(10,))["NDCG@10"].mean()
    assert got == pytest.approx(result.entry_table["mean"].max())       # the table's best, reproduced
    assert result.entry_table.iloc[0]["new_bonus"] == -np.inf            # "never" is always a candidate
    table = rc.path_table({"text + sales": result}, {"text + sales": result})
    assert table.loc["text + sales", "stage 4: mean of both lists"] == pytest.approx(result.entry_table["mean"].max())
    with pytest.raises(ValueError, match="new-product scorer"):
        rc.tune_new_path(base, {}, val, allowed, cat.is_new)


def test_impossible_settings_are_refused(world):
    lines, split, rec = world
    cat = rec.catalogue
    with pytest.raises(ValueError, match="weight"):
        rc.Recommender(split, lines, rec.components, weights={"EASE": 0.0}, catalogue=cat)
    with pytest.raises(KeyError, match="unknown components"):
        rc.Recommender(split, lines, rec.components, weights={"SASRec": 1.0}, catalogue=cat)
    with pytest.raises(ValueError, match="n_retrieve"):
        rc.Recommender(split, lines, rec.components, weights={"EASE": 1.0}, n_retrieve=0, catalogue=cat)
    with pytest.raises(ValueError, match="name both"):
        rc.Recommender(split, lines, rec.components, weights={"EASE": 1.0}, catalogue=cat,
                       new_scorers={"EASE": cat.sales_before})



def test_ablations_take_out_one_part_at_a_time(world):
    lines, split, rec = world
    cat, test = rec.catalogue, rec.catalogue.test
    path = rc.Recommender(split, lines, rec.components, weights={**rec.weights, "text": 1.0, "sales": 0.5},
                          half_life=rec.half_life, own_bonus=rec.own_bonus, repeat_weight=rec.repeat_weight,
                          retriever=rec.retriever, n_retrieve=8, catalogue=cat, new_scorers=rec.new_scorers, new_bonus=2.0)
    got = dict(path.ablations(test))
    assert list(got) == ["capstone", "without the text path", "without text", "without sales", "without EASE",
                         "without MostPop", "without the repeat term", "without retrieval"]
    assert np.array_equal(got["capstone"], path.score(test))
    assert np.array_equal(got["without the text path"], rec.score(test))       # the same blend, new_bonus -inf
    no_sales = rc.Recommender(split, lines, rec.components, weights={**rec.weights, "text": 1.5},   # same total weight
                              half_life=rec.half_life, own_bonus=rec.own_bonus, repeat_weight=rec.repeat_weight,
                              retriever=rec.retriever, n_retrieve=8, catalogue=cat, new_scorers=rec.new_scorers,
                              new_bonus=2.0)
    assert np.allclose(got["without sales"], no_sales.score(test))
    everything = got["without retrieval"]
    assert np.isfinite(everything[:, 1: split.n_items + 1]).all()


def test_score_many_and_variant_agree_with_score(world):
    lines, split, rec = world
    test = rec.catalogue.test
    variants = {"as is": rec, "text path": rec.variant(weights={"text": 1.0}, new_bonus=0.5),
                "EASE only": rec.variant(weights={"MostPop": 0.0}, own_bonus=0.0)}
    assert variants["text path"].weights == {**rec.weights, "text": 1.0} and rec.new_bonus == -np.inf
    got = rec.score_many(test, variants)
    for name, v in variants.items():
        assert np.allclose(got[name], v.score(test)), name
    with pytest.raises(TypeError, match="cannot change"):
        rec.variant(catalogue=None)
    with pytest.raises(KeyError, match="unknown components"):
        rec.variant(weights={"nope": 1.0})
