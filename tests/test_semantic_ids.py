"""Semantic IDs: residual k-means, collision digits, the code trie, the decoder and its beam search."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from m6rec_lib import semantic_ids as sid
from m6rec_lib.data.sequences import pad_left

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n_per: int = 30, centres: int = 6, d: int = 8, seed: int = 0) -> np.ndarray:
    """Points around a few well-separated centres, plus a little noise."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)) * 5
    return np.vstack([c[i] + rng.normal(size=(n_per, d)) for i in range(centres)]).astype(np.float32)


# ------------------------------------------------------------------------------------------ k-means

def test_kmeans_finds_separated_clusters_and_uses_every_code():
    x = blobs()
    centroids, codes = sid.kmeans(x, 6, seed=0)
    assert centroids.shape == (6, 8) and codes.shape == (180,)
    # every blob is one cluster, every code is used
    for b in range(6):
        assert len(np.unique(codes[b * 30:(b + 1) * 30])) == 1
    assert len(np.unique(codes)) == 6
    # each point sits with its nearest centroid, and each centroid is the mean of its points
    d = ((x[:, None] - centroids[None]) ** 2).sum(-1)
    assert (codes == d.argmin(1)).all()
    for k in range(6):
        assert np.allclose(centroids[k], x[codes == k].mean(0), atol=1e-4)


def test_kmeans_reseeds_empty_codes_and_is_seeded():
    # 12 points but only 3 distinct ones: 5 codes cannot all hold a distinct point, yet none stays empty
    x = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)
    x[::4] += 0.01                                          # a little spread inside each group
    _, codes = sid.kmeans(x, 5, seed=0)
    assert len(np.unique(codes)) == 5
    a = sid.kmeans(blobs(), 4, seed=3)[1]
    b = sid.kmeans(blobs(), 4, seed=3)[1]
    assert (a == b).all()
    with pytest.raises(ValueError, match="k must be"):
        sid.kmeans(blobs(), 1000)


def test_residual_kmeans_residuals_shrink_and_add_up():
    x = np.random.default_rng(1).normal(size=(300, 16)).astype(np.float32)
    rq = sid.residual_kmeans(x, (8, 8, 8), seed=0)
    assert rq.codes.shape == (300, 3)
    assert all(rq.residual_norms[i + 1] < rq.residual_norms[i] for i in range(3))
    # the reconstruction is the sum of the chosen centroids of every level
    rebuilt = sum(book[rq.codes[:, j]] for j, book in enumerate(rq.codebooks))
    assert np.allclose(rebuilt, rq.reconstruction, atol=1e-4)
    assert rq.residual_norms[-1] == pytest.approx(np.linalg.norm(x - rebuilt, axis=1).mean(), rel=1e-4)
    with pytest.raises(ValueError, match="at least one"):
        sid.residual_kmeans(x, ())


def test_collision_digits_make_codes_unique():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [0, 0], [3, 3]])
    digits = sid.collision_digits(codes)
    assert digits.tolist() == [0, 1, 0, 2, 1, 0]
    order = np.array([5.0, 1.0, 0.0, 3.0, 0.0, 0.0])          # smallest first
    assert sid.collision_digits(codes, order=order).tolist() == [2, 0, 0, 1, 1, 0]


def test_semantic_ids_are_unique_and_report_usage():
    x = blobs(n_per=20, centres=4)
    ids = sid.SemanticIds.from_embeddings(x, (4, 3), seed=0)
    assert ids.codes.shape == (81, 3) and (ids.codes[0] == -1).all()
    assert len(np.unique(ids.codes[1:], axis=0)) == 80                    # every item its own ID
    assert ids.sizes[:2] == (4, 3) and ids.sizes[2] == ids.codes[1:, 2].max() + 1
    usage = ids.usage()
    assert usage["share used"].iloc[0] == 1.0 and len(usage) == 3
    assert ids.prefix_groups(3).max() == 1 and ids.prefix_groups(1).sum() == 80
    with pytest.raises(ValueError, match="share a semantic ID"):
        sid.SemanticIds(np.array([[-1, -1], [0, 1], [0, 1]]), (2, 2))


# ------------------------------------------------------------------------------------------ the trie

def small_ids() -> sid.SemanticIds:
    codes = np.array([[-1, -1, -1], [0, 1, 0], [0, 1, 1], [0, 2, 0], [1, 0, 0], [2, 2, 0]])
    return sid.SemanticIds(codes, (3, 3, 2))


def test_code_trie_allows_only_catalogue_continuations():
    trie = sid.CodeTrie(small_ids())
    assert trie.allowed([]) == [0, 1, 2]
    assert trie.allowed([0]) == [1, 2]
    assert trie.allowed([0, 1]) == [0, 1]
    assert trie.allowed([1, 1]) == [] and trie.allowed([0, 1, 0]) == []
    assert [trie.item_of(c) for c in ([0, 1, 0], [0, 1, 1], [2, 2, 0], [2, 2, 1], [0, 1])] == [1, 2, 5, 0, 0]
    assert trie.n_below[0] == 5 and trie.n_below[trie.node([0])] == 3
    alive = trie.alive([np.array([1, 2]), np.array([])], 2)
    assert alive[0, trie.node([0, 1])] == 0 and alive[0, trie.node([0])] == 1
    assert alive[1, trie.node([0, 1])] == 2


