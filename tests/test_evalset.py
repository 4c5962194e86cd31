"""EvalSet halves: two disjoint, covering, seeded halves of the evaluated customers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from m6rec_lib.data.evalset import EvalSet


def eval_set(n: int) -> EvalSet:
    rng = np.random.default_rng(n)
    users = rng.permutation(3 * n)[:n]                      # row indices, not in order
    history = sp.random(3 * n, 9, density=0.3, format="csr", random_state=0)
    return EvalSet(users=users, targets=[np.array([1 + u % 8]) for u in users], history=history,
                   sequences=[np.arange(1, 2 + u % 5) for u in users],
                   moments=np.arange(n).astype("datetime64[D]"), name="validation")


@pytest.mark.parametrize("n", [2, 7, 100, 1001])
def test_halves_are_disjoint_covering_and_balanced(n):
    es = eval_set(n)
    first, second = es.halves()
    assert len(first) - len(second) in (0, 1)                              # balanced
    assert set(first.users).isdisjoint(second.users)                       # disjoint
    assert sorted([*first.users, *second.users]) == sorted(es.users)        # covering
    for half in (first, second):                                            # rows stay consistent
        pos = {u: i for i, u in enumerate(es.users)}
        idx = [pos[u] for u in half.users]
        assert idx == sorted(idx)                                           # the original order kept
        assert all(np.array_equal(half.targets[j], es.targets[i]) for j, i in enumerate(idx))
        assert all(np.array_equal(half.sequences[j], es.sequences[i]) for j, i in enumerate(idx))
        assert np.array_equal(half.moments, es.moments[idx])
        assert half.history is es.history
    assert first.name == "validation (first half)" and second.name == "validation (second half)"


def test_halves_are_deterministic_and_seeded():
    es = eval_set(500)
    a, b = es.halves(seed=0), es.halves(seed=0)
    assert np.array_equal(a[0].users, b[0].users) and np.array_equal(a[1].users, b[1].users)
    other = es.halves(seed=1)
    assert not np.array_equal(a[0].users, other[0].users)
    # a random draw, not the first n/2 positions: both halves reach across the whole set
    pos = np.flatnonzero(np.isin(es.users, a[0].users))                  # positions in the eval set
    assert pos.min() < 50 and pos.max() > 450


def test_part_names_the_halves_and_the_whole():
    es = eval_set(11)
    first, second = es.halves()
    assert np.array_equal(es.part("first half").users, first.users)
    assert np.array_equal(es.part("second half").users, second.users)
    assert es.part("all") is es
    with pytest.raises(ValueError, match="first half"):
        es.part("first")
    with pytest.raises(ValueError, match="at least 2"):
        eval_set(1).halves()
