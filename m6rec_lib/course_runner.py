"""The course's main job: execute every notebook in order, then build the book.

Usage::

    python -m m6rec_lib.course_runner            # full mode: every notebook, then the site
    python -m m6rec_lib.course_runner --smoke    # small parameters (what the tests use)
    python -m m6rec_lib.course_runner --only 01 02 --no-book

Executed copies go to ``runs/<mode>/notebooks/``; ``runs/<mode>/summary.md`` and ``summary.json``
hold, per notebook, the status, wall time, recorded metrics and headline comparisons (each with its
95% interval; ``summary.json`` also lists them all under ``"headline_comparisons"``) and the wall
time of each ``## `` section (from the cell durations papermill stores in the executed notebook;
deep dives are marked optional: an instructor may skip them, see :mod:`m6rec_lib.sections`); the site goes
to ``runs/<mode>/site/``. The site publishes only the notebooks that ran without error in *this*
run: a failed notebook, or one left over from an earlier run, is never shown as a lesson. The exit
status is non-zero if any notebook (or the book) failed, and a failure names the cell and the line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
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
    comparisons: list = field(default_factory=list)
    sections: list = field(default_factory=list)  # Section.to_dict() of each "## " section


KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
"""Kernels start quietly: their start-up warnings (e.g. about the local transport) are not errors."""

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def describe_failure(exc: BaseException) -> str:
    """One line that says what failed and where: the exception, the cell and the failing line.

    For papermill's execution errors the notebook's own frame is found in the kernel's traceback
    (the ``---->`` line of the last ``Cell In[..]`` frame), so an ``assert`` shows its source.
    """
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None)
    if evalue is None:
        text = str(exc).strip()
        evalue = text.splitlines()[-1] if text else ""
    where = ""
    frames = [_ANSI_RE.sub("", f) for f in (getattr(exc, "traceback", None) or [])]
    cells = [f for f in frames if f.lstrip().startswith("Cell In[")]
    if cells:
        frame = cells[-1]
        header = frame.strip().splitlines()[0]                 # "Cell In[12], line 3"
        arrow = [ln for ln in frame.splitlines() if ln.lstrip().startswith("---->")]
        code = re.sub(r"^\s*---->\s*\d*\s?", "", arrow[0]).strip() if arrow else ""
        where = f" at {header.replace('Cell ', 'cell ')}" + (f": {code}" if code else "")
    message = f"{ename}: {evalue}".rstrip(": ")
    return message + where


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

    from .recording import read_comparisons, read_metrics

    start = time.perf_counter()
    error = ""
    with atomic_path(dst) as tmp:
        try:
            pm.execute_notebook(
                str(src), str(tmp), parameters={"SMOKE": smoke}, cwd=str(src.parent),
                progress_bar=False, execution_timeout=timeout, log_output=False,
                kernel_name="python3", language="python", extra_arguments=KERNEL_ARGUMENTS,
            )
        except Exception as exc:  # papermill still wrote the partial notebook: keep it
            error = describe_failure(exc)
    seconds = time.perf_counter() - start
    metrics, comparisons = {}, []
    sections = read_sections(dst)  # a failed notebook keeps the time of the cells that ran
    if not error:
        try:
            metrics = read_metrics(dst)
            comparisons = read_comparisons(dst)
        except Exception as exc:
            error = f"could not read recorded metrics: {exc}"
    return NotebookResult(src.stem, "failed" if error else "ok", round(seconds, 1), metrics, error, comparisons,
                          sections)


def read_sections(executed: Path) -> list[dict]:
    """The ``## `` sections of an executed notebook with their wall time (empty if unreadable)."""
    from .sections import notebook_sections

    try:
        return [s.to_dict() for s in notebook_sections(executed)]
    except (OSError, ValueError):  # a notebook papermill could not even write: nothing to time
        return []


