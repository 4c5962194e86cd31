"""Every lesson notebook, executed once in smoke mode (the session's ``smoke_course_run``).

One test per notebook, so that a failure names the notebook (and, in its message, the cell and
the line). The notebooks are executed by the course runner, exactly as a learner's
``python -m m6rec_lib.course_runner --smoke`` does, once per test session; nothing here executes
them again. To execute one notebook alone, with nbval:
``python -m pytest --nbval-lax notebooks/NN_name.ipynb``.
"""

from __future__ import annotations

import json

import pytest

from m6rec_lib.course_runner import discover_notebooks
from m6rec_lib.recording import read_comparisons, read_metrics, read_metrics_payloads

NOTEBOOKS = discover_notebooks()


def smoke_entries(run) -> dict:
    """Each executed notebook's entry of the smoke run's ``summary.json``, by name."""
    return {nb["notebook"]: nb for nb in json.loads((run / "summary.json").read_text())["notebooks"]}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_and_records_its_metrics_in_smoke_mode(smoke_course_run, notebook):
    entry = smoke_entries(smoke_course_run).get(notebook.stem)
    assert entry is not None, f"the smoke run did not execute {notebook.name}"
    assert entry["status"] == "ok", f"{notebook.stem} failed in smoke mode: {entry['error']}"
    executed = smoke_course_run / "notebooks" / notebook.name
    payloads = read_metrics_payloads(executed)
    assert payloads, f"{notebook.stem} recorded no metrics"
    assert {p["mode"] for p in payloads} == {"smoke"}, "a smoke run must record smoke-mode metrics"
    assert read_metrics(executed) == entry["metrics"] and entry["metrics"]
    assert read_comparisons(executed) == entry["comparisons"]
