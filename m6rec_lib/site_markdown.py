"""MyST markdown for the course site: folded blocks, tables, notes.

The site's generated pages (the instructor guide, the course map's table) and the notebooks'
build copies are written in MyST markdown, the dialect Jupyter Book reads. This module writes the
few constructs they need so that any text, whatever it contains (code fences, pipes, dollar signs,
headings), comes out as intended:

- :func:`fold`: a block folded away until the reader clicks its title (a sphinx-design
  ``dropdown``, an HTML ``<details>`` element: no JavaScript needed, so it works offline);
- :func:`table`: a markdown table whose cells are escaped;
- :func:`admonition`: a note, tip or warning box;
- :func:`site_links`: links written for the repository (where JupyterLab opens them) rewritten
  for the site.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Collection, Iterable, Sequence

_HEADING_RE = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.*?)\s*#*\s*$")
_FENCE_RE = re.compile(r"^\s*(?P<marker>`{3,}|~{3,}|:{3,})")
_MD_SPECIAL_RE = re.compile(r"([\\`*_\[\]<>$|])")


def _fence_runs(text: str, char: str) -> int:
    """The longest run of ``char`` that opens a line of ``text`` (a fence inside it)."""
    runs = [len(m.group(1)) for m in re.finditer(rf"(?m)^[ \t]*({re.escape(char)}+)", text)]
    return max(runs, default=0)


def demote_headings(text: str) -> str:
    """Turn markdown headings into bold paragraphs (a heading may not stand inside a folded block).

    Lines inside code fences are left alone.
    """
    out, fence = [], None
    for line in text.splitlines():
        m = _FENCE_RE.match(line)
        if m:
            marker = m.group("marker")
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            out.append(line)
            continue
        h = _HEADING_RE.match(line) if fence is None else None
        out.append(f"**{h.group('text')}**" if h and h.group("text") else line)
    return "\n".join(out)


def fold(body: str, title: str, *, css_class: str = "", opened: bool = False) -> str:
    """``body`` folded away under a clickable ``title`` (closed unless ``opened``).

    The directive's fence is longer than any fence inside ``body``, and headings inside ``body``
    become bold paragraphs, so any markdown can be folded.
    """
    body = demote_headings(body.strip("\n"))
    fence = "`" * max(3, _fence_runs(body, "`") + 1)
    title = " ".join(title.split()) or "Details"
    options = [f":class-container: {css_class}"] if css_class else []
    if opened:
        options.append(":open:")
    return "\n".join([f"{fence}{{dropdown}} {title}", *options, "", body, fence]) + "\n"


def admonition(kind: str, body: str, title: str | None = None) -> str:
    """A ``note``/``tip``/``warning``/``important`` box (``admonition`` when a title is given)."""
    fence = "`" * max(3, _fence_runs(body, "`") + 1)
    head = f"{fence}{{admonition}} {title}\n:class: {kind}" if title else f"{fence}{{{kind}}}"
    return f"{head}\n{body.strip()}\n{fence}\n"


def cell(value) -> str:
    """One table cell: text with markdown's special characters escaped, on one line."""
    return _MD_SPECIAL_RE.sub(r"\\\1", " ".join(str(value).split()))


def table(headers: Sequence[str], rows: Iterable[Sequence], *, raw_columns: Sequence[int] = ()) -> str:
    """A markdown table; cells are escaped with :func:`cell` except the ``raw_columns`` (already
    markdown, e.g. a link), which only have their pipes escaped."""

    def show(i: int, value) -> str:
        if i in raw_columns:
            return " ".join(str(value).split()).replace("|", "\\|")
        return cell(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(show(i, v) for i, v in enumerate(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Links: written for the repository (JupyterLab, an editor), rewritten for the site
# --------------------------------------------------------------------------------------------

_LINK_RE = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")
_LESSON_RE = re.compile(r"^\d{2}_[\w\-]+\.ipynb$")
_ANCHOR_SOURCES = (
    re.compile(r"^\((?P<a>[^)\s]+)\)=\s*$", re.MULTILINE),  # (label)=
    re.compile(r"""\b(?:id|name)=["'](?P<a>[^"']+)["']"""),  # <a id="...">
)


def heading_slug(heading: str) -> str:
    """The anchor MyST gives a heading (``myst_heading_anchors``)."""
    return re.sub(r"[^\w\u4e00-\u9fff\- ]", "", heading.strip().lower().replace(" ", "-"))


def page_anchors(page: Path) -> set[str]:
    """The anchors a markdown page defines: labels, HTML ids, headings of levels 1-3."""
    text = page.read_text(encoding="utf-8", errors="replace")
    found = {m.group("a") for regex in _ANCHOR_SOURCES for m in regex.finditer(text)}
    found |= {heading_slug(h.group(1)) for h in re.finditer(r"^#{1,3}\s+(.*?)\s*#*\s*$", text, re.MULTILINE)}
    return found


def site_links(text: str, *, repo_dir: str, site_dir: str, tree: Path, lessons: Collection[str] | None = None,
               repo_root: Path | None = None) -> str:
    """Rewrite the relative links of a page for the site.

    ``repo_dir``: the page's folder in the repository (``notebooks``, ``book/instructor/notes``);
    ``site_dir``: its folder in the site's source ``tree`` (``notebooks``, ``instructor``);
    ``lessons``: file names of the lesson notebooks in this build (default: those in
    ``tree/notebooks``).

    - a link to a lesson notebook points to it when it is in the build, else becomes plain text;
    - a link that already works in the site is kept;
    - a link to a page of ``book/`` (``../book/appendix/glossary.md`` from a notebook: the path
      that works in JupyterLab) points to that page in the site;
    - a link to another file of the repository, which the site does not publish, becomes text;
    - anything else is kept, for the strict build to report.

    An anchor into a markdown page that has no such anchor is dropped (the link opens the page).
    External links, in-page anchors and images are never touched.
    """
    from m6rec_lib.config import REPO_ROOT

    repo_root = Path(repo_root or REPO_ROOT)
    tree = Path(tree)
    if lessons is None:
        lessons = {p.name for p in (tree / "notebooks").glob("*.ipynb")}

    def in_tree(rel: str) -> bool:
        return rel != "." and not rel.startswith("../") and (tree / rel).is_file()

    def repl(m: re.Match) -> str:
        whole, label, target = m.group(0), m.group("text"), m.group("target")
        if re.match(r"^[a-zA-Z][\w+.\-]*:", target) or target.startswith(("#", "/")):
            return whole  # https:, mailto:, attachment:, an anchor on this page, a site-absolute path
        path, _, anchor = target.partition("#")
        in_site = posixpath.normpath(posixpath.join(site_dir, path))
        in_repo = posixpath.normpath(posixpath.join(repo_dir, path))
        name = posixpath.basename(path)
        if _LESSON_RE.match(name):
            if name not in lessons:
                return label
            new = f"notebooks/{name}"
        elif in_tree(in_site):
            new = in_site
        elif in_repo.startswith("book/") and in_tree(in_repo[len("book/"):]):
            new = in_repo[len("book/"):]
        elif not in_repo.startswith("../") and (repo_root / in_repo).exists():
            return label
        else:
            return whole
        if anchor and new.endswith(".md") and anchor not in page_anchors(tree / new):
            anchor = ""
        rel = posixpath.relpath(new, site_dir)
        return f"[{label}]({rel}{'#' + anchor if anchor else ''})"

    return _LINK_RE.sub(repl, text)
