"""The bundled Online Retail II data: loading with schema checks, and the cleaning rules.

The shipped file (``datasets/online_retail_ii.parquet``) keeps the raw semantics. Cleaning is done
here, rule by rule, and every rule reports how many lines it removed, so a learner sees what
happened to the data instead of trusting a silent filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import DATASETS_DIR

RETAIL_FILE = DATASETS_DIR / "online_retail_ii.parquet"
#: sha256 of the shipped file (also in datasets/README.md)
RETAIL_SHA256 = "83c8a5d6df64ccfe82c94a4941dca89903659da54ddac77fe4cece61ed5c02ec"
REBUILD_HINT = (
    "restore the shipped file with `git checkout -- datasets/online_retail_ii.parquet`, or rebuild "
    "it from the official UCI spreadsheet with "
    "`python datasets/build_online_retail.py --xlsx online_retail_II.xlsx`"
)

#: column -> numpy dtype kind(s) accepted ("O"/"T" are strings in pandas 2 and 3)
SCHEMA: dict[str, str] = {
    "invoice": "OUT",
    "stock_code": "OUT",
    "description": "OUT",
    "quantity": "iu",
    "invoice_date": "M",
    "price": "f",
    "customer_id": "iuf",
    "country": "OUT",
}

#: Stock codes that are not products: postage, fees, manual adjustments, samples, tests.
NON_PRODUCT_CODES = frozenset({
    "POST", "DOT", "M", "C2", "C3", "D", "S", "B", "CRUK", "PADS", "BANK CHARGES", "AMAZONFEE",
    "ADJUST", "ADJUST2", "TEST001", "TEST002", "GIFT",
})
NON_PRODUCT_PREFIXES = ("GIFT_",)  # gift vouchers: gift_0001_10 ... (compared upper-case)


class DataError(ValueError):
    """The data is missing, unreadable or not in the expected shape; the message says how to fix it."""


def _dtype_kind(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype) or pd.api.types.is_string_dtype(dtype):
        return "T"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "M"
    return getattr(dtype, "kind", "O")


def validate_schema(df: pd.DataFrame, where: str = "the data") -> None:
    """Raise DataError if ``df`` lacks a required column, has a wrong type, or is empty."""
    missing = [c for c in SCHEMA if c not in df.columns]
    if missing:
        raise DataError(
            f"{where} is missing column(s) {missing}; expected columns {list(SCHEMA)}. "
            f"Found {list(df.columns)}. To fix: {REBUILD_HINT}."
        )
    wrong = {
        c: str(df[c].dtype) for c, kinds in SCHEMA.items() if _dtype_kind(df[c]) not in kinds
    }
    if wrong:
        raise DataError(
            f"{where} has column(s) of the wrong type: {wrong}. Expected: invoice, stock_code, "
            "description, country as strings; quantity integer; invoice_date datetime; price float; "
            f"customer_id integer. To fix: {REBUILD_HINT}."
        )
    if len(df) == 0:
        raise DataError(f"{where} has no rows. To fix: {REBUILD_HINT}.")


def load_online_retail(path: str | Path | None = None) -> pd.DataFrame:
    """Load the raw (uncleaned) purchase lines and check their schema.

    Returns a DataFrame with columns invoice, stock_code, description, quantity, invoice_date,
    price, customer_id (nullable), country, source, line_no: one row per invoice line, as in the
    UCI sheets (cancellations, returns and non-product lines included).
    """
    path = Path(path) if path is not None else RETAIL_FILE
    if not path.exists():
        raise DataError(f"{path} is missing. To fix: {REBUILD_HINT}.")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(
            f"{path} could not be read as parquet ({type(exc).__name__}: {exc}); the file is "
            f"corrupt or not a parquet file. To fix: {REBUILD_HINT}."
        ) from exc
    validate_schema(df, where=str(path.name))
    return df


def verify_bundled_file(path: str | Path | None = None) -> str:
    """Check the shipped file's sha256; return it, or raise DataError naming both digests."""
    import hashlib

    path = Path(path) if path is not None else RETAIL_FILE
    if not path.exists():
        raise DataError(f"{path} is missing. To fix: {REBUILD_HINT}.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != RETAIL_SHA256:
        raise DataError(
            f"{path.name} has sha256 {digest}, but the course ships {RETAIL_SHA256}. The file was "
            f"changed or rebuilt with other inputs. To fix: {REBUILD_HINT}."
        )
    return digest


@dataclass(frozen=True)
class CleaningReport:
    """How many lines each cleaning rule removed, in the order the rules are applied."""

    table: pd.DataFrame  # columns: rule, removed, remaining
    n_raw: int
    n_clean: int

    def _repr_html_(self) -> str:  # shown as a table in notebooks
        return self.table.to_html(index=False)

    def __str__(self) -> str:
        return self.table.to_string(index=False)


def is_non_product(codes: pd.Series) -> pd.Series:
    """True for postage, fees, adjustments, samples, tests and gift vouchers."""
    upper = codes.astype("string").str.upper()
    return upper.isin(NON_PRODUCT_CODES) | upper.str.startswith(NON_PRODUCT_PREFIXES).fillna(False)


def clean_transactions(raw: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
    """Apply the course's cleaning rules to raw lines; return (clean lines, report).

    Rules, in order (a line is counted by the first rule that removes it):

    1. cancellation: the invoice starts with "C";
    2. non-positive quantity: returns and stock adjustments that are not cancellations;
    3. no invoice or stock code: lines the source published without IDs;
    4. non-positive price: free samples, "adjust bad debt", damaged stock write-offs;
    5. non-product code: postage, fees, manual entries, tests, gift vouchers (``NON_PRODUCT_CODES``);
    6. missing customer: guest purchases cannot be tied to a history;
    7. missing description: the product has no text.

    Stock codes are upper-cased (the sheets write some suffixes in lower case), descriptions
    stripped. The clean lines keep the raw columns with ``customer_id`` as int64.
    """
    validate_schema(raw, where="the raw lines")
    df = raw
    rules = [
        ("cancellation (invoice starts with C)",
         lambda d: d["invoice"].astype("string").str.startswith("C").fillna(False)),
        ("quantity <= 0 (returns, adjustments)", lambda d: d["quantity"] <= 0),
        ("no invoice or stock code", lambda d: d["invoice"].isna() | d["stock_code"].isna()),
        ("price <= 0", lambda d: d["price"] <= 0),
        ("non-product code (postage, fees, vouchers, ...)", lambda d: is_non_product(d["stock_code"])),
        ("missing customer", lambda d: d["customer_id"].isna()),
        ("missing description", lambda d: d["description"].isna() | (d["description"].str.strip() == "")),
    ]
    rows = []
    for name, rule in rules:
        drop = np.asarray(rule(df), dtype=bool)
        rows.append({"rule": name, "removed": int(drop.sum()), "remaining": int((~drop).sum())})
        df = df[~drop]
    report = pd.DataFrame(rows)
    clean = df.copy()
    clean["stock_code"] = clean["stock_code"].astype("string").str.upper().astype(str)
    clean["invoice"] = clean["invoice"].astype(str)
    clean["description"] = clean["description"].astype("string").str.strip().astype(str)
    clean["country"] = clean["country"].astype(str)
    clean["customer_id"] = clean["customer_id"].astype("int64")
    clean = clean.sort_values(["invoice_date", "invoice", "line_no"], kind="stable").reset_index(drop=True)
    if len(clean) == 0:
        raise DataError("no line survived cleaning; the input has no valid purchases.")
    return clean, CleaningReport(report, n_raw=len(raw), n_clean=len(clean))


def load_clean_lines(path: str | Path | None = None) -> tuple[pd.DataFrame, CleaningReport]:
    """``load_online_retail`` followed by ``clean_transactions``."""
    return clean_transactions(load_online_retail(path))


def item_descriptions(lines: pd.DataFrame) -> pd.Series:
    """One text per stock code: its most frequent description in ``lines`` (ties: the latest).

    Pass only the lines a model may see (the training period) to keep test-period wording out.
    Returns a Series indexed by stock code.
    """
    if len(lines) == 0:
        raise DataError("item_descriptions got no lines.")
    counts = (
        lines.groupby(["stock_code", "description"], observed=True)
        .agg(n=("invoice_date", "size"), last=("invoice_date", "max"))
        .reset_index()
        .sort_values(["stock_code", "n", "last"], ascending=[True, False, False])
    )
    return counts.drop_duplicates("stock_code").set_index("stock_code")["description"]
