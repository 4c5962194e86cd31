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


# ------------------------------------------------------------------------------------ parquet route

def _parquet_inputs(folder):
    """Three tiny files in the layout of the three parquet conversions the parquet route reads."""
    folder.mkdir()
    sheet1 = _sheet([
        ["489434", "85048", "15CM CHRISTMAS GLASS BALL 20 LIGHTS", 12, "2009-12-01 07:45", 6.95, 13085.0, "United Kingdom"],
        ["536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "2010-12-01 08:26", 2.55, 17850.0, "United Kingdom"],
    ])
    sheet1.to_parquet(folder / build.PARQUET_FILES["sheet1"])
    positive = pd.DataFrame({
        "InvoiceNo": [536365, 581587], "StockCode": ["85123A", "22613"],
        "Description": ["WHITE HANGING HEART T-LIGHT HOLDER", "PACK OF 20 SPACEBOY NAPKINS"],
        "Quantity": [6, 12], "InvoiceDate": pd.to_datetime(["2010-12-01 08:26", "2011-12-09 12:50"]),
        "UnitPrice": [2.55, 0.85], "CustomerID": [17850.0, 0.0], "Country": ["United Kingdom", "France"]})
    positive.to_parquet(folder / build.PARQUET_FILES["positive"])
    no_ids = pd.DataFrame({
        "Description": ["WHITE HANGING HEART T-LIGHT HOLDER", "36 PENCILS TUBE RED RETROSPOT",
                        "PACK OF 20 SPACEBOY NAPKINS"],
        "Quantity": [6, -1, 12],
        "InvoiceDate": pd.to_datetime(["2010-12-01 08:26", "2011-12-09 11:58", "2011-12-09 12:50"]),
        "UnitPrice": [2.55, 1.25, 0.85], "CustomerID": [17850.0, 17315.0, None],
        "Country": ["United Kingdom", "United Kingdom", "France"]})
    no_ids.to_parquet(folder / build.PARQUET_FILES["no_ids"])
    return folder


def test_the_parquet_route_stops_on_a_bad_checksum(tmp_path):
    raw = _parquet_inputs(tmp_path / "raw")
    out = tmp_path / "online_retail_ii.parquet"
    with pytest.raises(SystemExit) as info:
        build.main(["--parquet-dir", str(raw), "--output", str(out)])
    message = str(info.value)
    assert isinstance(info.value, build.ChecksumError)
    for key, name in build.PARQUET_FILES.items():   # every wrong file is named with both digests
        assert name in message and build.PARQUET_SHA256[key] in message
        assert build.sha256_of(raw / name) in message
    assert "--ignore-checksums" in message and "--xlsx" in message
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # nothing written


def test_one_changed_byte_is_enough_to_stop_the_build(tmp_path, monkeypatch):
    raw = _parquet_inputs(tmp_path / "raw")
    digests = {key: build.sha256_of(raw / name) for key, name in build.PARQUET_FILES.items()}
    build.verify_inputs({k: raw / n for k, n in build.PARQUET_FILES.items()}, digests)   # the right files pass
    damaged = raw / build.PARQUET_FILES["positive"]
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\0")
    with pytest.raises(build.ChecksumError, match=build.PARQUET_FILES["positive"]) as info:
        build.verify_inputs({k: raw / n for k, n in build.PARQUET_FILES.items()}, digests)
    assert build.PARQUET_FILES["sheet1"] not in str(info.value)   # only the damaged file is reported


def test_a_missing_input_is_named(tmp_path):
    raw = _parquet_inputs(tmp_path / "raw")
    (raw / build.PARQUET_FILES["no_ids"]).unlink()
    with pytest.raises(SystemExit, match="missing input .*" + build.PARQUET_FILES["no_ids"]):
        build.main(["--parquet-dir", str(raw), "--output", str(tmp_path / "out.parquet")])


def test_the_parquet_route_builds_with_matching_checksums(tmp_path, monkeypatch):
    raw = _parquet_inputs(tmp_path / "raw")
    monkeypatch.setattr(build, "PARQUET_SHA256",
                        {key: build.sha256_of(raw / name) for key, name in build.PARQUET_FILES.items()})
    out = tmp_path / "online_retail_ii.parquet"
    assert build.main(["--parquet-dir", str(raw), "--output", str(out)]) == 0
    df = load_online_retail(out)
    assert len(df) == 4   # 2 lines of the first sheet, the 2 lines after 2010-12-09 (the shared day once)
    napkins = df[df["description"] == "PACK OF 20 SPACEBOY NAPKINS"].iloc[0]
    assert napkins["invoice"] == "581587" and pd.isna(napkins["customer_id"])   # 0.0 means missing
    pencils = df[df["description"] == "36 PENCILS TUBE RED RETROSPOT"].iloc[0]
    assert pd.isna(pencils["invoice"]) and pencils["quantity"] == -1   # a return, put back without IDs


def test_ignore_checksums_builds_anyway_and_says_so(tmp_path, capsys):
    raw = _parquet_inputs(tmp_path / "raw")
    out = tmp_path / "online_retail_ii.parquet"
    assert build.main(["--parquet-dir", str(raw), "--output", str(out), "--ignore-checksums"]) == 0
    assert "not checked" in capsys.readouterr().err and len(load_online_retail(out)) == 4
