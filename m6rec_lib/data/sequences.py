"""Turning variable-length item sequences into fixed-size arrays for sequential models."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .indexing import PAD_ID


def pad_left(sequences: Sequence[np.ndarray], max_len: int, pad_id: int = PAD_ID) -> np.ndarray:
    """Left-pad (and left-truncate) sequences to ``max_len``.

    ``sequences``: n int arrays, oldest item first. Returns an (n, max_len) int64 array whose last
    column holds each sequence's most recent item; the oldest items are dropped when a sequence is
    longer than ``max_len``. An empty sequence becomes a row of padding.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    out = np.full((len(sequences), max_len), pad_id, dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq, dtype=np.int64)[-max_len:]
        if len(tail):
            out[row, max_len - len(tail):] = tail
    return out


def training_windows(
    sequences: Sequence[np.ndarray], max_len: int, min_len: int = 2, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cut long sequences into (input, next-item target) windows for teacher-forced training.

    Each window of ``max_len + 1`` items gives inputs ``w[:-1]`` and targets ``w[1:]`` (every position
    is a training target). Windows end at the sequence's end and step back by ``stride``
    (default ``max_len``); shorter sequences give one left-padded window. Sequences shorter than
    ``min_len`` are skipped. Returns (inputs, targets), both (n_windows, max_len) int64, padding = 0
    (a padded target means "no loss here").
    """
    if min_len < 2:
        raise ValueError("min_len must be >= 2: a window needs an input and a target")
    stride = stride or max_len
    windows = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) < min_len:
            continue
        end = len(seq)
        while True:
            windows.append(seq[max(0, end - max_len - 1):end])
            end -= stride
            if end < min_len:
                break
    if not windows:
        raise ValueError(f"no sequence has at least {min_len} items")
    padded = pad_left(windows, max_len + 1)
    inputs, targets = padded[:, :-1], padded[:, 1:].copy()
    targets[inputs == PAD_ID] = PAD_ID  # no target where there is no input to predict from
    return inputs, targets
