"""Tests of m6rec_lib.baselines on small hand-made matrices with known outcomes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from m6rec_lib.baselines import (
    EASE,
    IALS,
    Baseline,
    BuyAgain,
    CoOccurrence,
    ItemKNN,
    MostPop,
    check_train_matrix,
    tune,
)
from m6rec_lib.data import DataError
from m6rec_lib.data.evalset import EvalSet
from m6rec_lib.metrics import evaluate, rank_items


def make_eval_set(history_rows, targets=None, sequences=None, users=None, n_users=None, name="validation"):
    """EvalSet whose users have the given dense history rows (n_eval, n_items + 1)."""
    history_rows = np.asarray(history_rows, dtype=np.float32)
    n_eval, width = history_rows.shape
    users = np.arange(n_eval) if users is None else np.asarray(users)
    full = np.zeros((n_users or int(users.max()) + 1, width), dtype=np.float32)
    full[users] = history_rows
    if targets is None:
        targets = [np.array([1])] * n_eval
    if sequences is None:
        sequences = [np.repeat(np.arange(width), row.astype(int)) for row in history_rows]
    return EvalSet(users=users, targets=[np.asarray(t) for t in targets], history=sp.csr_matrix(full),
                   sequences=[np.asarray(s) for s in sequences],
                   moments=np.zeros(n_eval, dtype="datetime64[ns]"), name=name)


@pytest.fixture
def small_matrix():
    """6 users x 5 items (+ padding): counts with some repeated purchases."""
    dense = np.array([
        [0, 3, 1, 0, 0, 0],
        [0, 1, 1, 1, 0, 0],
        [0, 0, 2, 1, 0, 1],
        [0, 0, 0, 0, 4, 1],
        [0, 1, 0, 0, 1, 1],
        [0, 2, 1, 0, 0, 0],
    ], dtype=np.float32)
    return sp.csr_matrix(dense)


# --------------------------------------------------------------------------------- input checks

def test_train_matrix_checks(small_matrix):
    with pytest.raises(DataError, match="scipy.sparse"):
        check_train_matrix(small_matrix.toarray())
    bad = small_matrix.toarray()
    bad[0, 0] = 1
    with pytest.raises(DataError, match="column 0"):
        check_train_matrix(sp.csr_matrix(bad))
    bad = small_matrix.toarray()
    bad[0, 1] = -1
    with pytest.raises(DataError, match="non-negative"):
        check_train_matrix(sp.csr_matrix(bad))
    with pytest.raises(DataError, match="n_items \\+ 1"):
        check_train_matrix(sp.csr_matrix(np.zeros((2, 1))))


@pytest.mark.parametrize("make", [
    lambda: MostPop(count="revenue"),
    lambda: BuyAgain(by="price"),
    lambda: ItemKNN(k=0),
    lambda: ItemKNN(k=2.5),
    lambda: ItemKNN(shrinkage=-1),
    lambda: CoOccurrence(n_last=0),
    lambda: CoOccurrence(window=0),
    lambda: CoOccurrence(decay=0),
    lambda: CoOccurrence(decay=1.5),
    lambda: IALS(factors=0),
    lambda: IALS(reg=-0.1),
    lambda: IALS(alpha=-1),
    lambda: IALS(iterations=0),
    lambda: EASE(lam=-1.0),
    lambda: EASE(lam=0),
])
def test_impossible_parameters_raise_clear_errors(make):
    with pytest.raises(ValueError, match="must be"):
        make()


def test_score_checks(small_matrix):
    es = make_eval_set(np.zeros((2, 6)))
    with pytest.raises(RuntimeError, match="not fitted"):
        MostPop().score(es)
    model = MostPop().fit(small_matrix)
    with pytest.raises(DataError, match="same split"):
        model.score(make_eval_set(np.zeros((2, 8))))
    with pytest.raises(IndexError):
        model.score(es, positions=[5])
    with pytest.raises(ValueError, match="train_sequences"):
        CoOccurrence().fit(small_matrix)


# ------------------------------------------------------------------------------------ MostPop

def test_mostpop_counts_buyers_or_lines(small_matrix):
    es = make_eval_set(np.zeros((3, 6)))
    buyers = MostPop().fit(small_matrix).score(es)
    lines = MostPop(count="lines").fit(small_matrix).score(es)
    assert buyers.shape == (3, 6) and buyers.dtype == np.float32
    assert np.all(buyers[:, 0] == -np.inf)
    np.testing.assert_array_equal(buyers[0, 1:], [4, 4, 2, 2, 3])
    np.testing.assert_array_equal(lines[1, 1:], [7, 5, 2, 5, 3])
    assert (buyers == buyers[0]).all()
    assert rank_items(lines[0]).tolist() == [1, 2, 4, 5, 3]


# ----------------------------------------------------------------------------------- BuyAgain

def test_buyagain_orders_own_items_by_frequency_then_recency_then_popularity(small_matrix):
    # bought 3, 3, 1, 5 (oldest first): counts 3:2, 1:1, 5:1; 5 is more recent than 1
    history = np.zeros((2, 6))
    history[0, [3, 1, 5]] = [2, 1, 1]
    es = make_eval_set(history, sequences=[[3, 3, 1, 5], []])
    model = BuyAgain().fit(small_matrix)
    scores = model.score(es)
    # own items first (3, then 5 before 1 by recency), then the rest by popularity (buyers 2 > 4)
    assert rank_items(scores[0]).tolist() == [3, 5, 1, 2, 4]
    # the user with no history gets the popularity order (1 and 2 tie on 4 buyers: lower ID first)
    assert rank_items(scores[1]).tolist() == [1, 2, 5, 3, 4]
    assert scores[0, [3, 5, 1]].min() > scores[0, [2, 4]].max()
    recency = BuyAgain(by="recency").fit(small_matrix).score(es)
    assert rank_items(recency[0]).tolist() == [5, 1, 3, 2, 4]


def test_buyagain_recency_still_breaks_ties_for_heavy_buyers(small_matrix):
    # 3000 purchases of items 1 and 2 each, item 1 bought last: float32 scores must stay distinct
    history = np.zeros((1, 6))
    history[0, [1, 2]] = 3000
    sequence = np.r_[np.tile([1, 2], 2999), 2, 1]
    scores = BuyAgain().fit(small_matrix).score(make_eval_set(history, sequences=[sequence]))
    assert scores[0, 1] > scores[0, 2] > 3000


def test_buyagain_uses_the_eval_history_not_the_training_rows(small_matrix):
    # user 3 bought items 4 and 5 in training, but at the evaluation moment their history is item 2
    history = np.zeros((1, 6))
    history[0, 2] = 1
    es = make_eval_set(history, users=[3], n_users=6)
    top = rank_items(BuyAgain().fit(small_matrix).score(es)[0], k=1)
    assert top.tolist() == [2]


# ------------------------------------------------------------------------------------ ItemKNN

def brute_force_cosine(X, shrinkage):
    B = (X > 0).astype(float)
    n = B.shape[1]
    sim = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                common = float(np.sum(B[:, i] * B[:, j]))
                norm = np.sqrt(B[:, i].sum() * B[:, j].sum())
                sim[i, j] = common / (norm + shrinkage) if norm + shrinkage > 0 else 0.0
    return sim


@pytest.mark.parametrize("shrinkage", [0.0, 2.0])
def test_itemknn_matches_brute_force_cosine(small_matrix, shrinkage):
    model = ItemKNN(shrinkage=shrinkage).fit(small_matrix)
    expected = brute_force_cosine(small_matrix.toarray(), shrinkage)
    np.testing.assert_allclose(model.similarity_, expected, rtol=1e-6, atol=1e-7)
    history = np.zeros((2, 6))
    history[0, [1, 3]] = [5, 1]   # counts are binarised
    history[1, 5] = 1
    scores = model.score(make_eval_set(history))
    for row in range(2):
        own = np.flatnonzero(history[row])
        np.testing.assert_allclose(scores[row, 1:], expected[own].sum(axis=0)[1:], rtol=1e-6, atol=1e-7)


def test_itemknn_top_k_keeps_each_items_k_nearest():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(np.c_[np.zeros(40), rng.random((40, 12)) < 0.4])
    full = ItemKNN().fit(X).similarity_
    for k in (1, 3):
        kept = ItemKNN(k=k).fit(X).similarity_.toarray()
        for i in range(full.shape[0]):
            nonzero = np.flatnonzero(kept[i])
            assert len(nonzero) <= k
            np.testing.assert_allclose(kept[i, nonzero], full[i, nonzero])
            dropped = np.setdiff1d(np.arange(full.shape[1]), nonzero)
            if len(nonzero) and len(dropped):
                assert full[i, dropped].max() <= kept[i, nonzero].min() + 1e-7


# --------------------------------------------------------------------------------------- EASE

def test_ease_closed_form_matches_direct_ridge_solves(small_matrix):
    lam = 3.0
    model = EASE(lam=lam).fit(small_matrix)
    X = (small_matrix.toarray() > 0).astype(float)
    n = X.shape[1]
    B = np.zeros((n, n))
    for j in range(n):   # min ||X_j - X_{-j} b||^2 + lam ||b||^2, one column at a time
        others = [i for i in range(n) if i != j]
        Xo = X[:, others]
        B[others, j] = np.linalg.solve(Xo.T @ Xo + lam * np.eye(n - 1), Xo.T @ X[:, j])
    np.testing.assert_allclose(model.B_, B, rtol=1e-5, atol=1e-6)
    assert np.all(np.diag(model.B_) == 0)
    history = np.zeros((1, 6))
    history[0, [1, 4]] = [2, 1]
    scores = model.score(make_eval_set(history))
    np.testing.assert_allclose(scores[0, 1:], (B[1] + B[4])[1:], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------- CoOccurrence

def test_cooccurrence_first_order_transitions(small_matrix):
    sequences = [np.array([1, 2, 3]), np.array([0, 0, 1, 2, 4]), np.array([2, 3]), np.array([])]
    model = CoOccurrence(n_last=2, decay=0.5).fit(small_matrix, train_sequences=sequences)
    T = model.transitions_.toarray()
    assert T[1, 2] == 1.0                          # 1 -> 2 twice, nothing else after 1
    assert T[2, 3] == pytest.approx(2 / 3) and T[2, 4] == pytest.approx(1 / 3)
    assert T[0].sum() == 0                         # padding is ignored
    es = make_eval_set(np.zeros((1, 6)), sequences=[[5, 1, 2]])
    scores = model.score(es)[0]
    # last item 2 (weight 1): 3 -> 2/3, 4 -> 1/3; item 1 (weight 0.5): 2 -> 0.5; 5 is not used
    assert rank_items(scores).tolist()[:3] == [3, 2, 4]
    assert scores[3] == pytest.approx(1 + 2 / 3) and scores[2] == pytest.approx(1.5)
    assert scores[5] < 1 and scores[1] < 1        # popularity fallback below every transition
    counts = CoOccurrence(window=2, normalize=False).fit(small_matrix, train_sequences=sequences)
    assert counts.transitions_[1, 3] == 1 and counts.transitions_[1, 2] == 2
    bare = CoOccurrence(n_last=1, popularity_fallback=False).fit(small_matrix, train_sequences=sequences)
    assert bare.score(es)[0, 1] == 0.0


# --------------------------------------------------------------------------------------- iALS

def block_matrix(seed=0, n_per_block=15, items_per_block=6, p=0.6):
    """Two groups of users, each buying only within its own group of items."""
    rng = np.random.default_rng(seed)
    n_items = 2 * items_per_block
    dense = np.zeros((2 * n_per_block, n_items + 1))
    for u in range(2 * n_per_block):
        block = u // n_per_block
        items = 1 + block * items_per_block + np.arange(items_per_block)
        bought = items[rng.random(items_per_block) < p]
        dense[u, bought] = rng.integers(1, 4, size=len(bought))
    return dense


def test_ials_loss_decreases_and_recovers_block_structure():
    dense = block_matrix()
    model = IALS(factors=2, reg=1.0, alpha=2.0, iterations=6, seed=1).fit(sp.csr_matrix(dense))
    losses = np.array(model.loss_history_)
    assert len(losses) == 6
    assert np.all(np.diff(losses) <= 1e-6 * losses[0])      # ALS never increases the objective
    assert losses[-1] < losses[0]
    # fold-in: a user (row 0, block A in training) whose history at the evaluation moment is in block B
    history = np.zeros((2, 13))
    history[0, [7, 8]] = 1
    history[1, [1, 2]] = 1
    scores = model.score(make_eval_set(history, n_users=30))
    for row, (own_block, other_block) in enumerate([(range(7, 13), range(1, 7)), (range(1, 7), range(7, 13))]):
        unseen_own = [i for i in own_block if history[row, i] == 0]
        assert scores[row, unseen_own].min() > scores[row, list(other_block)].max()
    assert scores.dtype == np.float32 and np.all(scores[:, 0] == -np.inf)


def test_ials_loss_matches_dense_definition():
    dense = block_matrix(seed=2, n_per_block=5, items_per_block=3)
    model = IALS(factors=3, reg=0.5, alpha=2.0, iterations=2).fit(sp.csr_matrix(dense))
    X, Y = model.user_factors_, model.item_factors_
    C = 1 + 2.0 * dense
    P = (dense > 0).astype(float)
    expected = np.sum(C * (P - X @ Y.T) ** 2) + 0.5 * (np.sum(X ** 2) + np.sum(Y ** 2))
    assert model.loss() == pytest.approx(expected)
    assert model.loss_history_[-1] == pytest.approx(expected)


def test_ials_solve_is_the_exact_least_squares_solution():
    dense = block_matrix(seed=3, n_per_block=4, items_per_block=3)
    model = IALS(factors=2, reg=0.3, alpha=4.0, iterations=1).fit(sp.csr_matrix(dense))
    Y = model.item_factors_
    x = model.fold_in(sp.csr_matrix(dense[:1]))[0]
    c = 1 + 4.0 * dense[0]
    p = (dense[0] > 0).astype(float)
    expected = np.linalg.solve(Y.T @ (c[:, None] * Y) + 0.3 * np.eye(2), Y.T @ (c * p))
    np.testing.assert_allclose(x, expected, rtol=1e-8)


# ------------------------------------------------------------------------- scorer and tuning

def test_scorer_and_positions_agree_with_full_scoring(small_matrix):
    history = small_matrix.toarray()[:4]
    es = make_eval_set(history, targets=[[2], [3], [5], [1]])
    model = EASE(lam=1.0).fit(small_matrix)
    full = model.score(es)
    np.testing.assert_array_equal(model.score(es, positions=[2, 0]), full[[2, 0]])
    assert evaluate(model.scorer(es), es, ks=(2,)) == evaluate(full, es, ks=(2,))


class Oracle(Baseline):
    """Test model: the target baskets plus noise when good=True, their negation otherwise."""

    scored_on: list = []

    def __init__(self, targets, good: bool, noise: float = 0.0) -> None:
        super().__init__(good=good, noise=noise)
        self.targets, self.good, self.noise = targets, good, noise

    def fit(self, train_matrix, **kw):
        self._set_n_items(check_train_matrix(train_matrix))
        self.fit_kwargs = kw
        return self

    def score(self, eval_set, positions=None):
        Oracle.scored_on.append(eval_set.name)
        positions = np.arange(len(eval_set)) if positions is None else np.asarray(positions)
        perfect = np.zeros((len(eval_set), self.n_items_ + 1))
        for row, t in enumerate(self.targets):
            perfect[row, t] = 1.0
        perfect += self.noise * np.random.default_rng(0).random(perfect.shape)
        return (perfect if self.good else -perfect)[positions]


def test_tune_picks_the_best_on_validation(small_matrix):
    targets = [[1], [4], [5], [2]]
    es = make_eval_set(small_matrix.toarray()[:4], targets=targets, name="validation")
    Oracle.scored_on = []
    fits = []

    def make(good, noise):
        model = Oracle(targets, good, noise)
        fits.append(model)
        return model

    best, table = tune(make, {"good": [False, True], "noise": [0.0, 1.5]}, small_matrix, es,
                       metric="NDCG@3", fit_kwargs={"train_sequences": "given"})
    assert best == {"good": True, "noise": 0.0}
    assert len(table) == 4 and list(table.columns[:2]) == ["good", "noise"]
    assert "NDCG@3" in table.columns and "HR@10" in table.columns
    assert table["NDCG@3"].idxmax() == 2 and table.loc[2, "NDCG@3"] == 1.0
    assert set(Oracle.scored_on) == {"validation"}
    assert all(m.fit_kwargs == {"train_sequences": "given"} for m in fits)
    fits.clear()
    again, _, model = tune(make, {"good": [False, True], "noise": [0.0, 1.5]}, small_matrix, es,
                           metric="NDCG@3", return_model=True)
    assert again == best and model is fits[2]           # the best model, already fitted: no refit
    with pytest.raises(ValueError, match="non-empty"):
        tune(make, {"good": []}, small_matrix, es)
    with pytest.raises(ValueError, match="not computed"):
        tune(make, {"good": [True], "noise": [0.0]}, small_matrix, es, metric="F1")


def test_all_baselines_score_and_evaluate_end_to_end(small_matrix):
    history = small_matrix.toarray()[:5]
    es = make_eval_set(history, targets=[[4], [5], [1], [2], [3, -1]], n_users=6)
    sequences = [np.repeat(np.arange(6), row.astype(int)) for row in small_matrix.toarray()]
    models = [MostPop(), BuyAgain(), ItemKNN(k=2, shrinkage=1.0), CoOccurrence(),
              IALS(factors=3, iterations=2), EASE(lam=10.0)]
    for model in models:
        model.fit(small_matrix, train_sequences=sequences)
        scores = model.score(es)
        assert scores.shape == (5, 6) and np.all(scores[:, 0] == -np.inf) and np.isfinite(scores[:, 1:]).all()
        result = evaluate(scores, es, ks=(1, 3), exclude_seen=True)
        assert 0.0 <= result["NDCG@3"] <= 1.0
        assert repr(model).startswith(type(model).__name__ + "(")


def test_default_grids_name_the_course_baselines():
    from m6rec_lib.baselines import default_grids

    for smoke in (False, True):
        grids = default_grids(smoke)
        assert set(grids) == {"ItemKNN", "Co-occurrence", "iALS", "EASE", "BPR"}
        assert all(values for grid in grids.values() for values in grid.values())
    assert all(len(v) == 1 for grid in default_grids(True).values() for v in grid.values())   # smoke: one setting


def test_tune_baselines_chooses_on_the_first_validation_half(tmp_path, monkeypatch):
    from m6rec_lib.baselines import LOSSES, tune_baselines
    from m6rec_lib.data import next_basket_split
    from m6rec_lib.data.toy import make_toy_world

    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    world = make_toy_world(n_users=80, n_items=40, seed=0, baskets_per_user=8, draws_per_basket=5)
    split = next_basket_split(world.lines, val_start="2011-08-01", test_start="2011-10-01", end="2011-12-02")
    grids = {"EASE": {"lam": [1.0, 100.0]}, "Co-occurrence": {"n_last": [1]},
             "BPR": {"lr": [0.03], "dim": [8], "epochs": [1]}}
    models, table = tune_baselines(split, grids, progress=False)
    assert list(models) == ["MostPop", "Buy-Again", "EASE", "Co-occurrence", "BPR"]
    assert list(table.index) == list(models) and table.loc["EASE", "settings tried"] == 2
    assert set(table["loss / negatives"]) <= set(LOSSES.values())
    first, _ = split.validation.halves()
    lam = float(table.loc["EASE", "chosen"].split("=")[1])
    by_hand = {l: evaluate(EASE(lam=l).fit(split.train_matrix).scorer(first), first, ks=(10,), exclude_seen=True)["NDCG@10"]
               for l in (1.0, 100.0)}
    assert by_hand[lam] == max(by_hand.values())                                  # the best on the first half
    assert table.loc["EASE", "validation NDCG@10"] == pytest.approx(by_hand[lam])
    for name, model in models.items():                                            # every model scores
        assert model.scorer(split.test)(np.arange(3)).shape == (3, split.n_items + 1), name
    again, _ = tune_baselines(split, {"BPR": grids["BPR"]}, progress=False)        # BPR comes from the cache
    assert np.allclose(again["BPR"].score(split.test), models["BPR"].score(split.test))
    with pytest.raises(ValueError, match="no baseline called"):
        tune_baselines(split, {"SVD": {"k": [1]}}, progress=False)
