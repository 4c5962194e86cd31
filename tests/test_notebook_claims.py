"""The course's rules for claims, checked on every notebook (see tests/notebook_checks.py).

1. No ``assert`` compares two measured metrics (or a measured difference with a constant) without
   the comparison's interval: such claims go through ``PairedDifference.require``.
2. A number with three or more decimals in a markdown cell is either annotated with the recorded
   metric it quotes (``0.0617<!--m:test_new_SASRec_NDCG@10-->``), and then equals that metric's
   expected full-run value (``expected/full.json``) at the precision shown, or it is a published
   number (``m6rec_lib.published``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from m6rec_lib.config import NOTEBOOKS_DIR
from m6rec_lib.published import published_values

from notebook_checks import comparison_asserts, expected_value, quoted_numbers

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
PUBLISHED = {round(v, 6) for v in published_values()}


def _write(tmp_path: Path, cells: list[tuple[str, str]]) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    path = tmp_path / "99_probe.ipynb"
    nbformat.write(nb, path)
    return path


def test_the_comparison_rule_catches_bare_claims_and_spares_checks(tmp_path):
    path = _write(tmp_path, [("code", "\n".join([
        'assert table.loc["SASRec", "NDCG@10"] > table.loc["EASE", "NDCG@10"]',   # a bare claim
        'assert margin["iALS"] > 0.002',                                          # a thin margin
        'assert latency["late"].p50_ms < latency["full"].p50_ms',                 # wall clock
        'assert abs(mine - theirs) < 1e-9',                                       # a numerical check
        'assert gaps["hand vs finite differences"] < 1e-6',                       # a tolerance
        'assert lat.p50_ms <= lat.p95_ms  # invariant',                           # true by construction
        'assert auc(y, constant) == 0.5',                                         # an identity
        'diff.require("a", enforce=not SMOKE)',                                   # the right way
    ]))])
    found = [f.line for f in comparison_asserts(path)]
    assert found == ['assert table.loc["SASRec", "NDCG@10"] > table.loc["EASE", "NDCG@10"]',
                     'assert margin["iALS"] > 0.002',
                     'assert latency["late"].p50_ms < latency["full"].p50_ms']


def test_the_number_rule_reads_annotations(tmp_path):
    path = _write(tmp_path, [("md", "SASRec reaches 0.0617<!--m:ndcg--> against VQ-Rec's 0.0730; "
                                    "`0.12345` in code and $0.925$ in math are left alone; "
                                    "the paper id 2205.08084 is not a number; 0.1234 is typed in.")])
    quoted = quoted_numbers(path)
    assert [(q.value, q.name) for q in quoted] == [(0.0617, "ndcg"), (0.0730, None), (0.1234, None)]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_comparison_is_asserted_without_its_interval(notebook):
    found = comparison_asserts(notebook)
    assert not found, (
        "comparisons asserted without an interval (use m6rec_lib.metrics.paired_bootstrap(...)"
        ".require(...), or mark a check that is true by construction with '# invariant'):\n"
        + "\n".join(map(str, found)))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_numbers_in_the_text_are_computed_or_published(notebook):
    from m6rec_lib.expected import load_expected

    quoted = quoted_numbers(notebook)
    typed = [q for q in quoted if q.name is None and round(q.value, 6) not in PUBLISHED]
    assert not typed, (
        "numbers typed into the text: annotate each with the recorded metric it quotes "
        "(<!--m:NAME-->), print it from the code instead, or add a published number to "
        "m6rec_lib.published:\n" + "\n".join(f"cell {q.cell}: {q.text}" for q in typed))
    annotated = [q for q in quoted if q.name is not None]
    if not annotated:
        return
    record = load_expected("full")["notebooks"].get(notebook.stem)
    assert record is not None, f"expected/full.json has no record of {notebook.stem}; accept a full run"
    wrong = []
    for q in annotated:
        try:
            value = expected_value(record, q.name)
        except KeyError:
            wrong.append(f"cell {q.cell}: {q.text}: no recorded metric {q.name!r}")
            continue
        if isinstance(value, str) or abs(float(value) - q.value) > 0.5 * 10 ** -q.decimals + 1e-12:
            wrong.append(f"cell {q.cell}: the text says {q.value}, the full run recorded {value}")
    assert not wrong, "the text contradicts the recorded metrics:\n" + "\n".join(wrong)
