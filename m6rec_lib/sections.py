"""A lesson notebook's ``## `` sections, and how long each one took to run.

A lesson is cut into sections by its level-2 headings (``## 1. The data``, ``## Deep dive
(optional): ...``, ``## Summary``); the cells before the first one (title, parameters, imports) form
a section of their own, the *set-up*. An executed notebook knows how long every cell ran: papermill
stores it in each cell's metadata (``metadata.papermill.duration``), and a notebook executed by
nbclient alone keeps the start and end times (``metadata.execution``). Adding them up per section
gives what an instructor needs to plan a workshop::

    from m6rec_lib.sections import notebook_sections
    for s in notebook_sections("runs/full/notebooks/05_next_item_generation.ipynb"):
        print(f"{s.seconds:6.1f} s  {s.title}  ({s.kind})")

The course runner writes these numbers into ``summary.json``; the instructor guide of the site
(:mod:`m6rec_lib.instructor`) shows them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

SETUP_TITLE = "Set-up (title, parameters, imports)"
"""The name given to the cells before the first ``## `` heading."""

DEEP_DIVE_RE = re.compile(r"^deep dive\b", re.IGNORECASE)
NUMBERED_RE = re.compile(r"^(?P<number>\d+)\.\s+")
HEADING_RE = re.compile(r"^##\s+(?P<title>\S.*?)\s*#*\s*$")
_FENCE_RE = re.compile(r"^\s*(`{3,}|~{3,})")

KINDS = ("setup", "numbered", "deep_dive", "summary", "exercises", "solutions", "other")


@dataclass(frozen=True)
class Section:
    """One ``## `` section of a notebook.

    ``title``: the heading without ``## ``; ``number``: ``"3"`` for ``## 3. ...``, else ``None``;
    ``kind``: one of :data:`KINDS`; ``seconds``: the summed run time of its code cells (0 when
    the notebook was not executed); ``cells``: how many cells it holds (its heading's cell
    included); ``optional``: a deep dive a workshop may skip.
    """

    title: str
    number: str | None
    kind: str
    seconds: float
    cells: int

    @property
    def optional(self) -> bool:
        return self.kind == "deep_dive"

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 1), "optional": self.optional}


def section_kind(title: str) -> str:
    """Classify a heading's text (without ``## ``): numbered, deep dive, summary, ..."""
    if NUMBERED_RE.match(title):
        return "numbered"
    if DEEP_DIVE_RE.match(title):
        return "deep_dive"
    word = title.strip().lower().rstrip(".:")
    for kind in ("summary", "exercises", "solutions"):
        if word == kind or word.startswith(kind + " "):
            return kind
    return "other"


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def cell_seconds(cell) -> float:
    """How long a code cell ran, from papermill's record or nbclient's timestamps (0 if unknown)."""
    meta = cell.get("metadata", {})
    duration = (meta.get("papermill") or {}).get("duration")
    if isinstance(duration, (int, float)) and duration >= 0:
        return float(duration)
    execution = meta.get("execution") or {}
    start = _parse_time(execution.get("iopub.execute_input") or execution.get("iopub.status.busy") or "")
    end = _parse_time(execution.get("shell.execute_reply") or execution.get("iopub.status.idle") or "")
    if start is not None and end is not None and end >= start:
        return (end - start).total_seconds()
    return 0.0


def headings(markdown: str) -> list[str]:
    """The ``## `` headings of a markdown cell, in order (lines inside code fences are not headings)."""
    found, fence = [], None
    for line in markdown.splitlines():
        m = _FENCE_RE.match(line)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence) and not line.strip()[len(marker):].strip():
                fence = None
            continue
        if fence is None:
            h = HEADING_RE.match(line)
            if h:
                found.append(h.group("title"))
    return found


def notebook_sections(notebook) -> list[Section]:
    """The sections of a notebook (a path or an ``nbformat`` node), in order, with their run time.

    A markdown cell with several ``## `` headings opens several sections; the cells after it belong
    to the last one, the others are empty (0 cells of their own but the heading).
    """
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook
    sections: list[dict] = [dict(title=SETUP_TITLE, number=None, kind="setup", seconds=0.0, cells=0)]
    for cell in nb.cells:
        titles = headings(cell.source) if cell.cell_type == "markdown" else []
        for title in titles:
            m = NUMBERED_RE.match(title)
            sections.append(dict(title=title, number=m.group("number") if m else None,
                                 kind=section_kind(title), seconds=0.0, cells=0))
        sections[-1]["cells"] += 1
        if cell.cell_type == "code":
            sections[-1]["seconds"] += cell_seconds(cell)
    if sections[0]["cells"] == 0:
        sections.pop(0)
    return [Section(**s) for s in sections]


def notebook_mode(notebook) -> str | None:
    """``"smoke"`` or ``"full"`` for a notebook the course runner executed (its ``SMOKE``
    parameter), ``None`` when that is not recorded."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook
    params = (nb.metadata.get("papermill") or {}).get("parameters") or {}
    if "SMOKE" not in params or params["SMOKE"] is None:
        return None
    return "smoke" if params["SMOKE"] else "full"
