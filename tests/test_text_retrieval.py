"""m6rec_lib.text_retrieval and m6rec_lib.reranking: text scores of new products, the re-ranker's plumbing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from m6rec_lib import reranking as rr
from m6rec_lib import text_retrieval as txr
from m6rec_lib.models.gpt import GPT, GPTConfig
from m6rec_lib.new_products import extend_catalogue
from m6rec_lib.text import serializer as ser
from m6rec_lib.text.tokenizer import train_bpe
from m6rec_lib.text_scorer import history_prefixes

from test_new_products import world_with_new_products

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    lines, split = world_with_new_products()
    cat = extend_catalogue(split, lines)
    corpus = [f"A customer. Last week bought {t} x2. Now buys {t}" for t in cat.texts[1:]]
    tok = train_bpe(corpus, vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=128, n_layer=1, n_head=2, d_model=16)).eval()
    pre = SimpleNamespace(model=gpt, tokenizer=tok, path=Path("toy-gpt.pt"))
    return lines, split, cat, pre


def test_standardise_over_a_mask():
    s = np.array([[0.0, 1.0, 2.0, 3.0, -np.inf], [0.0, 5.0, 5.0, 1.0, 2.0]])
    mask = np.array([[False, True, True, True, True], [False, True, False, False, False]])
    z = txr.standardise_over(s, mask)
    v = np.array([1.0, 2.0, 3.0, 1.0])                      # -inf counts as the row's lowest finite score
    assert np.allclose(z[0, 1:], (v - v.mean()) / v.std()) and z[0, 0] == 0
    assert (z[1] == 0).all()                                # one masked entry: nothing to standardise


def test_gpt_scores_match_a_forward_pass_by_hand(world, tmp_path, monkeypatch):
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    lines, split, cat, pre = world
    es = cat.test.subset(np.arange(len(cat.test)) < 4)
    allowed = cat.on_sale(es) & cat.is_new[None, :]
    cids = split.users.customer_ids[es.users]
    scores = txr.gpt_scores(pre, cat, lines, cids, es, allowed, progress=False)
    assert np.isneginf(scores[~allowed]).all() and np.isfinite(scores[allowed]).all()
    descriptions = dict(zip(cat.codes[1:], cat.texts[1:]))
    row = int(np.flatnonzero(allowed.any(axis=1))[0])
    prefix = history_prefixes(lines, [cids[row]], [es.moments[row]], pre.tokenizer, 128, 16, descriptions)[0]
    for item in np.flatnonzero(allowed[row]):
        cand = pre.tokenizer.encode(ser.candidate_text(cat.text(int(item))))[:16]
        with torch.no_grad():
            logp = torch.log_softmax(pre.model(torch.tensor([prefix + cand]))[0].float(), dim=-1)
        by_hand = logp[torch.arange(len(prefix) - 1, len(prefix) + len(cand) - 1), torch.tensor(cand)].mean().item()
        assert scores[row, item] == pytest.approx(by_hand, abs=1e-4)
    assert len(list(tmp_path.glob("capstone-gpt-scores-*.pt"))) == 1          # cached, once
    again = txr.gpt_scores(pre, cat, lines, cids, es, allowed, progress=False)
    assert np.array_equal(again, scores)
    with pytest.raises(ValueError, match="allowed must be"):
        txr.gpt_scores(pre, cat, lines, cids, es, allowed[:, :-1], progress=False)


def test_minilm_scores_with_made_up_embeddings(world):
    _, _, cat, _ = world
    rng = np.random.default_rng(0)
    E = rng.normal(size=(cat.n_items + 1, 8)).astype(np.float32)
    E[1:] /= np.linalg.norm(E[1:], axis=1, keepdims=True)
    E[0] = 0
    new = np.flatnonzero(cat.is_new)
    es = cat.test
    prof = txr.minilm_scores(E, es, new, "profile", 20)
    assert np.isneginf(prof[:, ~cat.is_new]).all()
    row = 0
    seq = np.asarray(es.sequences[row])[::-1]
    _, first = np.unique(seq, return_index=True)
    recent = seq[np.sort(first)][:20]
    assert np.allclose(prof[row, new], E[recent].mean(0) @ E[new].T, atol=1e-5)
    with pytest.raises(ValueError, match="kind"):
        txr.minilm_scores(E, es, new, "nearest")


def test_reranker_plumbing(world):
    lines, split, cat, pre = world
    es = cat.test.subset(np.arange(len(cat.test)) < 3)
    scores = np.random.default_rng(1).random((len(es), cat.n_items + 1))
    scores[:, 0] = -np.inf
    scores[0, 5:] = -np.inf                                  # customer 0 has only 4 candidates
    items = rr.top_candidates(scores, 6)
    assert items.shape == (3, 6) and (items[0, 4:] == 0).all()
    assert list(items[1]) == list(np.argsort(-scores[1])[:6])
    pairs = rr.candidate_pairs(pre, cat, lines, split.users.customer_ids[es.users], es, items)
    assert len(pairs) == int((items > 0).sum()) and pairs.n_groups == 3
    fake = np.arange(len(pairs), dtype=float)
    out = np.full(items.shape, np.nan)
    out[items > 0] = fake
    unchanged = rr.add_to_top(scores, items, out, weight=0.0)
    for row in range(3):
        assert list(rr.top_candidates(unchanged, 6)[row]) == list(items[row])
    flipped = rr.add_to_top(scores, items, -100 * np.nan_to_num(out, nan=0.0) * (items > 0), weight=50.0)
    top = rr.top_candidates(flipped, 6)
    for row in range(3):
        real = items[row][items[row] > 0]
        assert set(top[row][: len(real)]) == set(real)        # the top items stay on top, re-ordered


def test_the_reranker_is_kept_only_when_it_wins_measurably(world, monkeypatch):
    """``choose_weight`` keeps weight 0 unless the best non-zero weight beats it with an interval above 0."""
    _, _, cat, _ = world
    es = cat.test
    rng = np.random.default_rng(3)
    first = rng.random((len(es), cat.n_items + 1))
    first[:, 0] = -np.inf
    items = rr.top_candidates(first, 10)
    knows = np.array([[float(i in set(t)) for i in row] for row, t in zip(items, es.targets)])   # 1 on a target
    monkeypatch.setattr(rr, "candidate_pairs", lambda *args: None)

    def choose(logodds):
        monkeypatch.setattr(rr, "rerank_scores", lambda model, pairs, its: logodds)
        return rr.choose_weight(None, None, cat, None, None, es, first, 10, seed=0)

    informed = choose(knows)
    assert informed.best_nonzero.outcome == "a" and informed.weight == informed.table.drop(0.0).idxmax() > 0
    noise = choose(rng.random(items.shape))
    assert noise.table.idxmax() > 0                      # a lead on the point estimate ...
    assert noise.best_nonzero.outcome != "a" and noise.weight == 0.0    # ... is not a win
