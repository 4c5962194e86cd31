"""Build the course site (a Jupyter Book 1.x project) from executed notebooks.

The book's sources live in ``book/`` (configuration, intro, course map, appendix pages). The
lessons come from a *run*: the notebooks that the course runner executed with papermill into
``runs/<mode>/notebooks/``. :func:`build_book` puts both into a fresh build tree, generates the
table of contents from the notebooks that are actually there (a lesson that was not run is simply
absent, never a broken link), renders the HTML **without executing anything**, and swaps the new
site in place of the old one.

Command line::

    python -m m6rec_lib.book --notebooks runs/full/notebooks --out runs/full/site

Preparing a notebook for the site (:func:`prepare_notebook`) changes only the build copy, never the
notebook a learner opens: cells tagged ``solution`` are folded away until the reader clicks them
(code cells get myst-nb's ``hide-cell`` tag, markdown cells are wrapped in a collapsed dropdown),
links written for JupyterLab (``../book/appendix/glossary.md``) are rewritten for the site, and
machine paths are dropped from the metadata. The build also generates the instructor guide
(:mod:`m6rec_lib.instructor`) from ``book/instructor/``, ``expected/*.json`` and the section
timings of the executed notebooks.

The site works offline: MathJax is served from the site itself (``book/_ext/offline_mathjax.py``),
launch/repository buttons and widget JavaScript from CDNs are off, and the build fails when a page
still references a script, style sheet, font or image on another host.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from m6rec_lib import site_markdown
from m6rec_lib.atomic import atomic_write_text
from m6rec_lib.config import BOOK_DIR
from m6rec_lib.student_copies import SOLUTION_TAG

log = logging.getLogger(__name__)

LESSON_RE = re.compile(r"^(?P<number>\d{2})_[\w\-]+\.ipynb$")
"""A lesson notebook: ``NN_name.ipynb``."""

SITE_MARKER = ".m6rec-site"
"""File written into every built site; only a folder holding it is ever replaced."""

LESSON_TABLE_MARKER = "<!-- m6rec:lesson-table -->"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
BUILD_TIMEOUT_S = 3600

# Files of book/ that are not part of a build tree.
_SOURCE_IGNORE = shutil.ignore_patterns(
    "_build", "_generated", "README.md", "_toc.yml", "__pycache__", ".ipynb_checkpoints", "*.pyc"
)


class BookBuildError(RuntimeError):
    """The site could not be built; the message carries the warnings and the log's location."""


@dataclass(frozen=True)
class Lesson:
    """One lesson of the course map: planned (from ``book/lessons.yml``) and maybe present."""

    number: str
    title: str
    summary: str
    notebook: str | None = None  # file name in the build tree's notebooks/ folder, if present
    stem: str | None = None      # the planned notebook's name without .ipynb, when a number has several


# --------------------------------------------------------------------------------------------
# Build tree
# --------------------------------------------------------------------------------------------


def find_notebooks(notebooks_dir: Path) -> list[Path]:
    """The lesson notebooks (``NN_name.ipynb``) in ``notebooks_dir``, in course order."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise FileNotFoundError(
            f"{notebooks_dir} is not a folder of executed notebooks. Run the course first "
            "(m6rec-course), or point --notebooks at a folder such as runs/smoke/notebooks."
        )
    found = [p for p in notebooks_dir.iterdir() if p.is_file() and LESSON_RE.match(p.name)]
    return sorted(found, key=lambda p: (p.name[:2], p.name))


def _notebook_title(nb) -> str | None:
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return None


# Output types the HTML site shows. Others (the course's metrics record, ipywidgets views, which
# would need widget JavaScript from a CDN) are dropped when one of these is there as a fallback.
RENDERABLE_MIME = frozenset(
    {
        "text/plain", "text/html", "text/markdown", "text/latex", "application/javascript",
        "image/png", "image/jpeg", "image/gif", "image/svg+xml",
    }
)  # fmt: skip


def _static_outputs(outputs: list) -> list:
    kept = []
    for out in outputs:
        data = out.get("data")
        if data is not None:
            if any(m in RENDERABLE_MIME for m in data):
                for mime in [m for m in data if m not in RENDERABLE_MIME]:
                    data.pop(mime)
            elif WIDGET_VIEW_MIME in data:
                continue  # a widget with no fallback shows nothing without JavaScript
        kept.append(out)
    return kept


# Papermill's record of where the notebook was run from: machine paths, not for publication.
_MACHINE_METADATA = ("input_path", "output_path", "environment_variables")


def fold_markdown_solution(source: str) -> str:
    """A markdown solution cell, folded: its leading ``#``/``##`` headings stay visible (the
    "Solutions" section keeps its place in the page's table of contents), the rest goes into a
    collapsed dropdown. A leading ``###`` (or deeper) heading becomes the dropdown's title."""
    lines = source.strip("\n").splitlines()
    head = []
    while lines and (not lines[0].strip() or re.match(r"^#{1,2}\s", lines[0])):
        head.append(lines.pop(0))
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return source
    title = "Solution"
    first = re.match(r"^#{3,6}\s+(?P<text>.*?)\s*#*\s*$", lines[0])
    if first and first.group("text"):
        title = f"Solution: {first.group('text')}" if "solution" not in first.group("text").lower() else first.group("text")
        lines.pop(0)
    folded = site_markdown.fold("\n".join(lines), title, css_class="solution")
    return "\n".join([*[h for h in head if h.strip()], "", folded]).lstrip("\n")


