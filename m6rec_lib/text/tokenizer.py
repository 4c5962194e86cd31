"""Subword tokenizers: a byte-level BPE for behaviour text, and a tiny BPE to learn how merges work.

Byte-pair encoding (Sennrich et al. 2016) starts from single symbols and repeatedly merges the most
frequent adjacent pair into a new symbol. :class:`ToyBPE` does exactly that in a few lines of
Python, for teaching; :func:`train_bpe` trains the course's tokenizer with the ``tokenizers``
library (fast, Rust), byte-level like GPT-2: the base alphabet is the 256 byte values, so *every*
string can be tokenized and there is no unknown token, even for a product name never seen in
training.

The course's special tokens come first, so their IDs are fixed: ``<pad>`` = 0 (ignored by the
loss, like item ID 0), ``<bos>`` = 1 (starts every text), ``<eos>`` = 2 (ends a text), ``<sep>`` = 3
(separates two texts in one sequence).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from ..atomic import atomic_write_text
from ..config import cache_dir

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<sep>")
PAD_TOKEN_ID, BOS_TOKEN_ID, EOS_TOKEN_ID, SEP_TOKEN_ID = range(len(SPECIAL_TOKENS))


def _tokenizers():
    try:
        import tokenizers
    except ImportError as exc:  # pragma: no cover - installed with the course
        raise ImportError(
            "the course's tokenizer needs the `tokenizers` package: pip install 'tokenizers>=0.15' "
            "(or pip install -r requirements.txt)"
        ) from exc
    return tokenizers


# --------------------------------------------------------------------------- the real tokenizer

class BehaviourTokenizer:
    """A byte-level BPE tokenizer with the course's special tokens.

    Wraps a ``tokenizers.Tokenizer``: ``encode(text) -> list[int]``, ``decode(ids) -> str``,
    ``count(text) -> int`` and ``encode_pieces(pieces)`` (memoised: histories repeat the same
    product lines), ``save``/``load``.
    Encoding is additive over the serializer's segments (each starts with a space): the IDs of
    ``a + b`` are the IDs of ``a`` followed by those of ``b``.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        for i, tok in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(tok) != i:
                raise ValueError(
                    f"special token {tok} must have ID {i} but has {tokenizer.token_to_id(tok)}; "
                    "train the tokenizer with m6rec_lib.text.tokenizer.train_bpe"
                )
        self._cache: dict[str, tuple[int, ...]] = {}

    # IDs of the special tokens
    pad_id, bos_id, eos_id, sep_id = PAD_TOKEN_ID, BOS_TOKEN_ID, EOS_TOKEN_ID, SEP_TOKEN_ID

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token IDs of ``text``, optionally with ``<bos>`` before and ``<eos>`` after."""
        ids = self.tokenizer.encode(text).ids
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token IDs of many texts at once (parallel in Rust)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def encode_cached(self, text: str) -> tuple[int, ...]:
        """Token IDs of ``text``, memoised (histories repeat the same product lines many times)."""
        ids = self._cache.get(text)
        if ids is None:
            if len(self._cache) > 1_000_000:
                self._cache.clear()
            ids = self._cache[text] = tuple(self.tokenizer.encode(text).ids)
        return ids

    def encode_pieces(self, pieces: Iterable[str], bos: bool = False, eos: bool = False) -> list[int]:
        """Token IDs of ``"".join(pieces)``, built from the memoised IDs of each piece.

        Only valid when tokenization is additive over the pieces, which holds for the
        serializer's pieces (``HistoryText.pieces``, candidates, baskets): each starts with a
        space and none ends with one.
        """
        pieces = list(pieces)
        if len(pieces) > 256:
            self.prefill(pieces)
        ids = [self.bos_id] if bos else []
        for p in pieces:
            ids.extend(self.encode_cached(p))
        if eos:
            ids.append(self.eos_id)
        return ids

    def prefill(self, texts: Iterable[str]) -> None:
        """Memoise the IDs of many texts in one parallel call (worth it from a few dozen texts)."""
        missing = list({t for t in texts if t not in self._cache})
        if len(missing) > 64:
            for t, enc in zip(missing, self.tokenizer.encode_batch(missing)):
                self._cache[t] = tuple(enc.ids)

    def count(self, text: str) -> int:
        """Number of tokens of ``text``; memoised, so use it as the serializer's ``length``."""
        return len(self.encode_cached(text))

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of token IDs (byte-level decoding gives back the exact string)."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def pieces(self, text: str) -> list[str]:
        """The text of each token of ``text``, for display (``["A", " customer", ...]``)."""
        return [self.tokenizer.decode([i]) for i in self.encode(text)]

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    @classmethod
    def from_json(cls, text: str) -> "BehaviourTokenizer":
        return cls(_tokenizers().Tokenizer.from_str(text))

    def fingerprint(self) -> str:
        """A short hash of the vocabulary and merges (two tokenizers agree iff it is equal)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the tokenizer's JSON atomically."""
        atomic_write_text(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "BehaviourTokenizer":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer at {path}; train one with train_bpe(...) first")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except Exception as exc:
            raise ValueError(f"{path} is not a readable tokenizer file ({exc}); delete it and train again") from exc

    def __repr__(self) -> str:
        return f"BehaviourTokenizer(vocab_size={self.vocab_size}, fingerprint={self.fingerprint()})"


def train_bpe(
    texts: Iterable[str],
    vocab_size: int = 3000,
    min_frequency: int = 2,
    progress: bool = False,
) -> BehaviourTokenizer:
    """Train a byte-level BPE on ``texts`` (pass training-period text only).

    ``vocab_size`` counts the 4 special tokens, the 256 bytes and the learned merges. No prefix
    space is added (the serializer writes its own spaces), and GPT-2's pre-tokenization regex
    keeps merges inside words, numbers and punctuation runs.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 256 + 1:
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room for merges: it must exceed "
            f"{len(SPECIAL_TOKENS)} special tokens + 256 bytes"
        )
    tk = _tokenizers()
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return BehaviourTokenizer(tokenizer)


def load_or_train_tokenizer(
    key: Mapping[str, object],
    texts: Callable[[], Iterable[str]],
    vocab_size: int = 3000,
    *,
    name: str = "tokenizer",
    directory: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
) -> tuple[BehaviourTokenizer, bool]:
    """The tokenizer cached for ``key`` (a JSON-able description of the corpus), or a new one.

    ``texts()`` is only called when training is needed. Returns ``(tokenizer, was_cached)``.
    The file is ``<cache_dir>/<name>-<hash of key and vocab_size>.json``, written atomically.
    """
    spec = json.dumps({**dict(key), "vocab_size": vocab_size}, sort_keys=True, default=str)
    path = Path(directory or cache_dir()) / f"{name}-{hashlib.sha256(spec.encode()).hexdigest()[:10]}.json"
    if path.is_file() and not rebuild:
        try:
            return BehaviourTokenizer.load(path), True
        except ValueError:
            pass  # unreadable: train again below
    tokenizer = train_bpe(texts(), vocab_size=vocab_size)
    tokenizer.save(path)
    return tokenizer, False


# --------------------------------------------------------------------------- BPE from scratch

class ToyBPE:
    """Byte-pair encoding in plain Python, to see every merge (characters, whitespace-split words).

    ``ToyBPE.train(corpus, n_merges)`` counts words, splits each into characters, and repeats
    ``n_merges`` times: count adjacent symbol pairs (weighted by word frequency), merge the most
    frequent pair everywhere. Ties go to the pair whose symbols were created first (symbols are
    numbered: the alphabet in code-point order, then each merge's result), the rule the
    ``tokenizers`` library uses, so both learn the same merges.

    Attributes: ``merges`` (list of (left, right) pairs in the order learned), ``history`` (one
    dict per merge: pair, count, new symbol), ``vocab`` (symbols in ID order).
    """

    def __init__(self, alphabet: Sequence[str], merges: Sequence[tuple[str, str]]):
        self.vocab: list[str] = list(alphabet) + ["".join(m) for m in merges]
        self.merges: list[tuple[str, str]] = list(merges)
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self.history: list[dict] = []

    @staticmethod
    def pair_counts(words: Mapping[tuple[str, ...], int]) -> collections.Counter:
        """How often each adjacent symbol pair occurs, each word weighted by its frequency."""
        counts: collections.Counter = collections.Counter()
        for symbols, freq in words.items():
            for pair in zip(symbols, symbols[1:]):
                counts[pair] += freq
        return counts

    @staticmethod
    def merge_word(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
        """Replace every occurrence of ``pair`` in ``symbols`` (left to right) by its concatenation."""
        out, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
                out.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        return tuple(out)

    @classmethod
    def train(cls, corpus: Iterable[str], n_merges: int, min_frequency: int = 1) -> "ToyBPE":
        """Learn up to ``n_merges`` merges from ``corpus`` (strings, split on whitespace)."""
        if n_merges < 0:
            raise ValueError(f"n_merges must be >= 0, got {n_merges}")
        word_freq = collections.Counter(w for text in corpus for w in text.split())
        words = {tuple(w): f for w, f in word_freq.items()}
        alphabet = sorted({c for w in word_freq for c in w})
        symbol_id = {s: i for i, s in enumerate(alphabet)}
        merges: list[tuple[str, str]] = []
        history: list[dict] = []
        for _ in range(n_merges):
            counts = cls.pair_counts(words)
            if not counts:
                break
            pair, count = min(counts.items(), key=lambda kv: (-kv[1], symbol_id[kv[0][0]], symbol_id[kv[0][1]]))
            if count < min_frequency:
                break
            new = pair[0] + pair[1]
            symbol_id.setdefault(new, len(symbol_id))
            merges.append(pair)
            history.append({"merge": len(merges), "left": pair[0], "right": pair[1], "count": count, "new symbol": new})
            words = {cls.merge_word(w, pair): f for w, f in words.items()}
        model = cls(alphabet, merges)
        model.history = history
        return model

    def encode_word(self, word: str) -> list[str]:
        """Split one word into symbols by applying the learned merges, earliest-learned first."""
        symbols = tuple(word)
        while len(symbols) > 1:
            ranked = [(self.ranks.get(p, len(self.ranks)), p) for p in zip(symbols, symbols[1:])]
            rank, pair = min(ranked)
            if rank == len(self.ranks):
                break  # no learned merge applies
            symbols = self.merge_word(symbols, pair)
        return list(symbols)

    def tokenize(self, text: str) -> list[str]:
        """The symbols of every whitespace-separated word of ``text``."""
        return [s for w in text.split() for s in self.encode_word(w)]


def library_bpe_merges(corpus: Iterable[str], n_merges: int) -> list[tuple[str, str]]:
    """The merges the ``tokenizers`` library learns on ``corpus`` with the same set-up as
    :class:`ToyBPE` (whitespace-split words, the corpus's characters as alphabet)."""
    tk = _tokenizers()
    corpus = list(corpus)
    alphabet = {c for text in corpus for w in text.split() for c in w}
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.WhitespaceSplit()
    trainer = tk.trainers.BpeTrainer(vocab_size=len(alphabet) + n_merges, min_frequency=0, show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


__all__ = [
    "SPECIAL_TOKENS", "PAD_TOKEN_ID", "BOS_TOKEN_ID", "EOS_TOKEN_ID", "SEP_TOKEN_ID",
    "BehaviourTokenizer", "train_bpe", "load_or_train_tokenizer", "ToyBPE", "library_bpe_merges",
]
