"""The instructor guide: a section of the course site generated when the site is built.

An instructor running a 90-minute session or a one-day workshop needs, per lesson, what to say,
what goes wrong, questions to ask (with answers), the numbers a run should give and how long each
part takes; and a plan that says which sections to teach, which to skip and which to run before
class. The guide puts together:

- ``book/instructor/notes/NN_name.md``: hand-written notes per notebook (format below);
- ``expected/full.json`` and ``expected/smoke.json`` (:mod:`m6rec_lib.expected`): the numbers a
  complete run should give, with bands, and the headline comparisons with their verdicts (a page
  says so plainly when a file does not exist yet);
- the executed notebooks the site is built from: the wall time of every ``## `` section
  (:mod:`m6rec_lib.sections`);
- ``book/instructor/tracks.yml``: the workshop tracks (which lessons, how many minutes, which
  sections to teach).

:func:`write_guide` writes ``instructor/index.md`` (from ``book/instructor/index.md``, whose table
is generated), ``instructor/tracks.md`` and one ``instructor/NN_name.md`` page per notebook of the
build into a book source tree; :mod:`m6rec_lib.book` calls it.

Notes format
------------
A notes file has three sections, with exactly these headings (others may follow them)::

    # 05 · Next-item generation: notes          <- optional title, not shown

    ## Talking points
    - free markdown

    ## Common errors
    - free markdown

    ## Questions
    1. The question, on one or more lines (continuation lines indented by three spaces).

       **Answer.** The answer, for the instructor; it may go on for several paragraphs, each
       indented by three spaces, and hold lists, code or maths.

    2. The next question ...

       **Answer.** ...

Every question is a numbered item at the start of a line, and its answer starts with
``**Answer.**`` (``**Answer:**`` and ``Answer:`` are read too). :func:`parse_notes` raises
:class:`NotesFormatError`, naming the file and the line, when a heading or an answer is missing.
Links in a notes file are written relative to the file (``../../appendix/glossary.md``,
``../../../notebooks/05_next_item_generation.ipynb``) and are rewritten for the site.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from m6rec_lib import site_markdown as md
from m6rec_lib.config import REPO_ROOT
from m6rec_lib.sections import Section, notebook_mode, notebook_sections

log = logging.getLogger(__name__)

GUIDE_DIR = "instructor"
"""The guide's folder, in ``book/`` and in the built site."""
NOTES_DIR = f"{GUIDE_DIR}/notes"
TRACKS_FILE = f"{GUIDE_DIR}/tracks.yml"
INDEX_TABLE_MARKER = "<!-- m6rec:instructor-table -->"
REQUIRED_HEADINGS = ("Talking points", "Common errors", "Questions")
ANSWER_RE = re.compile(r"^(?:\*\*answer(?:[.:]\*\*|\*\*\s*[.:]?)|\*answer[.:]\*|answer\s*[.:])\s*", re.IGNORECASE)
QUESTION_RE = re.compile(r"^(?P<number>\d+)[.)]\s+(?P<text>.*)$")
DEFAULT_SLOW_SECTION_SECONDS = 20.0


class NotesFormatError(ValueError):
    """A notes file does not follow the format described in this module's docstring."""


class TracksError(ValueError):
    """``tracks.yml`` is not what :func:`load_tracks` expects."""


# --------------------------------------------------------------------------------------------
# Notes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    number: str
    question: str
    answer: str


@dataclass(frozen=True)
class Notes:
    """A parsed notes file: its ``## `` sections (heading -> markdown body) and its questions."""

    sections: dict[str, str]
    questions: list[Question]

    @property
    def talking_points(self) -> str:
        return self.sections["Talking points"]

    @property
    def common_errors(self) -> str:
        return self.sections["Common errors"]