def prepare_notebook(src: Path, dst: Path, present: set[str], *, tree: Path | None = None) -> str | None:
    """Copy an executed notebook for a static site; return its title.

    Outputs keep only what a static page can show (a tqdm progress bar keeps its text, the
    metrics record its one-line summary); solution cells are folded away; links to lessons absent
    from this build become text and links written for JupyterLab are rewritten for the site
    (``tree``: the book source tree the copy goes into).
    """
    import nbformat

    nb = nbformat.read(src, as_version=4)
    nb.metadata.pop("widgets", None)
    for key in _MACHINE_METADATA:
        (nb.metadata.get("papermill") or {}).pop(key, None)
    tree = Path(tree) if tree is not None else Path(dst).parent.parent
    for cell in nb.cells:
        solution = SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "markdown":
            cell.source = site_markdown.site_links(cell.source, repo_dir="notebooks", site_dir="notebooks",
                                                   tree=tree, lessons=present)
            if solution:
                cell.source = fold_markdown_solution(cell.source)
        elif cell.cell_type == "code":
            cell.outputs = _static_outputs(cell.get("outputs", []))
            if solution:
                tags = [t for t in cell.metadata.get("tags", []) if t not in ("hide-input", "hide-output")]
                cell.metadata["tags"] = [*tags, "hide-cell"]
                cell.metadata["mystnb"] = {**cell.metadata.get("mystnb", {}),
                                           "code_prompt_show": "Show the solution",
                                           "code_prompt_hide": "Hide the solution"}
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return _notebook_title(nb)


def _load_lessons(book_src: Path) -> list[Lesson]:
    import yaml

    path = book_src / "lessons.yml"
    if not path.is_file():
        return []
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    return [Lesson(str(e["number"]).zfill(2), e["title"], " ".join(str(e["summary"]).split()), stem=e.get("notebook"))
            for e in entries]


def course_lessons(planned: list[Lesson], notebooks: list[str], titles: dict[str, str | None]) -> list[Lesson]:
    """The course map's rows: each planned lesson with its notebook (or None when absent), then the
    notebooks no planned lesson claims, sorted by number.

    A planned lesson finds its notebook by name when ``lessons.yml`` gives one (``notebook:``, for
    a number with several notebooks), otherwise by number (the first notebook of that number).
    ``titles``: notebook file name -> its own title, which wins over the planned one.
    """
    present = set(notebooks)
    by_number = {name[:2]: name for name in reversed(sorted(notebooks))}  # first notebook of a number wins

    def planned_notebook(lesson: Lesson) -> str | None:
        if lesson.stem:
            return f"{lesson.stem}.ipynb" if f"{lesson.stem}.ipynb" in present else None
        return by_number.get(lesson.number)

    lessons = []
    for lesson in planned:
        name = planned_notebook(lesson)
        lessons.append(Lesson(lesson.number, titles.get(name or "") or lesson.title, lesson.summary, name))
    claimed = {lesson.notebook for lesson in lessons if lesson.notebook}
    for name in sorted(present - claimed):
        lessons.append(Lesson(name[:2], titles.get(name) or Path(name).stem, "", name))
    lessons.sort(key=lambda lesson: (lesson.number, lesson.notebook or ""))
    return lessons


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def lesson_table(lessons: list[Lesson]) -> str:
    """The markdown table of the course map: present lessons link, absent ones say so."""
    rows = ["| # | Lesson | What it teaches |", "|---|---|---|"]
    for lesson in lessons:
        if lesson.notebook:
            name = f"[{_cell(lesson.title)}](notebooks/{lesson.notebook})"
        else:
            name = f"{_cell(lesson.title)} *(not in this build)*"
        rows.append(f"| {lesson.number} | {name} | {_cell(lesson.summary)} |")
    return "\n".join(rows) + "\n"


