"""Describing a purchase log (m6rec_lib.data.describe), on hand-made lines and the toy world."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from m6rec_lib.data import DataError, ItemIndex, UserIndex, interaction_matrix
from m6rec_lib.data import describe as d
from m6rec_lib.data.toy import make_toy_world


def _lines(rows):
    return pd.DataFrame(rows, columns=["customer_id", "invoice", "stock_code", "description", "invoice_date"]).assign(
        invoice_date=lambda f: pd.to_datetime(f["invoice_date"]))


LINES = _lines([
    (1, "a", "X", "RED MUG", "2010-01-05"), (1, "a", "Y", "BLUE MUG", "2010-01-05"),
    (1, "b", "X", "RED MUG", "2010-03-01"), (1, "b", "Z", "TEA TOWEL", "2010-03-01"),
    (2, "c", "Y", "BLUE MUG", "2010-02-01"), (2, "d", "Y", "BLUE MUG", "2010-02-20"),
    (2, "d", "W", "NEW LAMP", "2010-02-20"),
])


def test_repeat_flags_and_shares_by_hand():
    assert d.repeat_flags(LINES).tolist() == [False, False, True, False, False, True, False]
    shares = d.repeat_shares(LINES)
    assert shares["all lines"] == pytest.approx(2 / 7)
    assert shares["lines after the customer's first invoice"] == pytest.approx(2 / 4)


def test_new_products_by_hand():
    new = d.new_products(LINES, "2010-02-15")
    assert new.codes == {"Z", "W"}
    assert new.line_share == pytest.approx(2 / 4) and new.product_share == pytest.approx(2 / 4)
    assert (new.n_before, new.n_after) == (2, 4)
    with pytest.raises(DataError, match="does not fall inside"):
        d.new_products(LINES, "2012-01-01")


def test_monthly_new_share_leaves_out_the_first_month():
    share = d.monthly_new_share(LINES)
    assert list(share.index.astype(str)) == ["2010-02", "2010-03"]
    assert share.iloc[0] == pytest.approx(1 / 3)        # NEW LAMP among February's three lines
    assert share.iloc[1] == pytest.approx(1 / 2)        # TEA TOWEL among March's two


def test_baskets_and_summary():
    table = d.baskets(LINES)
    assert len(table) == 4 and table["size"].tolist() == [2, 2, 1, 2]
    assert table["later"].tolist() == [False, True, False, True]
    summary = d.basket_summary(table)
    assert summary["customers with more than one basket"] == 1.0
    assert summary["mean repeat share of a later basket"] == pytest.approx(0.5)


def test_popularity_on_the_toy_world():
    lines = make_toy_world(n_users=30, n_items=12, seed=0).lines
    items, users = ItemIndex(lines["stock_code"], seed=0), UserIndex(lines["customer_id"], seed=0)
    X = interaction_matrix(users.rows(lines["customer_id"]), items.ids(lines["stock_code"]),
                           users.n_users, items.n_items)
    pop = d.popularity(X)
    assert len(pop.buyers) == items.n_items and (np.diff(pop.buyers) <= 0).all()
    assert pop.buyers.sum() == (X > 0).sum() == pop.items_per_customer.sum()
    assert 0.1 <= pop.head_share(0.1) <= pop.head_share(0.5) <= pop.head_share(1.0) == 1.0
    with pytest.raises(ValueError):
        pop.head_share(0)
    assert d.plot_long_tail(pop).axes


def test_catalogue_growth_counts_tokens_once():
    vocab = {}
    encode = lambda texts: [[vocab.setdefault(w, len(vocab)) for w in t.split()] for t in texts]  # noqa: E731
    growth = d.catalogue_growth(LINES, encode)
    assert growth["distinct product IDs"].tolist() == [2, 3, 4]
    assert growth["distinct tokens used"].tolist() == [3, 5, 7]   # RED BLUE MUG; + NEW LAMP; + TEA TOWEL
    assert d.plot_catalogue_growth(growth, vocab_size=10, cut="2010-02-15").axes


def test_missing_columns_say_what_to_pass():
    with pytest.raises(DataError, match="load_clean_lines"):
        d.repeat_flags(LINES.drop(columns="stock_code"))
