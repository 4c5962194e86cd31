"""Student copies of the notebooks: the exercises without their solutions.

For a workshop, learners get notebooks in which the solutions are not one scroll away::

    python -m m6rec_lib.student_copies --out student/
    python -m m6rec_lib.student_copies --out student/ --only 01 05

Every lesson notebook of ``notebooks/`` (or ``--notebooks``) is written to ``--out`` with

- every cell tagged ``solution`` removed (the course's convention, CONTRIBUTING.md "Notebooks"),
  and a short note where they were (one note for a run of consecutive solution cells);
- no outputs and no execution counts, so learners run the notebook themselves;
- nothing else changed: the parameters cell, the closing ``record_metrics`` cell and every other
  cell stay as they are, so a student copy runs like the original.

Each file is written atomically. A kept cell that uses a name only a solution cell defines would
fail in the student copy; such names are reported (:func:`names_only_solutions_define`).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from m6rec_lib.atomic import atomic_write_text
from m6rec_lib.config import NOTEBOOKS_DIR

SOLUTION_TAG = "solution"
"""Every cell of an exercise's solution carries this tag (CONTRIBUTING.md, "Notebooks")."""
LESSON_RE = re.compile(r"^\d{2}_[\w\-]+\.ipynb$")
NOTE = (
    "> **The solution is not in this copy.** Try the exercise first. Your instructor has the "
    "solutions; the course site shows them folded under a \"Solution\" toggle."
)
SOLUTIONS_HEADING_RE = re.compile(r"^#{1,6}\s*Solutions\b", re.MULTILINE)
NOTE_TAG = "solution-removed"
"""Tag of the note that stands where solution cells were."""


@dataclass(frozen=True)
class StudentCopy:
    """What :func:`write_student_copy` wrote: the file, how many solution cells it removed, names
    that kept cells use but only removed cells define, and whether the notebook has a "Solutions"
    section whose cells are not tagged (so they stay in the copy)."""

    path: Path
    removed: int
    missing_names: tuple[str, ...] = ()
    untagged_solutions: bool = False  # a "Solutions" heading, but no cell tagged "solution"


def _is_solution(cell) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def _python(source: str) -> str:
    """A code cell without IPython magics and shell escapes (they are not Python)."""
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines())


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell defines, names it reads); empty sets when it is not valid Python."""
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return set(), set()
    defined, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (defined if isinstance(node.ctx, (ast.Store, ast.Del)) else used).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    return defined, used


def names_only_solutions_define(nb) -> list[str]:
    """Names that a kept code cell reads after a solution cell defined them, and that no kept cell
    defines: the student copy would stop there with a ``NameError``."""
    kept_defined: set[str] = set()
    solution_defined: set[str] = set()
    missing: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        defined, used = _names(cell.source)
        if _is_solution(cell):
            solution_defined |= defined
        else:
            kept_defined |= defined
            missing |= (used & solution_defined) - kept_defined
    return sorted(missing)


def student_notebook(nb):
    """A copy of ``nb`` (an ``nbformat`` notebook) without solutions and outputs; returns
    ``(copy, number of solution cells removed)``."""
    import copy

    import nbformat

    out = copy.deepcopy(nb)
    cells, removed, previous_removed = [], 0, False
    for cell in out.cells:
        if _is_solution(cell):
            removed += 1
            if not previous_removed:
                note = nbformat.v4.new_markdown_cell(NOTE)
                note.metadata["tags"] = [NOTE_TAG]
                cells.append(note)
            previous_removed = True
            continue
        previous_removed = False
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "papermill"):
            cell.metadata.pop(key, None)
        cells.append(cell)
    out.cells = cells
    for key in ("papermill", "widgets"):
        out.metadata.pop(key, None)
    return out, removed


def write_student_copy(src: Path, out_dir: Path) -> StudentCopy:
    """Write the student copy of the notebook ``src`` into ``out_dir`` (same file name), atomically."""
    import nbformat

    nb = nbformat.read(str(src), as_version=4)
    copy, removed = student_notebook(nb)
    nbformat.validate(copy)
    target = Path(out_dir) / Path(src).name
    atomic_write_text(target, nbformat.writes(copy) + "\n")
    has_heading = any(c.cell_type == "markdown" and SOLUTIONS_HEADING_RE.search(c.source) for c in nb.cells)
    return StudentCopy(target, removed, tuple(names_only_solutions_define(nb)), has_heading and removed == 0)


def lesson_notebooks(notebooks_dir: Path, only: list[str] | None = None) -> list[Path]:
    """The lesson notebooks (``NN_name.ipynb``) of ``notebooks_dir``, optionally those whose name
    starts with one of ``only``."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise FileNotFoundError(f"{notebooks_dir} is not a folder of notebooks; give --notebooks the "
                                "course's notebooks/ folder")
    found = sorted(p for p in notebooks_dir.iterdir() if p.is_file() and LESSON_RE.match(p.name))
    if not found:
        raise FileNotFoundError(f"no lesson notebook (NN_name.ipynb) in {notebooks_dir}")
    if only:
        unknown = [o for o in only if not any(p.name.startswith(o) for p in found)]
        if unknown:
            raise ValueError(f"--only {' '.join(unknown)}: no such notebook. "
                             f"Available: {', '.join(p.stem for p in found)}")
        found = [p for p in found if any(p.name.startswith(o) for o in only)]
    return found


def write_student_copies(out_dir: Path, notebooks_dir: Path = NOTEBOOKS_DIR,
                         only: list[str] | None = None) -> list[StudentCopy]:
    """Write student copies of the lesson notebooks into ``out_dir`` (created if needed).

    ``out_dir`` may not be the notebooks' own folder (the originals would lose their solutions).
    Other files in ``out_dir`` are left alone; a copy written before is replaced.
    """
    notebooks_dir, out_dir = Path(notebooks_dir), Path(out_dir)
    sources = lesson_notebooks(notebooks_dir, only)
    if out_dir.resolve() == notebooks_dir.resolve():
        raise ValueError(f"--out {out_dir} is the notebooks' own folder: the student copies would overwrite "
                         "the originals. Choose another folder, e.g. --out student/")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; give a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_student_copy(src, out_dir) for src in sources]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m m6rec_lib.student_copies",
        description="Write copies of the lesson notebooks without solution cells and without outputs.")
    parser.add_argument("--out", type=Path, required=True, help="folder for the student copies, e.g. student/")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS_DIR,
                        help="folder of the lesson notebooks (default: the course's notebooks/)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only these notebooks (name prefixes)")
    args = parser.parse_args(argv)
    try:
        copies = write_student_copies(args.out, args.notebooks, args.only)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for c in copies:
        print(f"{c.path.name}: {c.removed} solution cell{'s' if c.removed != 1 else ''} removed")
        if c.untagged_solutions:
            print(f"  warning: {c.path.name} has a 'Solutions' section but no cell tagged 'solution': "
                  "its solutions stay in this copy (tag them, see CONTRIBUTING.md)", file=sys.stderr)
        if c.missing_names:
            print(f"  warning: kept cells use {', '.join(c.missing_names)}, which only solution cells define; "
                  "this copy will stop with a NameError there", file=sys.stderr)
    total = sum(c.removed for c in copies)
    print(f"wrote {len(copies)} student copies to {args.out} ({total} solution cells removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
