"""The dataset build script, on a tiny spreadsheet in the official UCI layout."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from m6rec_lib.config import DATASETS_DIR
from m6rec_lib.data import clean_transactions, load_online_retail

spec = importlib.util.spec_from_file_location("build_online_retail", DATASETS_DIR / "build_online_retail.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)

COLUMNS = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"]


def _sheet(rows):
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"])
    return df


@pytest.fixture()
def official_xlsx(tmp_path):
    sheet1 = _sheet([
        ["489434", "85048", "15CM CHRISTMAS GLASS BALL 20 LIGHTS", 12, "2009-12-01 07:45", 6.95, 13085.0, "United Kingdom"],
        ["C489449", "22087", "PAPER BUNTING WHITE LACE", -12, "2009-12-01 10:33", 2.95, 16321.0, "Australia"],
        ["536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "2010-12-01 08:26", 2.55, 17850.0, "United Kingdom"],
    ])
    sheet2 = _sheet([
        # the shared days: also in the first sheet, so they must be taken from there only
        ["536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "2010-12-01 08:26", 2.55, 17850.0, "United Kingdom"],
        ["581587", "22613", "PACK OF 20 SPACEBOY NAPKINS", 12, "2011-12-09 12:50", 0.85, None, "France"],
        ["C581569", "20979", "36 PENCILS TUBE RED RETROSPOT", -1, "2011-12-09 11:58", 1.25, 17315.0, "United Kingdom"],
    ])
    path = tmp_path / "online_retail_II.xlsx"
    with pd.ExcelWriter(path) as writer:
        sheet1.to_excel(writer, sheet_name="Year 2009-2010", index=False)
        sheet2.to_excel(writer, sheet_name="Year 2010-2011", index=False)
    return path


def test_build_from_the_official_spreadsheet(official_xlsx, tmp_path):
    out = tmp_path / "online_retail_ii.parquet"
    assert build.main(["--xlsx", str(official_xlsx), "--output", str(out)]) == 0
    df = load_online_retail(out)  # the loader's schema check passes
    assert len(df) == 5  # 3 + 3 lines, the shared day once
    assert (df["invoice"] == "536365").sum() == 1
    assert df["customer_id"].isna().sum() == 1  # a guest stays missing
    assert df["invoice"].str.startswith("C").sum() == 2  # raw semantics kept
    clean, report = clean_transactions(df)
    assert len(clean) == 2 and report.table["removed"].iloc[0] == 2


def test_a_spreadsheet_with_one_sheet_is_refused(tmp_path):
    path = tmp_path / "one.xlsx"
    _sheet([]).to_excel(path, index=False)
    with pytest.raises(SystemExit, match="two"):
        build.from_xlsx(path)
