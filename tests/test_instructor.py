"""The instructor guide (m6rec_lib.instructor) and the section timings it shows (m6rec_lib.sections).

Generated pages are checked here as markdown; tests/test_book.py builds them into a site and
checks in a browser that answers stay folded until clicked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from m6rec_lib import instructor as ins
from m6rec_lib import sections as sec
from m6rec_lib import site_markdown as md
from m6rec_lib.config import BOOK_DIR, NOTEBOOKS_DIR

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "instructor"
v4 = nbformat.v4

NOTES = """# Notes

## Talking points
- One.

## Common errors
- Two.

## Questions
1. First question?

   **Answer.** First answer.

2. Second question,
   on two lines?

   **Answer:** Second answer,

   with a second paragraph:
   1. a list inside the answer

## Further reading
- Something.
"""


# --------------------------------------------------------------------------------------------
# Notes
# --------------------------------------------------------------------------------------------


def test_notes_are_read_with_their_questions_and_answers():
    notes = ins.parse_notes(NOTES)
    assert notes.talking_points == "- One." and notes.common_errors == "- Two."
    assert list(notes.sections) == ["Talking points", "Common errors", "Questions", "Further reading"]
    assert [(q.number, q.question) for q in notes.questions] == [("1", "First question?"),
                                                                   ("2", "Second question,\non two lines?")]
    assert notes.questions[0].answer == "First answer."
    assert notes.questions[1].answer == "Second answer,\n\nwith a second paragraph:\n1. a list inside the answer"


def test_the_fixture_notes_parse():
    notes = ins.read_notes(FIXTURES / "notes" / "02_tiny_softmax.md")
    assert len(notes.questions) == 2 and "```python" in notes.questions[1].answer


@pytest.mark.parametrize("marker", ["**Answer.**", "**Answer:**", "**Answer**:", "*Answer:*", "Answer:"])
def test_answer_markers(marker):
    notes = ins.parse_notes(NOTES.replace("**Answer.** First", f"{marker} First"))
    assert notes.questions[0].answer == "First answer."


@pytest.mark.parametrize(
    "change, message",
    [
        (("## Common errors", "## Common mistakes"), r"missing section\(s\) '## Common errors'.*found: '## Talking points', '## Common mistakes'"),
        (("   **Answer.** First answer.", "   First answer."), r"line 10: question 1 has no answer.*\*\*Answer\.\*\*"),
        (("## Questions\n1.", "## Questions\nSome intro.\n\n1."), r"line 10: text before the first question"),
        (("1. First question?\n\n   **Answer.** First answer.\n\n2. Second question,\n   on two lines?\n\n   **Answer:** Second answer,",
          "No numbered question here."), r"text before the first question"),
    ],
)
def test_malformed_notes_name_the_file_the_line_and_the_fix(change, message):
    with pytest.raises(ins.NotesFormatError, match=message):
        ins.parse_notes(NOTES.replace(*change), source="book/instructor/notes/01_x.md")


def test_headings_inside_code_are_not_sections():
    text = NOTES.replace("- Two.", "```bash\n## Questions\n```")
    assert ins.parse_notes(text).common_errors == "```bash\n## Questions\n```"


@pytest.mark.parametrize("path", sorted((BOOK_DIR / ins.NOTES_DIR).glob("*.md")), ids=lambda p: p.stem)
def test_every_notes_file_of_the_course_follows_the_format(path: Path):
    notes = ins.read_notes(path)  # raises NotesFormatError with the line to fix
    assert notes.questions
    stems = {p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")}
    assert path.stem in stems, f"{path.name} names no notebook of notebooks/ ({', '.join(sorted(stems))})"


# --------------------------------------------------------------------------------------------
# Sections and their times
# --------------------------------------------------------------------------------------------


def _timed(source: str, seconds: float | None = None, *, nbclient: bool = False):
    cell = v4.new_code_cell(source)
    if seconds is not None and nbclient:
        cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T10:00:00.000000Z",
                                      "shell.execute_reply": f"2026-01-01T10:00:{seconds:09.6f}Z"}
    elif seconds is not None:
        cell.metadata["papermill"] = {"duration": seconds}
    return cell


def _timed_notebook():
    nb = v4.new_notebook()
    nb.metadata["papermill"] = {"parameters": {"SMOKE": False}}
    nb.cells = [
        v4.new_markdown_cell("# 05 · A lesson"),
        _timed("SMOKE = None", 0.5),
        _timed("import x", 2.0),
        v4.new_markdown_cell("## 1. The data\n\n```python\n## not a heading\n```"),
        _timed("load()", 3.0, nbclient=True),
        v4.new_markdown_cell("## 2. Training"),
        _timed("train()", 40.0),
        _timed("evaluate()", 5.0),
        v4.new_markdown_cell("## Deep dive (optional): precision"),
        _timed("bf16()", 10.0),
        v4.new_markdown_cell("## Summary\n\ntext\n\n## Exercises\n\n1. x\n\n## Solutions"),
        _timed("solution()", 1.0),
        _timed("record_metrics({})"),
    ]
    return nb


def test_sections_add_up_their_cells_times():
    found = sec.notebook_sections(_timed_notebook())
    assert [(s.title, s.number, s.kind, round(s.seconds, 3), s.cells) for s in found] == [
        (sec.SETUP_TITLE, None, "setup", 2.5, 3),
        ("1. The data", "1", "numbered", 3.0, 2),
        ("2. Training", "2", "numbered", 45.0, 3),
        ("Deep dive (optional): precision", None, "deep_dive", 10.0, 2),
        ("Summary", None, "summary", 0.0, 0),
        ("Exercises", None, "exercises", 0.0, 0),
        ("Solutions", None, "solutions", 1.0, 3),
    ]
    assert [s.optional for s in found] == [False, False, False, True, False, False, False]
    assert found[3].to_dict() == {"title": "Deep dive (optional): precision", "number": None, "kind": "deep_dive",
                                  "seconds": 10.0, "cells": 2, "optional": True}
    assert sec.notebook_mode(_timed_notebook()) == "full"
    assert sec.notebook_mode(v4.new_notebook()) is None


def test_an_unexecuted_notebook_has_sections_without_time(tmp_path: Path):
    nb = _timed_notebook()
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nbformat.write(nb, tmp_path / "05_x.ipynb")
    found = sec.notebook_sections(tmp_path / "05_x.ipynb")
    assert len(found) == 7 and all(s.seconds == 0 for s in found)


# --------------------------------------------------------------------------------------------
# Tracks
# --------------------------------------------------------------------------------------------


def _sections(*spec):
    return [sec.Section(title, title.split(".")[0] if title[0].isdigit() else None, sec.section_kind(title), secs, 1)
            for title, secs in spec]


SECTIONS = {
    "01_a": _sections(("Set-up", 1.0), ("1. Data", 2.0), ("2. Slow training", 90.0), ("3. Results", 3.0),
                      ("Deep dive (optional): speed", 8.0), ("Summary", 0), ("Exercises", 0), ("Solutions", 4.0)),
    "02_b": _sections(("1. Only", 1.0), ("Summary", 0), ("Exercises", 0), ("Solutions", 0.5)),
}
SECTIONS["01_a"][0] = sec.Section("Set-up", None, "setup", 1.0, 1)


def _tracks(tmp_path: Path, text: str) -> ins.Tracks:
    path = tmp_path / "tracks.yml"
    path.write_text(text, encoding="utf-8")
    return ins.load_tracks(path)


TRACKS = """
slow_section_seconds: 30
about: Two plans.
tracks:
  - name: Short
    minutes: 30
    about: The gist.
    lessons:
      - {notebook: 01_a, minutes: 20, sections: [1, "3. res"]}
      - {notebook: 09_absent, minutes: 10, sections: [2]}
  - name: Long
    minutes: 60
    exercises: in class
    lessons:
      - {notebook: 01_a, minutes: 30}
      - {notebook: 02_b, minutes: 20}
