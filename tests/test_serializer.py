"""The behaviour serializer: time words, formats, round trips, no future, truncation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec_lib.data import DataError
from m6rec_lib.text import serializer as ser


def _lines(rows, country="France", customer_id=None):
    df = pd.DataFrame(rows, columns=["invoice", "invoice_date", "description", "quantity"])
    df["invoice_date"] = pd.to_datetime(df["invoice_date"])
    df["country"] = country
    df["line_no"] = np.arange(len(df))
    if customer_id is not None:
        df["customer_id"] = customer_id
    return df


KNOWN = _lines([
    ("1", "2010-03-01 10:00", "REGENCY CAKESTAND 3 TIER", 12),
    ("1", "2010-03-01 10:00", "PAPER NAPKINS", 6),
    ("2", "2010-06-07 15:30", "JUMBO BAG RED RETROSPOT", 2),
])
KNOWN_TEXT = (
    "A customer from France. Three months ago bought REGENCY CAKESTAND 3 TIER x12; PAPER NAPKINS x6."
    " Last Monday afternoon bought JUMBO BAG RED RETROSPOT x2. Now buys"
)


@pytest.mark.parametrize("when, now, phrase", [
    ("2010-06-09 08:00", "2010-06-09 11:00", "this morning"),
    ("2010-06-09 13:00", "2010-06-09 18:00", "this afternoon"),
    ("2010-06-09 17:30", "2010-06-09 19:00", "this evening"),
    ("2010-06-08 19:00", "2010-06-09 08:00", "yesterday evening"),
    ("2010-06-08 09:00", "2010-06-09 08:00", "yesterday morning"),
    ("2010-06-01 10:00", "2010-06-03 08:00", "last Tuesday morning"),  # 2010-06-01 is a Tuesday
    ("2010-06-01 12:00", "2010-06-07 08:00", "last Tuesday afternoon"),
    ("2010-06-01 12:00", "2010-06-08 08:00", "last week"),
    ("2010-06-01 12:00", "2010-06-15 08:00", "two weeks ago"),
    ("2010-06-01 12:00", "2010-06-29 08:00", "four weeks ago"),
    ("2010-06-01 12:00", "2010-07-01 08:00", "a month ago"),
    ("2010-03-01 12:00", "2010-06-09 08:00", "three months ago"),
    ("2009-12-01 12:00", "2010-11-30 08:00", "eleven months ago"),
    ("2009-12-01 12:00", "2010-12-01 08:00", "a year ago"),
    ("2009-12-01 12:00", "2011-12-05 08:00", "two years ago"),
])
def test_time_phrases(when, now, phrase):
    assert ser.time_phrase(when, now) == phrase


@pytest.mark.parametrize("when", ["2010-06-09 11:00", "2010-06-09 11:01", "2011-01-01"])
def test_time_phrase_refuses_the_future(when):
    with pytest.raises(ValueError, match="not before"):
        ser.time_phrase(when, "2010-06-09 11:00")


def test_known_history_round_trip():
    text = ser.serialize_history(KNOWN, now="2010-06-09 11:00")
    assert text == KNOWN_TEXT
    parsed = ser.parse_history(text + ser.basket_text(["WHITE HANGING HEART T-LIGHT HOLDER"], [4]))
    assert parsed.country == "France" and parsed.n_not_shown == 0
    assert parsed.invoices == [
        ("three months ago", [("REGENCY CAKESTAND 3 TIER", 12), ("PAPER NAPKINS", 6)]),
        ("last Monday afternoon", [("JUMBO BAG RED RETROSPOT", 2)]),
    ]
    assert ser.parse_basket(parsed.continuation) == [("WHITE HANGING HEART T-LIGHT HOLDER", 4)]


def test_round_trip_on_tricky_descriptions_and_countries():
    lines = _lines([
        ("1", "2010-01-04 09:00", "WILLOW BRANCH LIGHTS.", 3),          # ends with a dot
        ("1", "2010-01-04 09:00", "GREETING CARD, THE BLACK CAT", 1),   # comma
        ("1", "2010-01-04 09:00", "POLYESTER FILLER PAD 40x40cm", 2),   # "x" and digits
        ("2", "2010-01-05 18:00", "12 PENCILS SMALL  TUBE RED", 24),    # digits first, double space
    ], country="EIRE")
    parsed = ser.parse_history(ser.serialize_history(lines, now="2010-01-06 10:00"))
    assert parsed.country == "EIRE"
    assert parsed.invoices == [
        ("last Monday morning", [("WILLOW BRANCH LIGHTS.", 3), ("GREETING CARD, THE BLACK CAT", 1),
                                 ("POLYESTER FILLER PAD 40x40cm", 2)]),
        ("yesterday evening", [("12 PENCILS SMALL TUBE RED", 24)]),
    ]


def test_segments_and_pieces_concatenate_to_the_text():
    h = ser.history_text(KNOWN, now="2010-06-09 11:00")
    assert "".join(h.segments) == h.text == "".join(h.pieces) == KNOWN_TEXT
    assert h.segments[0] == "A customer from France." and h.segments[-1] == ser.PROMPT
    assert len(h.invoices) == 2 and h.n_lines == 3 and h.n_not_shown == 0
    # every segment after the first starts with one space and a non-space; none ends with a space
    for seg in h.segments[1:] + h.pieces[1:]:
        assert seg[0] == " " and seg[1] != " " and not seg.endswith(" ")


def test_future_lines_are_never_written():
    rng = np.random.default_rng(0)
    base = pd.Timestamp("2010-01-01")
    rows = [(str(i), base + pd.Timedelta(hours=int(h)), f"PRODUCT {i} {'AB'[i % 2]}", int(q))
            for i, (h, q) in enumerate(zip(np.sort(rng.integers(0, 24 * 300, 60)), rng.integers(1, 50, 60)))]
    lines = _lines(rows)
    for now in map(pd.Timestamp, ["2010-02-01", "2010-05-17 13:00", "2010-09-01"]):
        text = ser.serialize_history(lines, now)
        past, future = lines[lines.invoice_date < now], lines[lines.invoice_date >= now]
        for desc in future.description:
            assert f" {desc} x" not in text
        for desc in past.description:
            assert f" {desc} x" in text
        assert ser.serialize_history(past, now) == text  # the future changes nothing
    # an invoice exactly at `now` is the one to predict, not history
    assert "JUMBO" not in ser.serialize_history(KNOWN, now="2010-06-07 15:30")


def test_country_never_comes_from_the_future():
    later = _lines([("9", "2011-01-01 10:00", "OTHER THING", 1)], country="Germany")
    lines = pd.concat([KNOWN, later], ignore_index=True)
    assert ser.serialize_history(lines, "2010-06-09 11:00").startswith("A customer from France.")
    assert ser.serialize_history(later, "2010-06-09 11:00") == "A customer from an unknown country. Now buys"
    # the basket bought at `now` does tell where the customer is
    assert ser.serialize_history(later, "2011-01-01 10:00") == "A customer from Germany. Now buys"


def test_empty_history():
    assert ser.serialize_history(KNOWN.iloc[:0], now="2010-01-01", country="France") == "A customer from France. Now buys"
    assert ser.serialize_history(KNOWN, now="2010-01-01") == "A customer from an unknown country. Now buys"
    assert ser.serialize_history(KNOWN, now="2010-03-01 10:00") == "A customer from France. Now buys"
    assert ser.serialize_history(KNOWN.iloc[:0], now="2010-01-01", prompt="") == "A customer from an unknown country."
    assert ser.profile_text("Unspecified") == "A customer from an unknown country."
    assert ser.profile_text("United Kingdom") == "A customer from the United Kingdom."


def test_long_history_is_truncated_oldest_first_with_a_marker():
    rows = [(str(i // 3), f"2010-01-{1 + i // 3:02d} 10:00", f"ITEM NUMBER {i}", 1) for i in range(60)]
    lines = _lines(rows)
    now = "2010-02-01"
    full = ser.history_text(lines, now)
    assert full.n_not_shown == 0 and full.n_lines == 60
    for budget in (len(full.text) - 1, 400, 200, 70):
        h = ser.history_text(lines, now, max_length=budget)
        assert len(h.text) <= budget
        assert h.n_lines + h.n_not_shown == 60
        assert h.n_not_shown > 0 and f"({h.n_not_shown} earlier purchases not shown)" in h.profile
        kept = [d for _, items in ser.parse_history(h.text).invoices for d, _ in items]
        assert kept == [f"ITEM NUMBER {i}" for i in range(60 - h.n_lines, 60)]  # the newest lines
        assert h.text.endswith(ser.PROMPT)
    with pytest.raises(ValueError, match="cannot hold even the profile"):
        ser.history_text(lines, now, max_length=60)
    # a reserve leaves room for what follows
    h = ser.history_text(lines, now, max_length=300, reserve=100)
    assert len(h.text) <= 200
    # an invoice can lose its oldest lines; the marker counts lines
    h = ser.history_text(lines, now, max_length=len(full.text) - 20)
    assert h.n_not_shown >= 1
    one = ser.history_text(lines[:1], now, max_length=len(ser.profile_text("France", 1)) + len(ser.PROMPT))
    assert one.text == "A customer from France (1 earlier purchase not shown). Now buys"


def test_max_invoices_keeps_the_most_recent():
    invoices = ser.invoices_from_lines(KNOWN)
    h = ser.history_from_invoices(invoices, "2010-06-09 11:00", "France", max_invoices=1)
    assert h.text == "A customer from France (2 earlier purchases not shown). Last Monday afternoon bought JUMBO BAG RED RETROSPOT x2. Now buys"


def test_duplicates_in_an_invoice_are_merged_and_descriptions_mapped():
    lines = _lines([("1", "2010-03-01 10:00", "A THING", 2), ("1", "2010-03-01 10:00", "B THING", 1),
                    ("1", "2010-03-01 10:00", "A THING", 3)])
    assert "A THING x5; B THING x1." in ser.serialize_history(lines, "2010-03-02")
    lines["stock_code"] = ["10", "20", "10"]
    text = ser.serialize_history(lines, "2010-03-02", descriptions={"10": "THE A THING"})
    assert "THE A THING x5; B THING x1." in text


def test_candidate_and_basket_texts():
    assert ser.candidate_text("  JUMBO  BAG ") == " JUMBO BAG"
    assert ser.basket_text(["A", "B"], [10, 6]) == " A x10; B x6."
    assert ser.basket_text(["A"]) == " A."
    assert ser.basket_text(["A", "B"]).startswith(ser.candidate_text("A"))
    with pytest.raises(ValueError):
        ser.basket_text([])
    with pytest.raises(ValueError):
        ser.quantity_text(0)
    with pytest.raises(ValueError):
        ser.normalize_description("   ")


def test_customer_histories_match_per_customer_serialisation():
    a = KNOWN.assign(customer_id=1)
    b = _lines([("9", "2010-05-01 12:00", "OTHER THING", 1)], country="EIRE", customer_id=2)
    both = pd.concat([a, b], ignore_index=True)
    histories = ser.customer_histories(both)
    assert set(histories) == {1, 2} and histories[2][0] == "EIRE"
    country, invoices = histories[1]
    assert ser.history_from_invoices(invoices, "2010-06-09 11:00", country).text == KNOWN_TEXT


def test_errors_say_what_is_wrong():
    with pytest.raises(DataError, match="lack column"):
        ser.serialize_history(KNOWN.drop(columns=["quantity"]), "2010-06-09")
    with pytest.raises(DataError, match="one customer"):
        ser.serialize_history(pd.concat([KNOWN.assign(customer_id=1), KNOWN.assign(customer_id=2)]), "2010-06-09")
    with pytest.raises(ValueError, match="max_length"):
        ser.serialize_history(KNOWN, "2010-06-09", max_length=0)
    with pytest.raises(ValueError, match="profile"):
        ser.parse_history("Three months ago bought A x1.")


def test_deterministic():
    assert ser.serialize_history(KNOWN, "2010-06-09 11:00") == ser.serialize_history(KNOWN.iloc[::-1], "2010-06-09 11:00")
