"""m6rec_lib.new_products: the catalogue with products first sold after the training period."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec_lib.data import DataError, next_basket_split
from m6rec_lib.data.toy import make_toy_world
from m6rec_lib.metrics import evaluate
from m6rec_lib.new_products import add_new_products, extend_catalogue, same_customers, targets_among

NEW_CODES = ("NEW-A", "NEW-B", "NEW-C")


def world_with_new_products(seed: int = 0):
    """A toy world whose lines from October 2011 on partly sell three products never sold before."""
    w = make_toy_world(n_users=80, n_items=25, baskets_per_user=8, draws_per_basket=5, seed=seed)
    lines = w.lines.copy()
    late = np.flatnonzero((lines["invoice_date"] >= pd.Timestamp("2011-10-01")).to_numpy())
    rng = np.random.default_rng(seed)
    pick = rng.choice(late, size=len(late) // 3, replace=False)
    codes = rng.choice(np.array(NEW_CODES, dtype=object), size=len(pick))
    lines.loc[lines.index[pick], "stock_code"] = codes
    lines.loc[lines.index[pick], "description"] = [f"NEW PRODUCT {c[-1]}" for c in codes]
    lines = lines.drop_duplicates(["invoice", "stock_code"]).reset_index(drop=True)
    return lines, next_basket_split(lines)


@pytest.fixture(scope="module")
def world():
    lines, split = world_with_new_products()
    return lines, split, extend_catalogue(split, lines)


def test_the_catalogue_keeps_the_split_ids_and_adds_the_new_products(world):
    lines, split, cat = world
    assert cat.n_base == split.n_items and cat.n_new == len(NEW_CODES)
    assert list(cat.codes[: split.n_items + 1]) == list(split.items.codes)
    assert sorted(cat.codes[cat.n_base + 1:]) == sorted(NEW_CODES)
    assert cat.is_new.sum() == cat.n_new and not cat.is_new[: cat.n_base + 1].any()
    for item in range(cat.n_base + 1, cat.n_items + 1):
        assert cat.text(item) == f"NEW PRODUCT {cat.codes[item][-1]}"
        first = lines.loc[lines["stock_code"] == cat.codes[item], "invoice_date"].min()
        assert pd.Timestamp(cat.first_sale[item]) == first >= cat.new_from


def test_eval_sets_match_the_split_and_name_new_targets(world):
    lines, split, cat = world
    for ours, theirs in ((cat.validation, split.validation), (cat.test, split.test)):
        assert np.array_equal(ours.users, theirs.users) and np.array_equal(ours.moments, theirs.moments)
        base = cat.base_view(ours)
        assert (base.history != theirs.history).nnz == 0
        assert all(np.array_equal(a, b) for a, b in zip(base.sequences, theirs.sequences))
        for t_ours, t_theirs in zip(ours.targets, theirs.targets):
            known = t_ours[t_ours <= cat.n_base]
            assert set(known) == set(t_theirs[t_theirs > 0])
            assert (t_ours > cat.n_base).any() == (t_theirs == -1).any()
    assert any((t > cat.n_base).any() for t in cat.test.targets)


def test_on_sale_and_sales_before_against_brute_force(world):
    lines, split, cat = world
    es = cat.test
    on_sale = cat.on_sale(es)
    sales = cat.sales_before(es)
    for row in range(0, len(es), 7):
        moment = pd.Timestamp(es.moments[row])
        for item in range(1, cat.n_items + 1):
            mine = lines[lines["stock_code"] == cat.codes[item]]
            assert on_sale[row, item] == bool((mine["invoice_date"] < moment).any())
            expected = int((mine["invoice_date"] < moment).sum()) if cat.is_new[item] else 0
            assert sales[row, item] == expected
    assert not on_sale[:, 0].any() and on_sale[:, 1: cat.n_base + 1].all()


def test_widen_and_targets_among(world):
    _, split, cat = world
    s = np.random.default_rng(0).random((len(cat.test), cat.n_base + 1))
    wide = cat.widen(s)
    assert wide.shape == (len(cat.test), cat.n_items + 1) and np.isneginf(wide[:, cat.n_base + 1:]).all()
    assert np.array_equal(wide[:, : cat.n_base + 1], s)
    with pytest.raises(ValueError, match="split.n_items"):
        cat.widen(wide)
    new_only = targets_among(cat.test, cat.is_new)
    pos = new_only.info["positions"]
    assert all(len(t) and (t > cat.n_base).all() for t in new_only.targets)
    assert np.array_equal(new_only.users, cat.test.users[pos])
    # an ID model's widened scores never hit a new product
    assert evaluate(wide[pos], new_only, ks=(10,))["Recall@10"] == 0.0
    with pytest.raises(ValueError, match="bool array"):
        targets_among(cat.test, cat.is_new[1:])
    with pytest.raises(ValueError, match="catalogue's own eval sets"):
        cat.on_sale(split.test)


def test_lines_of_another_split_are_refused(world):
    lines, split, _ = world
    other = lines.copy()
    other.loc[other.index[:5], "stock_code"] = "NEVER-IN-TRAINING"
    other.loc[other.index[:5], "invoice_date"] = pd.Timestamp("2010-12-05 10:00")
    with pytest.raises(DataError, match="not in the split's item"):
        extend_catalogue(split, other)
    with pytest.raises(DataError, match="lack column"):
        extend_catalogue(split, lines.drop(columns=["description"]))


def test_summary_and_same_customers(world):
    _, split, cat = world
    table = cat.summary()
    assert list(table.index) == ["validation", "test"]
    assert table.loc["test", "customers"] == len(cat.test)
    assert table.loc["test", "customers with a new-product target"] == len(targets_among(cat.test, cat.is_new))
    assert 0 <= table.loc["test", "new-product targets already on sale"] <= 1
    half = split.validation.subset(np.arange(len(split.validation)) % 2 == 0)
    mine = same_customers(cat.validation, half)
    assert np.array_equal(mine.users, half.users) and mine.n_items == cat.n_items
    with pytest.raises(ValueError, match="same period"):
        same_customers(cat.validation, split.test)


def test_add_new_products_puts_back_the_customers_new_products(world):
    lines, _, _ = world
    old = lines[~lines["stock_code"].isin(NEW_CODES)]
    sub = old[old["customer_id"].isin(old["customer_id"].unique()[:30])]
    back = add_new_products(sub, lines)
    extra = back[back["stock_code"].isin(NEW_CODES)]
    expected = lines[lines["stock_code"].isin(NEW_CODES) & lines["customer_id"].isin(sub["customer_id"].unique())]
    assert len(extra) == len(expected) > 0 and len(back) == len(sub) + len(expected)
    assert back["invoice_date"].is_monotonic_increasing
