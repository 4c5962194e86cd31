"""config (run modes, folders), atomic writes and the seeding helper."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from m6rec_lib import atomic, config
from m6rec_lib.seeding import seed_everything


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), ("0", False),
                                             ("", False), ("off", False)])
def test_smoke_from_env(monkeypatch, value, expected):
    monkeypatch.setenv(config.SMOKE_ENV, value)
    assert config.smoke_from_env() is expected
    assert config.resolve_smoke(None) is expected
    assert config.resolve_smoke(not expected) is (not expected)  # a notebook parameter wins


def test_smoke_typo_is_an_error(monkeypatch):
    monkeypatch.setenv(config.SMOKE_ENV, "smoke")
    with pytest.raises(ValueError, match="M6REC_SMOKE=1"):
        config.smoke_from_env()


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
