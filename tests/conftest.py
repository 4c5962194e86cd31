"""Fixtures shared by several test files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def smoke_course_run(tmp_path_factory) -> Path:
    """Run the main job in smoke mode once per test session: every notebook, then the site.

    This is the only place the tests execute the lesson notebooks (the ``notebook`` tier reads its
    results; nbval is not part of the default run). Returns the output folder (``notebooks/``,
    ``site/``, ``summary.json``, ``summary.md``). A copy of the summary is kept in ``test-output/``
    for reading after the run. A notebook that fails does not stop the session: its own test in
    ``tests/test_notebooks.py`` fails and names the cell and line.
    """
    from m6rec_lib.course_runner import run_course

    out = tmp_path_factory.mktemp("course") / "smoke"
    run_course(smoke=True, out=out, book=True)
    keep = REPO_ROOT / "test-output"
    keep.mkdir(exist_ok=True)
    for name in ("summary.md", "summary.json"):
        if (out / name).exists():
            shutil.copy(out / name, keep / f"smoke-{name}")
    assert (out / "summary.json").is_file(), "the smoke run of the course wrote no summary.json"
    return out


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: tiny models gain nothing from threads, and threads that wait
    for each other at every operation stall badly on a busy machine. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
