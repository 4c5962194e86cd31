"""The bundled data, its loader's errors, cleaning, IDs and the leakage properties of every split."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from m6rec_lib.config import DATASETS_DIR
from m6rec_lib.data import (
    PAD_ID,
    RETAIL_SHA256,
    DataError,
    ItemIndex,
    UserIndex,
    clean_transactions,
    future_leakage,
    invoice_sequence_split,
    leave_last_basket_split,
    load_online_retail,
    next_basket_split,
    pad_left,
    training_windows,
    verify_bundled_file,
    year_cut_split,
)


@pytest.fixture(scope="module")
def raw():
    return load_online_retail()


@pytest.fixture(scope="module")
def clean(raw):
    lines, report = clean_transactions(raw)
    return lines, report


@pytest.fixture(scope="module")
def main_split(clean):
    return next_basket_split(clean[0])


# ----------------------------------------------------------------------------- the shipped file

def test_shipped_file_checksum_matches_datasheet():
    sheet = (DATASETS_DIR / "README.md").read_text()
    assert RETAIL_SHA256 in sheet
    assert verify_bundled_file() == RETAIL_SHA256


def test_shipped_file_keeps_raw_semantics(raw):
    assert len(raw) > 1_000_000
    assert raw["invoice_date"].min() == pd.Timestamp("2009-12-01 07:45")
    assert raw["invoice_date"].max().date() == pd.Timestamp("2011-12-09").date()
    # cancellations, returns, zero prices and non-product codes are still there
    assert raw["invoice"].str.startswith("C").sum() > 5000
    assert (raw["quantity"] < 0).sum() > 10000
    assert (raw["price"] == 0).sum() > 1000
    assert raw["stock_code"].isin(["POST", "DOT", "M", "BANK CHARGES", "AMAZONFEE"]).sum() > 1000
    # missing customers stay missing; none is encoded as 0
    assert raw["customer_id"].isna().sum() > 200_000
    assert (raw["customer_id"] == 0).sum() == 0
    assert (raw["description"] == "Missing_Description").sum() == 0


def test_overlapping_days_appear_once(raw):
    overlap = raw[(raw["invoice_date"] >= "2010-12-01") & (raw["invoice_date"] < "2010-12-10")]
    assert len(overlap) > 20_000
    assert set(overlap["source"].unique()) == {"uci_ii_sheet_2009_2010"}
    after = raw[raw["invoice_date"] >= "2010-12-10"]
    assert "uci_ii_sheet_2009_2010" not in set(after["source"].unique())
    ided = overlap.dropna(subset=["invoice"])
    assert not ided.duplicated(["invoice", "line_no"]).any()


# ----------------------------------------------------------------------------- loader errors

def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match="missing.*build_online_retail.py"):
        load_online_retail(tmp_path / "nope.parquet")


def test_corrupt_file_says_how_to_fix(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(DataError, match="could not be read.*corrupt"):
        load_online_retail(bad)


def test_missing_column(tmp_path, raw):
    path = tmp_path / "x.parquet"
    raw.head(50).drop(columns=["customer_id"]).to_parquet(path)
    with pytest.raises(DataError, match=r"missing column\(s\) \['customer_id'\]"):
        load_online_retail(path)


def test_mistyped_column(tmp_path, raw):
    path = tmp_path / "x.parquet"
    df = raw.head(50).copy()
    df["quantity"] = df["quantity"].astype(str)
    df.to_parquet(path)
    with pytest.raises(DataError, match="wrong type.*quantity"):
        load_online_retail(path)


def test_empty_file(tmp_path, raw):
    path = tmp_path / "x.parquet"
    raw.head(0).to_parquet(path)
    with pytest.raises(DataError, match="no rows"):
        load_online_retail(path)


def test_wrong_checksum(tmp_path, raw):
    path = tmp_path / "x.parquet"
    raw.head(10).to_parquet(path)
    with pytest.raises(DataError, match="sha256"):
        verify_bundled_file(path)


# ----------------------------------------------------------------------------- cleaning

def _raw_rows(rows):
    df = pd.DataFrame(rows, columns=["invoice", "stock_code", "description", "quantity",
                                     "invoice_date", "price", "customer_id", "country"])
    df["invoice_date"] = pd.to_datetime(df["invoice_date"])
    df["customer_id"] = df["customer_id"].astype("Int64")
    df["quantity"] = df["quantity"].astype("int32")
    df["price"] = df["price"].astype(float)
    df["line_no"] = np.arange(len(df), dtype=np.int32)
    return df


def test_each_cleaning_rule_is_counted():
    t = "2011-01-01 10:00"
    raw = _raw_rows([
        ("1", "A1", "MUG", 1, t, 1.0, 1, "UK"),          # kept
        ("C2", "A1", "MUG", -1, t, 1.0, 1, "UK"),        # cancellation
        ("3", "A1", "MUG", -2, t, 1.0, 1, "UK"),         # return
        (None, None, "MUG", -2, t, 1.0, None, "UK"),     # no IDs (also quantity<=0: counted there)
        ("4", "A1", "MUG", 1, t, 0.0, 1, "UK"),          # zero price
        ("5", "POST", "POSTAGE", 1, t, 18.0, 1, "UK"),   # non-product
        ("6", "gift_0001_10", "VOUCHER", 1, t, 10.0, 1, "UK"),  # voucher, lower case
        ("7", "a2", "BAG", 2, t, 1.0, None, "UK"),       # guest
        ("8", "a2", "BAG", 2, t, 1.0, 2, "UK"),          # kept, code upper-cased
    ])
    clean, report = clean_transactions(raw)
    removed = dict(zip(report.table["rule"], report.table["removed"]))
    assert list(removed.values()) == [1, 2, 0, 1, 2, 1, 0]
    assert len(clean) == 2 and report.n_clean == 2 and report.n_raw == 9
    assert sorted(clean["stock_code"]) == ["A1", "A2"]
    assert clean["customer_id"].dtype == np.int64


def test_real_cleaning_matches_datasheet(clean):
    lines, report = clean
    assert report.n_clean == 788_189
    assert lines["customer_id"].nunique() == 5852
    assert lines["stock_code"].nunique() == 4620
    assert (lines["quantity"] > 0).all() and (lines["price"] > 0).all()


# ----------------------------------------------------------------------------- IDs

def test_item_ids_are_shuffled_and_padding_reserved(clean):
    lines = clean[0]
    index = ItemIndex(lines["stock_code"], seed=0)
    first_seen = lines.groupby("stock_code")["invoice_date"].min().sort_values()
    ids = index.ids(first_seen.index)
    assert ids.min() == 1 and ids.max() == index.n_items and PAD_ID == 0
    # first-appearance order and ID order are unrelated (|Spearman rho| small)
    rho = pd.Series(ids).corr(pd.Series(np.arange(len(ids))), method="spearman")
    assert abs(rho) < 0.05
    assert ItemIndex(lines["stock_code"], seed=0).codes.tolist() == index.codes.tolist()
    assert ItemIndex(lines["stock_code"], seed=1).codes.tolist() != index.codes.tolist()


def test_unknown_items_and_users_are_named():
    index = ItemIndex(["B", "A"])
    with pytest.raises(KeyError, match="not in the item index"):
        index.ids(["A", "ZZZ"])
    assert index.ids(["A", "ZZZ"], unknown="minus_one")[1] == -1
    with pytest.raises(KeyError, match="0 is padding"):
        index.text(0)
    users = UserIndex([5, 7])
    with pytest.raises(KeyError, match="unknown customer"):
        users.rows([5, 9])


# ----------------------------------------------------------------------------- splits

def _brute_history(lines_with_ids, user, moment, n_items):
    mine = lines_with_ids[(lines_with_ids["user"] == user) & (lines_with_ids["invoice_date"] < moment)]
    counts = np.zeros(n_items + 1)
    for item in mine["item"]:
        if item > 0:
            counts[item] += 1
    return counts


def test_main_split_has_no_leakage(clean, main_split):
    s = main_split
    val_start = pd.Timestamp(s.info["val_start"])
    assert s.train["invoice_date"].max() < val_start
    assert future_leakage(s) == 0.0
    # every indexed item was sold in training: the vocabulary comes from training only
    assert (np.asarray(s.train_matrix.sum(axis=0)).ravel()[1:] > 0).all()
    # validation earlier than test, each moment inside its window
    assert (s.validation.moments >= np.datetime64(val_start)).all()
    assert (s.validation.moments < np.datetime64(pd.Timestamp(s.info["test_start"]))).all()
    assert (s.test.moments >= np.datetime64(pd.Timestamp(s.info["test_start"]))).all()
    # histories: exactly the lines strictly before the moment (checked by brute force on a sample)
    lines = clean[0]
    lw = lines.assign(user=s.users.rows(lines["customer_id"]),
                      item=s.items.ids(lines["stock_code"], unknown="minus_one"))
    rng = np.random.default_rng(0)
    for es in (s.validation, s.test):
        for pos in rng.choice(len(es), size=5, replace=False):
            u, moment = es.users[pos], es.moments[pos]
            expected = _brute_history(lw, u, moment, s.n_items)
            np.testing.assert_array_equal(es.history[u].toarray().ravel(), expected)
            assert len(es.sequences[pos]) == expected.sum()
            assert len(es.targets[pos]) > 0


def test_main_split_counts(main_split):
    s = main_split
    assert 1000 < len(s.validation) < len(s.test) < 2500
    assert s.n_items > 4000
    assert s.validation.history.shape == (s.n_users, s.n_items + 1)


def test_leave_last_basket_split_leaks_future(clean):
    s = leave_last_basket_split(clean[0])
    leak = future_leakage(s)
    assert 0.05 < leak < 0.5
    # a customer's own held-out baskets are not in training: their training lines all come
    # no later than their validation basket
    val_moment = dict(zip(s.validation.users, s.validation.moments))
    last_train = s.train.groupby("user")["invoice_date"].max()
    for u in s.test.users[:300]:
        assert last_train[u] <= val_moment[u]
    with pytest.raises(ValueError, match="min_baskets"):
        leave_last_basket_split(clean[0], min_baskets=2)


def test_invoice_sequence_split(raw):
    shuffled = invoice_sequence_split(raw, order="shuffle", seed=0)
    again = invoice_sequence_split(raw, order="shuffle", seed=0)
    file_order = invoice_sequence_split(raw, order="file")
    assert 15_000 < shuffled.n_users < 17_000 and 3_000 < shuffled.n_items < 3_600
    assert [t[0] for t in shuffled.test.targets[:50]] == [t[0] for t in again.test.targets[:50]]
    # leave-one-out: the validation target is the item right before the test target
    s = shuffled
    for pos in range(20):
        assert len(s.test.sequences[pos]) == len(s.validation.sequences[pos]) + 1
        assert s.test.sequences[pos][-1] == s.validation.targets[pos][0] or s.validation.targets[pos][0] == -1
    assert file_order.info["order"] == "file"
    with pytest.raises(ValueError, match="order"):
        invoice_sequence_split(raw, order="random")


def test_year_cut_split_flags_cold_items(clean):
    s = year_cut_split(clean[0])
    cold = s.info["is_cold"]
    assert 550 < cold.sum() < 700 and not cold[0]
    sold_in_train = np.asarray(s.train_matrix.sum(axis=0)).ravel() > 0
    assert not (cold & sold_in_train).any()
    assert s.train["invoice_date"].max() < pd.Timestamp("2010-12-01")


def test_impossible_split_parameters(clean):
    with pytest.raises(ValueError, match="val_start"):
        next_basket_split(clean[0], val_start="2011-11-01", test_start="2011-10-01")


# ----------------------------------------------------------------------------- sequences

def test_pad_left_truncates_oldest_first():
    out = pad_left([np.array([1, 2, 3, 4]), np.array([7]), np.array([], dtype=int)], max_len=3)
    np.testing.assert_array_equal(out, [[2, 3, 4], [0, 0, 7], [0, 0, 0]])
    with pytest.raises(ValueError):
        pad_left([np.array([1])], 0)


def test_training_windows_every_position_is_a_target():
    x, y = training_windows([np.arange(1, 8)], max_len=3)
    # windows end at the sequence end: [4,5,6,7] then [1,2,3,4]
    np.testing.assert_array_equal(x, [[4, 5, 6], [1, 2, 3]])
    np.testing.assert_array_equal(y, [[5, 6, 7], [2, 3, 4]])
    x, y = training_windows([np.array([3, 9])], max_len=4)
    np.testing.assert_array_equal(x, [[0, 0, 0, 3]])
    np.testing.assert_array_equal(y, [[0, 0, 0, 9]])
    with pytest.raises(ValueError, match="no sequence"):
        training_windows([np.array([1])], max_len=3)
    assert re.search("min_len", str(pytest.raises(ValueError, training_windows, [], 3, 1).value))


def test_subsample_lines(clean):
    from m6rec_lib.data import subsample_lines

    lines = clean[0]
    sub = subsample_lines(lines, n_items=300, n_customers=1000, seed=0)
    assert sub["stock_code"].nunique() <= 300 and sub["customer_id"].nunique() <= 1000
    again = subsample_lines(lines, n_items=300, n_customers=1000, seed=0)
    assert sub.equals(again)
    with pytest.raises(ValueError, match="n_items"):
        subsample_lines(lines, n_items=0)
    split = next_basket_split(sub)
    assert split.n_items <= 300
