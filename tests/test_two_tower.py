"""The two-tower retriever: towers, loss, retrieval, training windows, caching."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from m6rec_lib.data import next_basket_split
from m6rec_lib.data.toy import make_toy_world
from m6rec_lib.models.two_tower import (
    TwoTower,
    TwoTowerConfig,
    TwoTowerTrainConfig,
    WordVocabulary,
    first_purchase_flags,
    item_token_ids,
    load_or_train_two_tower,
    make_training_windows,
    train_two_tower,
)

TEXTS = np.array(["", "RED MUG", "BLUE MUG", "CHRISTMAS CANDLE", "RED BAG", "JUMBO BAG RED"], dtype=object)
TINY = dict(max_len=6, d_model=16, n_heads=2, n_layers=1, d_out=8, dropout=0.0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread is fastest (more threads only wait on each other on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def toy_split():
    world = make_toy_world(n_users=80, n_items=40, seed=0, baskets_per_user=8, draws_per_basket=5)
    return next_basket_split(world.lines, val_start="2011-08-01", test_start="2011-10-01", end="2011-12-02")


def _model(n_items=5, text=True, **kw):
    vocab = WordVocabulary.build(TEXTS[1:])
    tokens = item_token_ids(TEXTS, vocab, max_tokens=4) if text else None
    cfg = TwoTowerConfig(n_items=n_items, vocab_size=vocab.vocab_size if text else 0, **{**TINY, **kw})
    torch.manual_seed(0)
    return TwoTower(cfg, tokens), vocab


def test_word_vocabulary_and_item_tokens():
    vocab = WordVocabulary.build(TEXTS[1:])
    assert vocab.words[:2] == ["<pad>", "<unk>"] and "MUG" in vocab.words
    assert vocab.encode_batch(["red mug!", "GOLD MUG"])[1][0] == vocab.unk_id
    tokens = item_token_ids(TEXTS, vocab, max_tokens=2)
    assert tokens.shape == (6, 2) and (tokens[0] == 0).all()
    assert tokens[5].tolist() == vocab.encode_batch(["JUMBO BAG"])[0]       # cut to max_tokens
    assert tokens[1, 0] == tokens[4, 0]                                      # RED shared


def test_towers_give_unit_vectors_of_d_out():
    model, _ = _model()
    items = model.all_item_vectors()
    assert items.shape == (6, 8) and torch.allclose(items[1:].norm(dim=1), torch.ones(5))
    assert (items[0] == 0).all()                                             # padding
    states = model.user_states(torch.tensor([[0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 0, 5]]))
    assert states.shape == (2, 6, 8) and torch.allclose(states.norm(dim=-1), torch.ones(2, 6))
    # text only: items that share words are closer than items that do not, at initialisation
    text_only, _ = _model(use_item_id=False)
    v = text_only.all_item_vectors()
    assert v[1] @ v[2] > v[1] @ v[3]


def test_scores_and_retrieve_agree_with_brute_force():
    model, _ = _model()
    seqs = [np.array([1, 2]), np.array([3]), np.array([], dtype=np.int64)]
    scores = model.score_sequences(seqs)
    assert scores.shape == (3, 6) and torch.isinf(scores[:, 0]).all()
    ids, top = model.retrieve(seqs, top_k=3)
    assert ids.shape == (3, 3) and (ids > 0).all()
    for row in range(3):
        expected = torch.argsort(scores[row, 1:], descending=True)[:3] + 1
        assert set(ids[row]) == set(expected.tolist())
        assert np.allclose(top[row], np.sort(scores[row, 1:].numpy())[::-1][:3], atol=1e-5)
    exclude = sp.csr_matrix(np.array([[0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0] * 6]))
    ids_ex, _ = model.retrieve(seqs, top_k=3, exclude=exclude)
    assert not {1, 2} & set(ids_ex[0]) and 3 not in ids_ex[1]
    with pytest.raises(ValueError, match="top_k"):
        model.retrieve(seqs, top_k=9)


def test_loss_is_in_batch_info_nce_and_decreases():
    model, _ = _model(text=False)
    inputs = torch.tensor([[0, 0, 0, 1, 2, 3], [0, 0, 0, 0, 4, 5], [0, 0, 2, 3, 4, 1]])
    targets = torch.tensor([[0, 0, 0, 2, 3, 4], [0, 0, 0, 0, 5, 1], [0, 0, 3, 4, 1, 2]])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = model.loss(inputs, targets)
        opt.zero_grad(), loss.backward(), opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # with a uniform log Q the loss does not change
    log_q = torch.full((6,), -2.0)
    assert torch.allclose(model.loss(inputs, targets, log_q=log_q), model.loss(inputs, targets))
    with pytest.raises(ValueError, match="no target"):
        model.loss(inputs, torch.zeros_like(targets))


def test_new_only_targets_and_history_cap():
    seq = np.array([1, 2, 1, 3, 2, 4])
    assert first_purchase_flags(seq).tolist() == [True, True, False, True, False, True]
    cfg = TwoTowerTrainConfig(target_items="new")
    _, targets, _ = make_training_windows([seq], max_len=10, config=cfg)
    assert targets[0][targets[0] > 0].tolist() == [2, 3, 4]                  # repeats blanked
    capped = TwoTowerTrainConfig(target_items="new", history_cap=3)
    inputs, targets, _ = make_training_windows([seq], max_len=10, config=capped)
    assert inputs[0][inputs[0] > 0].tolist() == [3, 2]                       # last 3 items
    assert targets[0][targets[0] > 0].tolist() == [4]                        # 2 was bought before the cut
    # the items before each window, for the history bag
    long = np.arange(1, 13)
    inputs, _, earlier = make_training_windows([long, seq], max_len=4, config=TwoTowerTrainConfig(), n_items=12)
    assert earlier.shape == (len(inputs), 13)
    for row in range(len(inputs)):
        first = inputs[row][inputs[row] > 0][0].item()
        if row < 3:                                                          # windows of `long`
            assert sorted(earlier[row].indices) == list(range(1, first))


def test_next_basket_targets_and_basket_windows():
    from m6rec_lib.models.two_tower import next_basket_targets

    seq = np.array([1, 2, 3, 2, 4, 5, 1])
    baskets = np.array([1, 1, 2, 2, 2, 3, 3])
    out = next_basket_targets(seq, baskets, k=5, rng=np.random.default_rng(0))
    assert out.shape == (7, 5)
    assert set(out[1][out[1] > 0]) == {2, 3, 4}                              # after basket 1: basket 2
    assert set(out[4][out[4] > 0]) == {1, 5}                                 # after basket 2: basket 3
    assert (out[[0, 2, 3, 5, 6]] == 0).all()                                 # mid-basket and the end: none
    new = next_basket_targets(seq, baskets, k=5, rng=np.random.default_rng(0), new_only=True)
    assert set(new[1][new[1] > 0]) == {3, 4} and set(new[4][new[4] > 0]) == {5}
    two = next_basket_targets(seq, baskets, k=2, rng=np.random.default_rng(1))
    assert (two[1] > 0).sum() == 2 and set(two[1]) <= {2, 3, 4}
    cfg = TwoTowerTrainConfig(target_items="basket", basket_targets=3)
    inputs, targets, _ = make_training_windows([seq], 10, cfg, baskets=[baskets], rng=np.random.default_rng(0))
    assert targets.shape == (1, 10, 3)
    for j in range(10):                                                      # targets follow their input item
        if inputs[0, j] == 2 and j == 10 - 6 + 1:
            assert set(targets[0, j][targets[0, j] > 0].tolist()) == {2, 3, 4}
    with pytest.raises(ValueError, match="baskets"):
        make_training_windows([seq], 10, cfg)


def test_history_bag_covers_the_whole_history():
    model, _ = _model(text=False, history_bag=True, max_len=3)
    seqs = [np.array([1, 2, 3, 4, 5]), np.array([5, 2, 3, 4, 5])]                # same last 3 items
    v = model.user_vectors(seqs)
    assert not torch.allclose(v[0], v[1])                                    # the bag sees items 1 / 5 before
    plain, _ = _model(text=False, max_len=3)
    w = plain.user_vectors(seqs)
    assert torch.allclose(w[0], w[1], atol=1e-6)                             # the encoder alone does not
    # the running bag of a window with its earlier items equals the bag of the whole prefix
    from m6rec_lib.models.two_tower import earlier_counts
    inputs = torch.tensor([[3, 4, 5]])
    bag_split = model._bag_means(inputs, earlier_counts([np.array([1, 2])], 5))[0, -1]
    bag_whole = model.bag_embedding.weight[[1, 2, 3, 4, 5]].mean(0)
    assert torch.allclose(bag_split, bag_whole, atol=1e-6)


def test_bad_configurations():
    with pytest.raises(ValueError, match="item tower needs"):
        TwoTowerConfig(n_items=5, use_item_id=False)
    with pytest.raises(ValueError, match="item_tokens"):
        TwoTower(TwoTowerConfig(n_items=5, vocab_size=10))
    with pytest.raises(ValueError, match="log_q"):
        TwoTowerTrainConfig(log_q="sometimes")
    with pytest.raises(ValueError, match="batch_size"):
        TwoTowerTrainConfig(batch_size=1)


def test_train_and_cache_by_configuration(toy_split, tmp_path, monkeypatch):
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    vocab = WordVocabulary.build(toy_split.items.texts[1:])
    kw = dict(model_config=dict(TINY, max_len=10), train_config=dict(epochs=2, batch_size=16), progress=False)
    model, meta = load_or_train_two_tower(toy_split, vocab, **kw)
    assert not meta["cached"] and len(meta["history"]) >= 1
    again, meta2 = load_or_train_two_tower(toy_split, vocab, **kw)
    assert meta2["cached"]
    seqs = toy_split.test.sequences
    assert torch.allclose(model.score_sequences(seqs)[:, 1:], again.score_sequences(seqs)[:, 1:])
    other, meta3 = load_or_train_two_tower(toy_split, None, **kw)               # ID only: another model
    assert not meta3["cached"] and other.config.vocab_size == 0
    assert len(list(tmp_path.glob("two-tower-*.pt"))) == 2


def test_early_stopping_reads_the_first_validation_half_by_default(toy_split, tmp_path, monkeypatch):
    from m6rec_lib.metrics import evaluate

    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    kw = dict(model_config=dict(TINY, max_len=10), train_config=dict(epochs=2, batch_size=16, monitor="Recall@20"),
              progress=False)
    first, _ = toy_split.validation.halves()
    model, meta = load_or_train_two_tower(toy_split, None, **kw)
    best = max(row["Recall@20"] for row in meta["history"])
    assert best == pytest.approx(evaluate(model.score(first), first, ks=(20,), exclude_seen=True)["Recall@20"])
    assert load_or_train_two_tower(toy_split, None, select_on="first half", **kw)[1]["cached"]
    assert not load_or_train_two_tower(toy_split, None, select_on="all", **kw)[1]["cached"]


def test_training_beats_an_untrained_model(toy_split):
    from m6rec_lib.metrics import evaluate

    vocab = WordVocabulary.build(toy_split.items.texts[1:])
    tokens = item_token_ids(toy_split.items.texts, vocab)
    cfg = TwoTowerConfig(n_items=toy_split.n_items, vocab_size=vocab.vocab_size, **dict(TINY, max_len=10))
    torch.manual_seed(0)
    model = TwoTower(cfg, tokens)
    before = evaluate(model.score(toy_split.validation), toy_split.validation, ks=(10,))["NDCG@10"]
    history = train_two_tower(model, toy_split.train_sequences, None,
                              TwoTowerTrainConfig(epochs=6, batch_size=16, lr=1e-2), progress=False)
    after = evaluate(model.score(toy_split.validation), toy_split.validation, ks=(10,))["NDCG@10"]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert after > before
