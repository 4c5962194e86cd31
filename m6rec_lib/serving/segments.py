"""A request cut into segments, the unit of multi-segment late interaction, and their cache.

A request is one customer at one moment with a slate of candidate products. Its history text (see
:mod:`m6rec_lib.text.serializer`) is cut into **segments**: the profile, each past invoice's time
words and its lines, the prompt " Now buys"; each candidate is a segment too. The lower layers of a
late-interaction model encode each segment alone, so their output can be cached
(:class:`SegmentCache`) and reused by every request that contains the same segment.

:class:`RequestBatch` holds several requests (or the pairs of a task) for one forward pass;
:class:`SegmentedPairs` is a :class:`m6rec_lib.click_task.PairTask` with its histories cut into
segments, for training and evaluating scorers.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..click_task import GroupedPairs
from ..text import serializer as ser

__all__ = ["ROLES", "Segment", "segments_from_tokens", "SegmentCache", "RequestBatch", "SegmentedPairs",
           "segment_pairs"]

#: What a segment is; each role has a learned embedding in :class:`SegmentScorer`.
ROLES = ("profile", "time", "lines", "prompt", "candidate")


@dataclass(frozen=True)
class Segment:
    """A piece of a request that is encoded alone by the lower layers.

    ``tokens``: its token IDs (the profile starts with ``<bos>``); ``role``: index into
    :data:`ROLES`; ``recency``: 0 for the newest invoice (and for profile, prompt, candidate),
    1 for the one before, ...
    """

    tokens: tuple[int, ...]
    role: int
    recency: int = 0

    def __len__(self) -> int:
        return len(self.tokens)


def segments_from_tokens(ids: Sequence[int], tokenizer) -> list[Segment]:
    """Cut a serialised history's token IDs (``<bos>`` + text ending in " Now buys") into segments.

    The text is decoded and cut at the serializer's boundaries: the profile, then per invoice its
    time words (" Last Tuesday morning bought") and its lines, then the prompt. Time words are
    their own segment because they change as time passes while an invoice's lines never do, so the
    lines stay cacheable. Each segment is tokenized alone; additivity makes the concatenation equal
    ``ids`` (checked: ValueError otherwise).
    """
    ids = [int(i) for i in ids]
    bos = ids[:1] == [tokenizer.bos_id]
    text = tokenizer.decode(ids[1:] if bos else ids)
    prompt = ser.PROMPT if text.endswith(ser.PROMPT) else ""
    body = text[: len(text) - len(prompt)]
    heads = list(ser.HEAD_PATTERN.finditer(body))
    pieces: list[tuple[str, int, int]] = []
    profile_end = heads[0].start() if heads else len(body)
    pieces.append((body[:profile_end], 0, 0))
    n_inv = len(heads)
    for k, head in enumerate(heads):
        end = heads[k + 1].start() if k + 1 < n_inv else len(body)
        recency = n_inv - 1 - k
        pieces.append((body[head.start():head.end()], 1, recency))
        if head.end() < end:
            pieces.append((body[head.end():end], 2, recency))
    if prompt:
        pieces.append((prompt, 3, 0))
    out = []
    for i, (piece, role, recency) in enumerate(pieces):
        tokens = tokenizer.encode(piece) if piece else []
        if i == 0 and bos:
            tokens = [tokenizer.bos_id] + tokens
        if tokens:
            out.append(Segment(tuple(tokens), role, recency))
    joined = [t for s in out for t in s.tokens]
    if joined != ids:
        raise ValueError(
            "the history's segments do not tokenize back to its token IDs; the text is not in the "
            "serializer's format (or the tokenizer is not additive over its segments)"
        )
    return out


class SegmentCache:
    """Lower-layer outputs of segments, keyed by their tokens, with hit statistics.

    ``max_entries`` bounds the size (least recently used entries leave first; None = unbounded).
    ``stats()`` counts look-ups by segment and by token: the token hit rate is the share of
    lower-layer computation the cache saved.
    """

    def __init__(self, max_entries: int | None = None) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be >= 1 or None, got {max_entries}")
        self.max_entries = max_entries
        self._store: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self.reset_stats()

    def reset_stats(self) -> None:
        self.hits = self.misses = self.hit_tokens = self.miss_tokens = 0
        self.by_role: dict[str, list[int]] = {r: [0, 0] for r in ROLES}  # [hits, misses]

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, tokens: tuple[int, ...]) -> bool:
        return tokens in self._store

    def get(self, segment: Segment) -> torch.Tensor | None:
        """The cached (T, d) output of ``segment`` or None; counts the look-up."""
        value = self._store.get(segment.tokens)
        self.count(segment, hit=value is not None)
        if value is not None:
            self._store.move_to_end(segment.tokens)
        return value

    def count(self, segment: Segment, hit: bool) -> None:
        """Record one look-up (a segment repeated within a request counts as a hit)."""
        if hit:
            self.hits += 1
            self.hit_tokens += len(segment)
        else:
            self.misses += 1
            self.miss_tokens += len(segment)
        self.by_role[ROLES[segment.role]][0 if hit else 1] += 1

    def put(self, tokens: tuple[int, ...], value: torch.Tensor) -> None:
        self._store[tokens] = value
        self._store.move_to_end(tokens)
        if self.max_entries is not None:
            while len(self._store) > self.max_entries:
                self._store.popitem(last=False)

    def clear(self) -> None:
        self._store.clear()
        self.reset_stats()

    @property
    def hit_rate(self) -> float:
        """Share of segment look-ups served from the cache."""
        n = self.hits + self.misses
        return self.hits / n if n else 0.0

    @property
    def token_hit_rate(self) -> float:
        """Share of looked-up tokens served from the cache (= lower-layer work saved)."""
        n = self.hit_tokens + self.miss_tokens
        return self.hit_tokens / n if n else 0.0

    def stats(self) -> dict[str, float]:
        out = {"entries": len(self), "lookups": self.hits + self.misses, "hit rate": self.hit_rate,
               "token hit rate": self.token_hit_rate}
        for role, (h, m) in self.by_role.items():
            if h + m:
                out[f"hit rate ({role})"] = h / (h + m)
        return out


# =============================================================================================
# 3. pairs as segmented requests
# =============================================================================================

@dataclass
class RequestBatch:
    """Several customer moments (groups), each with its history segments, and candidates.

    ``histories``: G lists of :class:`Segment`; ``candidates``: N token tuples (a candidate's text);
    ``group``: (N,) which history each candidate belongs to; ``labels``: (N,) 0/1 or None.
    """

    histories: list[list[Segment]]
    candidates: list[tuple[int, ...]]
    group: torch.Tensor
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        G, N = len(self.histories), len(self.candidates)
        if self.group.shape != (N,):
            raise ValueError(f"group must be ({N},), got {tuple(self.group.shape)}")
        if N and (int(self.group.min()) < 0 or int(self.group.max()) >= G):
            raise ValueError(f"group indices must lie in 0..{G - 1}")
        if any(len(h) == 0 for h in self.histories) or any(len(c) == 0 for c in self.candidates):
            raise ValueError("every history needs a segment and every candidate a token")
        if self.labels is not None and self.labels.shape != (N,):
            raise ValueError(f"labels must be ({N},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.candidates)

    @classmethod
    def single(cls, history: list[Segment], candidates: Sequence[Sequence[int]]) -> "RequestBatch":
        """One request: one customer moment and its candidates."""
        cands = [tuple(int(t) for t in c) for c in candidates]
        return cls([history], cands, torch.zeros(len(cands), dtype=torch.long))


@dataclass
class SegmentedPairs(GroupedPairs):
    """A :class:`m6rec_lib.click_task.PairTask` with every history cut into segments.

    ``histories``: per group a list of :class:`Segment`; ``items``, ``labels``, ``group``: per pair;
    ``item_tokens``: item ID -> token tuple of its candidate text.
    """

    histories: list[list[Segment]]
    group: np.ndarray
    items: np.ndarray
    labels: np.ndarray
    item_tokens: dict[int, tuple[int, ...]]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_groups(self) -> int:
        return len(self.histories)

    def pair_groups(self) -> np.ndarray:
        return self.group

    def batch(self, group_ids: Sequence[int]) -> RequestBatch:
        """The pairs of ``group_ids`` (in that order)."""
        starts, ends = self._bounds()
        group_ids = np.asarray(group_ids, dtype=np.int64)
        rows = np.concatenate([np.arange(starts[g], ends[g]) for g in group_ids])
        local = np.repeat(np.arange(len(group_ids)), ends[group_ids] - starts[group_ids])
        return RequestBatch([self.histories[g] for g in group_ids],
                            [self.item_tokens[int(i)] for i in self.items[rows]],
                            torch.as_tensor(local), torch.as_tensor(self.labels[rows], dtype=torch.float32))

    def batches(self, groups_per_batch: int = 32) -> Iterator[RequestBatch]:
        """Every pair in order (for prediction)."""
        return super().batches(groups_per_batch)


def segment_pairs(task, tokenizer) -> SegmentedPairs:
    """Cut every history of a ``PairTask`` (notebook 07's click task) into segments."""
    histories = [segments_from_tokens(h, tokenizer) for h in task.histories]
    return SegmentedPairs(
        histories, task.pairs["group"].to_numpy(), task.pairs["item"].to_numpy(),
        task.pairs["label"].to_numpy().astype(np.float32),
        {int(i): tuple(int(t) for t in tok) for i, tok in task.item_tokens.items()},
    )
