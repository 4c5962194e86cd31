"""The course site: its build (``m6rec_lib.book``) and what a reader's browser shows.

The build is tested on a few tiny notebooks made and executed here (an equation, a plot, a
table, a progress-bar widget, links), not on the real course, so it takes seconds. When a smoke
run of the course exists (``runs/smoke/notebooks``), the site is also built from it and browsed.

The tiny course also has exercises with solutions (tagged ``solution``), links written for
JupyterLab (``../book/appendix/glossary.md``), and, in its own copy of ``book/``, instructor notes;
the expected numbers come from ``tests/fixtures/instructor/expected``.

The browser test opens every page in headless Chromium, served from 127.0.0.1 with every other
host unresolvable, and checks that equations are rendered, images load, internal links resolve,
search works, nothing is fetched from another host and the console shows no error; and that a
solution (or an instructor's answer) is hidden until its toggle is clicked, and shown after. It needs
Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package; without them it is
skipped, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from m6rec_lib import book
from m6rec_lib.config import BOOK_DIR, REPO_ROOT

SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "instructor"

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
    # The site must work offline: make every host but this machine unreachable.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

MATH_MARKDOWN = r"""# A tiny softmax lesson

The score of item $i$ for customer $u$ is $q(i, u)$; the model turns scores into probabilities:

$$
P(i \mid u) = \frac{\exp q(i, u)}{\sum_{j} \exp q(j, u)}
$$

As in Jupyter, display maths may also sit in a sentence: $$\log \sum_j e^{s_j} \ge \max_j s_j$$.

