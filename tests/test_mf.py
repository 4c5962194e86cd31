"""History-based matrix factorisation: examples, shapes, scoring, and the three losses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from m6rec_lib.data import DataError, EvalSet
from m6rec_lib.losses import uniform_proposal
from m6rec_lib.models.mf import (
    HistoryMF,
    MFConfig,
    basket_examples,
    history_weights,
    mf_loss,
    scores_per_epoch,
    train_mf,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _lines() -> pd.DataFrame:
    """Two customers: user 0 buys baskets A (items 1, 2), B (2, 3), C (4); user 1 one basket only."""
    rows = [
        (0, 1, "A", "2011-01-01"), (0, 2, "A", "2011-01-01"), (0, 2, "B", "2011-02-01"),
        (0, 3, "B", "2011-02-01"), (0, 4, "C", "2011-03-01"), (1, 5, "D", "2011-01-05"),
        (0, -1, "C", "2011-03-01"),  # an item unknown to the index: ignored
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["user", "item", "invoice", "invoice_date"])
    frame["invoice_date"] = pd.to_datetime(frame["invoice_date"])
    return frame.sample(frac=1.0, random_state=0)  # order must not matter


def test_basket_examples_use_only_earlier_baskets():
    ex = basket_examples(_lines(), n_items=5)
    assert len(ex) == 2 and ex.inputs.shape == ex.targets.shape == (2, 6)
    np.testing.assert_array_equal(ex.users, [0, 0])
    np.testing.assert_array_equal(ex.inputs.toarray(), [[0, 1, 1, 0, 0, 0], [0, 1, 2, 1, 0, 0]])
    np.testing.assert_array_equal(ex.targets.toarray(), [[0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 0]])
    assert ex.moments[0] == np.datetime64("2011-02-01")
    assert len(ex.subset(np.array([False, True]))) == 1


def test_basket_examples_errors():
    with pytest.raises(DataError, match="columns"):
        basket_examples(pd.DataFrame({"user": [0]}), 3)
    with pytest.raises(DataError, match="two baskets"):
        basket_examples(_lines().query("user == 1"), 5)
    with pytest.raises(DataError, match="n_items"):
        basket_examples(_lines(), 3)


@pytest.mark.parametrize("weighting", ["log", "count", "binary"])
def test_history_weights_rows_sum_to_one(weighting):
    H = sp.csr_matrix(np.array([[0, 3, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]], dtype=float))
    W = history_weights(H, weighting).toarray()
    np.testing.assert_allclose(W.sum(1), [1, 0, 1], rtol=1e-6)
    assert W[0, 1] > W[0, 2] if weighting != "binary" else W[0, 1] == W[0, 2]
    with pytest.raises(ValueError, match="weighting"):
        history_weights(H, "tfidf")


def _eval_set(n_users=4, n_items=5) -> EvalSet:
    history = sp.csr_matrix(
        np.array([[0, 1, 0, 2, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 1], [0, 1, 1, 1, 1, 1]],
                 dtype=np.float32)  # fmt: skip
    )
    return EvalSet(
        users=np.array([0, 2, 3]), targets=[np.array([2]), np.array([1, 3]), np.array([5])],
        history=history, sequences=[np.array([1, 3, 3]), np.array([2, 5]), np.arange(1, 6)],
        moments=np.array(["2011-11-01"] * 3, dtype="datetime64[ns]"),
    )


def test_model_shapes_and_scores():
    model = HistoryMF(n_items=5, dim=4, seed=0)
    es = _eval_set()
    scores = model.score(es)
    assert scores.shape == (3, 6) and scores.dtype == np.float32
    assert np.all(scores[:, 0] == -np.inf) and np.isfinite(scores[:, 1:]).all()
    np.testing.assert_allclose(model.score(es, positions=[2, 0]), scores[[2, 0]], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.scorer(es)(np.array([1])), scores[[1]], rtol=1e-5, atol=1e-7)
    user_vecs = model.user_vectors(es.history[es.users])
    assert user_vecs.shape == (3, 4)
    # p_u is the weighted mean of the input embeddings of the history
    w = history_weights(es.history[[0]]).toarray()[0]
    torch.testing.assert_close(user_vecs[0], torch.from_numpy(w) @ model.item_in.detach())
    items = torch.tensor([1, 4])
    assert model.item_scores(user_vecs, items).shape == (3, 2)
    assert model.pair_scores(user_vecs, torch.tensor([1, 2, 3])).shape == (3,)
    assert model.pair_scores(user_vecs, torch.tensor([[1, 2], [3, 4], [5, 1]])).shape == (3, 2)
    with pytest.raises(DataError, match="columns"):
        model.user_vectors(sp.csr_matrix((2, 9)))


def test_model_and_config_reject_bad_parameters():
    with pytest.raises(ValueError):
        HistoryMF(0)
    with pytest.raises(ValueError, match="loss"):
        MFConfig(loss="softmax")
    with pytest.raises(ValueError, match="sampler"):
        MFConfig(sampler="zipf")
    with pytest.raises(ValueError, match="epochs"):
        MFConfig(epochs=0)


@pytest.mark.parametrize("loss", ["full", "sampled", "bpr"])
def test_each_loss_gives_a_finite_scalar_and_gradients(loss):
    ex = basket_examples(_lines(), 5)
    model = HistoryMF(5, dim=3)
    config = MFConfig(loss=loss, n_negatives=4, bpr_negatives=2)
    value = mf_loss(model, history_weights(ex.inputs), ex.targets, config, uniform_proposal(5),
                    torch.Generator().manual_seed(0))
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert model.item_out.grad is not None and model.item_in.grad.abs().sum() > 0
    if loss == "full":
        with pytest.raises(ValueError, match="proposal"):
            mf_loss(model, history_weights(ex.inputs), ex.targets, MFConfig(loss="bpr"))


@pytest.mark.parametrize("loss", ["full", "sampled", "bpr"])
def test_scores_per_epoch_counts_what_the_loss_computes(loss):
    """The cost formula against the scores mf_loss really computes over one epoch of batches."""
    ex = basket_examples(_lines(), 5)
    model = HistoryMF(5, dim=3)
    config = MFConfig(loss=loss, n_negatives=4, bpr_negatives=2, batch_size=1)
    counted = []
    for name in ("forward", "item_scores", "pair_scores"):
        original = getattr(model, name)

        def counting(*args, _original=original, **kwargs):
            out = _original(*args, **kwargs)
            counted.append(out.numel())
            return out
        setattr(model, name, counting)
    weights = history_weights(ex.inputs)
    for row in range(len(ex)):
        mf_loss(model, weights[row], ex.targets[row], config, uniform_proposal(5), torch.Generator().manual_seed(0))
    assert sum(counted) == scores_per_epoch(ex, config)


@pytest.mark.parametrize("loss, sampler", [("full", "uniform"), ("sampled", "popularity"), ("bpr", "uniform")])
def test_training_learns_a_toy_world(loss, sampler):
    """Customers who keep buying the same few items: every loss should learn to rank them first."""
    rng = np.random.default_rng(0)
    n_items, rows = 12, []
    for user in range(40):
        favourites = rng.choice(np.arange(1, n_items + 1), size=3, replace=False)
        for b in range(6):
            for item in rng.choice(favourites, size=2, replace=False):
                rows.append((user, int(item), f"{user}-{b}", pd.Timestamp("2011-01-01") + pd.Timedelta(days=b)))
    lines = pd.DataFrame(rows, columns=["user", "item", "invoice", "invoice_date"])
    ex = basket_examples(lines, n_items)
    history = sp.csr_matrix(ex.inputs[[5 * u + 4 for u in range(40)]])  # each user's last input
    es = EvalSet(
        users=np.arange(40), targets=[ex.targets[5 * u + 4].indices for u in range(40)], history=history,
        sequences=[np.array([1])] * 40, moments=np.array(["2011-02-01"] * 40, dtype="datetime64[ns]"),
    )
    config = MFConfig(loss=loss, sampler=sampler, dim=8, lr=0.05, epochs=15, batch_size=32, n_negatives=6)
    model, history_frame = train_mf(ex, config, es, progress=False)
    assert list(history_frame.columns[:2]) == ["epoch", "train_loss"]
    assert {"NDCG@10", "train_seconds", "seconds"} <= set(history_frame.columns)
    assert history_frame["train_loss"].iloc[-1] < history_frame["train_loss"].iloc[0]
    # the favourites (the items in the history) should be ranked in the top 3
    scores = model.score(es)
    top3 = np.argsort(-scores[:, 1:], axis=1)[:, :3] + 1
    hit = np.mean([len(set(top3[u]) & set(history[u].indices)) / 3 for u in range(40)])
    assert hit > 0.6, hit


def test_training_is_deterministic():
    ex = basket_examples(_lines(), 5)
    config = MFConfig(loss="sampled", dim=3, epochs=2, batch_size=1, n_negatives=3)
    a, _ = train_mf(ex, config, progress=False)
    b, _ = train_mf(ex, config, progress=False)
    torch.testing.assert_close(a.item_out, b.item_out)
