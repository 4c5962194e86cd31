"""The main job: the course runner, in smoke mode, over every notebook."""

from __future__ import annotations

import json
import re
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
        sections = nb["sections"]
        assert sections and all(s["seconds"] >= 0 for s in sections), nb["notebook"]
        assert sum(s["seconds"] for s in sections) <= nb["seconds"] + 1, nb["notebook"]
        assert any(s["kind"] == "numbered" for s in sections), f"{nb['notebook']} has no '## 1. ...' section"
    assert "| notebook | status | seconds | metrics |" in (smoke_course_run / "summary.md").read_text()
    assert "## Time per section" in (smoke_course_run / "summary.md").read_text()
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
    good = nbformat.v4.new_notebook(metadata=nb.metadata)
    good.cells = [params, nbformat.v4.new_markdown_cell("## 1. Wait"), nbformat.v4.new_code_cell("import time; time.sleep(0.3)"),
                  nbformat.v4.new_markdown_cell("## Deep dive (optional): more"), nbformat.v4.new_code_cell("x = 1"),
                  nbformat.v4.new_code_cell("from m6rec_lib.recording import record_metrics\nrecord_metrics({'x': 1})")]
    nbformat.write(good, nb_dir / "01_fine.ipynb")
    failing_assert = nbformat.v4.new_notebook(metadata=nb.metadata)
    failing_assert.cells = [params, nbformat.v4.new_code_cell("ndcg = 0.1\nassert ndcg > 0.2, 'too low'")]
    nbformat.write(failing_assert, nb_dir / "02_claim.ipynb")
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", nb_dir)
    monkeypatch.setattr(runner, "discover_notebooks", lambda d=nb_dir: sorted(nb_dir.glob("*.ipynb")))
    built = {}

    def fake_build_book(notebooks_dir, site):  # what the site would publish
        built["published"] = sorted(p.name for p in Path(notebooks_dir).iterdir())
        site.mkdir(parents=True, exist_ok=True)
        return site / "index.html"

    monkeypatch.setattr("m6rec_lib.book.build_book", fake_build_book)
    out = tmp_path / "out"
    (out / "notebooks").mkdir(parents=True)
    (out / "notebooks" / "05_left_over_from_an_earlier_run.ipynb").write_text("{}")
    status = main(["--smoke", "--out", str(out)])
    assert status == 1
    summary = json.loads((out / "summary.json").read_text())
    by_name = {nb["notebook"]: nb for nb in summary["notebooks"]}
    assert by_name["00_broken"]["status"] == "failed" and "boom" in by_name["00_broken"]["error"]
    # an assertion failure names the cell and shows the failing line
    assert by_name["02_claim"]["error"] == "AssertionError: too low at cell In[3], line 2: assert ndcg > 0.2, 'too low'"
    assert (out / "notebooks" / "00_broken.ipynb").exists()  # kept, to read the error in it
    # only this run's successful notebook is published: not the failed ones, not the left-over one
    assert built["published"] == ["01_fine.ipynb"] and summary["published notebooks"] == 1
    # every notebook's "## " sections with their wall time, deep dives marked optional
    sections = by_name["01_fine"]["sections"]
    assert [(s["title"], s["optional"]) for s in sections] == [
        ("Set-up (title, parameters, imports)", False), ("1. Wait", False), ("Deep dive (optional): more", True)]
    assert sections[1]["seconds"] >= 0.3 and sum(s["seconds"] for s in sections) <= by_name["01_fine"]["seconds"]
    assert by_name["00_broken"]["sections"][0]["title"].startswith("Set-up")  # the cells that ran, timed
    md = (out / "summary.md").read_text()
    # the machine's speed before and after, so that the wall times can be read
    speed = summary["machine speed (matmul GFLOP/s, float32, before / after the notebooks)"]
    assert re.fullmatch(r"\d+ \(\d+ threads\) / \d+ \(\d+ threads\)", speed) and speed in md
    assert "| 01_fine | 1. Wait |" in md and "| 01_fine | Deep dive (optional): more |" in md


def test_timeout_must_be_positive():
    with pytest.raises(SystemExit):
        main(["--smoke", "--no-book", "--timeout", "0"])
    from m6rec_lib.course_runner import run_course

    with pytest.raises(ValueError, match="positive"):
        run_course(smoke=True, timeout=-1)


def test_describe_failure_without_a_kernel_traceback():
    from m6rec_lib.course_runner import describe_failure

    assert describe_failure(RuntimeError("first\nlast line")) == "RuntimeError: last line"
