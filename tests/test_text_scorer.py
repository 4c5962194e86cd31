"""The zero-shot text scorer: candidate scores against brute force, re-ranking, prefixes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from m6rec_lib.models.gpt import GPT, GPTConfig
from m6rec_lib.text import serializer as ser
from m6rec_lib.text.tokenizer import train_bpe
from m6rec_lib.text_scorer import TextReranker, first_stage_candidates, history_prefixes

TEXTS = ["", "RED RETROSPOT BAG", "PAPER NAPKINS", "REGENCY CAKESTAND 3 TIER", "JUMBO BAG RED",
         "WHITE HANGING HEART T-LIGHT HOLDER", "PAPER CHAIN KIT"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lm():
    corpus = [f"A customer from France. Last week bought {t} x2; {u} x1. Now buys {t}"
              for t in TEXTS[1:] for u in TEXTS[1:]]
    tokenizer = train_bpe(corpus, vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=96, n_layer=1, n_head=2, d_model=16)).eval()
    return model, tokenizer


def lines_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [7, 7, 7, 9],
        "invoice": ["1", "1", "2", "3"],
        "invoice_date": pd.to_datetime(["2011-01-03 10:00", "2011-01-03 10:00", "2011-02-01 15:00", "2011-01-05 09:00"]),
        "description": [TEXTS[1], TEXTS[2], TEXTS[3], TEXTS[4]],
        "quantity": [2, 6, 1, 3],
        "country": ["France", "France", "France", "Germany"],
        "stock_code": ["a", "b", "c", "d"],
    })


def test_candidate_scores_match_brute_force(lm):
    model, tokenizer = lm
    reranker = TextReranker(model, tokenizer, TEXTS)
    prefix = tokenizer.encode("A customer from France. Last week bought PAPER NAPKINS x2. Now buys", bos=True)
    items = np.array([1, 3, 5])
    got = reranker.candidate_scores(prefix, items)
    got_sum = reranker.candidate_scores(prefix, items, normalize=False)
    for j, item in enumerate(items):
        cand = tokenizer.encode(ser.candidate_text(TEXTS[item]))
        ids = torch.tensor([prefix + cand])
        logp = model.token_logprobs(ids)[0, len(prefix) - 1:]          # log p of each candidate token
        assert len(logp) == len(cand)
        assert got[j] == pytest.approx(logp.mean().item(), abs=1e-4)
        assert got_sum[j] == pytest.approx(logp.sum().item(), abs=1e-3)


def test_first_stage_candidates_excludes_and_breaks_ties_by_id():
    scores = np.array([[0, 1.0, 3.0, 3.0, 2.0, 0.5, 0.1]])
    assert first_stage_candidates(scores, 3).tolist() == [[2, 3, 4]]
    seen = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 0, 0]]))
    assert first_stage_candidates(scores, 3, exclude=seen).tolist() == [[3, 4, 1]]
    with pytest.raises(ValueError):
        first_stage_candidates(scores, 7)


def test_rerank_orders_candidates_by_text_then_the_rest_by_first_stage(lm):
    model, tokenizer = lm
    reranker = TextReranker(model, tokenizer, TEXTS)
    prefix = tokenizer.encode("A customer from France. Now buys", bos=True)
    first = np.array([[-np.inf, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    out = reranker.rerank(first, [prefix], top_n=3, progress=False)
    ranking = np.argsort(-out[0, 1:], kind="stable") + 1
    text = reranker.candidate_scores(prefix, [1, 2, 3])
    assert ranking[:3].tolist() == (np.array([1, 2, 3])[np.argsort(-text, kind="stable")]).tolist()
    assert ranking[3:].tolist() == [4, 5, 6]
    assert np.isneginf(out[0, 0])
    # with the customer's past items excluded, they are not candidates
    seen = sp.csr_matrix(np.array([[0, 1, 0, 0, 0, 0, 0]]))
    out_new = reranker.rerank(first, [prefix], top_n=3, exclude=seen, progress=False)
    assert set(np.argsort(-out_new[0, 1:])[:3] + 1) == {2, 3, 4}


def test_history_prefixes_fit_the_context_and_stop_before_the_moment(lm):
    model, tokenizer = lm
    lines = lines_frame()
    moments = [pd.Timestamp("2011-02-01 15:00"), pd.Timestamp("2011-03-01")]
    prefixes = history_prefixes(lines, [7, 9], moments, tokenizer, context_length=96, reserve=12)
    first = tokenizer.decode(prefixes[0])
    assert prefixes[0][0] == tokenizer.bos_id and first.endswith("Now buys")
    assert "PAPER NAPKINS" in first and TEXTS[3] not in first      # the invoice at the moment is not history
    assert "Germany" in tokenizer.decode(prefixes[1])
    assert len(prefixes[0]) + 12 <= 96
    full = len(prefixes[0])
    tight = history_prefixes(lines, [7], moments[:1], tokenizer, context_length=full + 4, reserve=12)
    assert len(tight[0]) + 12 <= full + 4 and "earlier purchase" in tokenizer.decode(tight[0])
    with pytest.raises(ValueError):
        history_prefixes(lines, [7, 9], moments[:1], tokenizer, 96, 12)


def test_matched_candidates_are_new_unbought_and_of_matched_popularity():
    from m6rec_lib.data import EvalSet
    from m6rec_lib.text_scorer import matched_candidates, matched_win_rates

    n_items, rng = 60, np.random.default_rng(0)
    popularity = np.r_[0.0, np.arange(n_items, 0, -1, dtype=float)]       # item i has rank i - 1
    history = sp.csr_matrix((np.ones(3), ([0, 0, 1], [1, 2, 30])), shape=(3, n_items + 1))
    es = EvalSet(name="v", users=np.array([0, 1, 2]), targets=[np.array([1, 20, 21]), np.array([30]), np.array([40, -1])],
                 history=history, sequences=[np.array([1, 2]), np.array([30]), np.array([], dtype=np.int64)],
                 moments=np.array(["2011-10-03", "2011-10-04", "2011-10-05"], dtype="datetime64[ns]"))
    task = matched_candidates(es, popularity, n_negatives=3, max_positives=2, window=5, seed=0)
    assert list(task.positions) == [0, 2]            # customer 1 bought nothing new
    for pos, items, pairs in zip(task.positions, task.items, task.pairs):
        basket, seen = set(es.targets[pos]), set(history[es.users[pos]].indices)
        positives = items[np.unique(pairs[:, 0])]
        assert set(positives) <= basket - seen and not set(positives) & seen
        negatives = items[pairs[:, 1]]
        assert not set(negatives) & (basket | seen) and len(set(negatives)) == len(negatives)
        for j, k in pairs:
            assert abs(int(items[j]) - int(items[k])) <= 5 + 2       # near in popularity rank
    again = matched_candidates(es, popularity, n_negatives=3, max_positives=2, window=5, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(task.items, again.items))
    # win rates: by hand, with ties counting one half
    scores = [np.r_[1.0, 0.0, 2.0, 1.0, np.zeros(len(task.items[0]) - 4)], np.zeros(len(task.items[1]))]
    win = matched_win_rates(task, scores)
    pr = task.pairs[0]
    want = np.mean([(scores[0][a] > scores[0][b]) + 0.5 * (scores[0][a] == scores[0][b]) for a, b in pr])
    assert np.isclose(win[0], want) and win[1] == 0.5
    keep = np.ones(n_items + 1, dtype=bool)
    keep[task.items[0][pr[0, 1]]] = False                       # drop the first pair's negative
    kept = [(a, b) for a, b in pr if keep[task.items[0][a]] and keep[task.items[0][b]]]
    want = np.mean([(scores[0][a] > scores[0][b]) + 0.5 * (scores[0][a] == scores[0][b]) for a, b in kept])
    assert np.isclose(matched_win_rates(task, scores, keep=keep)[0], want)
    assert np.isnan(matched_win_rates(task, scores, keep=np.zeros(n_items + 1, dtype=bool))).all()
    assert task.subset([1]).positions.tolist() == [2]
    with pytest.raises(ValueError, match="popularity"):
        matched_candidates(es, popularity[:-1])
