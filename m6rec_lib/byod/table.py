"""Your data as one table: a row per interaction, with a user, an item, a time and maybe a text.

Everything the course does needs only these columns. :func:`load_table` reads them from a CSV or
parquet file (or takes a DataFrame), checks them and returns them under fixed names::

    user  str             who (any ID: a number, an e-mail hash, ...)
    item  str             what (any ID)
    time  datetime64[ns]  when; numbers are read as seconds since 1970 (``time_unit`` changes that)
    text  str             the item's text, when a text column is named (a title, a description)
    row   int64           the row's position in the input, which breaks ties between equal times

and sorted by user, then time, then ``row``. Every problem found is a :class:`DataError` that says
what is wrong and how to fix it. :func:`describe_table` gives the numbers that decide how the
sequential model is trained (see :mod:`m6rec_lib.byod.settings`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from m6rec_lib.data import DataError

COLUMNS = ("user", "item", "time")
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".dat", ".csv.gz", ".tsv.gz")


def _read_file(path: Path, sep: str | None) -> pd.DataFrame:
    name = path.name.lower()
    if not path.is_file():
        raise DataError(f"{path} does not exist; give the path of a CSV or parquet file.")
    if name.endswith(PARQUET_SUFFIXES):
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DataError(f"{path} could not be read as parquet ({type(exc).__name__}: {exc}).") from exc
    if name.endswith(CSV_SUFFIXES):
        if sep is None:
            sep = "\t" if ".tsv" in name else ","
        try:
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(
                f"{path} could not be read as a table with separator {sep!r} ({exc}). Pass the "
                "separator the file uses (sep=';' in Python, --sep ';' on the command line)."
            ) from exc
    raise DataError(
        f"{path}: the file type is not known from its name; use a .csv/.tsv (text) or .parquet "
        "file, or read it yourself into a pandas DataFrame and pass that."
    )


def _parse_time(values: pd.Series, time_unit: str, where: str) -> pd.Series:
    """Datetimes as they are; numbers (or numeric strings) as ``time_unit`` since 1970; else text dates."""
    if pd.api.types.is_datetime64_any_dtype(values):
        out = pd.to_datetime(values)
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_convert("UTC").dt.tz_localize(None)
        return out.astype("datetime64[ns]")
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return pd.to_datetime(numbers, unit=time_unit).astype("datetime64[ns]")
    try:
        out = pd.to_datetime(values, errors="coerce", format="mixed")
    except (ValueError, TypeError):
        out = pd.Series(pd.NaT, index=values.index)
    bad = out.isna()
    if bad.any():
        examples = values[bad].astype(str).unique()[:3].tolist()
        raise DataError(
            f"{where}: {int(bad.sum()):,} value(s) of the time column are neither numbers nor dates, "
            f"e.g. {examples}. Use ISO dates ('2024-03-01 14:05') or numbers of seconds since 1970 "
            "(time_unit='ms' for milliseconds), and drop or fix the other rows."
        )
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out.astype("datetime64[ns]")


def load_table(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    user: str = "user",
    item: str = "item",
    time: str = "time",
    text: str | None = None,
    sep: str | None = None,
    time_unit: str = "s",
) -> pd.DataFrame:
    """Read and check a table of interactions; return it with the columns ``user, item, time[, text], row``.

    Parameters
    ----------
    source
        A CSV/TSV file (``sep`` defaults to ``,``, or a tab for ``.tsv``), a parquet file, or a DataFrame.
    user, item, time, text
        The names of those columns in ``source`` (``text`` is optional: an item's title or description).
    time_unit
        Unit of numeric times (``"s"``, ``"ms"``, ``"D"``, ...): they count from 1970-01-01. Only their
        order matters for the leave-one-out split; the temporal split cuts at dates.
    """
    where = "the table" if isinstance(source, pd.DataFrame) else str(source)
    raw = source if isinstance(source, pd.DataFrame) else _read_file(Path(source), sep)
    wanted = {"user": user, "item": item, "time": time} | ({"text": text} if text else {})
    missing = {role: col for role, col in wanted.items() if col not in raw.columns}
    if missing:
        flags = " ".join(f"--{role} COLUMN" for role in missing)
        raise DataError(
            f"{where} has no column(s) {sorted(missing.values())} (asked for as "
            f"{', '.join(f'{r}={c!r}' for r, c in missing.items())}). Its columns are {list(raw.columns)}. "
            f"Name the right ones: load_table(..., {', '.join(f'{r}=...' for r in missing)}) in Python, "
            f"or {flags} on the command line."
        )
    if len(raw) == 0:
        raise DataError(f"{where} has no rows.")
    for role in ("user", "item", "time"):
        empty = raw[wanted[role]].isna() | (raw[wanted[role]].astype(str).str.strip() == "")
        if empty.any():
            first = empty.to_numpy().nonzero()[0][:3].tolist()
            raise DataError(
                f"{where}: {int(empty.sum()):,} row(s) have no {role} (column {wanted[role]!r}), e.g. rows "
                f"{first} (counting from 0). Drop them or fill them in; every interaction needs a user, "
                "an item and a time."
            )
    out = pd.DataFrame({
        "user": raw[user].astype(str).str.strip().to_numpy(),
        "item": raw[item].astype(str).str.strip().to_numpy(),
        "time": _parse_time(raw[time].reset_index(drop=True), time_unit, where).to_numpy(),
    })
    if text:
        out["text"] = raw[text].fillna("").astype(str).str.strip().to_numpy()
    out["row"] = np.arange(len(out), dtype=np.int64)
    return out.sort_values(["user", "time", "row"], kind="stable").reset_index(drop=True)


def k_core(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """Keep only users and items with at least ``k`` interactions each, repeating until both hold.

    The usual preprocessing of published MovieLens results (``k=5``). ``k <= 1`` keeps everything.
    """
    if k <= 1:
        return table
    out = table
    while True:
        user_n = out.groupby("user")["item"].transform("size")
        item_n = out.groupby("item")["user"].transform("size")
        keep = (user_n >= k) & (item_n >= k)
        if keep.all():
            break
        out = out[keep]
    if len(out) == 0:
        raise DataError(f"no interaction survives {k}-core filtering (users and items with at least {k} "
                        "interactions each); lower k.")
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class TableStats:
    """What a table of interactions looks like, in the numbers that decide how to model it.

    ``items_per_step``: the median number of items a user takes at one moment (1 for one item per
    step, like ratings; more for baskets, like invoices). ``repeat_share``: the share of
    interactions whose item the same user already had (re-buying, re-watching).
    """

    n_events: int
    n_users: int
    n_items: int
    length_quantiles: dict
    items_per_step: float
    repeat_share: float
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def kind(self) -> str:
        """``"baskets"`` when a user takes two or more items at a time (the median), else ``"items"``."""
        return "baskets" if self.items_per_step >= 2 else "items"

    def to_frame(self) -> pd.DataFrame:
        rows = {"interactions": f"{self.n_events:,}", "users": f"{self.n_users:,}", "items": f"{self.n_items:,}",
                "interactions per user (median, 90th percentile, max)":
                    f"{self.length_quantiles[0.5]:.0f}, {self.length_quantiles[0.9]:.0f}, "
                    f"{self.length_quantiles[1.0]:.0f}",
                "items per step (median)": f"{self.items_per_step:g} ({self.kind})",
                "repeat share": f"{self.repeat_share:.1%}",
                "time span": f"{self.start:%Y-%m-%d} .. {self.end:%Y-%m-%d}"}
        return pd.DataFrame({"value": rows}).rename_axis("statistic")


def describe_table(table: pd.DataFrame) -> TableStats:
    """The statistics of a table from :func:`load_table` (see :class:`TableStats`)."""
    lengths = table.groupby("user").size()
    steps = table.groupby(["user", "time"]).size()
    repeats = table.duplicated(["user", "item"]).mean()
    q = lengths.quantile([0.5, 0.9, 1.0])
    return TableStats(
        n_events=len(table), n_users=int(lengths.size), n_items=int(table["item"].nunique()),
        length_quantiles={float(k): float(v) for k, v in q.items()},
        items_per_step=float(steps.median()), repeat_share=float(repeats),
        start=table["time"].min(), end=table["time"].max(),
    )
