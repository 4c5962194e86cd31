"""Behaviour as language: write a customer's history up to a moment as M6-Rec-style text.

A history becomes a short, deterministic text, for example::

    A customer from France. Three months ago bought REGENCY CAKESTAND 3 TIER x2; PAPER CHAIN KIT
    50'S CHRISTMAS x12. Last Tuesday morning bought JUMBO BAG RED RETROSPOT x10. Now buys

and a candidate product continues it (`` WHITE HANGING HEART T-LIGHT HOLDER``). The text is made
of **segments**, each a plain string, whose concatenation is the text:

=============  ===========================================================  =================
segment        example                                                      made by
=============  ===========================================================  =================
profile        ``A customer from France.`` (+ truncation marker)             :func:`profile_text`
one invoice    `` Last Tuesday morning bought JUMBO BAG RED RETROSPOT x10.``  :func:`invoice_text`
prompt         `` Now buys``                                                 :data:`PROMPT`
candidate      `` JUMBO BAG RED RETROSPOT``                                  :func:`candidate_text`
basket         `` JUMBO BAG RED RETROSPOT x10; PAPER NAPKINS x6.``            :func:`basket_text`
=============  ===========================================================  =================

Every segment after the first starts with a single space followed by a letter or digit, and no
segment ends with a space. With a byte-level BPE tokenizer (``m6rec_lib.text.tokenizer``) this makes
tokenization additive: ``tokens(a + b) == tokens(a) + tokens(b)`` for consecutive segments, so a
model can encode segments separately (late interaction caches them) and lengths add up.

Rules
-----
- Only lines strictly before ``now`` are written (an invoice at ``now`` is the thing to predict).
- Invoices appear oldest first; lines of one invoice keep their order; the same description twice
  in one invoice is written once with the quantities summed.
- Time words are relative to ``now`` (:func:`time_phrase`): "this morning", "yesterday evening",
  "last Tuesday afternoon", "last week", "three weeks ago", "five months ago", "a year ago".
- When the text would exceed ``max_length`` (measured by ``length``, e.g. a token counter), the
  oldest purchase lines are dropped first and the profile says how many:
  ``A customer from France (41 earlier purchases not shown).``
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..data.retail import DataError

#: The words that ask for the next purchase; a candidate's text follows them.
PROMPT = " Now buys"
#: Separator between the items of one invoice (no product description contains it).
ITEM_SEPARATOR = ";"
#: Version of the text format; caches of tokenizers and models trained on the text include it.
FORMAT_VERSION = 1

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "ten", "eleven", "twelve")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
#: How the shop's country names are written in a sentence ("a customer from ...").
_COUNTRY_NAMES = {
    "EIRE": "Ireland",
    "RSA": "South Africa",
    "USA": "the USA",
    "United Kingdom": "the United Kingdom",
    "Netherlands": "the Netherlands",
    "Channel Islands": "the Channel Islands",
    "Czech Republic": "the Czech Republic",
    "United Arab Emirates": "the United Arab Emirates",
    "West Indies": "the West Indies",
    "European Community": "the European Community",
}
_UNKNOWN_COUNTRIES = {"", "unspecified", "nan", "none"}
_REQUIRED_COLUMNS = ("invoice", "invoice_date", "description", "quantity")
_SPACES = re.compile(r"\s+")


# --------------------------------------------------------------------------- words

def _as_datetime(moment) -> dt.datetime:
    """A timezone-naive ``datetime`` from a Timestamp, datetime64, datetime or ISO string."""
    if type(moment) is dt.datetime and moment.tzinfo is None:
        return moment  # the common case, made fast: invoices hold plain datetimes
    ts = pd.Timestamp(moment)
    if ts is pd.NaT:
        raise ValueError("a moment is missing (NaT); every line needs an invoice_date")
    if ts.tzinfo is not None:
        ts = ts.tz_convert(None)
    return ts.to_pydatetime()


def part_of_day(moment) -> str:
    """"morning" (before 12:00), "afternoon" (12:00-16:59) or "evening" (17:00 and later)."""
    hour = _as_datetime(moment).hour
    return "morning" if hour < 12 else "afternoon" if hour < 17 else "evening"


def number_word(n: int) -> str:
    """0..12 as words ("three"), larger numbers as digits."""
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def time_phrase(when, now) -> str:
    """How long before ``now`` the moment ``when`` was, in words (lower case).

    By calendar days between the two dates:

    ======================  ========================================
    0 days                  "this morning" / "this afternoon" / "this evening"
    1 day                   "yesterday morning" (afternoon, evening)
    2-6 days                "last Tuesday morning" (the weekday of ``when``)
    7-13 days               "last week"
    14-29 days              "two weeks ago" ... "four weeks ago"
    30-364 days             "a month ago", "two months ago" ... "eleven months ago" (30-day months)
    365 days and more       "a year ago", "two years ago", ...
    ======================  ========================================

    Raises ValueError when ``when`` is not strictly before ``now``: the future is never written.
    """
    when, now = _as_datetime(when), _as_datetime(now)
    if when >= now:
        raise ValueError(
            f"{when} is not before {now}: a history only holds events strictly before the moment "
            "it is written for. Drop lines at or after `now` first."
        )
    days = (now.date() - when.date()).days
    if days == 0:
        return f"this {part_of_day(when)}"
    if days == 1:
        return f"yesterday {part_of_day(when)}"
    if days < 7:
        return f"last {_WEEKDAYS[when.weekday()]} {part_of_day(when)}"
    if days < 14:
        return "last week"
    if days < 30:
        return f"{number_word(days // 7)} weeks ago"
    if days < 365:
        months = days // 30
        return "a month ago" if months == 1 else f"{number_word(min(months, 11))} months ago"
    years = days // 365
    return "a year ago" if years == 1 else f"{number_word(years)} years ago"


def country_name(country: str | None) -> str | None:
    """The country as written in a sentence ("EIRE" -> "Ireland", "Netherlands" -> "the
    Netherlands"); None when unknown or "Unspecified"."""
    if country is None or (isinstance(country, float) and np.isnan(country)):
        return None
    country = _SPACES.sub(" ", str(country)).strip()
    if country.lower() in _UNKNOWN_COUNTRIES:
        return None
    return _COUNTRY_NAMES.get(country, country)


def profile_text(country: str | None, n_not_shown: int = 0) -> str:
    """The first segment: ``"A customer from France."``, with the truncation marker when
    ``n_not_shown`` > 0: ``"A customer from France (41 earlier purchases not shown)."``"""
    if n_not_shown < 0:
        raise ValueError(f"n_not_shown must be >= 0, got {n_not_shown}")
    return _profile(country_name(country), n_not_shown)


def _profile(name: str | None, n_not_shown: int) -> str:
    text = f"A customer from {name}" if name else "A customer from an unknown country"
    if n_not_shown:
        noun = "purchase" if n_not_shown == 1 else "purchases"
        text += f" ({n_not_shown} earlier {noun} not shown)"
    return text + "."


def normalize_description(description: str) -> str:
    """A product description as written in text: whitespace runs collapsed, ends stripped.

    The case is kept: the shop writes descriptions in capitals, and a candidate is matched by its
    exact text. Raises ValueError for an empty description.
    """
    text = _SPACES.sub(" ", str(description)).strip()
    if not text:
        raise ValueError("a product description is empty; every item needs a text")
    return text


def quantity_text(quantity: int) -> str:
    """``12`` -> ``"x12"`` (the quantity follows the description)."""
    q = int(quantity)
    if q < 1:
        raise ValueError(f"quantities are positive (returns are cleaned out); got {quantity}")
    return f"x{q}"


def item_text(description: str, quantity: int | None = None) -> str:
    """One purchase line, without separator: ``"JUMBO BAG RED RETROSPOT x10"``."""
    text = normalize_description(description)
    return text if quantity is None else f"{text} {quantity_text(quantity)}"


def candidate_text(description: str) -> str:
    """The continuation that names a product after :data:`PROMPT`: ``" JUMBO BAG RED RETROSPOT"``.

    Score a candidate by the log-probability of its tokens given ``history_text + candidate``;
    the tokens are the same as in a basket that starts with this product.
    """
    return " " + normalize_description(description)


def basket_text(descriptions: Sequence[str], quantities: Sequence[int] | None = None) -> str:
    """The continuation that lists a whole basket after :data:`PROMPT`:
    ``" JUMBO BAG RED RETROSPOT x10; PAPER NAPKINS x6."`` (quantities optional)."""
    if len(descriptions) == 0:
        raise ValueError("a basket needs at least one product")
    if quantities is not None and len(quantities) != len(descriptions):
        raise ValueError(f"{len(descriptions)} descriptions but {len(quantities)} quantities")
    qs = quantities if quantities is not None else [None] * len(descriptions)
    pieces = [" " + item_text(d, q) for d, q in zip(descriptions, qs)]
    return ITEM_SEPARATOR.join(pieces) + "."


# --------------------------------------------------------------------------- invoices

@dataclass(frozen=True)
class Invoice:
    """One past invoice: its moment and its (description, quantity) lines in order.

    Build it with :func:`invoices_from_lines` (descriptions normalised, repeated ones merged).
    """

    moment: dt.datetime
    items: tuple[tuple[str, int], ...]

    @functools.cached_property
    def line_pieces(self) -> tuple[str, ...]:
        """One piece per line: ``(" JUMBO BAG RED RETROSPOT x10;", " PAPER NAPKINS x6.")``.

        They do not depend on the moment the history is written for, so they are computed once.
        """
        n = len(self.items)
        return tuple(f" {d} {quantity_text(q)}{ITEM_SEPARATOR if i < n - 1 else '.'}"
                     for i, (d, q) in enumerate(self.items))

    def pieces(self, now) -> list[str]:
        """The invoice's segment cut into additive pieces: the head, then one piece per line.

        ``[" Last Tuesday morning bought", " JUMBO BAG RED RETROSPOT x10;", " PAPER NAPKINS x6."]``.
        Dropping leading line pieces (truncation) leaves the others unchanged.
        """
        return [invoice_head(self.moment, now), *self.line_pieces]


def invoice_head(moment, now) -> str:
    """The start of an invoice segment: ``" Last Tuesday morning bought"``."""
    when = time_phrase(moment, now)
    return f" {when[0].upper()}{when[1:]} bought"


def invoice_text(invoice: Invoice, now) -> str:
    """One invoice as a segment: ``" Last Tuesday morning bought JUMBO BAG RED RETROSPOT x10."``"""
    return "".join(invoice.pieces(now))


def invoices_from_lines(lines: pd.DataFrame, descriptions: Mapping[str, str] | None = None) -> list[Invoice]:
    """Group one customer's purchase lines into invoices, oldest first.

    ``lines`` needs columns invoice, invoice_date, description, quantity (and stock_code when
    ``descriptions`` maps stock codes to texts, e.g. the training-period texts of an ItemIndex).
    Lines are ordered by (invoice_date, invoice, line_no) -- without a ``line_no`` column, the
    given order inside an invoice is kept; repeated descriptions within an invoice are merged, quantities summed.
    """
    missing = [c for c in _REQUIRED_COLUMNS if c not in lines.columns]
    if descriptions is not None and "stock_code" not in lines.columns:
        missing.append("stock_code")
    if missing:
        raise DataError(
            f"the lines to serialise lack column(s) {missing}; pass cleaned purchase lines "
            "(m6rec_lib.data.load_clean_lines) of one customer."
        )
    if len(lines) == 0:
        return []
    ordered = lines.sort_values(_order_columns(lines), kind="stable")
    return _group_invoices(*_line_columns(ordered, descriptions))


def _order_columns(lines: pd.DataFrame) -> list[str]:
    """Time, then invoice, then the line's position in the file when known (``line_no``)."""
    return ["invoice_date", "invoice"] + (["line_no"] if "line_no" in lines.columns else [])


def _normalized_texts(texts: pd.Series) -> list[str]:
    """normalize_description of every entry, computed once per distinct text."""
    uniques = pd.unique(texts.to_numpy())
    mapping = {t: normalize_description(t) for t in uniques}
    return [mapping[t] for t in texts.to_numpy()]


def _group_invoices(moments: Sequence[dt.datetime], invoices: Sequence[str], texts: Sequence[str],
                    quantities: Sequence[int]) -> list[Invoice]:
    """Parallel sequences sorted by (moment, invoice), texts normalised -> list of Invoice."""
    out: list[Invoice] = []
    key = None
    merged: dict[str, int] = {}
    for moment, inv, text, q in zip(moments, invoices, texts, quantities):
        if (moment, inv) != key:
            if merged:
                out.append(Invoice(key[0], tuple(merged.items())))
            key, merged = (moment, inv), {}
        merged[text] = merged.get(text, 0) + int(q)
    if merged:
        out.append(Invoice(key[0], tuple(merged.items())))
    return out


def _line_columns(ordered: pd.DataFrame, descriptions: Mapping[str, str] | None) -> tuple[list, ...]:
    """(moments as datetimes, invoices, normalised texts, quantities) of time-ordered lines."""
    texts = ordered["description"]
    if descriptions is not None:  # codes without a mapped text keep their own description
        texts = ordered["stock_code"].map(descriptions).fillna(texts)
    moments = pd.DatetimeIndex(ordered["invoice_date"]).to_pydatetime().tolist()
    return (moments, ordered["invoice"].astype(str).tolist(), _normalized_texts(texts),
            ordered["quantity"].astype("int64").tolist())


# --------------------------------------------------------------------------- histories

@dataclass(frozen=True)
class HistoryText:
    """A serialised history as segments; ``text`` is their concatenation.

    ``profile`` includes the truncation marker when lines were dropped; ``invoices`` are the
    invoice segments oldest first (the oldest one may have lost its first lines to truncation);
    ``prompt`` is :data:`PROMPT` or ``""``. ``n_lines`` counts the lines written, ``n_not_shown``
    the lines left out (truncation). ``pieces`` is the finest cut of the same text (profile, then
    each invoice's head and lines, then the prompt): tokenizing piece by piece and concatenating
    gives the tokens of ``text``, so token IDs of repeated pieces can be cached.
    """

    profile: str
    invoices: tuple[str, ...]
    prompt: str
    n_lines: int
    n_not_shown: int
    now: dt.datetime = field(compare=False)
    pieces: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def segments(self) -> tuple[str, ...]:
        """(profile, invoice_1, ..., invoice_k[, prompt]): the units a late-interaction model caches."""
        return (self.profile, *self.invoices) + ((self.prompt,) if self.prompt else ())

    @property
    def text(self) -> str:
        return "".join(self.segments)

    def __str__(self) -> str:
        return self.text


def history_from_invoices(
    invoices: Sequence[Invoice],
    now,
    country: str | None = None,
    *,
    max_length: int | None = None,
    length: Callable[[str], int] = len,
    prompt: str = PROMPT,
    reserve: int = 0,
    max_invoices: int | None = None,
) -> HistoryText:
    """Serialise ``invoices`` (oldest first) as seen at ``now``; see :func:`history_text`.

    Invoices at or after ``now`` are left out; with ``max_invoices`` only the most recent ones are
    kept. ``length`` measures a piece of text (characters by default, or a tokenizer's token
    count) and must be additive over pieces; ``reserve`` is room kept free for what the caller
    appends (a candidate or a basket), counted in the same unit.
    """
    now = _as_datetime(now)
    past = [inv for inv in invoices if inv.moment < now]
    n_total = sum(len(inv.items) for inv in past)
    if max_invoices is not None:
        if max_invoices < 0:
            raise ValueError(f"max_invoices must be >= 0, got {max_invoices}")
        past = past[len(past) - max_invoices:] if max_invoices else []
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be a positive number, got {max_length}")
    prompt = prompt or ""
    kept: list[tuple[str, tuple[str, ...]]] = []  # newest first: (head, kept line pieces)
    if max_length is None:
        kept = [(invoice_head(inv.moment, now), inv.line_pieces) for inv in reversed(past)]
    else:
        # Keep the newest lines, one at a time, while the exact length still fits. The profile is
        # re-measured at each step: its marker's number (and so its length) changes with it.
        fixed = reserve + (length(prompt) if prompt else 0)
        name = country_name(country)
        used, n_shown = 0, 0  # length of the heads and lines kept so far, and how many lines
        for inv in reversed(past):
            head, body = invoice_head(inv.moment, now), inv.line_pieces
            n_take, cost = 0, length(head)
            for piece in reversed(body):  # newest line of the invoice first
                c = length(piece)
                marker = length(_profile(name, n_total - (n_shown + n_take + 1)))
                if used + cost + c + fixed + marker > max_length:
                    break
                cost += c
                n_take += 1
            if n_take:
                kept.append((head, body[len(body) - n_take:]))
                used, n_shown = used + cost, n_shown + n_take
            if n_take < len(body):
                break
        if not kept and fixed + length(profile_text(country, n_total)) > max_length:
            raise ValueError(
                f"max_length={max_length} cannot hold even the profile and the prompt "
                f"({fixed - reserve + length(profile_text(country, n_total))} + reserve {reserve}); "
                "raise max_length or lower reserve"
            )
    kept.reverse()
    n_kept = sum(len(body) for _, body in kept)
    profile = profile_text(country, n_total - n_kept)
    pieces = [profile]
    for head, body in kept:
        pieces += [head, *body]
    if prompt:
        pieces.append(prompt)
    return HistoryText(
        profile, tuple(head + "".join(body) for head, body in kept), prompt, n_kept,
        n_total - n_kept, now, tuple(pieces),
    )


def _customer_country(lines: pd.DataFrame, country: str | None, now: dt.datetime | None = None) -> str | None:
    """``country`` if given, else the country of the latest line at or before ``now``."""
    if country is not None:
        return country
    if "country" not in lines.columns or len(lines) == 0:
        return None
    if now is not None:
        lines = lines[pd.to_datetime(lines["invoice_date"]) <= pd.Timestamp(now)]
        if len(lines) == 0:
            return None
    latest = lines.sort_values("invoice_date", kind="stable")["country"].iloc[-1]
    return None if pd.isna(latest) else str(latest)


def history_text(
    lines: pd.DataFrame,
    now,
    country: str | None = None,
    *,
    max_length: int | None = None,
    length: Callable[[str], int] = len,
    prompt: str = PROMPT,
    reserve: int = 0,
    descriptions: Mapping[str, str] | None = None,
) -> HistoryText:
    """One customer's history up to ``now`` as M6-Rec-style text, kept as segments.

    Parameters
    ----------
    lines
        The customer's purchase lines (columns invoice, invoice_date, description, quantity, and
        country unless ``country`` is given). Lines at or after ``now`` are ignored: no future
        event is ever written. Pass one customer's lines only.
    now
        The moment the text is written for (e.g. the time of the basket to predict).
    country
        The customer's country; default: the country of their latest line at or before ``now``
        (the basket being bought at ``now`` tells where the customer is; later lines never do).
    max_length, length, reserve
        Keep ``length(text) + reserve <= max_length`` by dropping the oldest lines first; the
        profile then says how many were dropped. ``length`` defaults to characters; pass a token
        counter (``tokenizer.count``) to fit a model's context.
    prompt
        Appended at the end (default :data:`PROMPT`, " Now buys"); ``""`` for none.
    descriptions
        Optional stock code -> text mapping used instead of each line's own description.
    """
    if "customer_id" in lines.columns and lines["customer_id"].nunique() > 1:
        raise DataError(
            f"history_text got lines of {lines['customer_id'].nunique()} customers; pass the lines "
            "of one customer (e.g. lines[lines.customer_id == 12347])."
        )
    now = _as_datetime(now)
    past = lines[pd.to_datetime(lines["invoice_date"]) < pd.Timestamp(now)] if len(lines) else lines
    invoices = invoices_from_lines(past, descriptions)
    return history_from_invoices(
        invoices, now, _customer_country(lines, country, now),
        max_length=max_length, length=length, prompt=prompt, reserve=reserve,
    )


def serialize_history(
    lines: pd.DataFrame,
    now,
    country: str | None = None,
    *,
    max_length: int | None = None,
    length: Callable[[str], int] = len,
    prompt: str = PROMPT,
    reserve: int = 0,
    descriptions: Mapping[str, str] | None = None,
) -> str:
    """One customer's history up to ``now`` as a single string (``history_text(...).text``).

    >>> import pandas as pd
    >>> lines = pd.DataFrame({
    ...     "invoice": ["1", "1", "2"], "quantity": [12, 6, 2], "country": "France",
    ...     "invoice_date": pd.to_datetime(["2010-03-01 10:00", "2010-03-01 10:00", "2010-06-07 15:30"]),
    ...     "description": ["REGENCY CAKESTAND 3 TIER", "PAPER NAPKINS", "JUMBO BAG RED RETROSPOT"]})
    >>> serialize_history(lines, now="2010-06-09 11:00")
    'A customer from France. Three months ago bought REGENCY CAKESTAND 3 TIER x12; PAPER NAPKINS x6. Last Monday afternoon bought JUMBO BAG RED RETROSPOT x2. Now buys'
    """
    return history_text(
        lines, now, country, max_length=max_length, length=length, prompt=prompt,
        reserve=reserve, descriptions=descriptions,
    ).text


def customer_histories(
    lines: pd.DataFrame, descriptions: Mapping[str, str] | None = None
) -> dict[int, tuple[str | None, list[Invoice]]]:
    """Every customer's (country, invoices oldest first), for serialising many moments quickly.

    ``lines`` need a ``customer_id`` column. The country is the one of each customer's latest line.
    Use with :func:`history_from_invoices`, which drops invoices at or after ``now`` itself.
    """
    if "customer_id" not in lines.columns:
        raise DataError("customer_histories needs a customer_id column (cleaned purchase lines).")
    ordered = lines.sort_values(["customer_id", *_order_columns(lines)], kind="stable")
    cids = ordered["customer_id"].to_numpy()
    cols = _line_columns(ordered, descriptions)
    countries = ordered["country"].to_numpy() if "country" in ordered.columns else None
    bounds = np.flatnonzero(np.r_[True, cids[1:] != cids[:-1], True])
    out: dict[int, tuple[str | None, list[Invoice]]] = {}
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        country = None if countries is None or pd.isna(countries[hi - 1]) else str(countries[hi - 1])
        out[int(cids[lo])] = (country, _group_invoices(*(c[lo:hi] for c in cols)))
    return out


# --------------------------------------------------------------------------- reading text back

_PART = r"(?:morning|afternoon|evening)"
_NUMS = _NUMBER_WORDS[2:]
_NUM = rf"(?:{'|'.join(_NUMS)}|\d+)"
_NUM_CAP = rf"(?:{'|'.join(n.capitalize() for n in _NUMS)}|\d+)"
#: The head of an invoice segment (a time phrase, capitalised, then "bought").
HEAD_PATTERN = re.compile(
    rf" (This {_PART}|Yesterday {_PART}|Last (?:{'|'.join(_WEEKDAYS)}) {_PART}|Last week"
    rf"|{_NUM_CAP} weeks ago|A month ago|{_NUM_CAP} months ago|A year ago|{_NUM_CAP} years ago) bought(?= )"
)
_PROFILE_PATTERN = re.compile(
    r"^A customer from (?P<country>.+?)(?: \((?P<n>\d+) earlier purchases? not shown\))?\.(?= |$)"
)
_QUANTITY_PATTERN = re.compile(r"^(?P<desc>.+) x(?P<q>\d+)$")
_COUNTRY_CODES = {v: k for k, v in _COUNTRY_NAMES.items()}


@dataclass(frozen=True)
class ParsedHistory:
    """What :func:`parse_history` reads back from a serialised history.

    ``country``: the shop's country name ("France", "EIRE"), None if unknown; ``n_not_shown``:
    the truncation marker's count; ``invoices``: (time phrase in lower case, [(description,
    quantity), ...]) oldest first; ``continuation``: the text after " Now buys" (None if the
    prompt is absent).
    """

    country: str | None
    n_not_shown: int
    invoices: list[tuple[str, list[tuple[str, int | None]]]]
    continuation: str | None


def parse_basket(text: str) -> list[tuple[str, int | None]]:
    """Read the lines of a basket back: ``" A x12; B x6."`` -> ``[("A", 12), ("B", 6)]``.

    Works on generated text too: a piece without a quantity gives ``(description, None)``, a
    missing final "." is tolerated, and anything after the first line that ends with
    "x<quantity>." (for example the start of another sentence) is ignored.
    """
    body = text.strip()
    end = re.search(r" x\d+\.(?= |$)", body)  # the line that closes the basket
    if end is not None:
        body = body[:end.end() - 1]
    elif body.endswith("."):
        body = body[:-1]
    out: list[tuple[str, int | None]] = []
    for piece in body.split(ITEM_SEPARATOR):
        piece = piece.strip()
        if not piece:
            continue
        match = _QUANTITY_PATTERN.match(piece)
        out.append((match["desc"], int(match["q"])) if match else (piece, None))
    return out


def parse_history(text: str) -> ParsedHistory:
    """Read a text made by :func:`serialize_history` back into its parts (the inverse, up to the
    time words, which keep only what the text says).

    Raises ValueError when the text does not start with a profile sentence.
    """
    match = _PROFILE_PATTERN.match(text)
    if match is None:
        raise ValueError(f"not a serialised history (no 'A customer from ...' profile): {text[:60]!r}")
    name = match["country"]
    country = None if name == "an unknown country" else _COUNTRY_CODES.get(name, name)
    rest = text[match.end():]
    continuation = None
    if PROMPT in rest:
        rest, continuation = rest.split(PROMPT, 1)
    heads = list(HEAD_PATTERN.finditer(rest))
    invoices = []
    for i, head in enumerate(heads):
        body = rest[head.end():heads[i + 1].start() if i + 1 < len(heads) else len(rest)]
        phrase = head[1][0].lower() + head[1][1:]
        invoices.append((phrase, parse_basket(body)))
    return ParsedHistory(country, int(match["n"] or 0), invoices, continuation)


def describe_format() -> pd.DataFrame:
    """The text format's pieces as a table (for notebooks)."""
    rows = [
        ("profile", profile_text("France"), "country of the latest line"),
        ("truncated profile", profile_text("France", 41), "oldest lines dropped to fit"),
        ("invoice", " Last Tuesday morning bought JUMBO BAG RED RETROSPOT x10; PAPER NAPKINS x6.",
         "time words relative to now"),
        ("prompt", PROMPT, "asks for what comes next"),
        ("candidate", candidate_text("JUMBO BAG RED RETROSPOT"), "a product to score"),
        ("basket", basket_text(["JUMBO BAG RED RETROSPOT", "PAPER NAPKINS"], [10, 6]), "a basket to generate"),
    ]
    return pd.DataFrame(rows, columns=["segment", "example", "note"])


__all__ = [
    "PROMPT", "ITEM_SEPARATOR", "FORMAT_VERSION", "Invoice", "HistoryText", "part_of_day",
    "number_word", "time_phrase", "country_name", "profile_text", "normalize_description",
    "quantity_text", "item_text", "candidate_text", "basket_text", "invoice_text",
    "invoices_from_lines", "history_from_invoices", "history_text", "serialize_history",
    "customer_histories", "describe_format", "invoice_head", "HEAD_PATTERN", "ParsedHistory",
    "parse_basket", "parse_history",
]

