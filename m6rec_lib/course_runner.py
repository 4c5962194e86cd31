"""The course's main job: execute every notebook in order, then build the book.

Usage::

    python -m m6rec_lib.course_runner            # full mode: every notebook, then the site
    python -m m6rec_lib.course_runner --smoke    # small parameters (what the tests use)
    python -m m6rec_lib.course_runner --only 01 02 --no-book

Executed copies go to ``runs/<mode>/notebooks/``; ``runs/<mode>/summary.md`` and ``summary.json``
hold, per notebook, the status, wall time and recorded metrics; the site goes to
``runs/<mode>/site/``. The exit status is non-zero if any notebook (or the book) failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .atomic import atomic_path, atomic_write_text
from .config import NOTEBOOKS_DIR, SMOKE_ENV, runs_dir


@dataclass
class NotebookResult:
    notebook: str
    status: str  # "ok" or "failed"
    seconds: float
    metrics: dict = field(default_factory=dict)
    error: str = ""


def discover_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The course notebooks, in order: ``NN_name.ipynb`` files sorted by name."""
    found = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebook named NN_*.ipynb in {notebooks_dir}")
    return found


def select(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """Keep the notebooks whose name starts with one of ``only`` (e.g. "01" or "01_interaction")."""
    if not only:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.name.startswith(o) for o in only)]
    unknown = [o for o in only if not any(nb.name.startswith(o) for nb in notebooks)]
    if unknown:
        names = ", ".join(nb.stem for nb in notebooks)
        raise SystemExit(f"--only {unknown}: no such notebook. Available: {names}")
    return chosen


def execute_notebook(src: Path, dst: Path, smoke: bool, timeout: int) -> NotebookResult:
    """Run one notebook with papermill into ``dst`` (written atomically) and read its metrics."""
    import papermill as pm

    from .recording import read_metrics

    start = time.perf_counter()
    error = ""
    with atomic_path(dst) as tmp:
        try:
            pm.execute_notebook(
                str(src), str(tmp), parameters={"SMOKE": smoke}, cwd=str(src.parent),
                progress_bar=False, execution_timeout=timeout, log_output=False,
                kernel_name="python3", language="python",
            )
        except Exception as exc:  # papermill still wrote the partial notebook: keep it
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    seconds = time.perf_counter() - start
    metrics = {}
    if not error:
        try:
            metrics = read_metrics(dst)
        except Exception as exc:
            error = f"could not read recorded metrics: {exc}"
    return NotebookResult(src.stem, "failed" if error else "ok", round(seconds, 1), metrics, error)


def summary_markdown(results: list[NotebookResult], mode: str, total: float, extra: dict) -> str:
    lines = [f"# Course run ({mode} mode)", "", f"Total wall time: {total:.0f} s", ""]
    for key, value in extra.items():
        lines.append(f"- {key}: {value}")
    lines += ["", "| notebook | status | seconds | metrics |", "|---|---|---|---|"]
    for r in results:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in list(r.metrics.items())[:8])
        more = f" (+{len(r.metrics) - 8} more)" if len(r.metrics) > 8 else ""
        status = r.status if not r.error else f"{r.status}: {r.error}"
        lines.append(f"| {r.notebook} | {status} | {r.seconds:.1f} | {shown}{more} |")
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it (no machine paths in reports)."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else path.name


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def run_course(
    smoke: bool = False,
    only: list[str] | None = None,
    out: Path | None = None,
    book: bool = True,
    timeout: int = 1800,
) -> int:
    """Execute the selected notebooks (and build the book); return the exit status."""
    from tqdm.auto import tqdm

    mode = "smoke" if smoke else "full"
    out = Path(out) if out else runs_dir() / mode
    nb_out = out / "notebooks"
    nb_out.mkdir(parents=True, exist_ok=True)
    notebooks = select(discover_notebooks(), only)
    os.environ[SMOKE_ENV] = "1" if smoke else "0"  # kernels inherit it

    results: list[NotebookResult] = []
    t0 = time.perf_counter()
    bar = tqdm(notebooks, desc=f"course ({mode})", unit="notebook")
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        result = execute_notebook(nb, nb_out / nb.name, smoke, timeout)
        results.append(result)
        tqdm.write(f"{result.status:>6}  {result.seconds:7.1f} s  {nb.stem}" + (f"  ({result.error})" if result.error else ""))
    total = time.perf_counter() - t0
    extra: dict = {"executed notebooks": _shown(nb_out)}

    book_ok = True
    if book:
        try:
            from .book import build_book

            tb = time.perf_counter()
            index = build_book(nb_out, out / "site")
            extra["book build seconds"] = round(time.perf_counter() - tb, 1)
            extra["site"] = _shown(Path(index))
            tqdm.write(f"site built: {extra['site']} ({extra['book build seconds']} s)")
        except Exception as exc:
            book_ok = False
            extra["book"] = f"FAILED: {type(exc).__name__}: {exc}"
            traceback.print_exc()

    data = {"mode": mode, "total_seconds": round(total, 1), **extra, "notebooks": [asdict(r) for r in results]}
    atomic_write_text(out / "summary.json", json.dumps(data, indent=2, default=str) + "\n")
    atomic_write_text(out / "summary.md", summary_markdown(results, mode, total, extra))
    print(summary_markdown(results, mode, total, extra))
    failed = [r.notebook for r in results if r.status != "ok"]
    if failed:
        print(f"FAILED notebooks: {failed}; open the executed copies in {nb_out} to see the error.", file=sys.stderr)
    return 1 if failed or not book_ok else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute the course notebooks (and build the book).")
    parser.add_argument("--smoke", action="store_true", help="small parameters, as in the tests")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (name prefixes)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/<mode>)")
    parser.add_argument("--no-book", action="store_true", help="do not build the site")
    parser.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)
    return run_course(args.smoke, args.only, args.out, not args.no_book, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