def tiny_model(ids: sid.SemanticIds, seed: int = 0, **kw) -> sid.SemanticIdRecommender:
    torch.manual_seed(seed)
    config = sid.SemanticIdConfig(**{"max_len": 8, "d_model": 16, "n_heads": 2, "n_layers": 1, "dropout": 0.0, **kw})
    model = sid.SemanticIdRecommender(config, ids).eval()
    with torch.no_grad():
        for table in model.code_embeddings:
            table.weight.mul_(40)                                      # peaked distributions
    return model


@torch.no_grad()
def test_wide_beam_equals_brute_force_and_beams_are_distinct_valid_items():
    ids = small_ids()
    trie = sid.CodeTrie(ids)
    model = tiny_model(ids)
    histories = [np.array([1, 4]), np.array([5]), np.array([], dtype=np.int64), np.array([2, 2, 3])]
    result = sid.beam_search(model, trie, histories, beam_size=5)
    states = model.encode(torch.as_tensor(pad_left(histories, 8)))[:, -1]
    for r in range(len(histories)):
        exact = model.item_log_likelihood(states[r:r + 1].expand(5, -1), torch.arange(1, 6)).double()
        order = torch.argsort(exact, descending=True) + 1
        assert result.items[r].tolist() == order.tolist()              # every item, best first
        assert np.allclose(result.log_probs[r], exact[order - 1].numpy(), atol=1e-5)
    # narrower beams: distinct catalogue items only, scores best first
    for beam in (1, 2, 3):
        res = sid.beam_search(model, trie, histories, beam_size=beam)
        for row, scores in zip(res.items, res.log_probs):
            assert len(set(row.tolist())) == beam and set(row.tolist()) <= {1, 2, 3, 4, 5}
            assert (np.diff(scores) <= 1e-12).all()


def test_beam_search_leaves_excluded_items_out():
    ids = small_ids()
    trie = sid.CodeTrie(ids)
    model = tiny_model(ids, seed=1)
    histories = [np.array([1, 2]), np.array([3])]
    res = sid.beam_search(model, trie, histories, beam_size=5, exclude=histories)
    assert set(res.items[0][res.items[0] > 0].tolist()) == {3, 4, 5}
    assert np.isinf(res.log_probs[0, 3:]).all()                         # only 3 items were left
    assert 3 not in res.items[1].tolist() and (res.items[1] > 0).sum() == 4
    scores = sid.beam_scores(res, ids.n_items)
    assert scores.shape == (2, 6) and np.isinf(scores[0, [0, 1, 2]]).all()
    assert scores[0, res.items[0, 0]] == res.log_probs[0, 0]


# ------------------------------------------------------------------------------------------ training

def test_the_decoder_learns_a_tiny_sequence_task():
    # 12 items with random semantic IDs; every customer buys item i, then item i + 1 (mod 12)
    rng = np.random.default_rng(0)
    n = 12
    body = np.array(list(itertools.product(range(4), range(3))))[rng.permutation(n)]
    ids = sid.SemanticIds(np.vstack([[-1, -1], body]), (4, 3))
    trie = sid.CodeTrie(ids)
    starts = np.repeat(np.arange(1, n + 1), 8)
    sequences = [(((s - 1) + np.arange(6)) % n) + 1 for s in starts]
    torch.manual_seed(0)
    model = sid.SemanticIdRecommender(sid.SemanticIdConfig(max_len=6, d_model=32, n_heads=2, n_layers=1,
                                                           dropout=0.0, bag=False), ids)
    history = sid.train_semantic_id_model(
        model, trie, sequences, None, None,
        sid.SemanticIdTraining(epochs=30, batch_size=32, lr=1e-2, next_item_weight=1.0, next_basket_weight=0.0,
                               new_items_only=False),
        progress=False)
    assert history["train_loss"].iloc[-1] < 0.2 * history["train_loss"].iloc[0]
    tests = [np.array([i, i % n + 1]) for i in range(1, n + 1)]
    top = sid.beam_search(model, trie, tests, beam_size=1).items[:, 0]
    truth = np.array([(i + 1) % n + 1 for i in range(1, n + 1)])
    assert (top == truth).mean() >= 0.9                                 # chance: 1 in 12


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="divisible"):
        sid.SemanticIdConfig(d_model=30, n_heads=4)
    ids = small_ids()
    with pytest.raises(ValueError, match="beam_size"):
        sid.beam_search(tiny_model(ids), sid.CodeTrie(ids), [np.array([1])], beam_size=0)


@torch.no_grad()
def test_brute_force_item_probabilities_sum_to_one_over_all_code_tuples():
    # the decoder's code distributions define a distribution over every code tuple, catalogue or not
    ids = small_ids()
    model = tiny_model(ids, seed=2)
    state = model.encode(torch.as_tensor(pad_left([np.array([1, 3])], 8)))[:, -1]
    total = 0.0
    for codes in itertools.product(*(range(s) for s in ids.sizes)):
        logp = 0.0
        for t in range(len(codes)):
            prefix = torch.tensor([codes[:t]], dtype=torch.long).reshape(1, t)
            logp += float(model.code_logits(state, prefix)[0, codes[t]])
        total += np.exp(logp)
    assert total == pytest.approx(1.0, abs=1e-4)