def _split_level2(text: str) -> list[tuple[str, int, list[str]]]:
    """``(heading, line number, body lines)`` of each ``## `` section; lines inside code fences
    are never headings."""
    parts: list[tuple[str, int, list[str]]] = []
    fence = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = re.match(r"\s*(`{3,}|~{3,})", line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
        heading = re.match(r"##\s+(\S.*?)\s*#*\s*$", line) if fence is None and not m else None
        if heading:
            parts.append((heading.group(1), lineno, []))
        elif parts:
            parts[-1][2].append(line)
    return parts


def _parse_questions(lines: list[str], first_line: int, source: str) -> list[Question]:
    items: list[tuple[str, int, list[str]]] = []
    for offset, line in enumerate(lines):
        m = QUESTION_RE.match(line)
        if m:
            items.append((m.group("number"), first_line + offset, [m.group("text")]))
        elif items:
            items[-1][2].append(line)
        elif line.strip():
            raise NotesFormatError(
                f"{source}, line {first_line + offset}: text before the first question of '## Questions'. "
                "Write each question as a numbered item ('1. ...') followed by its '**Answer.** ...'.")
    if not items:
        raise NotesFormatError(f"{source}: '## Questions' holds no numbered question ('1. ...').")
    questions = []
    for number, lineno, item in items:
        # The item's continuation lines are indented (markdown list item): dedent them.
        body = [item[0]] + textwrap.dedent("\n".join(item[1:])).splitlines()
        at = next((i for i, ln in enumerate(body) if ANSWER_RE.match(ln.strip())), None)
        if at is None:
            raise NotesFormatError(
                f"{source}, line {lineno}: question {number} has no answer. Follow it with a paragraph "
                "starting '**Answer.**' (indented by three spaces, inside the numbered item).")
        question = "\n".join(body[:at]).strip()
        first = ANSWER_RE.sub("", body[at].strip(), count=1)
        answer = "\n".join([first, *body[at + 1:]]).strip()
        if not question or not answer:
            raise NotesFormatError(f"{source}, line {lineno}: question {number} has an empty "
                                   f"{'question' if not question else 'answer'}.")
        questions.append(Question(number, question, answer))
    return questions


def parse_notes(text: str, *, source: str = "notes") -> Notes:
    """Read a notes file (see the module docstring); ``source`` names it in error messages."""
    parts = _split_level2(text)
    sections = {heading: "\n".join(body).strip("\n") for heading, _, body in parts}
    missing = [h for h in REQUIRED_HEADINGS if h not in sections]
    if missing:
        found = ", ".join(f"'## {h}'" for h, _, _ in parts) or "none"
        raise NotesFormatError(
            f"{source}: missing section(s) {', '.join(repr('## ' + h) for h in missing)} "
            f"(found: {found}). A notes file has '## Talking points', '## Common errors' and "
            "'## Questions', spelled exactly so.")
    heading, lineno, body = next(p for p in parts if p[0] == "Questions")
    return Notes(sections, _parse_questions(body, lineno + 1, source))


def read_notes(path: Path) -> Notes:
    path = Path(path)
    return parse_notes(path.read_text(encoding="utf-8"), source=_shown(path))


def _shown(path: Path) -> str:
    path = Path(path)
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.name


# --------------------------------------------------------------------------------------------
# Expected numbers
# --------------------------------------------------------------------------------------------


def load_expected_file(expected_dir: Path, mode: str) -> dict | None:
    """``expected/<mode>.json`` as a dict, or ``None`` when it does not exist (yet)."""
    path = Path(expected_dir) / f"{mode}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{_shown(path)} is not valid JSON ({exc}); rewrite it with "
                         f"`python -m m6rec_lib.expected update --summary runs/{mode}/summary.json`") from exc


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _band(band) -> str:
    if band is None:
        return "not checked (a timing or a label)"
    return f"[{_fmt(band[0])}, {_fmt(band[1])}]"


