"""SASRec: masking, causality, padding, the loss against brute force, training, caching; the mixture."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from m6rec_lib.data.evalset import EvalSet
from m6rec_lib.metrics import evaluate
from m6rec_lib.mixture import mix_with_repeats, repeat_distribution, tune_repeat_mixture
from m6rec_lib.models.sasrec import (
    SASRec,
    SASRecConfig,
    TrainConfig,
    attention_mask,
    basket_ids,
    basket_loss,
    build_training_windows,
    full_softmax_cross_entropy,
    load_or_train_sasrec,
    split_fingerprint,
    train_sasrec,
)

N_ITEMS = 12


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw) -> SASRec:
    torch.manual_seed(0)
    return SASRec(SASRecConfig(n_items=N_ITEMS, max_len=8, d_model=16, n_heads=2, n_layers=2, dropout=0.0, **kw)).eval()


def cyclic_eval_set(n_users: int = 24, seed: int = 0) -> tuple[list[np.ndarray], EvalSet]:
    """Each user walks the cycle 1 -> 2 -> ... -> N_ITEMS -> 1 from a random start; the target is the next step."""
    rng = np.random.default_rng(seed)
    seqs, targets = [], []
    for _ in range(n_users):
        start, length = rng.integers(0, N_ITEMS), rng.integers(4, 15)
        walk = (start + np.arange(length + 1)) % N_ITEMS + 1
        seqs.append(walk[:-1])
        targets.append(walk[-1:])
    history = sp.csr_matrix((n_users, N_ITEMS + 1), dtype=np.float32)
    es = EvalSet(users=np.arange(n_users), targets=targets, history=history, sequences=seqs,
                 moments=np.zeros(n_users, dtype="datetime64[ns]"), name="cycle")
    return seqs, es


def test_attention_mask_is_causal_and_skips_padding():
    inputs = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4]])
    mask = attention_mask(inputs)[:, 0]
    assert mask.shape == (2, 4, 4)
    # a real position sees itself and the real positions before it, never padding or the future
    assert mask[0, 3].tolist() == [False, False, True, True]
    assert mask[0, 2].tolist() == [False, False, True, False]
    assert mask[1].equal(torch.ones(4, 4, dtype=torch.bool).tril())
    # padding rows see only themselves (no empty row, so no NaN)
    assert mask[0, 0].tolist() == [True, False, False, False]


@pytest.mark.parametrize("options", [{}, {"bag": True}])
def test_states_are_causal_and_padding_does_not_matter(options):
    model = tiny(**options)
    if model.bag_embedding is not None:
        with torch.no_grad():
            model.bag_embedding.weight[1:].normal_()
    x = torch.tensor([[0, 0, 5, 6, 7, 8]])
    y = x.clone()
    y[0, -1] = 9                                   # change only the last item
    hx, hy = model.encode(x), model.encode(y)
    assert torch.allclose(hx[:, :-1], hy[:, :-1], atol=1e-6)   # earlier states cannot see it
    assert not torch.allclose(hx[:, -1], hy[:, -1])
    # more left padding gives the same prediction (positions count from the right)
    short = model(torch.tensor([[5, 6, 7, 8]]))
    long = model(torch.tensor([[0, 0, 0, 0, 5, 6, 7, 8]]))
    assert torch.allclose(short, long, atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"tie_output": False, "output_bias": True, "bag": True}])
def test_loss_is_full_softmax_ce_over_real_targets(options):
    model = tiny(**options)
    if model.output_bias is not None:
        with torch.no_grad():
            model.output_bias.normal_()
    inputs = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    targets = torch.tensor([[0, 0, 4, 5, 6], [2, 3, 4, 0, 6]])  # 0 = no target here
    states = model.encode(inputs)
    logits = model.item_logits(states)                             # (b, L, n_items + 1)
    terms = []
    for b in range(2):
        for t in range(5):
            if targets[b, t] > 0:
                logp = F.log_softmax(logits[b, t, 1:], dim=0)        # padding is not a class
                terms.append(-logp[targets[b, t] - 1])
    assert torch.allclose(model.loss(inputs, targets), torch.stack(terms).mean(), atol=1e-5)


def test_chunked_cross_entropy_equals_the_plain_one():
    torch.manual_seed(0)
    h = torch.randn(37, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 8, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 11, (37,))
    b = torch.randn(11, dtype=torch.float64, requires_grad=True)
    plain = F.cross_entropy(h @ w.T + b, t)
    # a target distribution per row, given sparsely, against F.cross_entropy with probabilities
    q = torch.softmax(torch.randn(37, 11, dtype=torch.float64), dim=1) * (torch.rand(37, 11) < 0.3)
    q[:, 0] += 1e-3
    q = q / q.sum(1, keepdim=True)
    rows, cols = q.nonzero(as_tuple=True)
    soft = full_softmax_cross_entropy(h, w, (rows, cols, q[rows, cols]), b, chunk_size=5)
    assert torch.allclose(soft, F.cross_entropy(h @ w.T + b, q))
    assert torch.allclose(torch.autograd.grad(soft, h)[0],
                          torch.autograd.grad(F.cross_entropy(h @ w.T + b, q), h)[0])
    gh, gw, gb = torch.autograd.grad(plain, (h, w, b))
    chunked = full_softmax_cross_entropy(h, w, t, b, chunk_size=5)
    ch, cw, cb = torch.autograd.grad(3.0 * chunked, (h, w, b))          # an upstream gradient scales it
    assert torch.allclose(chunked, plain)
    assert torch.allclose(ch, 3 * gh) and torch.allclose(cw, 3 * gw) and torch.allclose(cb, 3 * gb)
    with torch.no_grad():
        assert torch.allclose(full_softmax_cross_entropy(h, w, t, b), plain)


def test_chunked_cross_entropy_without_bias_matches_autograd():
    torch.manual_seed(1)
    h = torch.randn(23, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 9, (23,))
    plain = F.cross_entropy(h @ w.T, t)
    chunked = full_softmax_cross_entropy(h, w, t, chunk_size=4)
    assert torch.allclose(chunked, plain)
    for a, b in zip(torch.autograd.grad(plain, (h, w)), torch.autograd.grad(chunked, (h, w))):
        assert torch.allclose(a, b)


def test_bfloat16_products_stay_close_to_float32():
    torch.manual_seed(0)
    h, w = torch.randn(50, 16), torch.randn(30, 16) * 0.3
    t = torch.randint(0, 30, (50,))
    exact = F.cross_entropy(h @ w.T, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = full_softmax_cross_entropy(h, w, t)
    assert fast.dtype == torch.float32 and abs(fast.item() - exact.item()) < 0.02 * exact.item()


def test_windows_carry_next_items_and_next_baskets():
    seqs = [np.array([1, 2, 3, 4, 5, 6, 7]), np.array([3, 4])]
    baskets = [np.array([1, 1, 2, 2, 2, 3, 3]), np.array([5, 5])]
    w = build_training_windows(seqs, baskets, max_len=4)
    assert w.inputs.tolist() == [[4, 5, 6, 7], [0, 1, 2, 3], [0, 0, 3, 4]]
    assert w.next_items.tolist() == [[5, 6, 7, 0], [0, 2, 3, 4], [0, 0, 4, 0]]
    # basket {1, 2} ends at item 2 (window 1, column 2): next basket {3, 4, 5};
    # basket {3, 4, 5} ends at item 5 (window 0, column 1): next basket {6, 7}
    rows = {(int(a), int(b), int(i)): round(q, 6) for a, b, i, q in w.basket_targets}
    assert rows == {(1, 2, 3): 0.333333, (1, 2, 4): 0.333333, (1, 2, 5): 0.333333, (0, 1, 6): 0.5, (0, 1, 7): 0.5}
    # every line of a basket -> the next basket; every line -> the rest of its own basket
    every = build_training_windows(seqs[:1], baskets[:1], 8, basket_targets="next_everywhere")
    assert {(int(c), int(i)) for _, c, i, _ in every.basket_targets} == \
        {(c, i) for c in (1, 2) for i in (3, 4, 5)} | {(c, i) for c in (3, 4, 5) for i in (6, 7)}
    rest = build_training_windows(seqs[:1], baskets[:1], 8, basket_targets="rest_of_basket")
    assert {(int(c), int(i)) for _, c, i, _ in rest.basket_targets} == {(1, 2), (3, 4), (3, 5), (4, 5), (6, 7)}
    # a batch's targets are renumbered to the windows' places in the batch
    batch = w.batch_targets(np.array([1, 0]))
    assert {(int(r), int(c), int(i)) for r, c, i, _ in batch} == {(0, 2, 3), (0, 2, 4), (0, 2, 5), (1, 1, 6), (1, 1, 7)}
    # with new_items_only, items bought before are not targets
    w_new = build_training_windows([np.array([1, 2, 1, 3])], [np.array([1, 1, 2, 2])], max_len=4,
                                   new_items_only=True)
    assert [int(r[2]) for r in w_new.basket_targets] == [3]
    assert w_new.next_items.tolist() == [[2, 0, 3, 0]]                  # the repeat of item 1 is no target
    # shuffling inside baskets keeps each basket's set of items in place
    shuffled = build_training_windows(seqs, baskets, 4, rng=np.random.default_rng(1))
    assert sorted(shuffled.inputs[1, 1:3].tolist()) == [1, 2]
    assert set(shuffled.inputs[1, 3:].tolist() + shuffled.inputs[0, :2].tolist()) == {3, 4, 5}


def test_windows_can_keep_only_the_last_ones_of_each_sequence():
    seqs = [np.array([1, 2, 3, 4, 5, 6, 7]), np.array([3, 4])]
    baskets = [np.array([1, 1, 2, 2, 2, 3, 3]), np.array([5, 5])]
    w = build_training_windows(seqs, baskets, max_len=4, max_windows=1)
    assert w.inputs.tolist() == [[4, 5, 6, 7], [0, 0, 3, 4]]
    assert {(int(a), int(b), int(i)) for a, b, i, _ in w.basket_targets} == {(0, 1, 6), (0, 1, 7)}
    # "new" still means new to the customer: item 1 was bought before the kept window
    kept = build_training_windows([np.array([1, 2, 3, 1])], None, max_len=2, new_items_only=True, max_windows=1)
    assert kept.inputs.tolist() == [[3, 1]] and kept.next_items.tolist() == [[0, 0]]
    with pytest.raises(ValueError, match="max_windows"):
        build_training_windows(seqs, baskets, max_len=4, max_windows=0)


def test_attention_dropout_defaults_to_dropout_and_can_be_switched_off():
    same = SASRec(SASRecConfig(n_items=5, max_len=4, d_model=8, n_heads=2, dropout=0.3))
    off = SASRec(SASRecConfig(n_items=5, max_len=4, d_model=8, n_heads=2, dropout=0.3, attention_dropout=0.0))
    assert [b.attn_dropout for b in same.blocks] == [0.3, 0.3] and [b.attn_dropout for b in off.blocks] == [0.0, 0.0]
    assert off.blocks[0].dropout.p == 0.3


def test_basket_loss_is_cross_entropy_against_the_basket_distribution():
    model = tiny()
    w = build_training_windows([np.array([1, 2, 3, 4, 5, 6, 7])], [np.array([1, 1, 2, 2, 2, 3, 3])], 8)
    states = model.encode(w.inputs)
    logp = F.log_softmax(model.item_logits(states[0])[:, 1:], dim=-1)   # (L, n_items)
    # two basket ends: item 2 (column 2) -> {3, 4, 5}; item 5 (column 5) -> {6, 7}
    by_hand = -(logp[2, [2, 3, 4]].mean() + logp[5, [5, 6]].mean()) / 2
    assert torch.allclose(basket_loss(model, states, w.basket_targets), by_hand, atol=1e-6)


def test_scores_have_the_evaluator_shape():
    seqs, es = cyclic_eval_set(5)
    scores = tiny().score(es)
    assert scores.shape == (5, N_ITEMS + 1)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    with pytest.raises(ValueError, match="max_len"):
        tiny().encode(torch.ones(1, 9, dtype=torch.long))


def test_config_errors_are_explained():
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(n_items=5, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="validation_view"):
        TrainConfig(validation_view="some")
    with pytest.raises(ValueError, match="attention_dropout"):
        SASRecConfig(n_items=5, attention_dropout=1.0)
    with pytest.raises(ValueError, match="windows_per_customer"):
        TrainConfig(windows_per_customer=0)


def test_training_learns_a_cycle_and_keeps_the_best_epoch():
    seqs, es = cyclic_eval_set(48)
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=8, d_model=16, n_heads=2, dropout=0.0))
    before = evaluate(model.score(es), es, ks=(1,))["HR@1"]
    history = train_sasrec(model, seqs, es, TrainConfig(epochs=8, batch_size=16, lr=3e-2, patience=8,
                                                          validation_view="all"), progress=False)
    after = evaluate(model.score(es), es, ks=(1,))["HR@1"]
    assert after > 0.9 > before
    assert history["NDCG@10"].max() == pytest.approx(history.attrs["best"])


def test_load_or_train_caches_by_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    seqs, es = cyclic_eval_set(16)
    train = pd.DataFrame({"user": np.repeat(np.arange(16), [len(q) for q in seqs]),
                          "invoice": [f"{u}-{t // 3}" for u, q in enumerate(seqs) for t in range(len(q))]})
    split = SimpleNamespace(name="toy", n_users=16, n_items=N_ITEMS, train_sequences=seqs, validation=es, train=train)
    assert [len(b) for b in basket_ids(split)] == [len(q) for q in seqs]
    mcfg = dict(max_len=8, d_model=16, n_heads=2, n_layers=1)
    tcfg = dict(epochs=2, batch_size=8, validation_view="all", next_basket_weight=1.0)
    m1, meta1 = load_or_train_sasrec(split, mcfg, tcfg, progress=False)
    m2, meta2 = load_or_train_sasrec(split, mcfg, tcfg, progress=False)
    assert not meta1["cached"] and meta2["cached"]
    assert torch.equal(m1.score(es), m2.score(es))
    assert len(list(tmp_path.glob("sasrec-*.pt"))) == 1
    other = SimpleNamespace(**{**vars(split), "train_sequences": seqs[::-1]})
    assert split_fingerprint(other) != split_fingerprint(split)


def test_load_or_train_selects_on_the_first_validation_half_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    seqs, es = cyclic_eval_set(40)
    train = pd.DataFrame({"user": np.repeat(np.arange(40), [len(q) for q in seqs]),
                          "invoice": [f"{u}-{t // 3}" for u, q in enumerate(seqs) for t in range(len(q))]})
    split = SimpleNamespace(name="toy", n_users=40, n_items=N_ITEMS, train_sequences=seqs, validation=es, train=train)
    mcfg = dict(max_len=8, d_model=16, n_heads=2, n_layers=1)
    tcfg = dict(epochs=3, batch_size=8, lr=3e-2, validation_view="all", patience=3)
    first, second = es.halves()
    scores = {}
    for select_on, half in (("first half", first), (None, first), ("all", es)):
        kw = {} if select_on is None else {"select_on": select_on}
        model, meta = load_or_train_sasrec(split, mcfg, tcfg, progress=False, **kw)
        best = max(row["NDCG@10"] for row in meta["history"])
        assert best == pytest.approx(evaluate(model.score(half), half, ks=(10,))["NDCG@10"])
        scores[select_on] = meta["cached"]
    assert scores == {"first half": False, None: True, "all": False}     # the default is the first half


# --------------------------------------------------------------------------- the Buy-Again mixture

def repeat_world() -> EvalSet:
    seqs = [np.array([1, 2, 2, 3]), np.array([4]), np.array([], dtype=np.int64)]
    rows = [0, 0, 0, 1]
    cols = [1, 2, 3, 4]
    history = sp.csr_matrix((np.array([1, 2, 1, 1.0]), (rows, cols)), shape=(3, 6))
    return EvalSet(users=np.arange(3), targets=[np.array([2, 5]), np.array([4]), np.array([1])],
                   history=history, sequences=seqs, moments=np.zeros(3, dtype="datetime64[ns]"))


def test_repeat_distribution_counts_and_decays():
    es = repeat_world()
    p = repeat_distribution(es)
    assert np.allclose(p[0], [0, 0.25, 0.5, 0.25, 0, 0]) and np.allclose(p[1], [0, 0, 0, 0, 1, 0])
    assert p[2].sum() == 0
    decayed = repeat_distribution(es, half_life=1.0)
    # ages 3, 2, 1, 0 -> weights 1/8, 1/4, 1/2, 1
    assert np.allclose(decayed[0, 1:4] * (1 / 8 + 1 / 4 + 1 / 2 + 1), [1 / 8, 1 / 4 + 1 / 2, 1])


def test_mixture_is_a_distribution_and_leaves_new_items_alone():
    es = repeat_world()
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 6))
    repeat = repeat_distribution(es)
    for w in (0.0, 0.4, 0.9):
        mixed = mix_with_repeats(logits, repeat, w)
        assert np.allclose(np.exp(mixed[:, 1:]).sum(1), 1.0)
        new_only = evaluate(mixed, es, ks=(2,), exclude_seen=True)
        assert new_only == evaluate(logits, es, ks=(2,), exclude_seen=True)
    assert np.allclose(mix_with_repeats(logits, repeat, 0.0)[:, 1:],
                       torch.log_softmax(torch.as_tensor(logits[:, 1:]), 1).numpy())
    best, table = tune_repeat_mixture(logits, es, weights=(0.0, 0.5, 0.99), half_lives=(None,))
    assert len(table) == 3 and best["weight"] in (0.0, 0.5, 0.99)
    with pytest.raises(ValueError):
        mix_with_repeats(logits, repeat, 1.5)


def test_basket_targets_only_train_even_when_a_batch_has_none():
    """With next-basket targets only, a one-basket customer's window has no target at all; a batch
    of such windows must add nothing, not stop the training."""
    seqs = [np.array([1, 2, 3, 4]), np.array([5, 6]), np.array([7, 8])]
    baskets = [np.array([1, 1, 2, 2]), np.array([1, 1]), np.array([1, 1])]   # only the first has a next basket
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=4, d_model=8, n_heads=2, n_layers=1, dropout=0.0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = train_sasrec(model, seqs, None, TrainConfig(epochs=1, batch_size=1, next_item_weight=0.0,
                                                         next_basket_weight=1.0), baskets, progress=False)
    assert len(history) == 1 and np.isfinite(history["train_loss"]).all()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
