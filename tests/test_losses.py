"""The losses: the hand gradient of the softmax, log-sum-exp, sampled softmax with logQ, BPR."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from m6rec_lib.losses import (
    bpr_loss,
    log_softmax,
    log_sum_exp,
    popularity_proposal,
    sample_negatives,
    sampled_softmax_loss,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
    uniform_proposal,
)


def _logits(b=5, n=7, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, generator=g, dtype=torch.float64) * scale


# --------------------------------------------------------------------------- log-sum-exp


def test_log_sum_exp_matches_torch_and_does_not_overflow():
    x = _logits()
    torch.testing.assert_close(log_sum_exp(x, dim=1), torch.logsumexp(x, dim=1))
    big = torch.tensor([[1000.0, 1001.0, 999.0]], dtype=torch.float64)
    assert torch.isinf(torch.log(torch.exp(big).sum(1))).all()  # the naive formula overflows
    out = log_sum_exp(big, dim=1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, 1001.0 + torch.log(torch.exp(big - 1001.0).sum(1)))
    assert log_sum_exp(big, dim=1, keepdim=True).shape == (1, 1)


def test_log_sum_exp_with_minus_inf_entries():
    x = torch.tensor([[0.0, float("-inf"), 1.0], [float("-inf")] * 3])
    out = log_sum_exp(x, dim=1)
    torch.testing.assert_close(out[0], torch.logsumexp(torch.tensor([0.0, 1.0]), 0))
    assert out[1] == float("-inf")
    torch.testing.assert_close(log_softmax(x[:1]).exp().sum(), torch.tensor(1.0))


# --------------------------------------------------------------------------- full softmax


def test_cross_entropy_with_indices_equals_torch():
    x, t = _logits(), torch.tensor([0, 3, 6, 2, 2])
    torch.testing.assert_close(softmax_cross_entropy(x, t), F.cross_entropy(x, t))


def test_hand_gradient_equals_softmax_minus_one_hot_and_autograd():
    x, t = _logits(), torch.tensor([0, 3, 6, 2, 2])
    expected = (torch.softmax(x, 1) - F.one_hot(t, 7).double()) / len(t)
    torch.testing.assert_close(softmax_cross_entropy_grad(x, t), expected, atol=1e-12, rtol=0)
    # autograd through torch's own cross-entropy
    xa = x.clone().requires_grad_(True)
    F.cross_entropy(xa, t).backward()
    assert (xa.grad - softmax_cross_entropy_grad(x, t)).abs().max() < 1e-6
    # the library loss uses the hand gradient in its backward pass
    xh = x.clone().requires_grad_(True)
    softmax_cross_entropy(xh, t).backward()
    assert (xh.grad - xa.grad).abs().max() < 1e-6


def test_weighted_targets_gradient_matches_autograd_and_finite_differences():
    x = _logits(3, 6, seed=1)
    w = torch.tensor([[0, 2, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 5]], dtype=torch.float64)
    # the same loss written with autograd-only operations
    xa = x.clone().requires_grad_(True)
    ref = -(w * torch.log_softmax(xa, 1)).sum() / w.sum()
    ref.backward()
    torch.testing.assert_close(softmax_cross_entropy(x, w), ref.detach())
    hand = softmax_cross_entropy_grad(x, w)
    assert (hand - xa.grad).abs().max() < 1e-6
    # central finite differences, coordinate by coordinate
    eps = 1e-6
    fd = torch.zeros_like(x)
    for idx in [(0, 0), (0, 1), (1, 2), (2, 5), (2, 0)]:
        plus, minus = x.clone(), x.clone()
        plus[idx] += eps
        minus[idx] -= eps
        fd[idx] = (softmax_cross_entropy(plus, w) - softmax_cross_entropy(minus, w)) / (2 * eps)
        assert abs(fd[idx] - hand[idx]) < 1e-6


def test_minus_inf_column_gets_no_probability_and_no_gradient():
    x = _logits(4, 5).index_fill(1, torch.tensor([0]), float("-inf")).requires_grad_(True)
    t = torch.tensor([1, 2, 3, 4])
    loss = softmax_cross_entropy(x, t)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(x.grad[:, 0] == 0) and torch.isfinite(x.grad).all()
    torch.testing.assert_close(x.grad.sum(1), torch.zeros(4, dtype=torch.float64))  # rows sum to 0


def test_cross_entropy_rejects_bad_targets():
    x = _logits(2, 3)
    with pytest.raises(ValueError, match="0..2"):
        softmax_cross_entropy(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="must match"):
        softmax_cross_entropy(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="no weight"):
        softmax_cross_entropy(x, torch.zeros(2, 3))


# --------------------------------------------------------------------------- sampled softmax


def test_proposals_never_sample_padding():
    q = uniform_proposal(4)
    torch.testing.assert_close(q, torch.tensor([0.0, 0.25, 0.25, 0.25, 0.25]))
    p = popularity_proposal([99, 1, 3, 0, 4])
    torch.testing.assert_close(p, torch.tensor([0.0, 1 / 8, 3 / 8, 0.0, 4 / 8]))
    draws = sample_negatives(p, 2000, torch.Generator().manual_seed(0))
    assert draws.shape == (2000,) and not (draws == 0).any() and not (draws == 3).any()
    with pytest.raises(ValueError):
        popularity_proposal([0, 0, 0])


def test_sampled_softmax_with_every_other_item_once_is_the_full_softmax():
    x, t = _logits(4, 6), torch.tensor([1, 0, 5, 3])
    others = torch.stack([torch.tensor([j for j in range(6) if j != k]) for k in t])  # (4, 5)
    pos, neg = x.gather(1, t[:, None]).squeeze(1), x.gather(1, others)
    torch.testing.assert_close(sampled_softmax_loss(pos, neg), F.cross_entropy(x, t))
    # a uniform proposal's correction subtracts the same constant everywhere: no change
    lq = torch.full((4,), -1.7, dtype=torch.float64)
    torch.testing.assert_close(
        sampled_softmax_loss(pos, neg, pos_log_q=lq, neg_log_q=lq[:, None].expand(4, 5)),
        F.cross_entropy(x, t),
    )


def test_accidental_hits_are_left_out():
    pos = torch.tensor([1.0])
    neg = torch.tensor([[1.0, 0.0]])
    masked = sampled_softmax_loss(pos, neg, accidental_hits=torch.tensor([[True, False]]))
    torch.testing.assert_close(masked, torch.logsumexp(torch.tensor([1.0, 0.0]), 0) - 1.0)


def _sampled_gradient(scores, target, proposal, m, log_q, seed=0):
    """Gradient of the sampled loss with respect to the full score vector (n,)."""
    s = scores.clone().requires_grad_(True)
    negs = sample_negatives(proposal, m, torch.Generator().manual_seed(seed))
    pos, neg = s[target].unsqueeze(0), s[negs].unsqueeze(0)
    kw = {}
    if log_q:
        lq = torch.log(proposal)
        kw = dict(pos_log_q=lq[target].unsqueeze(0), neg_log_q=lq[negs].unsqueeze(0))
    sampled_softmax_loss(pos, neg, accidental_hits=(negs == target).unsqueeze(0), **kw).backward()
    return s.grad


def test_log_q_correction_recovers_the_full_softmax_gradient_under_popularity_sampling():
    g = torch.Generator().manual_seed(3)
    n, target = 30, 4
    scores = torch.randn(n, generator=g, dtype=torch.float64)
    counts = torch.arange(1, n + 1, dtype=torch.float64) ** 2      # a steep popularity curve
    counts[0] = 0                                                   # index 0 plays the padding
    scores[0] = float("-inf")
    proposal = popularity_proposal(counts, dtype=torch.float64)
    full = torch.softmax(scores, 0) - F.one_hot(torch.tensor(target), n).double()
    corrected = _sampled_gradient(scores, target, proposal, 100_000, log_q=True)
    biased = _sampled_gradient(scores, target, proposal, 100_000, log_q=False)
    err_corrected = (corrected - full).abs().max().item()
    err_biased = (biased - full).abs().max().item()
    assert err_corrected < 0.02
    assert err_biased > 0.1 and err_biased > 10 * err_corrected
    # without the correction the popular items get far too much push-down
    assert biased[-1] > full[-1] + 0.1


def test_sampled_softmax_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(p,\)"):
        sampled_softmax_loss(torch.zeros(3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="both"):
        sampled_softmax_loss(torch.zeros(3), torch.zeros(3, 4), pos_log_q=torch.zeros(3))


# --------------------------------------------------------------------------- BPR


def test_bpr_value_and_gradient_sign():
    pos = torch.tensor([2.0, -1.0, 0.0], requires_grad=True)
    neg = torch.tensor([0.5, 1.0, 0.0], requires_grad=True)
    loss = bpr_loss(pos, neg)
    expected = -torch.log(torch.sigmoid(pos - neg)).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert (pos.grad < 0).all() and (neg.grad > 0).all()  # descent raises positives, lowers negatives
    sig = torch.sigmoid(pos - neg).detach()
    torch.testing.assert_close(pos.grad, -(1 - sig) / 3)
    torch.testing.assert_close(neg.grad, (1 - sig) / 3)


def test_bpr_is_stable_and_takes_several_negatives():
    huge = bpr_loss(torch.tensor([0.0]), torch.tensor([1000.0]))
    assert torch.isfinite(huge) and abs(huge.item() - 1000.0) < 1e-3
    pos, neg = torch.tensor([1.0, 2.0]), torch.tensor([[0.0, 1.0], [3.0, 2.0]])
    torch.testing.assert_close(bpr_loss(pos, neg), F.softplus(neg - pos[:, None]).mean())


def test_shared_negatives_per_row_give_the_same_loss_as_expanding_them():
    g = torch.Generator().manual_seed(5)
    neg_rows = torch.randn(3, 8, generator=g, dtype=torch.float64)        # (b, m)
    hits = torch.zeros(3, 8, dtype=torch.bool)
    hits[1, 2] = True
    rows = torch.tensor([0, 0, 1, 2, 2, 2])                                 # (p,)
    pos = torch.randn(6, generator=g, dtype=torch.float64)
    lq_pos, lq_neg = torch.rand(6, generator=g) - 3, torch.rand(8, generator=g) - 3
    shared = sampled_softmax_loss(pos, neg_rows, pos_log_q=lq_pos, neg_log_q=lq_neg,
                                  accidental_hits=hits, rows=rows)
    expanded = sampled_softmax_loss(pos, neg_rows[rows], pos_log_q=lq_pos, neg_log_q=lq_neg,
                                    accidental_hits=hits[rows])
    torch.testing.assert_close(shared, expanded)
    with pytest.raises(ValueError, match="rows"):
        sampled_softmax_loss(pos, neg_rows, rows=rows.float())
