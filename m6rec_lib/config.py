"""Where the course keeps things, and which run mode it is in.

Run modes
---------
*Full* (the default) is what a learner gets: real data at laptop size. *Smoke* runs the very same
code with small parameters; tests and CI use it. Smoke mode is switched on by the environment
variable ``M6REC_SMOKE=1`` (nbval cannot pass papermill parameters, but a kernel inherits the
environment) or by a notebook's ``SMOKE = True`` parameter.

Locations
---------
- ``DATASETS_DIR``: the bundled data (``datasets/`` in the repository).
- ``cache_dir()``: trained artefacts reused across notebooks (``cache/`` or ``$M6REC_CACHE``).
- ``runs_dir()``: executed notebooks and run summaries (``runs/`` or ``$M6REC_RUNS``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO_ROOT: Path = Path(__file__).resolve().parent.parent
DATASETS_DIR: Path = REPO_ROOT / "datasets"
NOTEBOOKS_DIR: Path = REPO_ROOT / "notebooks"
BOOK_DIR: Path = REPO_ROOT / "book"

SMOKE_ENV = "M6REC_SMOKE"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def smoke_from_env() -> bool:
    """Return True when ``$M6REC_SMOKE`` asks for smoke mode.

    Raises ValueError on a value that is neither true-ish nor false-ish, so a typo does not
    silently run the (slow) full mode.
    """
    raw = os.environ.get(SMOKE_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"{SMOKE_ENV}={raw!r} is not understood; use {SMOKE_ENV}=1 for smoke mode or "
        f"{SMOKE_ENV}=0 (or unset it) for full mode."
    )


def resolve_smoke(smoke: bool | None) -> bool:
    """A notebook's ``SMOKE`` parameter wins; ``None`` means "ask the environment"."""
    return smoke_from_env() if smoke is None else bool(smoke)


def choose(smoke: bool, *, full: T, smoke_value: T) -> T:
    """Pick the full-mode or the smoke-mode value of a parameter."""
    return smoke_value if smoke else full


def _dir_from_env(var: str, default: Path) -> Path:
    path = Path(os.environ.get(var, "") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Directory for trained artefacts shared between notebooks (created on demand)."""
    return _dir_from_env("M6REC_CACHE", REPO_ROOT / "cache")


def runs_dir() -> Path:
    """Directory for executed notebooks and run summaries (created on demand)."""
    return _dir_from_env("M6REC_RUNS", REPO_ROOT / "runs")
