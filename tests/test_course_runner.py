"""The main job: the course runner, in smoke mode, over every notebook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from m6rec_lib.course_runner import discover_notebooks, main, select
from m6rec_lib.recording import read_metrics


def test_selecting_notebooks_by_prefix():
    notebooks = discover_notebooks()
    assert notebooks[0].name.startswith("00_") and notebooks == sorted(notebooks)
    assert [nb.name[:2] for nb in select(notebooks, ["01"])] == ["01"]
    with pytest.raises(SystemExit, match="no such notebook"):
        select(notebooks, ["99"])


def test_smoke_run_executes_every_notebook_and_records_metrics(smoke_course_run: Path):
    summary = json.loads((smoke_course_run / "summary.json").read_text())
    assert summary["mode"] == "smoke"
    names = [nb["notebook"] for nb in summary["notebooks"]]
    assert names == [nb.stem for nb in discover_notebooks()]
    for nb in summary["notebooks"]:
        assert nb["status"] == "ok", nb
        assert nb["metrics"], f"{nb['notebook']} recorded no metrics"
        executed = smoke_course_run / "notebooks" / f"{nb['notebook']}.ipynb"
        assert read_metrics(executed) == nb["metrics"]
    assert "| notebook | status | seconds | metrics |" in (smoke_course_run / "summary.md").read_text()
    assert (smoke_course_run / "site" / "index.html").is_file()


def test_failing_notebook_gives_non_zero_exit(tmp_path, monkeypatch):
    import nbformat

    import m6rec_lib.course_runner as runner

    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("SMOKE = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("raise RuntimeError('boom')")]
    nbformat.write(nb, nb_dir / "00_broken.ipynb")
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", nb_dir)
    monkeypatch.setattr(runner, "discover_notebooks", lambda d=nb_dir: sorted(nb_dir.glob("*.ipynb")))
    status = main(["--smoke", "--no-book", "--out", str(tmp_path / "out")])
    assert status == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["notebooks"][0]["status"] == "failed"
    assert "boom" in summary["notebooks"][0]["error"]
    assert (tmp_path / "out" / "notebooks" / "00_broken.ipynb").exists()