def _toc(notebooks: list[str], guide: list[str] | None = None) -> dict:
    """The table of contents: the lessons, the instructor guide (its index page, then its other
    pages as sections), the appendix."""
    course = [{"file": "course_map"}] + [{"file": f"notebooks/{Path(n).stem}"} for n in notebooks]
    appendix = [
        {"file": "appendix/bring_your_own_data"},
        {"file": "appendix/glossary"},
        {"file": "appendix/references"},
        {"file": "appendix/how_to_cite"},
    ]
    parts = [{"caption": "Lessons", "chapters": course}]
    if guide:
        chapter = {"file": guide[0]}
        if guide[1:]:
            chapter["sections"] = [{"file": page} for page in guide[1:]]
        parts.append({"caption": "For instructors", "chapters": [chapter]})
    parts.append({"caption": "Appendix", "chapters": appendix})
    return {"format": "jb-book", "root": "intro", "parts": parts}


def guide_labels(planned: list[Lesson], titles: dict[str, str | None]) -> dict[str, str]:
    """Short lesson names for the instructor guide (``05 · Next-item generation``).

    Keyed by notebook stem, and for planned lessons matched by number also by number, so that a
    lesson absent from a build keeps its name. ``titles``: notebook file name -> its own title,
    which names (up to its first colon) a notebook no planned lesson claims.
    """
    labels = {lesson.stem or lesson.number: f"{lesson.number} · {lesson.title}" for lesson in planned}
    for lesson in course_lessons(planned, sorted(titles), {}):
        if lesson.notebook is None:
            continue
        stem = Path(lesson.notebook).stem
        if lesson.summary or lesson.title != stem:
            labels[stem] = f"{lesson.number} · {lesson.title}"
        else:  # not in lessons.yml: course_lessons named it after its file
            title = titles.get(lesson.notebook)
            labels[stem] = (title.split(":", 1)[0].strip() if title else "") or stem
    return labels


def prepare_book_source(notebooks_dir: Path, dest: Path, *, book_dir: Path = BOOK_DIR,
                        expected_dir: Path | None = None) -> Path:
    """Assemble a complete Jupyter Book source tree in ``dest`` (which must not exist).

    ``book_dir`` sources are copied, the lesson notebooks of ``notebooks_dir`` go to
    ``dest/notebooks/`` (prepared by :func:`prepare_notebook`), and ``_toc.yml``, the course map's
    lesson table and the instructor guide (from ``book_dir/instructor``, the notebooks' section
    timings and ``expected_dir``, by default ``expected/``) are generated.
    """
    import yaml

    from m6rec_lib import __version__, instructor

    dest = Path(dest)
    shutil.copytree(book_dir, dest, ignore=_SOURCE_IGNORE)
    notebooks = find_notebooks(notebooks_dir)
    present = {p.name for p in notebooks}
    titles: dict[str, str | None] = {}
    for nb_path in notebooks:
        titles[nb_path.name] = prepare_notebook(nb_path, dest / "notebooks" / nb_path.name, present, tree=dest)

    # Course map: planned lessons, linked when present; lessons outside the plan are appended.
    lessons = course_lessons(_load_lessons(dest), [p.name for p in notebooks], titles)
    course_map = dest / "course_map.md"
    if course_map.is_file():
        text = course_map.read_text(encoding="utf-8")
        course_map.write_text(text.replace(LESSON_TABLE_MARKER, lesson_table(lessons)), encoding="utf-8")

    # The instructor guide, when the book has one.
    guide = None
    if (dest / instructor.GUIDE_DIR).is_dir():
        labels = guide_labels(_load_lessons(dest), titles)
        guide = instructor.write_guide(dest, notebooks, labels=labels, expected_dir=expected_dir)

    # Values every page may use: {{ course_version }} and {{ copyright_year }}.
    config = yaml.safe_load((dest / "_config.yml").read_text(encoding="utf-8"))
    tokens = {"{{ course_version }}": __version__, "{{ copyright_year }}": str(config.get("copyright", ""))}
    for md in dest.rglob("*.md"):
        text = md.read_text(encoding="utf-8")
        new = text
        for key, value in tokens.items():
            new = new.replace(key, value)
        if new != text:
            md.write_text(new, encoding="utf-8")

    (dest / "_toc.yml").write_text(
        yaml.safe_dump(_toc([p.name for p in notebooks], guide), sort_keys=False), encoding="utf-8"
    )
    return dest


