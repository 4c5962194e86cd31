"""Test-run set-up shared by the unit tests (``tests/``) and the notebooks run by nbval.

It runs when pytest imports it, before any test and before any Jupyter kernel is started, and:

- sets ``M6REC_NO_NETWORK=1`` and puts ``tests/netguard`` on ``PYTHONPATH``: every Python process
  started from the tests (kernels included) loads ``tests/netguard/sitecustomize.py``, which refuses
  any connection that is not loopback. The guard is installed in this pytest process too;
- puts the repository root on ``PYTHONPATH`` so kernels import ``m6rec_lib`` even when it is not
  installed;
- switches smoke mode on (``M6REC_SMOKE=1``) unless the caller chose a mode;
- keeps the tests' trained artefacts in their own cache folder (``test-output/cache``, or
  ``$M6REC_TEST_CACHE``), apart from a learner's ``cache/``;
- marks every collected test with its **tier** (``pytest -m unit``, ``-m notebook``, ``-m browser``):

  ========  ===================================================================================
  browser   uses the ``browser`` fixture (headless Chromium, tests/test_book.py)
  notebook  uses ``smoke_course_run`` (the one smoke-mode execution of every notebook, shared by
            the whole session), or is a notebook collected by nbval (``--nbval-lax notebooks/...``)
  unit      everything else: the library's tests, which execute no lesson notebook
  ========  ===================================================================================

  A test that needs both the browser and the smoke run counts as a browser test.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
NETGUARD_DIR = ROOT / "tests" / "netguard"


def _prepend_pythonpath(*folders: Path) -> None:
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for folder in reversed(folders):
        if str(folder) not in parts:
            parts.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)


def _load_guard():
    loaded = sys.modules.get("sitecustomize")
    if loaded is not None and hasattr(loaded, "NetworkDisabledError"):
        return loaded  # the interpreter already started with the guard on its path
    guard_file = NETGUARD_DIR / "sitecustomize.py"
    spec = importlib.util.spec_from_file_location("m6rec_netguard", guard_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules["m6rec_netguard"] = module
    spec.loader.exec_module(module)
    return module


os.environ["M6REC_NO_NETWORK"] = "1"
os.environ.setdefault("M6REC_SMOKE", "1")
os.environ["M6REC_CACHE"] = os.environ.get("M6REC_TEST_CACHE") or str(ROOT / "test-output" / "cache")
_prepend_pythonpath(NETGUARD_DIR, ROOT)
netguard = _load_guard()
netguard.install()


TIERS = ("unit", "notebook", "browser")
SMOKE_RUN_TIMEOUT = 3600
"""Seconds allowed to a test that needs the smoke run: the first one to ask for it waits for every
notebook and the site (pytest-timeout counts fixture set-up); unit tests keep the default of 900."""


def tier_of(item) -> str:
    """The tier of one collected test (see the module docstring)."""
    fixtures = set(getattr(item, "fixturenames", ()))
    if "browser" in fixtures:
        return "browser"
    if "smoke_course_run" in fixtures or str(getattr(item, "path", "")).endswith(".ipynb"):
        return "notebook"
    return "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = tier_of(item)
        item.add_marker(getattr(pytest.mark, tier))
        if tier != "unit" and "smoke_course_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(SMOKE_RUN_TIMEOUT))
