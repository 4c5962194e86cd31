"""Build the course's bundled copy of Online Retail II (2009-12-01 .. 2011-12-09).

The shipped file keeps the raw semantics: cancellations, returns, zero prices, missing customers
and non-product codes are all still there; the course library cleans them, visibly.

Two inputs are accepted:

1. The official UCI spreadsheet ``online_retail_II.xlsx`` (two sheets, "Year 2009-2010" and
   "Year 2010-2011")::

       python datasets/build_online_retail.py --xlsx path/to/online_retail_II.xlsx

2. Three parquet conversions of the UCI files (the first sheet of Online Retail II; the
   2010-2011 Online Retail file with non-positive quantities removed; the full 2010-2011 file
   without invoice and stock-code columns)::

       python datasets/build_online_retail.py --parquet-dir path/to/raw/

   In this route the 2010-2011 lines with quantity <= 0 (returns, cancellations, adjustments)
   and three "Adjust bad debt" lines come only from the file without IDs: they are put back in
   their original position with ``invoice`` and ``stock_code`` missing, because the source has
   no such values for them. The other two fixes of that source: customer 0.0 means "missing", and
   the description "Missing_Description" means "missing". The three files must have the sha256
   digests in ``PARQUET_SHA256``; the build stops otherwise (``--ignore-checksums`` overrides).

Both routes take the days both sheets share (2010-12-01 .. 2010-12-09) from the first sheet only.
The output (``datasets/online_retail_ii.parquet``) is written atomically, and the datasheet's
counts can be printed with ``--describe``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "online_retail_ii.parquet"
SECOND_SHEET_START = pd.Timestamp("2010-12-10")  # first day that is only in the second sheet

PARQUET_FILES = {
    "sheet1": "online_retail_ii_2009_2010.raw.parquet",
    "positive": "online_retail_2010_2011.qty_positive.parquet",
    "no_ids": "online_retail_2010_2011.raw_no_ids.parquet",
}
PARQUET_SHA256 = {
    "sheet1": "e92bcbbce1b7a1041ad79462879d4774bf050c7b8fee9f4eef89f09fb6330664",
    "positive": "ad09db649d5ee696a47d87d042b4c364c0d386a6873f195e34bda01411d2349d",
    "no_ids": "d4bf11013582a8f3a068b6762a7e12d9899d456d615d5340ce998a61bc46c12a",
}

COLUMNS = [
    "invoice", "stock_code", "description", "quantity", "invoice_date",
    "price", "customer_id", "country", "source", "line_no",
]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _normalise(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Map one sheet with UCI column names to the shipped schema (no rows dropped)."""
    rename = {
        "Invoice": "invoice", "InvoiceNo": "invoice", "StockCode": "stock_code",
        "Description": "description", "Quantity": "quantity", "InvoiceDate": "invoice_date",
        "Price": "price", "UnitPrice": "price", "Customer ID": "customer_id",
        "CustomerID": "customer_id", "Country": "country",
    }
    out = df.rename(columns=rename).copy()
    for col in ("invoice", "stock_code"):
        if col not in out:
            out[col] = pd.NA
    out["invoice"] = out["invoice"].astype("string")
    out["stock_code"] = out["stock_code"].astype("string").str.strip()
    out["description"] = out["description"].astype("string").str.strip()
    out["quantity"] = out["quantity"].astype("int32")
    out["invoice_date"] = pd.to_datetime(out["invoice_date"]).astype("datetime64[ns]")
    out["price"] = out["price"].astype("float64")
    out["customer_id"] = out["customer_id"].round().astype("Int64")
    out["country"] = out["country"].astype("string")
    out["source"] = source
    if "line_no" not in out:
        out["line_no"] = np.arange(len(out), dtype=np.int32)
    return out[COLUMNS]


def from_xlsx(path: Path) -> pd.DataFrame:
    """Both sheets of the official spreadsheet; the shared days come from the first sheet."""
    sheets = pd.read_excel(path, sheet_name=None, dtype={"Invoice": str, "StockCode": str})
    if len(sheets) != 2:
        raise SystemExit(f"{path} has {len(sheets)} sheets; the official file has two.")
    (name1, s1), (name2, s2) = list(sheets.items())
    first = _normalise(s1, "uci_ii_sheet_2009_2010")
    second = _normalise(s2, "uci_ii_sheet_2010_2011")
    second = second[second["invoice_date"] >= SECOND_SHEET_START]
    return pd.concat([first, second], ignore_index=True)


def _align_positive_to_raw(positive: pd.DataFrame, raw: pd.DataFrame) -> np.ndarray:
    """Row position in ``raw`` of every row of ``positive`` (both are in the sheet's order).

    ``positive`` is ``raw`` with rows removed, so a single forward walk finds each row; a row
    that cannot be matched means the files are not what this script expects.
    """
    def keys(df: pd.DataFrame, desc: str, price: str, cust: str):
        return list(zip(
            df[desc].fillna("<NA>").astype(str), df["quantity"].astype(int),
            df["invoice_date"], df[price].round(4), df[cust].astype("Float64").fillna(-1.0),
        ))

    pos_keys = keys(positive, "description", "price", "customer_id")
    raw_keys = keys(raw, "description", "price", "customer_id")
    where = np.full(len(positive), -1, dtype=np.int64)
    j = 0
    for i, key in enumerate(raw_keys):
        if j < len(pos_keys) and key == pos_keys[j]:
            where[j] = i
            j += 1
    if j != len(pos_keys):
        raise SystemExit(
            f"could only align {j} of {len(pos_keys)} lines of the positive-quantity file with "
            "the file without IDs; are these the expected files (check their sha256)?"
        )
    return where


