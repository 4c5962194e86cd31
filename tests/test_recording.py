"""record_metrics in a real kernel, read_metrics from the executed notebook, and validation."""

from __future__ import annotations

import math

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from m6rec_lib import recording as rec


def test_validate_metrics_normalises_and_rejects():
    clean = rec.validate_metrics(
        {"a": np.float32(0.5), "b": np.int64(3), "c": torch.tensor(0.25), "d": "EASE", "e": 7}
    )
    assert clean == {"a": 0.5, "b": 3, "c": 0.25, "d": "EASE", "e": 7}
    assert type(clean["b"]) is int and type(clean["a"]) is float
    with pytest.raises(ValueError, match="'ndcg@10' is nan.*finite"):
        rec.validate_metrics({"ndcg@10": float("nan")})
    with pytest.raises(ValueError, match="finite"):
        rec.validate_metrics({"x": np.float64(math.inf)})
    with pytest.raises(ValueError, match="at most 200"):
        rec.validate_metrics({"x": "y" * 201})
    with pytest.raises(TypeError, match="bool"):
        rec.validate_metrics({"x": True})
    with pytest.raises(TypeError, match="list"):
        rec.validate_metrics({"x": [1, 2]})
    with pytest.raises(ValueError, match="non-empty"):
        rec.validate_metrics({"": 1})
    with pytest.raises(ValueError, match="no metrics"):
        rec.validate_metrics({})


def test_payload_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("M6REC_SMOKE", "1")
    assert rec.metrics_payload({"x": 1})["mode"] == "smoke"
    monkeypatch.setenv("M6REC_SMOKE", "0")
    assert rec.metrics_payload({"x": 1})["mode"] == "full"
    payload = rec.metrics_payload({"x": 1, "y": "z"}, mode="smoke", notebook="nb")
    assert payload == {
        "schema": 2, "mode": "smoke", "notebook": "nb",
        "metrics": [{"name": "x", "value": 1}, {"name": "y", "value": "z"}], "comparisons": [],
    }
    with pytest.raises(ValueError, match="mode"):
        rec.metrics_payload({"x": 1}, mode="fast")


def test_record_metrics_prints_outside_ipython(capsys):
    rec.record_metrics({"recall@10": 0.125, "model": "EASE"}, mode="full", notebook="01")
    out = capsys.readouterr().out
    assert "[recorded 2 metrics of 01, full run]" in out
    assert "recall@10" in out and "0.125" in out and "EASE" in out
    with pytest.raises(ValueError):
        rec.record_metrics({"x": float("nan")})


def _notebook_with_outputs(path, outputs_per_cell):
    nb = new_notebook(cells=[new_markdown_cell("# title")])
    for outputs in outputs_per_cell:
        cell = new_code_cell("pass")
        cell.outputs = outputs
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def test_read_metrics_merges_records_and_reports_none(tmp_path):
    first = rec.metrics_payload({"a": 1, "b": 0.5}, mode="smoke")
    second = rec.metrics_payload({"b": 0.75}, mode="smoke")
    path = _notebook_with_outputs(tmp_path / "nb.ipynb", [
        [new_output("stream", name="stdout", text="hello\n")],
        [new_output("display_data", data={rec.METRICS_MIME: first, "text/plain": "x"})],
        [new_output("execute_result", data={rec.METRICS_MIME: second, "text/plain": "y"},
                    execution_count=3)],
    ])  # fmt: skip
    assert rec.read_metrics(path) == {"a": 1, "b": 0.75}
    assert [p["mode"] for p in rec.read_metrics_payloads(path)] == ["smoke", "smoke"]

    empty = _notebook_with_outputs(tmp_path / "empty.ipynb", [[]])
    with pytest.raises(rec.NoMetricsError, match="no recorded metrics.*record_metrics"):
        rec.read_metrics(empty)
    assert rec.read_metrics(empty, required=False) == {}
    with pytest.raises(FileNotFoundError):
        rec.read_metrics(tmp_path / "missing.ipynb")
    (tmp_path / "junk.ipynb").write_text("not json")
    with pytest.raises(ValueError, match="not a readable Jupyter notebook"):
        rec.read_metrics(tmp_path / "junk.ipynb")


def test_record_and_read_back_through_a_real_kernel(tmp_path):
    """Execute a generated notebook with nbclient, save it, read the metrics back."""
    from nbclient import NotebookClient

    nb = new_notebook(cells=[
        new_code_cell("import numpy as np\nfrom m6rec_lib.recording import record_metrics"),
        new_code_cell(
            "record_metrics({'ndcg@10': np.float64(0.25), 'n_users': 12, 'model': 'toy'},"
            " notebook='tiny')"
        ),
    ])  # fmt: skip
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)

    assert rec.read_metrics(path) == {"ndcg@10": 0.25, "n_users": 12, "model": "toy"}
    (payload,) = rec.read_metrics_payloads(path)
    assert payload["mode"] == "smoke"  # the test run sets M6REC_SMOKE=1; the kernel inherits it
    assert payload["notebook"] == "tiny"
    outputs = nbformat.read(path, as_version=4).cells[1].outputs
    assert "text/html" in outputs[0]["data"]  # the readable table
    assert outputs[1]["data"]["text/plain"] == "[recorded 3 metrics of tiny, smoke run]"


def _difference(diff=0.02, low=0.01, high=0.03, a="SASRec", b="EASE"):
    from m6rec_lib.metrics import PairedDifference

    return PairedDifference(a, b, "NDCG@10", "new", 0.1 + diff, 0.1, diff, low, high, 1500)


def test_comparisons_are_recorded_read_back_and_validated(tmp_path, capsys):
    d, tie = _difference(), _difference(0.001, -0.004, 0.006, b="iALS")
    payload = rec.metrics_payload({"x": 1}, mode="full", comparisons=[d, tie])
    assert [c["verdict"] for c in payload["comparisons"]] == ["SASRec beats EASE", "no measurable difference"]
    assert payload["comparisons"][0]["key"] == "SASRec vs EASE | new | NDCG@10"
    path = _notebook_with_outputs(tmp_path / "nb.ipynb", [
        [new_output("display_data", data={rec.METRICS_MIME: payload, "text/plain": "x"})]])
    assert [c["low"] for c in rec.read_comparisons(path)] == [0.01, -0.004]
    rec.record_metrics({"x": 1}, mode="full", comparisons=[d])
    assert "SASRec beats EASE" in capsys.readouterr().out
    with pytest.raises(ValueError, match="recorded twice"):
        rec.metrics_payload({"x": 1}, comparisons=[d, d])
    with pytest.raises(ValueError, match="lacks"):
        rec.metrics_payload({"x": 1}, comparisons=[{"name_a": "A"}])
    with pytest.raises(ValueError, match="finite"):
        rec.metrics_payload({"x": 1}, comparisons=[_difference(float("nan"))])
