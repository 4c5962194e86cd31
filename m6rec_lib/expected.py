"""What a run of the course should measure: expected numbers with bands, and the check against them.

``expected/full.json`` (and ``expected/smoke.json``) hold, for every notebook, each recorded
metric with a band it should fall in, each headline comparison with its verdict, and the wall time
of the run they were taken from. They are written from a course run's ``summary.json`` and serve
three readers:

* the **full-mode check** (not part of the default tests; a full run takes about half an hour)::

      python -m m6rec_lib.expected check              # run the course in full mode, then compare
      python -m m6rec_lib.expected check --summary runs/full/summary.json   # compare an earlier run
      python -m m6rec_lib.expected update --summary runs/full/summary.json  # accept a run as expected

  It exits non-zero with a table of every number that moved out of its band, every verdict that
  changed, and every metric that appeared or disappeared;
* the **tests**: a number quoted in a notebook's text with ``<!--m:NAME-->`` after it must equal
  the expected full-run value of ``NAME`` at the precision shown (``tests/test_notebook_claims.py``);
* the **instructor guide** in the book, which lists the expected numbers and timings.

Bands: a float ``v`` may move by ``max(8% of |v|, 0.003)`` (thread counts and CPU precision change
the last digits of trained models), an integer by 1% (at least 1), a string not at all; timings
(names with seconds, ms, GFLOP/s, throughput, share of peak, ...) and comparisons of times depend on
the machine and are not checked. A band can be widened by hand in the JSON file; ``update`` keeps
hand-set bands of unchanged metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .atomic import atomic_write_text
from .config import REPO_ROOT

EXPECTED_DIR: Path = REPO_ROOT / "expected"
TIMING_RE = re.compile(r"(second|_s$|_s_|\bs\b|_ms|ms$|\bms\b|gflop|per_s|tokens_s|throughput|latency|speed|"
                       r"p50|p95|faster|_time|time_|elapsed|of_peak)", re.IGNORECASE)
REL_BAND, ABS_BAND, INT_BAND = 0.08, 0.003, 0.01


def expected_path(mode: str = "full") -> Path:
    if mode not in ("full", "smoke"):
        raise ValueError(f"mode must be 'full' or 'smoke', got {mode!r}")
    return EXPECTED_DIR / f"{mode}.json"


def _shown(path: Path) -> str:
    """A path relative to the repository when it lies inside it (no machine paths in messages)."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else path.name


def is_timing(name: str) -> bool:
    """True for a metric that measures time or speed (machine-dependent, never checked)."""
    return bool(TIMING_RE.search(name))


def default_band(name: str, value: Any) -> list | None:
    """``[low, high]`` for a number, ``None`` for a timing (not checked); strings have no band."""
    if isinstance(value, str) or is_timing(name):
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name}: booleans are not recorded metrics")
    if isinstance(value, int):
        width = max(1, math.ceil(INT_BAND * abs(value)))
        return [value - width, value + width]
    width = max(REL_BAND * abs(value), ABS_BAND)
    return [round(value - width, 6), round(value + width, 6)]