class ChecksumError(SystemExit):
    """An input file is not the one this script was written for (its sha256 differs)."""


def verify_inputs(paths: dict[str, Path], expected: dict[str, str] | None = None) -> None:
    """Check that every input exists and has its expected sha256; stop with a clear message if not.

    A different file (a newer conversion, a truncated download, a file edited by hand) would be
    merged line by line with the others and could silently shift the data, so the build refuses it.
    """
    expected = PARQUET_SHA256 if expected is None else expected
    for key, path in paths.items():
        if not path.exists():
            raise SystemExit(f"missing input {path}; expected the files {sorted(PARQUET_FILES.values())}")
    wrong = []
    for key, path in paths.items():
        digest = sha256_of(path)
        if digest != expected[key]:
            wrong.append(f"{path.name} has sha256 {digest}, expected {expected[key]}")
    if wrong:
        raise ChecksumError(
            "the inputs are not the files this build was written for: " + "; ".join(wrong) + ". "
            "Get the original files again (a truncated copy or another conversion gives other digests), or "
            "build from the official spreadsheet with --xlsx. If you know the files differ and have checked "
            "the result by hand, --ignore-checksums builds anyway.")


def from_parquet_dir(raw_dir: Path, ignore_checksums: bool = False) -> pd.DataFrame:
    paths = {k: raw_dir / v for k, v in PARQUET_FILES.items()}
    if ignore_checksums:
        for path in paths.values():
            if not path.exists():
                raise SystemExit(f"missing input {path}; expected the files {sorted(PARQUET_FILES.values())}")
        print("warning: --ignore-checksums: the inputs' sha256 are not checked", file=sys.stderr)
    else:
        verify_inputs(paths)

    first = _normalise(pd.read_parquet(paths["sheet1"]), "uci_ii_sheet_2009_2010")

    pos = pd.read_parquet(paths["positive"])
    pos["Description"] = pos["Description"].replace("Missing_Description", np.nan)
    pos["CustomerID"] = pos["CustomerID"].replace(0.0, np.nan)
    pos["InvoiceNo"] = pos["InvoiceNo"].astype(str)
    pos = _normalise(pos, "uci_2010_2011")

    raw = pd.read_parquet(paths["no_ids"])
    raw = _normalise(raw, "uci_2010_2011_no_ids")
    where = _align_positive_to_raw(pos, raw)
    # Put the positive lines (with their IDs) in place of their raw twins; the remaining raw
    # lines are the ones the positive file dropped (returns, cancellations, adjustments).
    merged = raw.copy()
    for col in ("invoice", "stock_code", "description", "customer_id", "source"):
        merged.loc[where, col] = pos[col].to_numpy()
    merged["line_no"] = np.arange(len(merged), dtype=np.int32)
    second = merged[merged["invoice_date"] >= SECOND_SHEET_START]
    return pd.concat([first, second], ignore_index=True)


def finalise(df: pd.DataFrame) -> pd.DataFrame:
    df = df[COLUMNS].reset_index(drop=True)
    df["source"] = df["source"].astype("category")
    df["line_no"] = df["line_no"].astype("int32")
    return df


def write(df: pd.DataFrame, output: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=".online_retail.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        df.to_parquet(tmp, compression="zstd", compression_level=19, index=False)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sha256_of(output)


def describe(df: pd.DataFrame) -> str:
    """The counts the datasheet reports."""
    year = np.where(df["invoice_date"] < pd.Timestamp("2010-12-01"), "year 1", "year 2")
    lines = []
    for label, part in [("all", df), ("year 1", df[year == "year 1"]), ("year 2", df[year == "year 2"])]:
        lines.append(
            f"| {label} | {len(part):,} | {part['customer_id'].nunique():,} | "
            f"{part['stock_code'].nunique():,} | {part['invoice'].nunique():,} | "
            f"{part['invoice_date'].min():%Y-%m-%d} .. {part['invoice_date'].max():%Y-%m-%d} |"
        )
    header = "| part | lines | customers | stock codes | invoices | span |\n|---|---|---|---|---|---|"
    return header + "\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--xlsx", type=Path, help="the official online_retail_II.xlsx")
    src.add_argument("--parquet-dir", type=Path, help="folder with the three parquet conversions")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--describe", action="store_true", help="print the datasheet counts of --output")
    parser.add_argument("--ignore-checksums", action="store_true",
                        help="build from --parquet-dir inputs whose sha256 differ from the expected ones")
    args = parser.parse_args(argv)

    if args.describe and not (args.xlsx or args.parquet_dir):
        print(describe(pd.read_parquet(args.output)))
        print(f"sha256 {sha256_of(args.output)}")
        return 0
    if args.xlsx:
        df = from_xlsx(args.xlsx)
    elif args.parquet_dir:
        df = from_parquet_dir(args.parquet_dir, ignore_checksums=args.ignore_checksums)
    else:
        parser.error("give --xlsx or --parquet-dir (or --describe)")
    df = finalise(df)
    digest = write(df, args.output)
    print(f"wrote {args.output.name}: {len(df):,} lines, sha256 {digest}")
    print(describe(df))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