def expected_block(expected: dict | None, stem: str, mode: str) -> str:
    """The expected numbers of one notebook in one mode, or a plain statement that there are none."""
    file = f"expected/{mode}.json"
    how = (f"It is written from a complete {mode}-mode run of the course: "
           f"`python -m m6rec_lib.course_runner{' --smoke' if mode == 'smoke' else ''}`, then "
           f"`python -m m6rec_lib.expected update --summary runs/{mode}/summary.json`.")
    if expected is None:
        return md.admonition("note", f"`{file}` does not exist yet, so there are no expected {mode}-run "
                                     f"numbers to show. {how}")
    record = (expected.get("notebooks") or {}).get(stem)
    if record is None:
        return md.admonition("note", f"`{file}` has no entry for this notebook: it was accepted before "
                                     f"the notebook existed, or from a run without it. {how}")
    parts = []
    if record.get("seconds") is not None:
        parts.append(f"That run took **{_fmt(record['seconds'])} s** for this notebook"
                     + (f" ({_fmt(expected['total_seconds'])} s for the whole course)."
                        if expected.get("total_seconds") else "."))
    comparisons = record.get("comparisons") or {}
    if comparisons:
        rows = [(f"{c['name_a']} vs {c['name_b']}", c["view"], c["metric"], f"{c['diff']:+.4f}",
                 f"[{c['low']:+.4f}, {c['high']:+.4f}]", c["verdict"]) for c in comparisons.values()]
        parts.append("Headline comparisons (A - B, 95% interval of a paired bootstrap over customers):\n\n"
                     + md.table(["A vs B", "view", "metric", "A - B", "interval", "verdict"], rows))
    metrics = record.get("metrics") or {}
    if metrics:
        rows = [(name, _fmt(m.get("value")), _band(m.get("band"))) for name, m in metrics.items()]
        parts.append(md.fold(md.table(["metric", "value", "a rerun should fall in"], rows),
                             f"All {len(metrics)} recorded numbers", css_class="expected-numbers"))
    if not comparisons and not metrics:
        parts.append("The notebook recorded no numbers in that run.")
    if mode == "smoke":
        parts.append("Smoke-mode numbers come from tiny parameters: they show that the code ran, and decide "
                     "nothing about the methods.")
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Tracks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackLesson:
    notebook: str
    minutes: int
    sections: tuple[str, ...] | None  # None: every numbered section


@dataclass(frozen=True)
class Track:
    name: str
    minutes: int
    about: str
    exercises: str  # "in class" or "homework"
    lessons: tuple[TrackLesson, ...]


@dataclass(frozen=True)
class Tracks:
    slow_section_seconds: float
    about: str
    tracks: tuple[Track, ...]