"""


def test_tracks_are_read_and_roles_follow_the_plan(tmp_path: Path):
    tracks = _tracks(tmp_path, TRACKS)
    assert tracks.slow_section_seconds == 30 and [t.name for t in tracks.tracks] == ["Short", "Long"]
    short, long_ = tracks.tracks
    assert short.exercises == "homework" and long_.exercises == "in class"
    roles = [ins.section_role(s, short.lessons[0], short) for s in SECTIONS["01_a"]]
    assert roles == ["set-up", "teach", "skip", "teach", "skip (deep dive)", "teach", "homework", "instructor only"]
    roles = [ins.section_role(s, long_.lessons[0], long_) for s in SECTIONS["01_a"]]
    assert roles == ["set-up", "teach", "teach", "teach", "skip (deep dive)", "teach", "in class", "instructor only"]


def test_tracks_are_checked_against_the_notebooks(tmp_path: Path):
    tracks = _tracks(tmp_path, TRACKS.replace("[1, \"3. res\"]", "[1, 7]").replace("minutes: 20, sections", "minutes: 25, sections"))
    assert ins.check_tracks(tracks, SECTIONS) == [
        "Short: its lessons add up to 35 minutes, more than its 30",
        "Short: 01_a has no section '7'",
        "Short: no notebook 09_absent",
    ]
    assert ins.check_tracks(tracks, SECTIONS, complete=False)[-1] == "Short: 01_a has no section '7'"


@pytest.mark.parametrize("text, message", [
    ("tracks: []", "non-empty list 'tracks:'"),
    ("tracks:\n  - {name: A, minutes: 5}", "track 1 needs 'name', 'minutes' and 'lessons'"),
    ("tracks:\n  - {name: A, minutes: 5, exercises: later, lessons: []}", "exercises must be 'in class' or 'homework'"),
    ("tracks:\n  - {name: A, minutes: 5, lessons: [{notebook: 01_a, minutes: 5, sections: 3}]}", "sections must be 'all' or a list"),
    ("tracks: [", "not valid YAML"),
])
def test_malformed_tracks_say_what_is_wrong(tmp_path: Path, text: str, message: str):
    with pytest.raises(ins.TracksError, match=message):
        _tracks(tmp_path, text)


def test_tracks_page_lists_lessons_roles_times_and_pre_runs(tmp_path: Path):
    tracks = _tracks(tmp_path, TRACKS)
    page = ins.tracks_page(tracks, SECTIONS, {"01_a": "01 · A", "09": "09 · Absent"}, "smoke",
                           problems=["Short: 01_a has no section '7'"])
    assert page.startswith("# Workshop tracks\n\nTwo plans.")
    assert "## Short\n\nThe gist." in page and "## Long" in page
    assert "measured in a smoke-mode run" in page
    assert "Planned teaching time: **30 min** of 30. Running every cell of these lessons took 108 s" in page
    assert "| [01 · A](01_a.md) | 20 | 108.0 | 6.0 | yes |" in page  # 90 s training: pre-run
    assert "| 09 · Absent \\*(not in this build)\\* | 10 |" not in page and "| 09 · Absent *(not in this build)* | 10 |" in page
    assert "| 2. Slow training | 90.0 | skip |" in page  # skipped: not taught, no pre-run mark
    assert "| 2. Slow training | 90.0 | teach · slow: pre-run |" in page  # the long track teaches it
    assert "Not in this track: 02\\_b." in page
    assert "does not match the notebooks of this build" in page and "has no section '7'" in page


def test_the_courses_tracks_match_its_notebooks():
    """book/instructor/tracks.yml names notebooks and sections that exist, within each track's minutes."""
    tracks = ins.load_tracks(BOOK_DIR / ins.TRACKS_FILE)
    assert {t.name for t in tracks.tracks} >= {"90-minute workshop", "One-day workshop"}
    sections = {p.stem: sec.notebook_sections(p) for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")}
    assert ins.check_tracks(tracks, sections) == []


# --------------------------------------------------------------------------------------------
# Expected numbers
# --------------------------------------------------------------------------------------------


def test_expected_numbers_absent_missing_and_present():
    absent = ins.expected_block(None, "02_tiny_softmax", "smoke")
    assert "`expected/smoke.json` does not exist yet" in absent and "course_runner --smoke" in absent
    expected = ins.load_expected_file(FIXTURES / "expected", "full")
    missing = ins.expected_block(expected, "07_other", "full")
    assert "has no entry for this notebook" in missing
    block = ins.expected_block(expected, "02_tiny_softmax", "full")
    assert "That run took **12.5 s** for this notebook (1234 s for the whole course)." in block
    assert "| SASRec vs EASE | all items | NDCG@10 | +0.0085 | \\[+0.0140, +0.0140\\] |" not in block
    assert "| SASRec vs EASE | all items | NDCG@10 | +0.0085 | \\[+0.0031, +0.0140\\] | SASRec beats EASE |" in block
    assert "{dropdown} All 4 recorded numbers" in block
    assert "| test\\_all\\_EASE\\_NDCG@10 | 0.0617 | \\[0.0568, 0.0666\\] |" in block
    assert "| best\\_model | EASE | not checked (a timing or a label) |" in block
    assert ins.load_expected_file(FIXTURES / "expected", "smoke") is None


def test_a_broken_expected_file_says_how_to_rewrite_it(tmp_path: Path):
    (tmp_path / "full.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="expected update --summary runs/full/summary.json"):
        ins.load_expected_file(tmp_path, "full")


# --------------------------------------------------------------------------------------------
# The whole guide, written into a book source tree
# --------------------------------------------------------------------------------------------


def test_write_guide(tmp_path: Path):
    tree = tmp_path / "src"
    shutil.copytree(BOOK_DIR, tree, ignore=shutil.ignore_patterns("_build", "__pycache__"))
    notes = tree / ins.NOTES_DIR
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "05_a_lesson.md").write_text(
        NOTES.replace("- One.", "- One, see the [glossary](../../appendix/glossary.md) and "
                               "[lesson 05](../../../notebooks/05_a_lesson.ipynb)."), encoding="utf-8")
    (notes / "06_broken.md").write_text("## Talking points\n", encoding="utf-8")
    executed = tmp_path / "executed"
    executed.mkdir()
    for stem in ("05_a_lesson", "06_broken", "07_no_notes"):
        nbformat.write(_timed_notebook(), executed / f"{stem}.ipynb")
    (tree / "notebooks").mkdir()
    for p in executed.iterdir():
        shutil.copy(p, tree / "notebooks" / p.name)

    pages = ins.write_guide(tree, sorted(executed.iterdir()), labels={"05_a_lesson": "05 · A lesson"},
                            expected_dir=FIXTURES / "expected")
    assert pages == ["instructor/index", "instructor/tracks", "instructor/05_a_lesson", "instructor/06_broken",
                     "instructor/07_no_notes"]
    assert not notes.exists() and not (tree / ins.TRACKS_FILE).exists()  # sources are not pages

    page = (tree / "instructor" / "05_a_lesson.md").read_text(encoding="utf-8")
    assert page.startswith("# 05 · A lesson\n\nNotes for instructors on [the lesson](../notebooks/05_a_lesson.ipynb).")
    assert "[glossary](../appendix/glossary.md)" in page and "[lesson 05](../notebooks/05_a_lesson.ipynb)" in page
    assert "Running every cell took **61.5 s** in a full-mode run" in page
    assert "| 2. Training | 45.0 | 73% | slow: pre-run |" in page
    assert "| Deep dive (optional): precision | 10.0 | 16% | optional: skip in a workshop |" in page
    assert "`expected/full.json` has no entry for this notebook" in page
    assert "`expected/smoke.json` does not exist yet" in page
    assert "## Further reading" in page and page.count("{dropdown} Answer") == 2
    broken = (tree / "instructor" / "06_broken.md").read_text(encoding="utf-8")
    assert "cannot be read" in broken and "missing section(s)" in broken
    assert "There are no notes for this lesson yet (`book/instructor/notes/07_no_notes.md`)" in (
        tree / "instructor" / "07_no_notes.md").read_text(encoding="utf-8")
    index = (tree / "instructor" / "index.md").read_text(encoding="utf-8")
    assert ins.INDEX_TABLE_MARKER not in index
    assert "| [05 · A lesson](05_a_lesson.md) | 61.5 |  | yes | 2 |" in index
    assert "| [06\\_broken](06_broken.md) | 61.5 |  | unreadable |  |" in index
    tracks = (tree / "instructor" / "tracks.md").read_text(encoding="utf-8")
    assert "90-minute workshop" in tracks and "(not in this build)" in tracks


# --------------------------------------------------------------------------------------------
# Markdown pieces and links
# --------------------------------------------------------------------------------------------


def test_fold_survives_fences_and_headings_in_its_body():
    body = "## A heading\n\n```python\n## a comment\n```\n\n````md\n```\n````"
    folded = md.fold(body, "Answer", css_class="x")
    assert folded.startswith("`````{dropdown} Answer\n:class-container: x\n\n**A heading**")
    assert "## a comment" in folded and folded.rstrip().endswith("`````")


def test_table_cells_are_escaped():
    table = md.table(["a", "b"], [("x|y $z$ *w*", "[link](u)")], raw_columns=(1,))
    assert table.splitlines()[2] == "| x\\|y \\$z\\$ \\*w\\* | [link](u) |"


def test_site_links(tmp_path: Path):
    (tmp_path / "appendix").mkdir()
    (tmp_path / "appendix" / "glossary.md").write_text("# Glossary\n\n(term-bag)=\n## Bag of items\n", encoding="utf-8")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "02_b.ipynb").write_text("{}", encoding="utf-8")

    def links(text, repo_dir="notebooks", site_dir="notebooks"):
        return md.site_links(text, repo_dir=repo_dir, site_dir=site_dir, tree=tmp_path)

    assert links("[g](../book/appendix/glossary.md)") == "[g](../appendix/glossary.md)"
    assert links("[g](../book/appendix/glossary.md#term-bag)") == "[g](../appendix/glossary.md#term-bag)"
    assert links("[g](../book/appendix/glossary.md#bag-of-items)") == "[g](../appendix/glossary.md#bag-of-items)"
    assert links("[g](../book/appendix/glossary.md#no-such)") == "[g](../appendix/glossary.md)"
    assert links("[g](../appendix/glossary.md)") == "[g](../appendix/glossary.md)"
    assert links("[b](02_b.ipynb) [c](03_c.ipynb)") == "[b](02_b.ipynb) c"
    assert links("[r](../README.md) [m](../m6rec_lib/book.py)") == "r m"  # in the repository, not in the site
    assert links("[x](no_such_page.md) [w](https://x.org/a.md) [s](#sec) ![i](img.png)") == (
        "[x](no_such_page.md) [w](https://x.org/a.md) [s](#sec) ![i](img.png)")
    notes = dict(repo_dir="book/instructor/notes", site_dir="instructor")
    assert links("[g](../../appendix/glossary.md) [b](../../../notebooks/02_b.ipynb)", **notes) == (
        "[g](../appendix/glossary.md) [b](../notebooks/02_b.ipynb)")


def test_guide_summary_json_round_trip_of_sections(tmp_path: Path):
    """The runner's summary.json keeps each section as a plain dict (what Section.to_dict gives)."""
    found = sec.notebook_sections(_timed_notebook())
    data = json.loads(json.dumps([s.to_dict() for s in found]))
    assert [d["title"] for d in data] == [s.title for s in found] and data[3]["optional"] is True