The next lessons: [the never-executed one](04_never_executed.ipynb) and
[one that is not in this build](05_next_item_generation.ipynb); the [glossary](../book/appendix/glossary.md)
as linked from JupyterLab, [a term in it](../book/appendix/glossary.md#no-such-term-anchor), the
[glossary page](../appendix/glossary.md) as linked in the site, and
[the contributing guide](../CONTRIBUTING.md), which the site does not publish.
"""

SOLUTION_PROSE = "SOLUTION-PROSE-MARKER: the probabilities of a softmax sum to one."
SOLUTION_OUTPUT = "SOLUTION-CODE-OUTPUT"


PLOT_CODE = """\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
%matplotlib inline
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4], marker="o")
ax.set_title("softmax probabilities")
plt.show()"""

TABLE_CODE = """\
import pandas as pd
pd.DataFrame({"item": ["REGENCY CAKESTAND 3 TIER", "PACK OF 12 PAPER NAPKINS"], "probability": [0.7, 0.3]})"""

NOT_EXECUTED_MARKER = "THE-BOOK-BUILD-EXECUTED-THIS-CELL"


def _new_notebook(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = cells
    return nb


def _write_tiny_course(folder: Path) -> Path:
    """Two lesson notebooks (one executed, one never executed) and a stray non-lesson file."""
    from nbclient import NotebookClient

    v4 = nbformat.v4
    markdown_solution = v4.new_markdown_cell(f"### Exercise 1\n\n{SOLUTION_PROSE}\n\n```python\n# not a heading\n```")
    markdown_solution.metadata["tags"] = ["solution"]
    code_solution = v4.new_code_cell("print('SOLUTION-CODE-' + 'OUTPUT')")
    code_solution.metadata["tags"] = ["solution", "hide-input"]
    lesson = _new_notebook(
        [
            v4.new_markdown_cell(MATH_MARKDOWN),
            v4.new_markdown_cell("## 1. A plot"),
            v4.new_code_cell(PLOT_CODE),
            v4.new_markdown_cell("## 2. A table"),
            v4.new_code_cell(TABLE_CODE),
            v4.new_markdown_cell("## Exercises\n\n1. Check that the probabilities sum to one."),
            v4.new_markdown_cell("## Solutions"),
            markdown_solution,
            code_solution,
        ]
    )
    NotebookClient(lesson, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    # What tqdm.auto leaves in an executed notebook: a widget view plus its text fallback.
    progress = v4.new_code_cell("for _ in tqdm(range(3)): pass")
    progress.outputs = [
        v4.new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "abc123", "version_major": 2, "version_minor": 0},
                "text/plain": "100%|##########| 3/3 [00:00<00:00, 1234.5it/s]",
            },
        ),
        # A widget with no text fallback, and the course's metrics record (m6rec_lib.recording).
        v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "def456"}}),
        v4.new_output(
            "display_data",
            data={"application/vnd.m6rec.metrics+json": {"metrics": {"x": 1}}, "text/plain": "[recorded 1 metric, smoke run]"},
        ),
    ]
    lesson.cells[5:5] = [v4.new_markdown_cell("## 3. Progress"), progress]
    lesson.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2, "version_minor": 0}}
    nbformat.write(lesson, folder / "02_tiny_softmax.ipynb")

    never = _new_notebook(
        [
            v4.new_markdown_cell("# Never executed\n\nThis lesson was not run; the build must not run it either."),
            v4.new_code_cell(f"print('{NOT_EXECUTED_MARKER}')\nraise RuntimeError('executed at build time')"),
        ]
    )
    nbformat.write(never, folder / "04_never_executed.ipynb")
    nbformat.write(_new_notebook([v4.new_markdown_cell("# Scratch")]), folder / "scratch.ipynb")
    return folder


@pytest.fixture(scope="module")
def tiny_notebooks(tmp_path_factory) -> Path:
    return _write_tiny_course(tmp_path_factory.mktemp("executed"))


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory) -> Path:
    """A copy of book/ with instructor notes for the tiny lesson."""
    folder = tmp_path_factory.mktemp("book-sources") / "book"
    shutil.copytree(BOOK_DIR, folder, ignore=shutil.ignore_patterns("_build", "__pycache__"))
    notes = folder / "instructor" / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "notes" / "02_tiny_softmax.md", notes / "02_tiny_softmax.md")
    return folder


@pytest.fixture(scope="module")
def tiny_site(tiny_notebooks, tiny_book, tmp_path_factory) -> Path:
    """The site built from the tiny notebooks; returns the site folder."""
    out = tmp_path_factory.mktemp("tiny") / "site"
    index = book.build_book(tiny_notebooks, out, book_dir=tiny_book, expected_dir=FIXTURES / "expected")
    assert index == out / "index.html"
    return out


@pytest.fixture(scope="module")
def smoke_site(smoke_course_run: Path) -> Path:
    """The site the main job built from its smoke-mode notebooks (see tests/conftest.py)."""
    site = smoke_course_run / "site"
    assert (site / "index.html").is_file()
    return site


# --------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------


def test_site_has_the_notebooks_present_and_only_those(tiny_site: Path):
    pages = sorted(p.name for p in (tiny_site / "notebooks").glob("*.html"))
    assert pages == ["02_tiny_softmax.html", "04_never_executed.html"]
    for page in ["intro.html", "course_map.html", "search.html"] + [
        f"appendix/{n}.html" for n in ("bring_your_own_data", "glossary", "references", "how_to_cite")
    ] + [f"instructor/{n}.html" for n in ("index", "tracks", "02_tiny_softmax", "04_never_executed")]:
        assert (tiny_site / page).is_file(), page
    assert not (tiny_site / "instructor" / "notes").exists()  # the notes' sources are not pages
    assert (tiny_site / book.SITE_MARKER).is_file()
    assert not list(tiny_site.rglob("scratch*"))


def test_course_map_links_present_lessons_and_lists_absent_ones(tiny_site: Path):
    html = (tiny_site / "course_map.html").read_text(encoding="utf-8")
    assert 'href="notebooks/02_tiny_softmax.html"' in html
    assert "A tiny softmax lesson" in html  # the notebook's own title
    assert "Contrastive learning *(not in this build)*" not in html  # markdown was rendered
    assert "Contrastive learning <em>(not in this build)</em>" in html
    assert "05_" not in html


def test_a_number_with_two_notebooks_links_each_planned_lesson():
    planned = [book.Lesson("05", "Next items", "models"), book.Lesson("05", "Published", "protocol", stem="05_published"),
               book.Lesson("06", "Contrastive", "InfoNCE")]
    names = ["05_published.ipynb", "05_next.ipynb", "05_unplanned.ipynb"]
    lessons = book.course_lessons(planned, names, {"05_next.ipynb": "05 · Next items, its own title"})
    rows = [(l.number, l.title, l.notebook) for l in lessons]
    assert rows == [("05", "05 · Next items, its own title", "05_next.ipynb"), ("05", "Published", "05_published.ipynb"),
                    ("05", "05_unplanned", "05_unplanned.ipynb"), ("06", "Contrastive", None)]
    # the named lesson is absent when its notebook is: it is not given another notebook of its number
    absent = book.course_lessons(planned[1:2], ["05_next.ipynb"], {})
    assert [(l.title, l.notebook) for l in absent] == [("Published", None), ("05_next", "05_next.ipynb")]


def test_links_to_absent_lessons_become_text(tiny_site: Path):
    html = (tiny_site / "notebooks" / "02_tiny_softmax.html").read_text(encoding="utf-8")
    assert "one that is not in this build" in html
    assert "05_next_item_generation" not in html
    assert 'href="04_never_executed.html"' in html


def test_notebooks_are_not_executed_by_the_build(tiny_site: Path):
    html = (tiny_site / "notebooks" / "04_never_executed.html").read_text(encoding="utf-8")
    assert NOT_EXECUTED_MARKER in html  # the source is shown ...
    assert "executed at build time</span>" not in html and "Traceback" not in html  # ... never run
    assert f"{NOT_EXECUTED_MARKER}\n</pre>" not in html


def test_outputs_a_static_page_cannot_show_fall_back_to_text(tiny_site: Path):
    html = (tiny_site / "notebooks" / "02_tiny_softmax.html").read_text(encoding="utf-8")
    assert "3/3 [00:00&lt;00:00" in html
    assert "[recorded 1 metric, smoke run]" in html and "m6rec.metrics" not in html
    assert "widget-view" not in html and "embed-amd" not in html and "require.min.js" not in html


def test_site_loads_nothing_from_the_network(tiny_site: Path):
    assert book.find_external_resources(tiny_site) == []
    assert (tiny_site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert list((tiny_site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    page = (tiny_site / "intro.html").read_text(encoding="utf-8")
    assert 'src="_static/mathjax/tex-chtml.js"' in page
    for word in ("thebe", "unpkg", "jsdelivr", "cdnjs", "googleapis", "binder"):
        assert word not in page.lower(), word


def test_find_external_resources_spots_cdn_scripts_styles_and_fonts(tmp_path: Path):
    (tmp_path / "a.html").write_text(
        '<script src="https://cdn.example.org/x.js"></script><link rel="stylesheet" href="//fonts.example.org/f.css">'
        '<link rel="canonical" href="https://example.org/a.html"><a href="https://example.org">fine</a>'
        '<script src="_static/local.js"></script>',
        encoding="utf-8",
    )
    (tmp_path / "b.css").write_text("@font-face { src: url(https://fonts.example.org/f.woff2); }", encoding="utf-8")
    found = sorted(url for _, url in book.find_external_resources(tmp_path))
    assert found == ["//fonts.example.org/f.css", "https://cdn.example.org/x.js", "https://fonts.example.org/f.woff2"]


def test_links_to_absent_lessons_become_text_and_others_are_kept(tmp_path: Path):
    from m6rec_lib.site_markdown import site_links

    text = "[a](05_x.ipynb) [b](02_y.ipynb#sec) [c](https://h.org/05_x.ipynb) [d](../notebooks/06_z.ipynb) ![img](07_w.ipynb)"
    assert site_links(text, repo_dir="notebooks", site_dir="notebooks", tree=tmp_path, lessons={"02_y.ipynb"}) == (
        "a [b](02_y.ipynb#sec) [c](https://h.org/05_x.ipynb) d ![img](07_w.ipynb)"
    )


def test_glossary_links_written_for_jupyterlab_work_in_the_site(tiny_site: Path):
    html = (tiny_site / "notebooks" / "02_tiny_softmax.html").read_text(encoding="utf-8")
    assert "../book/" not in html
    article = html[html.index("<article"):html.index("</article>")]
    assert article.count('href="../appendix/glossary.html"') == 3  # the missing anchor was dropped
    assert "the contributing guide" in html and "CONTRIBUTING" not in html  # not published: plain text


def test_solutions_are_folded_in_the_site(tiny_site: Path, tiny_notebooks: Path):
    html = (tiny_site / "notebooks" / "02_tiny_softmax.html").read_text(encoding="utf-8")
    # The markdown solution sits in a closed dropdown named after its exercise ...
    folded = re.search(r'<details class="[^"]*\bsolution\b[^"]*"(?P<attrs>[^>]*)>(?P<body>.*?)</details>', html, re.S)
    assert folded and "open" not in folded.group("attrs"), "the markdown solution is not folded"
    assert "SOLUTION-PROSE-MARKER" in folded.group("body") and "Solution: Exercise 1" in folded.group("body")
    # ... the code solution (source and output) in myst-nb's closed hide-cell toggle ...
    cell = re.search(r'<div class="cell tag_solution[^"]*"[^>]*>\s*<details class="admonition hide above-input"(?P<attrs>[^>]*)>'
                     r'(?P<body>.*?)</details>', html, re.S)
    assert cell and "open" not in cell.group("attrs"), "the code solution is not folded"
    assert "Show the solution" in cell.group("body") and SOLUTION_OUTPUT in cell.group("body")
    # ... and the "Solutions" heading stays in the page's contents.
    assert 'id="solutions"' in html
    # The notebook a learner opens is not changed.
    source = nbformat.read(tiny_notebooks / "02_tiny_softmax.ipynb", as_version=4)
    assert [c.metadata.get("tags") for c in source.cells if "solution" in c.metadata.get("tags", [])] == [
        ["solution"], ["solution", "hide-input"]]
    assert all(SOLUTION_PROSE in c.source for c in source.cells if c.cell_type == "markdown" and "solution" in c.metadata.get("tags", []))


def test_fold_markdown_solution_keeps_headings_out_of_the_fold():
    folded = book.fold_markdown_solution("## Solutions\n\n#### Exercise 2\n\nText\n\n### A sub-heading\n\n````md\n```\n````")
    assert folded.startswith("## Solutions\n")
    assert "`````{dropdown} Solution: Exercise 2\n:class-container: solution" in folded
    assert "**A sub-heading**" in folded and "### A sub-heading" not in folded
    assert book.fold_markdown_solution("## Solutions\n") == "## Solutions\n"  # a heading alone stays


def test_published_copies_carry_no_machine_paths(tmp_path: Path, tiny_notebooks: Path):
    nb = nbformat.read(tiny_notebooks / "02_tiny_softmax.ipynb", as_version=4)
    nb.metadata["papermill"] = {"input_path": "/home/someone/course/notebooks/x.ipynb", "output_path": "/tmp/y.ipynb",
                                "parameters": {"SMOKE": True}}
    src = tmp_path / "02_tiny_softmax.ipynb"
    nbformat.write(nb, src)
    book.prepare_notebook(src, tmp_path / "tree" / "notebooks" / src.name, {src.name})
    copy = nbformat.read(tmp_path / "tree" / "notebooks" / src.name, as_version=4)
    assert copy.metadata["papermill"] == {"parameters": {"SMOKE": True}}


def test_strict_build_fails_on_a_warning_and_keeps_the_previous_site(tiny_notebooks: Path, tmp_path: Path):
    out = tmp_path / "site"
    book.build_book(tiny_notebooks, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    broken = tmp_path / "broken"
    shutil.copytree(tiny_notebooks, broken)
    nb = _new_notebook([nbformat.v4.new_markdown_cell("# Broken\n\nSee [this page](no_such_page.md).")])
    nbformat.write(nb, broken / "03_broken_link.ipynb")
    with pytest.raises(book.BookBuildError, match="no_such_page"):
        book.build_book(broken, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # the old site is untouched
    assert "no_such_page" in (tmp_path / "site-build.log").read_text(encoding="utf-8")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.build-")]  # no leftovers

    # Not strict (the command line's --no-strict): the warning is reported, the site is built.
    assert book.main(["--notebooks", str(broken), "--out", str(out), "--no-strict"]) == 0
    assert (out / "notebooks" / "03_broken_link.html").is_file()


def test_refuses_to_replace_a_folder_that_is_not_a_site(tiny_notebooks: Path, tmp_path: Path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete", encoding="utf-8")
    with pytest.raises(book.BookBuildError, match="refusing to replace"):
        book.build_book(tiny_notebooks, precious)
    assert (precious / "thesis.tex").read_text(encoding="utf-8") == "do not delete"


def test_missing_notebook_folder_says_what_to_do(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="Run the course first"):
        book.build_book(tmp_path / "nope", tmp_path / "site")


def test_site_builds_from_the_smoke_run(smoke_course_run: Path, smoke_site: Path):
    expected = {p.stem for p in book.find_notebooks(smoke_course_run / "notebooks")}
    assert len(expected) == len(list((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    assert {p.stem for p in (smoke_site / "notebooks").glob("*.html")} == expected
    assert book.find_external_resources(smoke_site) == []


# --------------------------------------------------------------------------------------------
# The instructor guide
# --------------------------------------------------------------------------------------------


def _text(html: str) -> str:
    """A page's text without its tags, scripts and styles (enough to look for words)."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        parts: list[str] = []
        skip = 0

        def handle_starttag(self, tag, attrs):
            self.skip += tag in ("script", "style")

        def handle_endtag(self, tag):
            self.skip -= tag in ("script", "style")

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.parts = []
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_instructor_pages_list_notes_numbers_and_times(tiny_site: Path):
    html = (tiny_site / "instructor" / "02_tiny_softmax.html").read_text(encoding="utf-8")
    text = _text(html)
    assert "TALKING-POINT-MARKER" in text and "COMMON-ERROR-MARKER" in text
    assert 'href="../notebooks/02_tiny_softmax.html"' in html and 'href="../appendix/glossary.html"' in html
    # Times per section, measured from the executed notebook's cells.
    for section in ("1. A plot", "2. A table", "3. Progress", "Solutions"):
        assert section in text, section
    assert "Running every cell took" in text
    # Expected numbers: the full run's from the fixture, and a plain statement for the absent smoke file.
    assert "SASRec beats EASE" in text and "test_all_EASE_NDCG@10" in text and "[0.0568, 0.0666]" in text
    assert "expected/smoke.json does not exist yet" in text
    # Questions are shown, answers are folded.
    assert "Why subtract the largest score before exponentiating?" in text
    answers = re.findall(r'<details class="[^"]*\binstructor-answer\b[^"]*"([^>]*)>(.*?)</details>', html, re.S)
    assert len(answers) == 2 and not any("open" in attrs for attrs, _ in answers)
    assert "ANSWER-ONE-MARKER" in answers[0][1] and "ANSWER-TWO-MARKER" in answers[1][1]
    assert "## not a heading" in _text(answers[1][1])  # code inside an answer stays code


