"""Decoding (greedy, sampling, beam, catalogue-constrained) and BLEU / ROUGE-L / distinct-n."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from m6rec_lib import generation as gen
from m6rec_lib.models.gpt import GPT, GPTConfig


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gpt(vocab: int = 30, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab, context_length=32, n_layer=2, n_head=2, d_model=16))
    with torch.no_grad():
        model.tok_emb.weight.mul_(40)  # peaked next-token distributions, so search matters
    return model.eval()


def seq_logprob(model: GPT, prefix: list[int], cont: list[int]) -> float:
    lp = model.token_logprobs(torch.tensor([prefix + cont]))[0]
    return float(lp[len(prefix) - 1:].sum())


PREFIX = [1, 7, 9, 4]
END = 3
CATALOGUE = {  # item -> tokens; item 14 is a prefix of item 11, items 12 and 16 share a text
    11: [5, 6, 7], 12: [5, 8], 13: [9, 10, 11, 12], 14: [5, 6], 15: [20, 21], 16: [5, 8], 17: [22],
}


def brute_force(model):
    scores = {}
    for item, toks in CATALOGUE.items():
        scores[item] = seq_logprob(model, PREFIX, toks + [END])
    return scores


def test_trie_structure():
    trie = gen.CatalogueTrie(list(CATALOGUE.values()), list(CATALOGUE), END)
    assert len(trie) == 7
    assert sorted(trie.allowed([])) == [5, 9, 20, 22]
    assert sorted(trie.allowed([5, 6])) == [END, 7]            # complete (item 14) or continue (11)
    assert trie.items_of([5, 8]) == [12, 16] and trie.items_of([5]) == []
    assert trie.allowed([6]) == []
    with pytest.raises(ValueError, match="end token"):
        gen.CatalogueTrie([[5, END]], [1], END)


def test_constrained_beam_equals_brute_force_and_only_names_products():
    model = tiny_gpt()
    trie = gen.CatalogueTrie(list(CATALOGUE.values()), list(CATALOGUE), END)
    exact = brute_force(model)
    # a beam as wide as the catalogue is exhaustive: every text, exact scores, best first
    hyps = gen.beam_search(model, PREFIX, beam_size=8, max_new_tokens=6, trie=trie, n_best=8)
    texts = {tuple(CATALOGUE[i]) for i in CATALOGUE}
    assert len(hyps) == len(texts) and all(h.finished for h in hyps)
    for h in hyps:
        assert tuple(h.tokens) in texts
        assert h.logprob == pytest.approx(exact[h.items[0]], abs=1e-4)
        assert sorted(h.items) == sorted(i for i, t in CATALOGUE.items() if t == h.tokens)
    assert [h.logprob for h in hyps] == sorted((h.logprob for h in hyps), reverse=True)
    # narrow beams still only produce catalogue items, for any prefix
    for seed in range(5):
        prefix = np.random.default_rng(seed).integers(4, 30, size=5).tolist()
        for beam in (1, 2, 3):
            for h in gen.beam_search(model, prefix, beam_size=beam, max_new_tokens=6, trie=trie):
                assert h.finished and h.items and tuple(h.tokens) in texts


def test_greedy_is_beam_one_and_matches_the_gpt_generate():
    model = tiny_gpt()
    h = gen.greedy_decode(model, PREFIX, max_new_tokens=6)
    ref = model.generate(torch.tensor([PREFIX]), max_new_tokens=6, temperature=0)[0, len(PREFIX):].tolist()
    assert h.tokens == ref and not h.finished
    assert h.logprob == pytest.approx(seq_logprob(model, PREFIX, ref), abs=1e-4)
    # with a stop token the text ends before it, and its probability is counted
    stop = ref[2]
    h2 = gen.greedy_decode(model, PREFIX, max_new_tokens=6, stop_ids=[stop])
    cut = ref.index(stop)
    assert h2.tokens == ref[:cut] and h2.finished
    assert h2.logprob == pytest.approx(seq_logprob(model, PREFIX, ref[:cut + 1]), abs=1e-4)


def test_beam_search_finds_the_best_sequence_of_a_small_space():
    model = tiny_gpt(vocab=6)
    stop = 5
    # every continuation of at most 3 tokens ending with the stop token, by brute force
    best = max((seq_logprob(model, PREFIX[:1] + [2], list(c) + [stop]), c)
               for L in range(0, 3) for c in itertools.product(range(5), repeat=L))
    hyps = gen.beam_search(model, PREFIX[:1] + [2], beam_size=6, max_new_tokens=3, stop_ids=[stop])
    finished = [h for h in hyps if h.finished]
    assert finished[0].logprob >= best[0] - 1e-4
    assert finished[0].logprob == pytest.approx(seq_logprob(model, [1, 2], finished[0].tokens + [stop]), abs=1e-4)


def test_sampling_is_seeded_and_temperature_sharpens():
    model = tiny_gpt()
    g = torch.Generator().manual_seed(0)
    a = gen.sample_decode(model, PREFIX, n_samples=4, max_new_tokens=5, temperature=1.0, generator=g)
    g = torch.Generator().manual_seed(0)
    b = gen.sample_decode(model, PREFIX, n_samples=4, max_new_tokens=5, temperature=1.0, generator=g)
    assert [h.tokens for h in a] == [h.tokens for h in b]
    for h in a:
        assert h.logprob == pytest.approx(seq_logprob(model, PREFIX, h.tokens), abs=1e-4)
    greedy = gen.greedy_decode(model, PREFIX, max_new_tokens=5).tokens
    cold = gen.sample_decode(model, PREFIX, n_samples=8, max_new_tokens=5, temperature=0.01,
                             generator=torch.Generator().manual_seed(1))
    assert all(h.tokens == greedy for h in cold)
    with pytest.raises(ValueError, match="temperature"):
        gen.sample_decode(model, PREFIX, 2, 5, temperature=0)
    with pytest.raises(ValueError, match="context"):
        gen.beam_search(model, PREFIX, 2, max_new_tokens=40)


# ------------------------------------------------------------------------------------- metrics

def test_bleu_known_values():
    # Papineni et al. 2002: "the the the ..." has a modified unigram precision of 2/7
    hyp = "the the the the the the the".split()
    refs = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    assert gen.modified_precision(hyp, refs, 1) == (2, 7)
    ref = "the cat is on the mat".split()
    assert gen.corpus_bleu([ref], [[ref]]) == pytest.approx(1.0)
    # p1 = 5/6, p2 = 3/5, p3 = 1/4, p4 = 0/3; same length: BP = 1
    hyp = "the cat sat on the mat".split()
    assert gen.corpus_bleu([hyp], [[ref]], max_n=2) == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert gen.corpus_bleu([hyp], [[ref]], max_n=3) == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3))
    assert gen.corpus_bleu([hyp], [[ref]], max_n=4) == 0.0
    assert gen.corpus_bleu([hyp], [[ref]], max_n=4, smoothing=True) == pytest.approx(
        (5 / 6 * 3 / 5 * 1 / 4 * 0.1 / 3) ** 0.25)
    # brevity penalty: 2 words against 6 -> exp(1 - 6/2)
    assert gen.corpus_bleu([["the", "cat"]], [[ref]], max_n=2) == pytest.approx(math.exp(-2))
    # the closest reference length counts (here the 2-word one: no penalty)
    assert gen.corpus_bleu([["the", "cat"]], [[ref, ["a", "cat"]]], max_n=2) == pytest.approx(1.0)
    # corpus level: counts are summed before dividing
    assert gen.corpus_bleu([["a", "b"], ["c", "d"]], [[["a", "b"]], [["c", "x"]]], max_n=1) == pytest.approx(3 / 4)


def test_lcs_and_rouge_l_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = rng.integers(0, 4, size=rng.integers(0, 7)).tolist()
        b = rng.integers(0, 4, size=rng.integers(0, 7)).tolist()
        brute = 0
        for k in range(len(a), 0, -1):
            if any(_is_subsequence(sub, b) for sub in itertools.combinations(a, k)):
                brute = k
                break
        assert gen.lcs_length(a, b) == brute
    # Lin (2004): "police killed the gunman" vs "police kill the gunman": LCS 3 of 4
    r = gen.rouge_l("police killed the gunman".split(), ["police kill the gunman".split()])
    assert r["f1"] == pytest.approx(0.75) and r["precision"] == pytest.approx(0.75)
    r = gen.rouge_l("a b".split(), ["x y z".split(), "a c b d".split()])
    assert r == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3})
    assert gen.rouge_l(["q"], [["z"]])["f1"] == 0.0


def _is_subsequence(sub, seq) -> bool:
    it = iter(seq)
    return all(x in it for x in sub)


def test_distinct_n():
    hyps = [["a", "b", "c"], ["a", "b", "d"]]
    assert gen.distinct_n(hyps, 1) == pytest.approx(4 / 6)
    assert gen.distinct_n(hyps, 2) == pytest.approx(3 / 4)
    assert gen.distinct_n([["a"]], 2) == 0.0


# ------------------------------------------------------------------------------- the trie grows

def test_adding_a_product_to_the_trie_counts_its_new_nodes():
    trie = gen.CatalogueTrie(list(CATALOGUE.values()), list(CATALOGUE), END)
    assert trie.n_nodes == 1 + 17                 # root + every distinct prefix (end tokens included)
    assert trie.add([5, 6, 9], 18) == 2            # shares [5, 6]; new: 9 and its end token
    assert trie.add([5, 8], 19) == 0               # an existing text: only a new item on its leaf
    assert trie.items_of([5, 8]) == [12, 16, 19] and trie.items_of([5, 6, 9]) == [18]
    assert len(trie) == 9


def test_constrained_retrieval_scores_hold_the_beam_items_at_their_log_probabilities():
    model = tiny_gpt()
    trie = gen.CatalogueTrie(list(CATALOGUE.values()), list(CATALOGUE), END)
    scores, off = gen.constrained_retrieval_scores(model, [PREFIX, [1, 2]], trie, n_items=20, beam_size=3,
                                                   max_new_tokens=6, progress=False)
    assert scores.shape == (2, 21) and off == 0
    exact = brute_force(model)
    finite = np.isfinite(scores[0])
    assert 3 <= finite.sum() <= 4                  # 3 beams; a shared text names two items
    for item in np.flatnonzero(finite):
        assert scores[0, item] == pytest.approx(exact[item], abs=1e-4)
    best = sorted(exact.values(), reverse=True)
    assert scores[0, finite].max() == pytest.approx(best[0], abs=1e-4)


# ------------------------------------------------------------------------------- text metrics

def test_per_customer_text_metrics_and_the_table():
    texts = ["JUMBO BAG RED", "MADE UP THING", "  JUMBO   BAG RED "]
    refs = [["JUMBO BAG RED", "LUNCH BAG"], ["LUNCH BAG"], ["LUNCH BAG"]]
    catalogue = {"JUMBO BAG RED", "LUNCH BAG"}
    pc = gen.per_customer_text_metrics(texts, refs, catalogue, histories=[set(), set(), {"JUMBO BAG RED"}])
    assert pc["existing product"].tolist() == [1.0, 0.0, 1.0]
    assert pc["in the basket"].tolist() == [1.0, 0.0, 0.0]
    assert pc["bought before"].tolist() == [0.0, 0.0, 1.0]
    assert pc["words"].tolist() == [3, 3, 3]
    assert pc["ROUGE-L F1"].iloc[0] == 1.0 and pc["ROUGE-L F1"].iloc[1] == 0.0
    assert pc["ROUGE-L F1"].iloc[2] == pytest.approx(gen.rouge_l("JUMBO BAG RED".split(), [["LUNCH", "BAG"]])["f1"])
    table, per = gen.text_metrics_table({"a": texts, "b": texts[:2]}, refs, catalogue)
    assert list(table.index) == ["a", "b"] and len(per["b"]) == 2
    assert table.loc["a", "existing product"] == pytest.approx(2 / 3)
    assert table.loc["a", "distinct-1"] == gen.distinct_n([t.split() for t in texts], 1)


def test_corpus_paired_halves_compare_a_corpus_metric():
    varied = [f"W{i} X{i}" for i in range(40)]
    same = ["A B"] * 40
    d = gen.corpus_paired_halves(lambda h: gen.distinct_n(h, 2), varied, same, names=("varied", "same"),
                                 metric_name="distinct-2", n_halves=200)
    # on every half of 20 customers: 1.0 for the varied texts, 1/20 for the repeated one
    assert d.a == pytest.approx(1.0) and d.b == pytest.approx(1 / 20) and d.diff == pytest.approx(1 - 1 / 20)
    assert d.low - 1e-9 <= d.diff <= d.high + 1e-9 and d.outcome == "a" and d.view == "texts"
    d0 = gen.corpus_paired_halves(lambda h: gen.distinct_n(h, 1), same, same, names=("x", "y"),
                                  metric_name="distinct-1", n_halves=50)
    assert d0.diff == 0 and d0.outcome == "none"
    # for a mean, half-samples have the spread of the full-sample mean (no narrower, no wider)
    rng = np.random.default_rng(0)
    values = rng.normal(size=400)
    texts_a = [" ".join(["w"] * int(v > 0)) for v in values]
    mean_len = lambda h: float(np.mean([len(x) for x in h]))  # noqa: E731
    d1 = gen.corpus_paired_halves(mean_len, texts_a, ["w"] * 400, names=("a", "b"), metric_name="len", n_halves=2000)
    p = np.mean(values > 0)
    half_width = 1.96 * np.sqrt(p * (1 - p) / 400)
    assert (d1.high - d1.low) / 2 == pytest.approx(half_width, rel=0.15)
    with pytest.raises(ValueError, match="same customers"):
        gen.corpus_paired_halves(len, ["a"], ["b", "c"], names=("x", "y"), metric_name="m")


def test_co_purchases_count_shared_invoices():
    invoices = ["i1", "i1", "i1", "i2", "i2", "i3"]
    items = [1, 2, 2, 1, 3, 2]
    baskets = gen.basket_matrix(invoices, items, n_items=3)
    assert baskets.shape == (3, 4) and baskets.max() == 1.0
    assert gen.co_purchases(baskets, 1, [2, 3]).tolist() == [1.0, 1.0]
    assert gen.co_purchases(baskets, 2, [2]).tolist() == [2.0]
    assert len(gen.co_purchases(baskets, 1, [])) == 0
