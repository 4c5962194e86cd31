"""The shape every lesson notebook keeps (CONTRIBUTING.md, "Notebooks"): checked statically.

- prose carries the lesson: markdown characters outweigh code characters (solution cells, which the
  site folds away, are not counted);
- at least one diagram drawn by ``m6rec_lib.diagrams``;
- notebooks 05, 06 and 10 keep at most four objectives;
- every cell after the "Solutions" heading (but the closing record_metrics cell) is tagged
  ``solution``, so that the site hides it and student copies leave it out;
- the last cell records the notebook's metrics.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from m6rec_lib.config import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
FEW_OBJECTIVES = ("05_next_item_generation", "06_contrastive_learning", "10_efficient_serving")
DIAGRAM_RE = re.compile(r"\bdiagrams\.\w+\.\w+\(|from m6rec_lib\.diagrams(\.\w+)? import|\bdiagrams\.\w+\(")


def _cells(path):
    return nbformat.read(path, as_version=4).cells


def _is_solution(cell) -> bool:
    return "solution" in cell.get("metadata", {}).get("tags", [])


def shape(path) -> dict:
    cells = _cells(path)
    md = sum(len(c.source) for c in cells if c.cell_type == "markdown" and not _is_solution(c))
    code = sum(len(c.source) for c in cells if c.cell_type == "code" and not _is_solution(c))
    return {"markdown": md, "code": code}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_prose_outweighs_code(notebook):
    s = shape(notebook)
    assert s["markdown"] > s["code"], (
        f"{notebook.stem}: {s['markdown']:,} characters of markdown against {s['code']:,} of code; "
        "move plumbing (plots, tables) into the library and explain more")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_draws_a_diagram(notebook):
    code = "\n".join(c.source for c in _cells(notebook) if c.cell_type == "code")
    assert DIAGRAM_RE.search(code), f"{notebook.stem} draws no diagram from m6rec_lib.diagrams"


@pytest.mark.parametrize("notebook", [p for p in NOTEBOOKS if p.stem in FEW_OBJECTIVES], ids=lambda p: p.stem)
def test_core_lessons_keep_at_most_four_objectives(notebook):
    first = _cells(notebook)[0].source
    block = first[first.index("**Objectives.**"):].split("**Prerequisites")[0]
    n = len(re.findall(r"^\d+\.\s", block, flags=re.MULTILINE))
    assert 1 <= n <= 4, f"{notebook.stem} lists {n} objectives; keep at most four"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_solutions_are_tagged(notebook):
    cells = _cells(notebook)
    heads = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and re.match(r"#+\s*Solutions\b", c.source)]
    assert heads, f"{notebook.stem} has no 'Solutions' heading"
    assert "record_metrics(" in cells[-1].source, f"{notebook.stem}: the last cell must record the metrics"
    untagged = [i for i in range(heads[0] + 1, len(cells) - 1) if not _is_solution(cells[i])]
    assert not untagged, f"{notebook.stem}: cells {untagged} follow 'Solutions' but are not tagged 'solution'"