def test_instructor_pages_say_what_is_missing(tiny_site: Path):
    text = _text((tiny_site / "instructor" / "04_never_executed.html").read_text(encoding="utf-8"))
    assert "no cell timings" in text and "There are no notes for this lesson yet" in text
    assert "expected/full.json has no entry for this notebook" in text
    index = _text((tiny_site / "instructor" / "index.html").read_text(encoding="utf-8"))
    assert "02 · A tiny softmax lesson" in index or "02 · Softmax from first principles" in index


def test_tracks_page_shows_both_tracks_with_lessons_absent_from_this_build(tiny_site: Path):
    text = _text((tiny_site / "instructor" / "tracks.html").read_text(encoding="utf-8"))
    assert "90-minute workshop" in text and "One-day workshop" in text
    assert "(not in this build)" in text  # the real course's lessons are not in the tiny build
    assert "does not match the notebooks" not in text


def test_site_builds_from_the_smoke_run_with_folded_solutions_and_a_guide(smoke_course_run: Path, smoke_site: Path):
    for executed in book.find_notebooks(smoke_course_run / "notebooks"):
        nb = nbformat.read(executed, as_version=4)
        tagged = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
        html = (smoke_site / "notebooks" / f"{executed.stem}.html").read_text(encoding="utf-8")
        code = sum(1 for c in tagged if c.cell_type == "code")
        assert len(re.findall(r'<div class="cell [^"]*\btag_solution\b[^"]*\btag_hide-cell\b', html)) == code, executed.stem
        if any(c.cell_type == "markdown" and book.fold_markdown_solution(c.source) != c.source for c in tagged):
            assert re.search(r'<details class="[^"]*\bsolution\b', html), executed.stem
        page = (smoke_site / "instructor" / f"{executed.stem}.html").read_text(encoding="utf-8")
        assert "Running every cell took" in _text(page), executed.stem  # the run's own timings
    assert (smoke_site / "instructor" / "tracks.html").is_file()