def snapshot(summary: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> dict:
    """The expected-numbers record of a run's ``summary.json`` (hand-set bands of ``previous`` kept)."""
    if any(nb.get("status") != "ok" for nb in summary.get("notebooks", [])):
        failed = [nb["notebook"] for nb in summary["notebooks"] if nb.get("status") != "ok"]
        raise ValueError(f"the run has failed notebooks {failed}; only a complete run can be expected")
    prev_nbs = (previous or {}).get("notebooks", {})
    notebooks = {}
    for nb in summary["notebooks"]:
        prev = prev_nbs.get(nb["notebook"], {}).get("metrics", {})
        metrics = {}
        for name, value in nb.get("metrics", {}).items():
            band = default_band(name, value)
            old = prev.get(name)
            if old and old.get("value") == value and old.get("band") not in (None, default_band(name, old["value"])):
                band = old["band"]                         # a band widened by hand survives
            metrics[name] = {"value": value, "band": band}
        comparisons = {c["key"]: {k: c[k] for k in ("name_a", "name_b", "metric", "view", "a", "b", "diff",
                                                      "low", "high", "n_users", "outcome", "verdict")}
                       for c in nb.get("comparisons", [])}
        notebooks[nb["notebook"]] = {"seconds": nb.get("seconds"), "metrics": metrics, "comparisons": comparisons}
    return {"mode": summary.get("mode"), "total_seconds": summary.get("total_seconds"), "notebooks": notebooks}


def load_expected(mode: str = "full") -> dict:
    """The stored expected numbers of ``mode``; a clear error if there are none yet."""
    path = expected_path(mode)
    if not path.is_file():
        raise FileNotFoundError(
            f"{_shown(path)} does not exist yet: run the course in {mode} mode and "
            f"accept it with `python -m m6rec_lib.expected update --summary runs/{mode}/summary.json`")
    return json.loads(path.read_text(encoding="utf-8"))


def save_expected(summary: Mapping[str, Any], mode: str | None = None) -> Path:
    """Write the expected numbers of a run (atomically); returns the file written."""
    mode = mode or summary.get("mode") or "full"
    path = expected_path(mode)
    previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    atomic_write_text(path, json.dumps(snapshot(summary, previous), indent=1, sort_keys=False) + "\n")
    return path


def compare(summary: Mapping[str, Any], expected: Mapping[str, Any]) -> pd.DataFrame:
    """Every expected number against a run: one row per metric or comparison, with a status.

    Status: ``ok``, ``moved`` (outside its band), ``changed`` (a string or a verdict differs),
    ``missing`` (expected, not recorded), ``new`` (recorded, not expected), ``timing`` (not checked),
    ``failed`` (the notebook did not run).
    """
    rows = []
    ran = {nb["notebook"]: nb for nb in summary.get("notebooks", [])}
    for stem, exp in expected["notebooks"].items():
        nb = ran.get(stem)
        if nb is None:
            rows.append(dict(notebook=stem, name="(notebook)", expected="ran", measured="not run", status="missing"))
            continue
        if nb.get("status") != "ok":
            rows.append(dict(notebook=stem, name="(notebook)", expected="ok", measured=nb.get("error", ""),
                             status="failed"))
            continue
        got = nb.get("metrics", {})
        for name, e in exp["metrics"].items():
            value, band = e["value"], e.get("band")
            if name not in got:
                status, measured = "missing", None
            else:
                measured = got[name]
                if band is None and isinstance(value, str):
                    status = "ok" if measured == value else "changed"
                elif band is None or is_timing(name):
                    status = "timing"
                else:
                    ok = isinstance(measured, (int, float)) and band[0] <= measured <= band[1]
                    status = "ok" if ok else "moved"
            rows.append(dict(notebook=stem, name=name, expected=value, band=band, measured=measured, status=status))
        for name in got.keys() - exp["metrics"].keys():
            rows.append(dict(notebook=stem, name=name, expected=None, measured=got[name], status="new"))
        got_cmp = {c["key"]: c for c in nb.get("comparisons", [])}
        for key, e in exp.get("comparisons", {}).items():
            c = got_cmp.get(key)
            if c is None:
                rows.append(dict(notebook=stem, name=f"[{key}]", expected=e["verdict"], status="missing"))
                continue
            if is_timing(e["metric"]):                     # e.g. ms saved per request: the machine's, not the code's
                rows.append(dict(notebook=stem, name=f"[{key}]", expected=f"{e['diff']:+.4f} ({e['verdict']})",
                                 measured=f"{c['diff']:+.4f} ({c['verdict']})", status="timing"))
                continue
            band = default_band("diff", float(e["diff"]))
            status = ("changed" if c["outcome"] != e["outcome"]
                      else "ok" if band[0] <= c["diff"] <= band[1] else "moved")
            rows.append(dict(notebook=stem, name=f"[{key}]", expected=f"{e['diff']:+.4f} ({e['verdict']})",
                             band=band, measured=f"{c['diff']:+.4f} ({c['verdict']})", status=status))
        for key in got_cmp.keys() - exp.get("comparisons", {}).keys():
            rows.append(dict(notebook=stem, name=f"[{key}]", expected=None, measured=got_cmp[key]["verdict"],
                             status="new"))
    return pd.DataFrame(rows, columns=["notebook", "name", "expected", "band", "measured", "status"])


PROBLEMS = ("moved", "changed", "missing", "failed", "new")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m m6rec_lib.expected",
        description="Compare a course run with the expected numbers in expected/, or accept a run.")
    parser.add_argument("action", choices=["check", "update"])
    parser.add_argument("--summary", type=Path, help="summary.json of an earlier run (default: run the course now)")
    parser.add_argument("--smoke", action="store_true", help="smoke mode instead of full mode")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "full"
    if args.summary is None:
        if args.action == "update":
            parser.error("update needs --summary runs/<mode>/summary.json of a complete run")
        from .course_runner import run_course

        run_course(smoke=args.smoke, book=False)
        from .config import runs_dir

        args.summary = runs_dir() / mode / "summary.json"
    summary = json.loads(Path(args.summary).read_text(encoding="utf-8"))
    if args.action == "update":
        path = save_expected(summary, summary.get("mode", mode))
        print(f"wrote {_shown(path)}")
        return 0
    table = compare(summary, load_expected(summary.get("mode", mode)))
    problems = table[table["status"].isin(PROBLEMS)]
    counts = table["status"].value_counts().to_dict()
    print(f"{len(table)} expected numbers: {counts}")
    if len(problems):
        with pd.option_context("display.max_rows", None, "display.max_colwidth", 60, "display.width", 200):
            print(problems.to_string(index=False))
        return 1
    print("every number is within its band and every verdict is unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
