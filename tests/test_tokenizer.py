"""Tokenizers: the from-scratch BPE against the library, the byte-level BPE, caching."""

from __future__ import annotations

import pandas as pd
import pytest

from m6rec_lib.text import serializer as ser
from m6rec_lib.text.tokenizer import (
    SPECIAL_TOKENS, BehaviourTokenizer, ToyBPE, library_bpe_merges, load_or_train_tokenizer, train_bpe,
)

TOY = ["low low low low low lower lower newest newest newest newest newest newest widest widest widest"]
PRODUCTS = ["JUMBO BAG RED RETROSPOT", "REGENCY CAKESTAND 3 TIER", "PAPER NAPKINS", "WHITE HANGING HEART T-LIGHT HOLDER",
            "LUNCH BAG RED RETROSPOT", "SET OF 3 CAKE TINS PANTRY DESIGN", "PACK OF 72 RETROSPOT CAKE CASES"]


def _corpus() -> list[str]:
    texts = []
    for c in range(40):
        rows = [(f"{c}-{i}", pd.Timestamp("2010-01-01") + pd.Timedelta(days=7 * i + c, hours=c % 9),
                 PRODUCTS[(c + i) % len(PRODUCTS)], 1 + (c * i) % 12) for i in range(6)]
        lines = pd.DataFrame(rows, columns=["invoice", "invoice_date", "description", "quantity"])
        lines["country"] = ["France", "EIRE", "Germany", "United Kingdom"][c % 4]
        texts.append(ser.serialize_history(lines, pd.Timestamp("2010-03-01")) + ser.basket_text(PRODUCTS[:2], [2, 3]))
    return texts


@pytest.fixture(scope="module")
def tokenizer() -> BehaviourTokenizer:
    return train_bpe(_corpus(), vocab_size=400)


def test_toy_bpe_first_merges_by_hand():
    bpe = ToyBPE.train(TOY, n_merges=3)
    # "newest" x6 and "widest" x3 share "es", "st" (9 each); "lo"/"ow" occur 7 times; ("e","s") and
    # ("s","t") tie at 9 and "e" < "s" in code-point order, so ("e","s") is first.
    assert bpe.history[0]["count"] == 9
    assert bpe.merges[0] == ("e", "s") and bpe.merges[1] == ("es", "t")
    assert bpe.encode_word("newest")[-1] == "est"
    assert bpe.encode_word("zzz") == ["z", "z", "z"]  # unseen symbols stay single characters


@pytest.mark.parametrize("n_merges", [1, 5, 12, 30])
def test_toy_bpe_learns_the_same_merges_as_the_library(n_merges):
    corpus = TOY + [" ".join(PRODUCTS)] * 3
    assert ToyBPE.train(corpus, n_merges).merges == library_bpe_merges(corpus, n_merges)


def test_toy_bpe_tokenize_is_consistent_with_training():
    bpe = ToyBPE.train(TOY, n_merges=10)
    assert "".join(bpe.tokenize("lowest newer")) == "lowestnewer"
    assert len(bpe.tokenize("newest")) < len("newest")


def test_special_tokens_and_vocabulary(tokenizer):
    assert tokenizer.vocab_size == 400
    for i, tok in enumerate(SPECIAL_TOKENS):
        assert tokenizer.tokenizer.token_to_id(tok) == i
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.sep_id) == (0, 1, 2, 3)
    ids = tokenizer.encode("A customer", bos=True, eos=True)
    assert ids[0] == 1 and ids[-1] == 2
    assert tokenizer.decode(ids) == "A customer"


@pytest.mark.parametrize("text", [
    " ZEBRA-PRINT LAMPSHADE 40x40cm x7.",  # words never seen in training
    " Crème brûlée ★ 東京",                  # characters never seen: bytes, not <unk>
    "A customer from Narnia. Now buys",
])
def test_no_unknown_tokens_and_exact_round_trip(tokenizer, text):
    ids = tokenizer.encode(text)
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert tokenizer.decode(ids) == text
    if text.isascii():  # a multi-byte character may be split over tokens, shown as "\ufffd"
        assert "".join(tokenizer.pieces(text)) == text


def test_tokenization_is_additive_over_serializer_pieces(tokenizer):
    lines = pd.DataFrame({
        "invoice": ["1", "1", "2"], "quantity": [12, 6, 2], "country": "France",
        "invoice_date": pd.to_datetime(["2010-03-01 10:00", "2010-03-01 10:00", "2010-06-07 15:30"]),
        "description": ["REGENCY CAKESTAND 3 TIER", "WILLOW BRANCH LIGHTS.", "12 PENCILS TUBE"]})
    h = ser.history_text(lines, "2010-06-09 11:00")
    cand = ser.candidate_text("POLYESTER FILLER PAD 40x40cm")
    whole = tokenizer.encode(h.text + cand)
    assert whole == [i for seg in (*h.segments, cand) for i in tokenizer.encode(seg)]
    assert whole == tokenizer.encode_pieces([*h.pieces, cand])
    assert tokenizer.count(h.text) == sum(tokenizer.count(p) for p in h.pieces)
    # so a token budget is respected exactly
    fitted = ser.history_text(lines, "2010-06-09 11:00", max_length=60, length=tokenizer.count)
    assert len(tokenizer.encode(fitted.text)) <= 60 and fitted.n_not_shown > 0


def test_save_and_load(tmp_path, tokenizer):
    path = tokenizer.save(tmp_path / "tok.json")
    again = BehaviourTokenizer.load(path)
    assert again.fingerprint() == tokenizer.fingerprint()
    assert again.encode("JUMBO BAG") == tokenizer.encode("JUMBO BAG")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file
    with pytest.raises(FileNotFoundError):
        BehaviourTokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(ValueError, match="not a readable tokenizer"):
        BehaviourTokenizer.load(tmp_path / "bad.json")


def test_load_or_train_caches_by_key(tmp_path):
    calls = []

    def texts():
        calls.append(1)
        return _corpus()

    a, cached_a = load_or_train_tokenizer({"corpus": "toy"}, texts, 300, directory=tmp_path)
    b, cached_b = load_or_train_tokenizer({"corpus": "toy"}, texts, 300, directory=tmp_path)
    assert (cached_a, cached_b) == (False, True) and len(calls) == 1
    assert a.fingerprint() == b.fingerprint()
    c, cached_c = load_or_train_tokenizer({"corpus": "toy"}, texts, 320, directory=tmp_path)
    assert not cached_c and c.vocab_size == 320


def test_training_is_deterministic():
    assert train_bpe(_corpus(), vocab_size=300).fingerprint() == train_bpe(_corpus(), vocab_size=300).fingerprint()


def test_errors():
    with pytest.raises(ValueError, match="no room for merges"):
        train_bpe(["abc"], vocab_size=100)
    with pytest.raises(ValueError, match="n_merges"):
        ToyBPE.train(TOY, -1)
