"""Record a notebook's key numbers, and read them back from the executed notebook.

Every notebook ends with one call::

    record_metrics({"ndcg@10": ndcg, "recall@10": recall, "best_model": "EASE"})

It shows a small table for the reader, and also emits the same numbers as a machine-readable
output (MIME type :data:`METRICS_MIME`, with a one-line text/plain fallback). The course runner and
the tests execute the notebook and call :func:`read_metrics` on the result, so recorded numbers can
be compared across runs and checked against tolerances, without scraping printed text.

Each record says in which run mode it was made (``"full"`` or ``"smoke"``), so a smoke-mode number
is never mistaken for a real result.

A notebook also records its **headline comparisons**: the
:class:`~m6rec_lib.metrics.PairedDifference` objects behind every "A beats B" (or "no measurable
difference") its text says, each with its interval::

    record_metrics({...}, comparisons=[sasrec_vs_ease, twotower_vs_ials])

The course runner collects them into ``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from m6rec_lib.config import smoke_from_env

METRICS_MIME = "application/vnd.m6rec.metrics+json"
SCHEMA_VERSION = 2  # 2: records carry "comparisons"
MAX_TEXT_LENGTH = 200
MODES = ("full", "smoke")


class NoMetricsError(LookupError):
    """An executed notebook holds no output of :func:`record_metrics`."""


def _clean_value(name: str, value: Any) -> int | float | str:
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        value = value.item()  # a NumPy scalar
    elif type(value).__module__.startswith("torch") and getattr(value, "ndim", None) == 0:
        value = value.item()  # a 0-dim tensor (torch is not imported here)
    if isinstance(value, bool):
        raise TypeError(f"metric {name!r} is a bool; record int({value}) or a string instead")
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(
                f"metric {name!r} is {value}: recorded values must be finite numbers. A NaN "
                "usually means an empty evaluation set or a diverged model; fix that, or record "
                "a string."
            )
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT_LENGTH:
            raise ValueError(
                f"metric {name!r} is a {len(value)}-character string; recorded strings must be at "
                f"most {MAX_TEXT_LENGTH} characters (a label, not a report)"
            )
        return value
    raise TypeError(
        f"metric {name!r} has type {type(value).__name__}; record a finite number or a short string"
    )


def validate_metrics(metrics: Mapping[str, Any]) -> dict[str, int | float | str]:
    """Check and normalise ``metrics``: non-empty string names, finite numbers or short strings.

    NumPy and PyTorch scalars become Python numbers. Raises ``ValueError``/``TypeError`` naming
    the offending metric.
    """
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of name -> value, got {type(metrics).__name__}")
    if not metrics:
        raise ValueError("no metrics given: record at least one number")
    clean = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"metric names must be non-empty strings, got {name!r}")
        clean[name] = _clean_value(name, value)
    return clean


def _resolve_mode(mode: str | None) -> str:
    if mode is None:
        return "smoke" if smoke_from_env() else "full"
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} (or None: from $M6REC_SMOKE), got {mode!r}")
    return mode


COMPARISON_FIELDS = ("name_a", "name_b", "metric", "view", "a", "b", "diff", "low", "high", "n_users")


def validate_comparisons(comparisons: Sequence[Any] | None) -> list[dict[str, Any]]:
    """Comparisons as JSON-ready dicts: from ``PairedDifference`` objects (or their ``to_dict()``).

    Keys must be unique within a notebook; numbers must be finite.
    """
    out: list[dict[str, Any]] = []
    for c in comparisons or []:
        record = c.to_dict() if hasattr(c, "to_dict") else dict(c)
        missing = [f for f in COMPARISON_FIELDS if f not in record]
        if missing:
            raise ValueError(f"a comparison lacks {missing}; pass the PairedDifference that "
                             "m6rec_lib.metrics.paired_bootstrap returned")
        for f in ("a", "b", "diff", "low", "high"):
            record[f] = _clean_value(f"comparison {record.get('key', '?')}.{f}", record[f])
        out.append(record)
    keys = [r["key"] for r in out]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise ValueError(f"comparisons recorded twice: {duplicated}; record each once")
    return out


def metrics_payload(
    metrics: Mapping[str, Any], *, mode: str | None = None, notebook: str | None = None,
    comparisons: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The machine-readable record :func:`record_metrics` emits (validated)."""
    clean = validate_metrics(metrics)
    return {
        "schema": SCHEMA_VERSION,
        "mode": _resolve_mode(mode),
        "notebook": notebook,
        "metrics": [{"name": k, "value": v} for k, v in clean.items()],
        "comparisons": validate_comparisons(comparisons),
    }