def summary_markdown(results: list[NotebookResult], mode: str, total: float, extra: dict) -> str:
    lines = [f"# Course run ({mode} mode)", "", f"Total wall time: {total:.0f} s", ""]
    for key, value in extra.items():
        lines.append(f"- {key}: {value}")
    lines += ["", "| notebook | status | seconds | metrics |", "|---|---|---|---|"]
    for r in results:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in list(r.metrics.items())[:8])
        more = f" (+{len(r.metrics) - 8} more)" if len(r.metrics) > 8 else ""
        status = r.status if not r.error else f"{r.status}: {r.error}"
        lines.append(f"| {r.notebook} | {status} | {r.seconds:.1f} | {shown}{more} |".replace("\n", " "))
    compared = [(r.notebook, c) for r in results for c in r.comparisons]
    if compared:
        lines += ["", "## Headline comparisons (A - B, 95% interval from a paired bootstrap over customers)", "",
                  "| notebook | A vs B | view | metric | A - B | interval | verdict |", "|---|---|---|---|---|---|---|"]
        for name, c in compared:
            lines.append(f"| {name} | {c['name_a']} vs {c['name_b']} | {c['view']} | {c['metric']} | "
                         f"{c['diff']:+.4f} | [{c['low']:+.4f}, {c['high']:+.4f}] | {c['verdict']} |")
    timed = [(r.notebook, s) for r in results for s in r.sections]
    if timed:
        lines += ["", "## Time per section (deep dives are optional in a workshop)", "",
                  "| notebook | section | seconds | optional |", "|---|---|---|---|"]
        for name, s in timed:
            title = s["title"].replace("|", "\\|")
            lines.append(f"| {name} | {title} | {s['seconds']:.1f} | {'yes' if s['optional'] else ''} |")
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

    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds per cell (e.g. 1800), got {timeout!r}")
    mode = "smoke" if smoke else "full"
    out = Path(out) if out else runs_dir() / mode
    nb_out = out / "notebooks"
    nb_out.mkdir(parents=True, exist_ok=True)
    notebooks = select(discover_notebooks(), only)
    os.environ[SMOKE_ENV] = "1" if smoke else "0"  # kernels inherit it

    results: list[NotebookResult] = []
    speed_before = machine_speed()
    t0 = time.perf_counter()
    bar = tqdm(notebooks, desc=f"course ({mode})", unit="notebook")
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        result = execute_notebook(nb, nb_out / nb.name, smoke, timeout)
        results.append(result)
        tqdm.write(f"{result.status:>6}  {result.seconds:7.1f} s  {nb.stem}" + (f"  ({result.error})" if result.error else ""))
    total = time.perf_counter() - t0
    extra: dict = {"executed notebooks": _shown(nb_out),
                   "machine speed (matmul GFLOP/s, float32, before / after the notebooks)":
                       f"{speed_before} / {machine_speed()}"}

    book_ok = True
    published = [r.notebook for r in results if r.status == "ok"]
    if book and not published:
        book_ok = False
        extra["book"] = "not built: no notebook ran without error"
    elif book:
        try:
            tb = time.perf_counter()
            index = build_site(nb_out, published, out / "site")
            extra["book build seconds"] = round(time.perf_counter() - tb, 1)
            extra["site"] = _shown(Path(index))
            extra["published notebooks"] = len(published)
            tqdm.write(f"site built: {extra['site']} ({extra['book build seconds']} s)")
        except Exception as exc:
            book_ok = False
            extra["book"] = f"FAILED: {type(exc).__name__}: {exc}"
            traceback.print_exc()

    headline = [{"notebook": r.notebook, **c} for r in results for c in r.comparisons]
    data = {"mode": mode, "total_seconds": round(total, 1), **extra, "headline_comparisons": headline,
            "notebooks": [asdict(r) for r in results]}
    atomic_write_text(out / "summary.json", json.dumps(data, indent=2, default=str) + "\n")
    atomic_write_text(out / "summary.md", summary_markdown(results, mode, total, extra))
    print(summary_markdown(results, mode, total, extra))
    failed = [r.notebook for r in results if r.status != "ok"]
    if failed:
        print(f"FAILED notebooks: {failed}; open the executed copies in {nb_out} to see the error.", file=sys.stderr)
    return 1 if failed or not book_ok else 0


def machine_speed() -> str:
    """This machine's float32 matrix-multiplication speed now, with the threads the course trains with.

    Recorded before and after the notebooks next to the wall times: a virtual machine's speed can
    drift by half over an hour (its neighbours), and a time means little without it.
    """
    from .training import configure_threads, matmul_gflops

    threads = configure_threads()
    return f"{matmul_gflops(threads):.0f} ({threads} threads)"


def build_site(nb_out: Path, published: list[str], site: Path) -> Path:
    """Build the site from the notebooks of this run that succeeded (``published`` stems) only.

    ``nb_out`` may also hold failed notebooks and copies left by earlier runs (e.g. before an
    ``--only`` run); they are not copied into the build, so the site never mixes runs.
    """
    from .book import build_book

    staging = Path(tempfile.mkdtemp(prefix=".publish-", dir=site.parent))
    try:
        for stem in published:
            shutil.copy2(nb_out / f"{stem}.ipynb", staging / f"{stem}.ipynb")
        return build_book(staging, site)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"--timeout must be a positive number of seconds per cell, got {text}; "
            "there is no 'no limit' value, give a large one (e.g. 36000) instead")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute the course notebooks (and build the book).")
    parser.add_argument("--smoke", action="store_true", help="small parameters, as in the tests")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (name prefixes)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/<mode>)")
    parser.add_argument("--no-book", action="store_true", help="do not build the site")
    parser.add_argument("--timeout", type=_positive_seconds, default=1800,
                        help="per-cell time limit in seconds (positive; default 1800)")
    args = parser.parse_args(argv)
    return run_course(args.smoke, args.only, args.out, not args.no_book, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