def load_tracks(path: Path) -> Tracks:
    """Read ``tracks.yml``; a clear :class:`TracksError` when it is malformed."""
    import yaml

    path = Path(path)
    where = _shown(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise TracksError(f"{where} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("tracks"), list) or not data["tracks"]:
        raise TracksError(f"{where} must be a mapping with a non-empty list 'tracks:'")
    tracks = []
    for i, t in enumerate(data["tracks"], start=1):
        if not isinstance(t, dict) or not all(k in t for k in ("name", "minutes", "lessons")):
            raise TracksError(f"{where}: track {i} needs 'name', 'minutes' and 'lessons'")
        exercises = str(t.get("exercises", "homework"))
        if exercises not in ("in class", "homework"):
            raise TracksError(f"{where}: track {t['name']!r}: exercises must be 'in class' or 'homework', "
                              f"got {exercises!r}")
        lessons = []
        for j, lesson in enumerate(t["lessons"], start=1):
            if not isinstance(lesson, dict) or "notebook" not in lesson or "minutes" not in lesson:
                raise TracksError(f"{where}: track {t['name']!r}, lesson {j} needs 'notebook' and 'minutes'")
            chosen = lesson.get("sections", "all")
            if chosen == "all":
                sections = None
            elif isinstance(chosen, list) and chosen:
                sections = tuple(str(s) for s in chosen)
            else:
                raise TracksError(f"{where}: track {t['name']!r}, {lesson['notebook']}: sections must be "
                                  "'all' or a list of section numbers or title beginnings")
            lessons.append(TrackLesson(str(lesson["notebook"]), int(lesson["minutes"]), sections))
        tracks.append(Track(str(t["name"]), int(t["minutes"]), " ".join(str(t.get("about", "")).split()),
                            exercises, tuple(lessons)))
    return Tracks(float(data.get("slow_section_seconds", DEFAULT_SLOW_SECTION_SECONDS)),
                  " ".join(str(data.get("about", "")).split()), tuple(tracks))


def _matches(section: Section, wanted: str) -> bool:
    if wanted.isdigit():
        return section.number == wanted
    return section.title.lower().startswith(wanted.lower())


def section_role(section: Section, lesson: TrackLesson, track: Track) -> str:
    """What a track does with a section: ``set-up``, ``teach``, ``skip``, ``skip (deep dive)``,
    ``homework``, ``in class`` (exercises) or ``instructor only`` (solutions)."""
    if section.kind == "setup":
        return "set-up"
    if section.kind == "solutions":
        return "instructor only"
    if section.kind == "exercises":
        return track.exercises
    if section.kind == "summary":
        return "teach"
    if lesson.sections is None:
        return "skip (deep dive)" if section.optional else "teach"
    if any(_matches(section, w) for w in lesson.sections):
        return "teach"
    return "skip (deep dive)" if section.optional else "skip"


def check_tracks(tracks: Tracks, sections: Mapping[str, Sequence[Section]], *, complete: bool = True) -> list[str]:
    """Problems of the tracks against the notebooks' sections (``stem -> sections``): sections
    that do not exist, lessons that add up to more than a track's minutes, and, when ``sections``
    is ``complete`` (every notebook of the course, not one build's), unknown notebooks."""
    problems = []
    for track in tracks.tracks:
        total = sum(lesson.minutes for lesson in track.lessons)
        if total > track.minutes:
            problems.append(f"{track.name}: its lessons add up to {total} minutes, more than its {track.minutes}")
        for lesson in track.lessons:
            if lesson.notebook not in sections:
                if complete:
                    problems.append(f"{track.name}: no notebook {lesson.notebook}")
                continue
            for wanted in lesson.sections or ():
                if not any(_matches(s, wanted) for s in sections[lesson.notebook]):
                    problems.append(f"{track.name}: {lesson.notebook} has no section {wanted!r}")
    return problems


def _label(labels: Mapping[str, str], stem: str) -> str:
    """A lesson's short name: by its notebook's name, else by its number, else the name itself."""
    return labels.get(stem) or labels.get(stem[:2]) or stem


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def tracks_page(tracks: Tracks, sections: Mapping[str, Sequence[Section]], labels: Mapping[str, str],
                mode: str | None, problems: Sequence[str] = ()) -> str:
    """The "Workshop tracks" page: per track, the lessons, what to do with each section, and times."""
    present = set(sections)
    slow = tracks.slow_section_seconds
    run = f"a {mode}-mode run" if mode else "the run this site was built from"
    out = ["# Workshop tracks", ""]
    if tracks.about:
        out += [tracks.about, ""]
    out += [
        f"Times are wall-clock seconds of every cell of a section, measured in {run} (on a busy machine "
        "they are longer). A section is **taught** (run and discussed), **skipped** (it still runs when "
        "you run every cell, but you do not discuss it), or it is set-up, exercises or solutions. "
        f"A lesson with a section slower than {slow:g} s is marked **pre-run**: run it before the session "
        "(`python -m m6rec_lib.course_runner --only NN --no-book`; trained models stay in the cache), "
        "teach from its executed copy or from this site, and let learners who run it in class use smoke "
        "mode (`M6REC_SMOKE=1`), the same code with small parameters.", ""]
    if problems:
        out += [md.admonition("warning", "This plan does not match the notebooks of this build:\n\n"
                              + "\n".join(f"- {md.cell(p)}" for p in problems)), ""]
    for track in tracks.tracks:
        out += [f"## {track.name}", ""]
        if track.about:
            out += [track.about, ""]
        planned = sum(lesson.minutes for lesson in track.lessons)
        overview, details = [], []
        total_run = total_taught = 0.0
        for lesson in track.lessons:
            label = _label(labels, lesson.notebook)
            secs = sections.get(lesson.notebook)
            if secs is None:
                overview.append((f"{md.cell(label)} *(not in this build)*", lesson.minutes, "", "", ""))
                continue
            roles = [(s, section_role(s, lesson, track)) for s in secs]
            run_all = sum(s.seconds for s in secs)
            taught = sum(s.seconds for s, r in roles if r in ("teach", "set-up", "in class"))
            pre_run = any(s.seconds > slow for s in secs)
            total_run += run_all
            total_taught += taught
            overview.append((f"[{md.cell(label)}]({lesson.notebook}.md)", lesson.minutes,
                             _seconds(run_all), _seconds(taught), "yes" if pre_run else "no"))
            rows = []
            for s, role in roles:
                shown = role + (" · slow: pre-run" if s.seconds > slow and role in ("teach", "set-up") else "")
                rows.append((s.title, _seconds(s.seconds), shown))
            details.append(md.fold(md.table(["section", "seconds", "in this track"], rows),
                                   f"{label}: {lesson.minutes} min", css_class="track-lesson"))
        out += [f"Planned teaching time: **{planned} min** of {track.minutes}. Running every cell of these "
                f"lessons took {total_run:.0f} s in {run}, the sections taught {total_taught:.0f} s.", ""]
        out += [md.table(["lesson", "minutes", "run every cell (s)", "taught sections (s)", "pre-run"],
                         overview, raw_columns=(0,)), ""]
        taken = {lesson.notebook for lesson in track.lessons}
        left = [_label(labels, stem) for stem in sorted(present - taken)]
        if left:
            out += ["Not in this track: " + ", ".join(md.cell(x) for x in left) + ".", ""]
        out += ["Section by section (click a lesson):", "", *details]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------


def timing_block(secs: Sequence[Section], mode: str | None, expected_full: dict | None, stem: str,
                 slow: float) -> str:
    total = sum(s.seconds for s in secs)
    run = f"a {mode}-mode run" if mode else "the run this site was built from"
    if total == 0:
        return ("This build's copy of the notebook holds no cell timings (it was not executed by the "
                "course runner), so no times can be shown.\n")
    rows = []
    for s in secs:
        note = []
        if s.optional:
            note.append("optional: skip in a workshop")
        if s.seconds > slow:
            note.append("slow: pre-run")
        rows.append((s.title, _seconds(s.seconds), f"{100 * s.seconds / total:.0f}%", "; ".join(note)))
    text = [f"Running every cell took **{total:.1f} s** in {run} (wall-clock time; longer on a busy machine, "
            "and shorter when trained models are already in the cache).", "",
            md.table(["section", "seconds", "share", "in a workshop"], rows)]
    full = ((expected_full or {}).get("notebooks") or {}).get(stem)
    if mode != "full" and full and full.get("seconds") is not None:
        text += ["", f"In the full run of `expected/full.json` the notebook took {_fmt(full['seconds'])} s."]
    return "\n".join(text) + "\n"


def questions_block(questions: Sequence[Question]) -> str:
    parts = []
    for q in questions:
        parts.append(f"**{q.number}.** {q.question}\n")
        parts.append(md.fold(q.answer, "Answer", css_class="instructor-answer"))
    return "\n".join(parts)


def notebook_page(stem: str, label: str, *, notes: Notes | None, notes_error: str | None,
                  sections: Sequence[Section], mode: str | None, expected: Mapping[str, dict | None],
                  slow: float, notes_file: str) -> str:
    """The guide's page for one lesson of the build (markdown): times, expected numbers, notes."""
    out = [f"# {label}", "", f"Notes for instructors on [the lesson](../notebooks/{stem}.ipynb).", ""]
    out += ["## Time", "", timing_block(sections, mode, expected.get("full"), stem, slow)]
    out += ["## Expected numbers", ""]
    for mode_ in ("full", "smoke"):
        out += [f"### {mode_.capitalize()} run", "", expected_block(expected.get(mode_), stem, mode_)]
    if notes is None:
        message = (f"The notes file `{notes_file}` cannot be read: {notes_error}" if notes_error
                   else f"There are no notes for this lesson yet (`{notes_file}`).")
        out += [md.admonition("warning" if notes_error else "note", message)]
        return "\n".join(out).rstrip() + "\n"
    for heading, body in notes.sections.items():
        out += [f"## {heading}", ""]
        if heading == "Questions":
            out += ["Answers are folded: click to open.", "", questions_block(notes.questions)]
        else:
            out += [body.strip(), ""]
    return "\n".join(out).rstrip() + "\n"


@dataclass(frozen=True)
class GuideEntry:
    """One row of the guide's index: a lesson of the build."""

    stem: str
    label: str
    seconds: float
    mode: str | None
    expected_seconds: float | None
    questions: int | None
    notes_state: str


def index_table(entries: Iterable[GuideEntry]) -> str:
    rows = []
    for e in entries:
        rows.append((f"[{md.cell(e.label)}]({e.stem}.md)", _seconds(e.seconds),
                     _fmt(e.expected_seconds) if e.expected_seconds is not None else "",
                     e.notes_state, "" if e.questions is None else str(e.questions)))
    mode = next((e.mode for e in entries if e.mode), None)
    run = f"this build ({mode} run), s" if mode else "this build, s"
    return md.table(["lesson", run, "expected full run, s", "notes", "questions"], rows, raw_columns=(0,))


def write_guide(tree: Path, notebooks: Sequence[Path], *, labels: Mapping[str, str] | None = None,
                expected_dir: Path | None = None, repo_root: Path = REPO_ROOT) -> list[str]:
    """Generate the instructor guide into the book source ``tree``; return its pages (toc entries,
    ``instructor/index`` first).

    ``tree`` already holds a copy of ``book/`` (so ``tree/instructor/notes``, ``tracks.yml`` and
    ``index.md``) and the build's notebooks in ``tree/notebooks``; ``notebooks``: the executed
    notebooks of the build (their section timings are read from them); ``labels``: stem -> short
    title (``NN · Title``); ``expected_dir``: where ``full.json`` and ``smoke.json`` live.
    """
    import nbformat

    from m6rec_lib.expected import EXPECTED_DIR

    tree = Path(tree)
    guide = tree / GUIDE_DIR
    guide.mkdir(parents=True, exist_ok=True)
    labels = dict(labels or {})
    expected = {mode: load_expected_file(expected_dir or EXPECTED_DIR, mode) for mode in ("full", "smoke")}
    notes_dir = tree / NOTES_DIR
    tracks_path = tree / TRACKS_FILE
    tracks = load_tracks(tracks_path) if tracks_path.is_file() else None
    slow = tracks.slow_section_seconds if tracks else DEFAULT_SLOW_SECTION_SECONDS

    sections: dict[str, list[Section]] = {}
    modes: dict[str, str | None] = {}
    for path in notebooks:
        nb = nbformat.read(str(path), as_version=4)
        sections[path.stem] = notebook_sections(nb)
        modes[path.stem] = notebook_mode(nb)
        labels[path.stem] = _label(labels, path.stem)
    mode = next((m for m in modes.values() if m), None)

    entries, pages = [], []
    for stem in sections:
        notes_file = f"book/{NOTES_DIR}/{stem}.md"
        notes, error = None, None
        source = notes_dir / f"{stem}.md"
        if source.is_file():
            try:
                text = md.site_links(source.read_text(encoding="utf-8"), repo_dir=f"book/{NOTES_DIR}",
                                  site_dir=GUIDE_DIR, tree=tree, repo_root=repo_root)
                notes = parse_notes(text, source=notes_file)
            except NotesFormatError as exc:
                error = str(exc)
                log.warning("instructor notes: %s", exc)
        page = notebook_page(stem, labels[stem], notes=notes, notes_error=error,
                             sections=sections[stem], mode=modes[stem], expected=expected, slow=slow,
                             notes_file=notes_file)
        (guide / f"{stem}.md").write_text(page, encoding="utf-8")
        pages.append(f"{GUIDE_DIR}/{stem}")
        full = ((expected["full"] or {}).get("notebooks") or {}).get(stem) or {}
        entries.append(GuideEntry(stem, labels[stem], sum(s.seconds for s in sections[stem]),
                                  modes[stem], full.get("seconds"), len(notes.questions) if notes else None,
                                  "yes" if notes else ("unreadable" if error else "not yet")))

    if tracks is not None:
        problems = check_tracks(tracks, sections, complete=False)
        for p in problems:
            log.warning("workshop tracks: %s", p)
        (guide / "tracks.md").write_text(tracks_page(tracks, sections, labels, mode, problems), encoding="utf-8")
        pages.insert(0, f"{GUIDE_DIR}/tracks")

    index = guide / "index.md"
    template = index.read_text(encoding="utf-8") if index.is_file() else f"# For instructors\n\n{INDEX_TABLE_MARKER}\n"
    index.write_text(template.replace(INDEX_TABLE_MARKER, index_table(entries)), encoding="utf-8")

    # The sources the pages were made from are not pages of the site.
    tracks_path.unlink(missing_ok=True)
    if notes_dir.is_dir():
        shutil.rmtree(notes_dir)
    return [f"{GUIDE_DIR}/index", *pages]
