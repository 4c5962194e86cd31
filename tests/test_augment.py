"""Sequence augmentations: lengths, masks, determinism with a seed, never touching targets."""

import numpy as np
import pytest
import torch

from m6rec_lib.augment import augment, augment_batch, crop, mask, reorder, two_views
from m6rec_lib.data import PAD_ID, training_windows

SEQ = np.arange(1, 11)  # 10 items


def test_crop_length_and_contiguity():
    for seed in range(20):
        out = crop(SEQ, 0.6, seed)
        assert len(out) == 6
        start = out[0] - 1
        assert (out == SEQ[start:start + 6]).all()
    assert len(crop(SEQ[:1], 0.2, 0)) == 1        # never empty
    assert len(crop(np.array([], dtype=np.int64), 0.5, 0)) == 0


def test_mask_count_and_mask_id():
    out = mask(SEQ, 0.3, 0, mask_id=99)
    assert len(out) == 10 and (out == 99).sum() == 3
    assert (out[out != 99] == SEQ[out != 99]).all()      # the rest is untouched, in place
    assert (mask(SEQ, 0.3, 0) == PAD_ID).sum() == 3      # default: the padding ID


def test_reorder_keeps_the_items():
    changed = False
    for seed in range(10):
        out = reorder(SEQ, 0.6, seed)
        assert sorted(out) == sorted(SEQ)
        diff = np.flatnonzero(out != SEQ)
        if len(diff):
            changed = True
            assert diff.max() - diff.min() < 6                # only inside one run of 6
    assert changed


def test_same_seed_same_views_and_input_untouched():
    seq = SEQ.copy()
    a = [augment(seq, np.random.default_rng(7)) for _ in range(2)]
    assert (a[0] == a[1]).all()
    assert (seq == SEQ).all()
    batch = torch.tensor([[0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10]])
    before = batch.clone()
    v1 = two_views(batch, 3)
    v2 = two_views(batch, 3)
    assert all(torch.equal(x, y) for x, y in zip(v1, v2))
    assert torch.equal(batch, before)
    assert isinstance(v1[0], torch.Tensor) and v1[0].shape == batch.shape


def test_batch_views_stay_left_padded_and_use_only_input_items():
    seqs = [np.arange(1, n + 1) + 100 * n for n in (3, 8, 12, 30)]
    inputs, targets = training_windows(seqs, max_len=10)
    targets_before = targets.copy()
    rng = np.random.default_rng(0)
    for _ in range(10):
        view = augment_batch(inputs, rng, mask_id=999)
        assert view.shape == inputs.shape
        for row in range(len(inputs)):
            real = set(inputs[row][inputs[row] != PAD_ID])
            got = view[row][view[row] != PAD_ID]
            assert 1 <= len(got) <= len(real)
            # only input items (or the mask): the target after the window never leaks into a view
            assert set(got) - {999} <= real
            # left-padded: the non-padding entries are one block at the right end
            assert (view[row][len(view[row]) - len(got):] != PAD_ID).all()
    assert (targets == targets_before).all()


def test_crop_only_batch_keeps_the_last_item_right_aligned():
    inputs = np.array([[0, 0, 0, 4, 5, 6, 7, 8, 9, 10]])
    view = augment_batch(inputs, 1, methods=("crop",), eta=0.5)
    assert (view[0, :-3] == PAD_ID).all() and (view[0, -3:] != PAD_ID).all()


def test_bad_parameters():
    with pytest.raises(ValueError, match="eta"):
        crop(SEQ, 1.5, 0)
    with pytest.raises(ValueError, match="subset"):
        augment(SEQ, 0, methods=("rotate",))
    with pytest.raises(ValueError, match="seed"):
        crop(SEQ, 0.5, None)
    with pytest.raises(ValueError, match="batch, seq_len"):
        augment_batch(SEQ, 0)
