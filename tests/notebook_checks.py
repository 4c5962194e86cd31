"""Static checks of the notebooks' claims: what the tests in test_notebook_claims.py enforce.

Two rules of the course (CONTRIBUTING.md, "Claims"):

1. **A comparison is asserted with its interval.** An ``assert`` that compares two measured
   numbers that look like metrics (NDCG, recall, AUC, perplexity, latency, ...) or a measured
   difference against a constant is a claim "A beats B"; it must go through
   ``PairedDifference.require(...)`` instead, which checks the 95% interval. An ``assert`` that
   is true by construction (a grid contains its own best point, p50 <= p95) says so with a
   trailing ``# invariant`` comment.
2. **A number in the text is a computed or a published one.** A decimal number with three or more
   decimals in a markdown cell is either followed by ``<!--m:NAME-->`` (``NAME``: a metric the
   notebook records, or ``KEY:diff|low|high|a|b`` of a recorded comparison), whose expected
   full-run value it must equal at the precision shown, or it is a published number of
   :mod:`m6rec_lib.published`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

METRIC_WORDS = re.compile(
    r"(ndcg|recall|hr@|hr_|hit|mrr|auc|bleu|rouge|distinct-\d|distinct_\d|coverage|perplex|ppl|accuracy|"
    r"r@\d|_r\d+|@\d+|metric\(|margin|gain|change|diff|delta|lift|speedup|faster|latency|p50|p95|"
    r"_ms\b|seconds|timing)", re.IGNORECASE)
"""Words that make an operand look like a measured metric. (A training loss that falls is a sanity
check of one model, not a comparison of two, so "loss" is not one of them.)"""
DIFFERENCE_WORDS = re.compile(r"(margin|gain|change|diff|delta|lift|speedup|faster|x smaller|x faster)",
                              re.IGNORECASE)
INVARIANT = "# invariant"


@dataclass(frozen=True)
class Finding:
    notebook: str
    cell: int
    line: str

    def __str__(self) -> str:
        return f"{self.notebook} cell {self.cell}: {self.line.strip()}"


def code_cells(path: Path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            yield i, cell.source


def _python(source: str) -> str:
    """The cell without IPython magics and shell escapes (they are not Python)."""
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines())


def _is_tolerance(node: ast.AST) -> bool:
    """A tiny non-zero constant such as 1e-6: the tolerance of a numerical check, not a claim."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return False
    return isinstance(value, (int, float)) and 0 < abs(value) <= 1e-3


def _is_constant(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float))
    if isinstance(node, ast.UnaryOp):
        return _is_constant(node.operand)
    if isinstance(node, ast.BinOp):
        return _is_constant(node.left) and _is_constant(node.right)
    return False


def comparison_asserts(path: Path) -> list[Finding]:
    """Rule 1: every ``assert`` comparing measured metric-like numbers without ``# invariant``."""
    found = []
    for index, source in code_cells(path):
        code = _python(source)
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        lines = code.splitlines()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assert):
                continue
            text = "\n".join(lines[node.lineno - 1:node.end_lineno])
            if INVARIANT in text:
                continue
            for cmp in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
                if not any(isinstance(op, (ast.Lt, ast.Gt, ast.LtE, ast.GtE)) for op in cmp.ops):
                    continue
                operands = [cmp.left, *cmp.comparators]
                segments = [ast.get_source_segment(code, o) or "" for o in operands]
                for (x, sx), (y, sy) in zip(zip(operands, segments), zip(operands[1:], segments[1:])):
                    measured = [not _is_constant(o) for o in (x, y)]
                    metric_like = [bool(METRIC_WORDS.search(s)) for s in (sx, sy)]
                    both_measured = all(measured) and any(metric_like)
                    difference_vs_constant = (not all(measured)) and not any(map(_is_tolerance, (x, y))) and any(
                        m and DIFFERENCE_WORDS.search(s) for m, s in zip(measured, (sx, sy)))
                    if both_measured or difference_vs_constant:
                        found.append(Finding(path.stem, index, text))
                        break
                else:
                    continue
                break
    return found


NUMBER_RE = re.compile(r"(?<![\w.$\\])([+\-−]?\d?\.\d{3,})(?![\d])(\s*<!--\s*m:(?P<name>[^>]+?)\s*-->)?")
CODE_SPAN_RE = re.compile(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$", re.DOTALL)
"""Code and math are left out: a derivation's numbers are not measurements."""


@dataclass(frozen=True)
class Quoted:
    notebook: str
    cell: int
    text: str
    value: float
    decimals: int
    name: str | None


def quoted_numbers(path: Path) -> list[Quoted]:
    """Rule 2's inputs: every decimal with 3+ decimals in markdown (code spans left out)."""
    nb = nbformat.read(path, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        text = CODE_SPAN_RE.sub(" ", cell.source)
        for m in NUMBER_RE.finditer(text):
            raw = m.group(1).replace("−", "-")
            decimals = len(raw.split(".")[1])
            found.append(Quoted(path.stem, i, m.group(0).strip(), float(raw), decimals,
                                m.group("name").strip() if m.group("name") else None))
    return found


def expected_value(record: dict, name: str):
    """The expected full-run value of ``name`` in a notebook's record (metric or ``KEY:field``)."""
    if name in record.get("metrics", {}):
        return record["metrics"][name]["value"]
    if ":" in name:
        key, field = name.rsplit(":", 1)
        c = record.get("comparisons", {}).get(key.strip())
        if c is not None and field in c:
            return c[field]
    raise KeyError(name)