def metrics_table(payload: Mapping[str, Any]) -> pd.DataFrame:
    """A readable table of a payload: index ``metric``, one column ``value``."""
    rows = payload["metrics"]
    return pd.DataFrame(
        {"value": pd.Series([r["value"] for r in rows], dtype=object)},
    ).set_axis(pd.Index([r["name"] for r in rows], name="metric"))


def _summary_line(payload: Mapping[str, Any]) -> str:
    where = f" of {payload['notebook']}" if payload.get("notebook") else ""
    n = len(payload["metrics"])
    return f"[recorded {n} metric{'s' if n != 1 else ''}{where}, {payload['mode']} run]"


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is installed with Jupyter
        return None
    return get_ipython()


def record_metrics(
    metrics: Mapping[str, Any], *, mode: str | None = None, notebook: str | None = None,
    comparisons: Sequence[Any] | None = None,
) -> None:
    """Show ``metrics`` as a table and emit them machine-readably (a notebook's last cell).

    Parameters
    ----------
    metrics
        ``{name: value}``; values are finite numbers (NumPy/PyTorch scalars are fine) or strings
        of at most 200 characters. NaN or infinity raises ``ValueError``.
    mode
        ``"full"`` or ``"smoke"``; default: ``"smoke"`` when ``$M6REC_SMOKE`` is on. Pass the
        notebook's resolved ``SMOKE`` parameter: ``mode="smoke" if smoke else "full"``.
    notebook
        A name for the record, e.g. ``"02_softmax"``.
    comparisons
        The notebook's headline comparisons: ``PairedDifference`` objects from
        :func:`m6rec_lib.metrics.paired_bootstrap` (or :func:`~m6rec_lib.metrics.paired_bootstrap_auc`),
        shown as a second table and stored with their intervals.

    In Jupyter this displays the table and an output of MIME type :data:`METRICS_MIME`;
    elsewhere it prints the table.
    """
    payload = metrics_payload(metrics, mode=mode, notebook=notebook, comparisons=comparisons)
    table = metrics_table(payload)
    shown = [table] + ([comparisons_table(payload)] if payload["comparisons"] else [])
    shell = _ipython()
    if shell is None:
        print(_summary_line(payload))
        for t in shown:
            print(t.to_string())
        return
    from IPython.display import display

    for t in shown:
        display(t)
    display({METRICS_MIME: payload, "text/plain": _summary_line(payload)}, raw=True)


def comparisons_table(payload: Mapping[str, Any]) -> pd.DataFrame:
    """A readable table of a payload's comparisons: difference, interval and verdict per row."""
    rows = [{"comparison": f"{c['name_a']} vs {c['name_b']}", "view": c["view"], "metric": c["metric"],
             "A - B": round(c["diff"], 4), "95% interval": f"[{c['low']:+.4f}, {c['high']:+.4f}]",
             "users": c["n_users"], "verdict": c["verdict"]} for c in payload.get("comparisons", [])]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# reading them back


def read_metrics_payloads(ipynb_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every :func:`record_metrics` record in an executed notebook, in cell order (may be [])."""
    import nbformat

    path = Path(ipynb_path)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, not a notebook
        raise ValueError(f"{path} is not a readable Jupyter notebook: {exc}") from exc
    payloads = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {}) if output.get("output_type") in (
                "display_data", "execute_result") else {}  # fmt: skip
            if METRICS_MIME not in data:
                continue
            payload = data[METRICS_MIME]
            if isinstance(payload, str):  # some writers store JSON outputs as text
                payload = json.loads(payload)
            payloads.append(dict(payload))
    return payloads


def read_comparisons(ipynb_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every comparison recorded in an executed notebook, in cell order (may be [])."""
    return [c for payload in read_metrics_payloads(ipynb_path) for c in payload.get("comparisons", [])]


def read_metrics(ipynb_path: str | os.PathLike[str], *, required: bool = True) -> dict[str, Any]:
    """The metrics recorded in an executed notebook, as ``{name: value}``.

    Several records are merged in cell order (a later value wins). When there are none, raises
    :class:`NoMetricsError` (or returns ``{}`` with ``required=False``). The run mode of the
    records is in :func:`read_metrics_payloads`.
    """
    payloads = read_metrics_payloads(ipynb_path)
    if not payloads:
        if not required:
            return {}
        raise NoMetricsError(
            f"{ipynb_path} has no recorded metrics. Execute it first (notebooks are committed "
            "without outputs), and make sure its last cell calls "
            "m6rec_lib.recording.record_metrics(...) and ran without an error."
        )
    merged: dict[str, Any] = {}
    for payload in payloads:
        for row in payload.get("metrics", []):
            merged[row["name"]] = row["value"]
    return merged