# --------------------------------------------------------------------------------------------
# The browser
# --------------------------------------------------------------------------------------------


def _browser_or_skip():
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    missing = []
    if chromium is None:
        missing.append("chromium (apt-get install chromium)")
    if driver is None:
        missing.append("chromedriver (apt-get install chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -r requirements.txt)")
    if missing:
        reason = "the browser test needs " + ", ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI must install them")
        pytest.skip(reason)
    return chromium, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")  # Selenium Manager must not try to download anything
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a browser that drops a connection early is not a test failure


@contextlib.contextmanager
def _serve(folder: Path):
    server = _QuietServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# Waits for MathJax to finish typesetting and for every image to load, then reports the page.
_INSPECT_JS = r"""
const done = arguments[arguments.length - 1];
const start = Date.now();
const timeout = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function mathjaxReady() {
  if (!document.querySelector('span.math, div.math')) return 'no math';
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() - start > 30000) return 'MathJax did not start';
    await timeout(100);
  }
  await MathJax.startup.promise;
  return 'typeset';
}
async function imagesReady() {
  const images = [...document.images];
  images.forEach((img) => { img.loading = 'eager'; });
  await Promise.race([
    Promise.all(images.map((img) => img.decode().catch(() => null))),
    timeout(15000),
  ]);
}
function visibleProseText() {
  const skip = 'pre, code, script, style, textarea, mjx-container, .highlight';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const parts = [];
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!el || el.closest(skip)) continue;
    if (el.checkVisibility && !el.checkVisibility()) continue;
    parts.push(walker.currentNode.nodeValue);
  }
  return parts.join(' ');
}
(async () => {
  const mathjax = await mathjaxReady();
  await imagesReady();
  const maths = [...document.querySelectorAll('span.math, div.math')];
  done({
    url: location.href,
    mathjax: mathjax,
    mathElements: maths.length,
    unrendered: maths.filter((m) => !m.querySelector('mjx-container')).map((m) => m.textContent.slice(0, 80)),
    mjxErrors: document.querySelectorAll('mjx-merror').length,
    prose: visibleProseText(),
    images: [...document.images].map((i) => ({src: i.currentSrc || i.src, complete: i.complete, width: i.naturalWidth})),
    links: [...document.querySelectorAll('a[href]')].map((a) => a.href),
    resources: performance.getEntriesByType('resource').map((r) => r.name),
  });
})().catch((e) => done({error: String(e)}));
"""