# --------------------------------------------------------------------------------------------
# Offline check
# --------------------------------------------------------------------------------------------

_EXTERNAL_RES_RE = [
    re.compile(r"<script\b[^>]*\bsrc=[\"'](?P<url>(?:https?:)?//[^\"']+)", re.I),
    re.compile(r"<link\b[^>]*\bhref=[\"'](?P<url>(?:https?:)?//[^\"']+)[^>]*>", re.I),
    re.compile(r"<(?:img|iframe|source|video|audio)\b[^>]*\bsrc=[\"'](?P<url>(?:https?:)?//[^\"']+)", re.I),
    re.compile(r"@import\s+(?:url\()?[\"']?(?P<url>(?:https?:)?//[^\"')\s]+)", re.I),
    re.compile(r"url\(\s*[\"']?(?P<url>(?:https?:)?//[^\"')\s]+)", re.I),
]
# <link> elements that do not load anything.
_INERT_LINK_RE = re.compile(r"\brel=[\"'](?:canonical|alternate|author|license|help|search)[\"']", re.I)


def find_external_resources(site_dir: Path) -> list[tuple[str, str]]:
    """``(file, url)`` for every script, style sheet, font or image a page loads from another host.

    Ordinary links (``<a href>``) to external pages are fine: they are not needed to show a page.
    """
    site_dir = Path(site_dir)
    found: list[tuple[str, str]] = []
    for path in sorted(site_dir.rglob("*")):
        if path.suffix not in {".html", ".css"} or not path.is_file():
            continue
        if "_static/mathjax" in path.as_posix():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for regex in _EXTERNAL_RES_RE:
            for m in regex.finditer(text):
                if m.group(0).lower().startswith("<link") and _INERT_LINK_RE.search(m.group(0)):
                    continue
                found.append((path.relative_to(site_dir).as_posix(), m.group("url")))
    return found


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _warning_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]


def _book_title(src: Path) -> str:
    import yaml

    config = yaml.safe_load((src / "_config.yml").read_text(encoding="utf-8")) or {}
    return str(config.get("title", "Course"))


def _write_landing_page(html_dir: Path, *, title: str, root: str = "intro.html") -> None:
    """Replace Jupyter Book's bare redirect ``index.html`` by one with a title, an icon and a link."""
    from html import escape

    icon = '<link rel="icon" href="_static/favicon.svg">' if (html_dir / "_static" / "favicon.svg").is_file() else ""
    (html_dir / "index.html").write_text(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n{icon}\n"
        f'<meta http-equiv="refresh" content="0; url={root}">\n</head>\n'
        f'<body>\n<p><a href="{root}">{escape(title)}</a></p>\n</body>\n</html>\n',
        encoding="utf-8",
    )


def _check_replaceable(out_dir: Path) -> None:
    """Only an empty folder or a site built before may be replaced (never, say, the repository)."""
    if out_dir.exists():
        if not out_dir.is_dir() or (not (out_dir / SITE_MARKER).is_file() and any(out_dir.iterdir())):
            raise BookBuildError(
                f"{out_dir} exists, is not empty and is not a course site built before (no "
                f"{SITE_MARKER} file in it); refusing to replace it. Choose another --out folder."
            )


def _swap_in(new_site: Path, out_dir: Path, trash: Path) -> None:
    """Replace ``out_dir`` by ``new_site`` with two renames (same file system)."""
    _check_replaceable(out_dir)
    if out_dir.exists():
        os.replace(out_dir, trash)
    os.replace(new_site, out_dir)


