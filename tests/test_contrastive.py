"""InfoNCE, its hand-written gradient, the logQ correction, NT-Xent, alignment and uniformity."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from m6rec_lib.contrastive import (
    alignment,
    in_batch_log_q,
    info_nce,
    info_nce_grad,
    info_nce_logits,
    nt_xent,
    uniformity,
)


def _vectors(b=6, m=None, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    k = F.normalize(torch.randn(m or b, d, generator=g, dtype=torch.float64), dim=1)
    return q, k


def test_info_nce_is_cross_entropy_over_the_batch():
    q, k = _vectors()
    expected = F.cross_entropy(q @ k.T / 0.07, torch.arange(6))
    assert torch.allclose(info_nce(q, k, 0.07), expected)


def test_hand_gradient_matches_autograd_with_every_option():
    q, k = _vectors(b=5, m=8)
    positives = torch.tensor([0, 3, 3, 7, 1])
    key_ids = torch.tensor([10, 11, 12, 11, 14, 15, 16, 17])
    log_q = torch.log(torch.linspace(0.05, 0.3, 8, dtype=torch.float64))
    for kwargs in ({"positives": positives}, {"positives": positives, "log_q": log_q, "key_ids": key_ids}):
        qa, ka = q.clone().requires_grad_(), k.clone().requires_grad_()
        info_nce(qa, ka, 0.2, **kwargs).backward()
        gq, gk = info_nce_grad(q, k, 0.2, **kwargs)
        assert torch.allclose(gq, qa.grad, atol=1e-10) and torch.allclose(gk, ka.grad, atol=1e-10)


def test_duplicate_items_are_not_negatives():
    q, k = _vectors(b=4)
    ids = torch.tensor([5, 6, 5, 7])         # rows 0 and 2 bought the same item
    logits, pos = info_nce_logits(q, k, 0.1, key_ids=ids)
    assert torch.isinf(logits[0, 2]) and torch.isinf(logits[2, 0])
    assert torch.isfinite(logits[torch.arange(4), pos]).all()
    assert torch.isfinite(logits[1]).all()


def test_log_q_correction_subtracts_log_q_from_every_column():
    q, k = _vectors(b=3)
    log_q = torch.tensor([-1.0, -2.0, -3.0], dtype=torch.float64)
    plain, _ = info_nce_logits(q, k, 0.5)
    corrected, _ = info_nce_logits(q, k, 0.5, log_q=log_q)
    assert torch.allclose(corrected, plain - log_q)
    # a uniform Q changes nothing
    assert torch.allclose(info_nce(q, k, 0.5, log_q=torch.full((3,), -1.1, dtype=torch.float64)), info_nce(q, k, 0.5))


def test_in_batch_log_q():
    counts = np.array([0, 1, 3, 6, 0])
    log_q = in_batch_log_q(counts)
    assert torch.isinf(log_q[0])
    assert torch.allclose(log_q[1:4].exp(), torch.tensor([0.1, 0.3, 0.6]))
    assert torch.isfinite(log_q[4])           # never bought: finite, small
    # inclusion probability of distinct candidates among N draws
    n = 4
    incl = in_batch_log_q(counts, [1, 2, 3], n_draws=n).exp()
    assert torch.allclose(incl, 1 - (1 - torch.tensor([0.1, 0.3, 0.6])) ** n, atol=1e-6)
    with pytest.raises(ValueError):
        in_batch_log_q(np.zeros(4))


def test_nt_xent_matches_the_definition():
    z1, z2 = _vectors(b=4, d=3, seed=1)
    loss = nt_xent(z1, z2, temperature=0.5)
    z = torch.cat([z1, z2])
    sim = z @ z.T / 0.5
    total = 0.0
    for i in range(8):
        j = (i + 4) % 8
        others = [sim[i, c] for c in range(8) if c != i]
        total += -(sim[i, j] - torch.logsumexp(torch.stack(others), 0))
    assert torch.allclose(loss, total / 8)
    # identical views are easier than random ones
    assert nt_xent(z1, z1, 0.5) < nt_xent(z1, z2, 0.5)


def test_alignment_and_uniformity():
    x, y = _vectors(b=200, d=8)
    assert alignment(x, x) == 0.0
    assert 0 < alignment(x, y) <= 4.0
    same = F.normalize(torch.ones(50, 8), dim=1)
    assert abs(uniformity(same)) < 1e-9       # collapsed: log E exp(0) = 0
    assert uniformity(x) < -1.0               # spread out
    # the subsample is seeded
    big = F.normalize(torch.randn(300, 4, generator=torch.Generator().manual_seed(2)), dim=1)
    assert uniformity(big, max_points=100, seed=3) == uniformity(big, max_points=100, seed=3)


def test_errors_say_what_is_wrong():
    q, k = _vectors()
    with pytest.raises(ValueError, match="temperature"):
        info_nce(q, k, 0.0)
    with pytest.raises(ValueError, match="same d"):
        info_nce(q, k[:, :3])
    with pytest.raises(ValueError, match="log_q"):
        info_nce(q, k, log_q=torch.zeros(3))
    with pytest.raises(ValueError, match="positive indices"):
        info_nce(q, k, positives=torch.full((6,), 9))
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(q[:1], k[:1])
    assert math.isfinite(float(info_nce(q, k)))


def test_cl4srec_joint_loss_and_training():
    from m6rec_lib.contrastive import cl4srec_loss, train_cl4srec
    from m6rec_lib.models.sasrec import SASRec, SASRecConfig, TrainConfig

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = SASRec(SASRecConfig(n_items=12, max_len=6, d_model=16, n_heads=2, n_layers=1, dropout=0.0))
        inputs = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 6, 7, 8, 9], [3, 4, 5, 6, 7, 8], [0, 0, 0, 10, 11, 12]])
        targets = torch.tensor([[0, 2, 3, 4, 5, 6], [0, 0, 7, 8, 9, 10], [4, 5, 6, 7, 8, 9], [0, 0, 0, 11, 12, 1]])
        before = inputs.clone()
        total, ce, cl = cl4srec_loss(model, inputs, targets, np.random.default_rng(0), cl_weight=0.5, temperature=0.5)
        assert torch.allclose(ce, model.loss(inputs, targets)) and cl > 0
        assert torch.allclose(total, ce + 0.5 * cl)
        assert torch.equal(inputs, before)                                   # views are copies
        plain, ce0, cl0 = cl4srec_loss(model, inputs, targets, np.random.default_rng(0), cl_weight=0.0)
        assert torch.allclose(plain, ce0) and cl0 == 0
        seqs = [np.arange(1, 13), np.arange(12, 0, -1), np.array([3, 5, 7, 9, 11]), np.array([2, 4, 6, 8])]
        history = train_cl4srec(model, seqs, None, TrainConfig(epochs=2, batch_size=2), cl_weight=0.1,
                                temperature=0.5, last_targets=3, progress=False)
        assert list(history["epoch"]) == [1, 2] and (history["cl"] > 0).all() and (history["ce"] > 0).all()
        with pytest.raises(ValueError, match="cl_weight"):
            train_cl4srec(model, seqs, None, cl_weight=-1.0, progress=False)
    finally:
        torch.set_num_threads(previous)


def test_alignment_per_user_averages_each_users_pairs():
    from m6rec_lib.contrastive import alignment, alignment_per_user

    g = torch.Generator().manual_seed(0)
    users = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    items = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    pair_users, pair_items = np.array([0, 0, 2, 3]), np.array([1, 2, 5, 4])
    per_user = alignment_per_user(users, items, pair_users, pair_items, n_users=4)
    assert np.isnan(per_user[1]) and per_user.shape == (4,)                     # user 1 has no pair
    by_hand = ((users[0] - items[1]).norm() ** 2 + (users[0] - items[2]).norm() ** 2) / 2
    assert per_user[0] == pytest.approx(float(by_hand), rel=1e-6)
    one_pair = [2, 3]                                                            # one pair each: = alignment()
    assert np.mean(per_user[one_pair]) == pytest.approx(alignment(users[one_pair], items[[5, 4]]), rel=1e-6)