def _site_pages(site: Path) -> list[str]:
    return sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if not p.relative_to(site).as_posix().startswith(("_static/", "_sources/"))
    )


def _open(driver, url: str, root: bool = False) -> None:
    """Load a page; the site's root ``index.html`` (``root=True``) redirects to the intro page, so follow it."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    if root:
        # the redirect may start before or after get() returns, and the address changes before the
        # new page has a body: wait for the intro page itself, loaded
        WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith("/intro.html") and d.execute_script(
            "return document.readyState === 'complete' && document.body !== null"))


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _check_link(site: Path, base: str, href: str, problems: list[str], page: str) -> None:
    if not href.startswith(base):
        assert not href.startswith(("http://127.0.0.1", "http://localhost")), href
        return
    parts = urlsplit(href)
    rel = unquote(parts.path)[len(urlsplit(base).path):]
    target = site / rel
    if rel == "" or rel.endswith("/"):
        target = target / "index.html"
    if not target.is_file():
        problems.append(f"{page}: link to a missing page {href}")
        return
    fragment = unquote(parts.fragment)
    if fragment and target.suffix == ".html":
        html = target.read_text(encoding="utf-8", errors="replace")
        if not re.search(r"""\b(?:id|name)=["']%s["']""" % re.escape(fragment), html):
            problems.append(f"{page}: link to a missing anchor {href}")


def _browse_site(driver, site: Path, label: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = _site_pages(site)
    assert "intro.html" in pages and "search.html" in pages
    notebook_pages = [p for p in pages if p.startswith("notebooks/")]
    shots = {"intro.html", "course_map.html", "appendix/glossary.html"} | set(notebook_pages[:2])
    problems: list[str] = []
    math_pages = 0
    with _serve(site) as base:
        for page in pages:
            _open(driver, base + page, root=page == "index.html")
            report = driver.execute_async_script(_INSPECT_JS)
            assert "error" not in report, (page, report)
            if report["mathElements"]:
                math_pages += 1
                if report["mathjax"] != "typeset" or report["unrendered"] or report["mjxErrors"]:
                    problems.append(f"{page}: equations not rendered: {report['mathjax']} {report['unrendered'][:3]}")
            for raw in ("$$", "\\(", "\\[", "\\begin{"):
                if raw in report["prose"]:
                    problems.append(f"{page}: raw maths {raw!r} in the visible text")
            for image in report["images"]:
                if not image["complete"] or image["width"] == 0:
                    problems.append(f"{page}: image not loaded: {image['src']}")
            for href in set(report["links"]):
                _check_link(site, base, href, problems, page)
            for url in report["resources"]:
                if not url.startswith((base, "data:", "blob:")):
                    problems.append(f"{page}: loads {url} from another host")
            problems += [f"{page}: console error: {m}" for m in _console_errors(driver)]
            if page in shots:
                driver.save_screenshot(str(SCREENSHOTS / f"{label}-{page.replace('/', '-')[:-5]}.png"))

        # Search works offline: a word from a lesson, a word from the appendix.
        from selenium.webdriver.support.ui import WebDriverWait

        for word, expected_page in [("softmax", None), ("MovieLens", "appendix/bring_your_own_data.html")]:
            driver.get(f"{base}search.html?q={word}")
            WebDriverWait(driver, 30).until(
                lambda d: d.execute_script("return document.querySelectorAll('#search-results ul.search li').length") > 0
            )
            hits = driver.execute_script(
                "return [...document.querySelectorAll('#search-results ul.search li a')].map(a => a.href)"
            )
            assert hits, f"searching {word!r} found nothing"
            if expected_page:
                assert any(h.split("?")[0].split("#")[0] == base + expected_page for h in hits), (word, hits)
            problems += [f"search {word}: console error: {m}" for m in _console_errors(driver)]
            if word == "softmax":
                driver.save_screenshot(str(SCREENSHOTS / f"{label}-search.png"))
    assert math_pages >= 1, "no page with equations was found"
    assert not problems, "\n".join(problems)


def test_browser_every_page_of_the_tiny_site(browser, tiny_site: Path):
    _browse_site(browser, tiny_site, "tiny")
    # The lesson really shows its equations, plot and table.
    with _serve(tiny_site) as base:
        browser.get(base + "notebooks/02_tiny_softmax.html")
        report = browser.execute_async_script(_INSPECT_JS)
    assert report["mathElements"] >= 4 and not report["unrendered"]
    assert any(i["width"] > 100 for i in report["images"]), report["images"]
    assert "REGENCY CAKESTAND 3 TIER" in browser.find_element("css selector", "table").text


_VISIBLE_JS = r"""
const marker = arguments[0];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const el = walker.currentNode.parentElement;
  if (walker.currentNode.nodeValue.includes(marker) && el) {
    return el.checkVisibility() && el.getBoundingClientRect().height > 0;
  }
}
return null;
"""


def _toggle_of(driver, marker: str):
    """The clickable summary of the folded block that holds ``marker``."""
    return driver.execute_script(
        """const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        while (walker.nextNode()) {
          if (walker.currentNode.nodeValue.includes(arguments[0])) {
            return walker.currentNode.parentElement.closest('details').querySelector('summary');
          }
        }
        return null;""", marker)


def _check_hidden_until_clicked(driver, marker: str) -> None:
    assert driver.execute_script(_VISIBLE_JS, marker) is False, f"{marker} is visible before its toggle is clicked"
    toggle = _toggle_of(driver, marker)
    assert toggle is not None, f"{marker} is not in a folded block"
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", toggle)
    toggle.click()
    assert driver.execute_script(_VISIBLE_JS, marker) is True, f"{marker} is not visible after a click"


def test_browser_solutions_and_answers_are_hidden_until_clicked(browser, tiny_site: Path):
    with _serve(tiny_site) as base:
        browser.get(base + "notebooks/02_tiny_softmax.html")
        _check_hidden_until_clicked(browser, "SOLUTION-PROSE-MARKER")
        _check_hidden_until_clicked(browser, SOLUTION_OUTPUT)
        browser.save_screenshot(str(SCREENSHOTS / "tiny-solutions-open.png"))
        browser.get(base + "instructor/02_tiny_softmax.html")
        assert browser.execute_script(_VISIBLE_JS, "TALKING-POINT-MARKER") is True
        _check_hidden_until_clicked(browser, "ANSWER-ONE-MARKER")
        assert browser.execute_script(_VISIBLE_JS, "ANSWER-TWO-MARKER") is False  # one answer at a time
        assert _console_errors(browser) == []


def test_browser_opens_the_site_from_a_file(browser, tiny_site: Path):
    """A learner may double-click index.html: pages and equations work without a server too."""
    _open(browser, (tiny_site / "index.html").as_uri(), root=True)
    report = browser.execute_async_script(_INSPECT_JS)
    assert "error" not in report, report
    assert report["url"].endswith("/intro.html")
    browser.get((tiny_site / "notebooks" / "02_tiny_softmax.html").as_uri())
    report = browser.execute_async_script(_INSPECT_JS)
    assert report["mathjax"] == "typeset" and not report["unrendered"]
    assert all(i["complete"] and i["width"] > 0 for i in report["images"])
    assert _console_errors(browser) == []


def test_browser_every_page_of_the_smoke_site(browser, smoke_site: Path):
    _browse_site(browser, smoke_site, "smoke")
