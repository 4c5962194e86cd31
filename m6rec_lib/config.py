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
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "f", "no", "n", "off", "none"})
"""How a yes/no setting may be spelled, compared without case and surrounding spaces ("False",
"FALSE", " no " are all off)."""


def parse_flag(value: str | bool | int | None, name: str = SMOKE_ENV) -> bool:
    """Read a yes/no setting: ``True``/``False``, ``1``/``0``, or a word of :data:`TRUE_WORDS` /
    :data:`FALSE_WORDS` in any case ("True", "false", "YES", "off"). ``None`` is off.

    Raises ValueError on anything else, so a typo does not silently pick a mode.
    """
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raw = str(value).strip().lower()
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise ValueError(
        f"{name}={value!r} is not understood; use {name}=1 (or true, yes, on) for smoke mode and "
        f"{name}=0 (or false, no, off, or leave it unset) for full mode."
    )


def smoke_from_env() -> bool:
    """Return True when ``$M6REC_SMOKE`` asks for smoke mode (any spelling of :func:`parse_flag`).

    Raises ValueError on a value that is neither true-ish nor false-ish, so a typo does not
    silently run the (slow) full mode.
    """
    return parse_flag(os.environ.get(SMOKE_ENV), SMOKE_ENV)


def resolve_smoke(smoke: bool | str | None) -> bool:
    """A notebook's ``SMOKE`` parameter wins; ``None`` means "ask the environment".

    The parameter may arrive as text (``papermill -r SMOKE False``): it is read like the
    environment variable, so ``"False"`` is off, not a non-empty (true) string.
    """
    return smoke_from_env() if smoke is None else parse_flag(smoke, "SMOKE")


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