def build_book(notebooks_dir: Path, out_dir: Path | None = None, *, strict: bool = True,
               expected_dir: Path | None = None, book_dir: Path = BOOK_DIR) -> Path:
    """Build the HTML course site from executed notebooks; return the path of its ``index.html``.

    ``notebooks_dir`` holds executed lesson notebooks (``NN_name.ipynb``); the ones present are
    the ones published, in order. ``out_dir`` defaults to ``site/`` next to ``notebooks_dir``
    (``runs/full/notebooks`` -> ``runs/full/site``). The build starts from a fresh tree, never
    executes a notebook, and with ``strict`` (the default) fails on any Sphinx warning
    (``-W -n --keep-going``) and on any page that loads a resource from the network. The complete
    build log is written next to the site (``<out_dir>-build.log``). The old site is replaced only
    after the new one is complete. ``expected_dir`` holds the expected numbers the instructor guide
    shows (default: ``expected/``); ``book_dir`` the book's sources (default: ``book/``).
    """
    notebooks_dir = Path(notebooks_dir).resolve()
    out_dir = Path(out_dir).resolve() if out_dir is not None else notebooks_dir.parent / "site"
    find_notebooks(notebooks_dir)  # fail early with a clear message
    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = out_dir.with_name(out_dir.name + "-build.log")

    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-", dir=out_dir.parent))
    try:
        src = prepare_book_source(notebooks_dir, staging / "src", book_dir=book_dir, expected_dir=expected_dir)
        cmd = [
            sys.executable,
            "-c",
            "from jupyter_book.cli.main import main; main()",
            "build",
            str(src),
            "--path-output",
            str(staging / "out"),
            "--builder",
            "html",
            "--all",
            "-n",
        ]
        if strict:
            cmd += ["-W", "--keep-going"]
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONIOENCODING="utf-8")
        start = time.monotonic()
        try:
            proc = subprocess.run(
                cmd, cwd=staging, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise BookBuildError(f"the book build took longer than {BUILD_TIMEOUT_S} s") from exc
        elapsed = time.monotonic() - start
        output = _ANSI_RE.sub("", (proc.stdout or "") + (proc.stderr or ""))
        # Paths of the throw-away build tree say nothing to a reader of the log.
        output = output.replace(str(src) + os.sep, "").replace(str(staging), "<build>")
        atomic_write_text(log_path, output)
        warnings = _warning_lines(output)
        html = staging / "out" / "_build" / "html"
        if proc.returncode != 0 or not (html / "index.html").is_file():
            shown = "\n".join(warnings[:50]) or "\n".join(output.splitlines()[-40:])
            raise BookBuildError(
                f"the book build failed (exit code {proc.returncode}); full log: {log_path}\n{shown}"
            )
        external = find_external_resources(html)
        if external:
            listed = "\n".join(f"  {page}: {url}" for page, url in external[:20])
            message = f"pages load resources from the network, the site would not work offline:\n{listed}"
            if strict:
                raise BookBuildError(message)
            log.warning(message)
        if warnings:
            log.warning("the book built with %d warning(s); see %s", len(warnings), log_path)
        _write_landing_page(html, title=_book_title(src))
        (html / SITE_MARKER).write_text(
            "Built by m6rec_lib.book; this folder is replaced by the next build.\n", encoding="utf-8"
        )
        _swap_in(html, out_dir, staging / "previous-site")
        log.info("built the course site in %.0f s: %s", elapsed, out_dir / "index.html")
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    return out_dir / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m m6rec_lib.book",
        description="Build the course site (HTML) from executed notebooks, without executing them.",
    )
    parser.add_argument("--notebooks", type=Path, required=True, help="folder of executed NN_name.ipynb notebooks")
    parser.add_argument("--out", type=Path, default=None, help="site folder (default: site/ next to --notebooks)")
    parser.add_argument(
        "--no-strict", dest="strict", action="store_false", help="do not turn Sphinx warnings into errors"
    )
    parser.add_argument("--expected", type=Path, default=None,
                        help="folder of full.json/smoke.json for the instructor guide (default: expected/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        index = build_book(args.notebooks, args.out, strict=args.strict, expected_dir=args.expected)
    except (BookBuildError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
