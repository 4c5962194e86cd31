"""m6rec_lib.segments: per-segment metrics and paired comparisons."""

from __future__ import annotations

import numpy as np
import pytest

from m6rec_lib.metrics import evaluate
from m6rec_lib.new_products import extend_catalogue
from m6rec_lib.segments import segment_comparisons, segment_table, segment_values, segments

from test_new_products import world_with_new_products


@pytest.fixture(scope="module")
def world():
    lines, split = world_with_new_products()
    return extend_catalogue(split, lines)


def test_segments_partition_customers_and_targets(world):
    cat = world
    segs = {s.name: s for s in segments(cat.test, cat.is_new)}
    assert list(segs) == ["all items", "new to the customer", "short history", "long history", "old products",
                          "new products"]
    short, long_ = segs["short history"].positions, segs["long history"].positions
    assert not set(short) & set(long_) and len(short) + len(long_) == len(cat.test)
    lengths = np.array([len(s) for s in cat.test.sequences])
    assert lengths[short].max() <= np.median(lengths) < lengths[long_].min()
    assert segs["new products"].exclude_seen and segs["old products"].exclude_seen
    for pos, t in zip(segs["new products"].positions, segs["new products"].eval_set.targets):
        assert set(t) == {i for i in cat.test.targets[pos] if cat.is_new[i]}
    for pos, t in zip(segs["old products"].positions, segs["old products"].eval_set.targets):
        assert set(t) == {i for i in cat.test.targets[pos] if not cat.is_new[i]}


def test_segment_values_average_to_evaluate(world):
    cat = world
    segs = segments(cat.test, cat.is_new)
    rng = np.random.default_rng(0)
    a, b = rng.random((len(cat.test), cat.n_items + 1)), rng.random((len(cat.test), cat.n_items + 1))
    values = {"A": segment_values(a, segs), "B": segment_values(b, segs)}
    for seg in segs:
        expected = evaluate(a[seg.positions], seg.eval_set, ks=(10,), exclude_seen=seg.exclude_seen)["NDCG@10"]
        assert np.nanmean(values["A"][seg.name]) == pytest.approx(expected)
    table = segment_table(values, segs)
    assert list(table.index) == ["A", "B", "customers"] and table.loc["customers", "all items"] == len(cat.test)
    diffs = segment_comparisons(values, "A", "B", segs)
    assert [d.view for d in diffs] == [s.name for s in segs]
    assert diffs[0].diff == pytest.approx(table.loc["A", "all items"] - table.loc["B", "all items"])
