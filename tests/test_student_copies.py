"""Student copies: the course's notebooks without their solutions (m6rec_lib.student_copies)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from m6rec_lib import student_copies as sc
from m6rec_lib.config import NOTEBOOKS_DIR

v4 = nbformat.v4


def _tagged(cell, *tags):
    cell.metadata["tags"] = list(tags)
    return cell


def _lesson() -> nbformat.NotebookNode:
    """A small executed-looking lesson: exercises, two runs of solution cells, a closing record."""
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["papermill"] = {"input_path": "/somewhere/notebooks/01_tiny.ipynb", "parameters": {"SMOKE": True}}
    run = v4.new_code_cell("x = 2\nprint(x)", execution_count=3)
    run.outputs = [v4.new_output("stream", name="stdout", text="2\n")]
    run.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
    nb.cells = [
        v4.new_markdown_cell("# 01 · Tiny\n\n**Objectives.** 1. Add."),
        _tagged(v4.new_code_cell("SMOKE = None"), "parameters"),
        run,
        v4.new_markdown_cell("## Exercises\n\n1. Square x.\n2. Cube x."),
        v4.new_markdown_cell("## Solutions"),
        _tagged(v4.new_markdown_cell("### Exercise 1\n\nSquare it: THE-FIRST-SOLUTION."), "solution"),
        _tagged(v4.new_code_cell("square = x ** 2\nsquare", execution_count=4), "solution", "hide-input"),
        v4.new_markdown_cell("A remark between the two solutions."),
        _tagged(v4.new_code_cell("cube = x ** 3  # THE-SECOND-SOLUTION", execution_count=5), "solution"),
        v4.new_code_cell("from m6rec_lib.recording import record_metrics\nrecord_metrics({'x': x})", execution_count=6),
    ]
    return nb


@pytest.fixture
def lessons(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(_lesson(), folder / "01_tiny.ipynb")
    plain = _lesson()
    plain.cells = plain.cells[:4]
    nbformat.write(plain, folder / "02_no_solutions.ipynb")
    nbformat.write(_lesson(), folder / "scratch.ipynb")  # not a lesson: no copy
    return folder


def test_copies_leave_out_solutions_and_outputs_and_keep_everything_else(lessons: Path, tmp_path: Path):
    before = (lessons / "01_tiny.ipynb").read_bytes()
    copies = sc.write_student_copies(tmp_path / "student", lessons)
    assert [c.path.name for c in copies] == ["01_tiny.ipynb", "02_no_solutions.ipynb"]
    assert [c.removed for c in copies] == [3, 0]
    assert not (tmp_path / "student" / "scratch.ipynb").exists()
    assert (lessons / "01_tiny.ipynb").read_bytes() == before  # the original is untouched

    nb = nbformat.read(tmp_path / "student" / "01_tiny.ipynb", as_version=4)
    nbformat.validate(nb)
    text = json.dumps(nb)
    assert "THE-FIRST-SOLUTION" not in text and "THE-SECOND-SOLUTION" not in text and "square" not in text
    assert not any("solution" in c.metadata.get("tags", []) for c in nb.cells)
    # one note per run of consecutive solution cells, where they were
    sources = [c.source for c in nb.cells]
    notes = [i for i, c in enumerate(nb.cells) if sc.NOTE_TAG in c.metadata.get("tags", [])]
    assert len(notes) == 2 and sources[notes[0] - 1] == "## Solutions"
    assert sources[notes[0] + 1] == "A remark between the two solutions."
    assert "not in this copy" in sources[notes[0]]
    # no outputs, no execution counts, no run metadata; the parameters and the closing cell stay
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert "execution" not in cell.metadata
    assert "papermill" not in nb.metadata and "/somewhere" not in text
    assert nb.cells[1].metadata["tags"] == ["parameters"] and "record_metrics(" in nb.cells[-1].source


def test_copies_are_written_atomically_and_replace_older_ones(lessons: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "student"
    out.mkdir()
    (out / "01_tiny.ipynb").write_text("an older copy", encoding="utf-8")
    (out / "my_notes.txt").write_text("mine", encoding="utf-8")
    written = []
    real = sc.atomic_write_text

    def spy(target, text, **kwargs):
        written.append(Path(target).name)
        return real(target, text, **kwargs)

    monkeypatch.setattr(sc, "atomic_write_text", spy)
    sc.write_student_copies(out, lessons)
    assert written == ["01_tiny.ipynb", "02_no_solutions.ipynb"]
    assert nbformat.read(out / "01_tiny.ipynb", as_version=4).cells  # replaced by a real notebook
    assert (out / "my_notes.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["01_tiny.ipynb", "02_no_solutions.ipynb", "my_notes.txt"]


def test_bad_input_is_refused_with_a_clear_message(lessons: Path, tmp_path: Path, capsys):
    with pytest.raises(ValueError, match="overwrite the originals"):
        sc.write_student_copies(lessons, lessons)
    with pytest.raises(ValueError, match="no such notebook. Available: 01_tiny, 02_no_solutions"):
        sc.write_student_copies(tmp_path / "out", lessons, only=["07"])
    with pytest.raises(FileNotFoundError, match="not a folder of notebooks"):
        sc.write_student_copies(tmp_path / "out", tmp_path / "missing")
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    assert sc.main(["--out", str(tmp_path / "a_file"), "--notebooks", str(lessons)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_command_line(lessons: Path, tmp_path: Path, capsys):
    assert sc.main(["--out", str(tmp_path / "student"), "--notebooks", str(lessons), "--only", "01"]) == 0
    out = capsys.readouterr()
    assert "01_tiny.ipynb: 3 solution cells removed" in out.out and "wrote 1 student copies" in out.out
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == ["01_tiny.ipynb"]


def test_warns_when_a_kept_cell_needs_a_solution_or_solutions_are_untagged(tmp_path: Path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = _lesson()
    nb.cells[-1].source = "record_metrics({'cube': cube})"  # defined only by a solution
    nbformat.write(nb, folder / "01_needs_a_solution.ipynb")
    untagged = _lesson()
    for cell in untagged.cells:
        cell.metadata.pop("tags", None)
    nbformat.write(untagged, folder / "02_untagged.ipynb")
    assert sc.main(["--out", str(tmp_path / "student"), "--notebooks", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "kept cells use cube, which only solution cells define" in err
    assert "02_untagged.ipynb has a 'Solutions' section but no cell tagged 'solution'" in err


def test_names_only_solutions_define():
    nb = _lesson()
    assert sc.names_only_solutions_define(nb) == []
    nb.cells.append(v4.new_code_cell("print(square, cube)\nx = 1"))
    assert sc.names_only_solutions_define(nb) == ["cube", "square"]
    nb.cells.insert(3, v4.new_code_cell("%matplotlib inline\ndef square(): pass\ncube = 1"))  # kept cells define both
    assert sc.names_only_solutions_define(nb) == []


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_the_courses_student_copies_keep_no_solution_and_run_without_one(notebook: Path, tmp_path: Path):
    copy = sc.write_student_copy(notebook, tmp_path)
    nb = nbformat.read(copy.path, as_version=4)
    assert not any("solution" in c.metadata.get("tags", []) for c in nb.cells)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert not copy.missing_names, (
        f"{notebook.stem}: cells kept in the student copy use {list(copy.missing_names)}, which only "
        "solution cells define; compute them outside the solutions")
