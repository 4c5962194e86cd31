"""config (run modes, folders), atomic writes and the seeding helper."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from m6rec_lib import atomic, config
from m6rec_lib.seeding import seed_everything


SPELLINGS_ON = ["1", "true", "True", "TRUE", "tRuE", " true ", "t", "T", "yes", "Yes", "YES", "y", "Y", "on", "On",
                "ON"]
SPELLINGS_OFF = ["", "  ", "0", "false", "False", "FALSE", "fAlSe", " false\n", "f", "F", "no", "No", "NO", "n",
                 "N", "off", "Off", "OFF", "none", "None"]


@pytest.mark.parametrize("value, expected", [(v, True) for v in SPELLINGS_ON] + [(v, False) for v in SPELLINGS_OFF])
def test_smoke_from_env_reads_every_spelling_of_true_and_false(monkeypatch, value, expected):
    monkeypatch.setenv(config.SMOKE_ENV, value)
    assert config.smoke_from_env() is expected
    assert config.resolve_smoke(None) is expected
    assert config.resolve_smoke(not expected) is (not expected)  # a notebook parameter wins


def test_smoke_unset_means_full_mode(monkeypatch):
    monkeypatch.delenv(config.SMOKE_ENV, raising=False)
    assert config.smoke_from_env() is False


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), (1, True), (0, False),
                                             ("False", False), ("false", False), ("0", False), ("True", True),
                                             ("1", True), ("yes", True)])
def test_a_notebook_parameter_given_as_text_is_read_like_the_environment(monkeypatch, value, expected):
    """``papermill -r SMOKE False`` passes the text "False": it must mean off, not a non-empty string."""
    monkeypatch.setenv(config.SMOKE_ENV, "1" if not expected else "0")   # the parameter must win
    assert config.resolve_smoke(value) is expected


@pytest.mark.parametrize("value", ["smoke", "2", "-1", "ture", "nope", "full"])
def test_smoke_typo_is_an_error(monkeypatch, value):
    monkeypatch.setenv(config.SMOKE_ENV, value)
    with pytest.raises(ValueError, match="M6REC_SMOKE=1") as info:
        config.smoke_from_env()
    assert repr(value) in str(info.value) and "M6REC_SMOKE=0" in str(info.value)
    with pytest.raises(ValueError, match="SMOKE"):
        config.resolve_smoke(value)


def test_choose():
    assert config.choose(True, full=10, smoke_value=1) == 1
    assert config.choose(False, full=10, smoke_value=1) == 10


def test_folders_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("M6REC_RUNS", str(tmp_path / "r"))
    assert config.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    assert config.runs_dir() == tmp_path / "r" and (tmp_path / "r").is_dir()


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    atomic.atomic_write_text(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(target) as fh:
            fh.write("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "first"  # the old content survives a failed write
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]  # no temporary file left
    atomic.atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"


def test_atomic_files_get_normal_permissions(tmp_path):
    target = tmp_path / "f.bin"
    atomic.atomic_write_bytes(target, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_atomic_open_refuses_reading(tmp_path):
    with pytest.raises(ValueError, match="writing"):
        with atomic.atomic_open(tmp_path / "x", "r"):
            pass


def test_seed_everything_is_reproducible():
    g1 = seed_everything(3)
    a = (np.random.rand(), torch.rand(1).item(), g1.random())
    g2 = seed_everything(3)
    b = (np.random.rand(), torch.rand(1).item(), g2.random())
    assert a == b
    with pytest.raises(ValueError, match="non-negative"):
        seed_everything(-1)
