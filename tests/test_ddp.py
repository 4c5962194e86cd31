"""scripts/pretrain_ddp.py: the same pretraining on one process and on two (torchrun, gloo, CPU).

The two-process run uses loopback only (127.0.0.1, ``GLOO_SOCKET_IFNAME=lo``), so it passes under
the test run's network guard.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "pretrain_ddp.py"
TINY = ["--smoke", "--max-customers", "150", "--vocab-size", "800", "--steps", "12", "--batch-size", "8",
        "--n-layer", "1", "--d-model", "32", "--eval-examples", "16", "--quiet"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "M6REC_CACHE": str(out / "cache"), "GLOO_SOCKET_IFNAME": "lo",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(SCRIPT), *TINY, "--out", str(out / "weights.pt"), "--checksum-dir", str(out / "ranks")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out


def _rank(out: Path, r: int) -> dict:
    return json.loads((out / "ranks" / f"rank{r}.json").read_text())


def test_two_ranks_end_with_identical_weights_and_the_loss_falls(two_process_run):
    r0, r1 = _rank(two_process_run, 0), _rank(two_process_run, 1)
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["checksum"] == r1["checksum"]  # bit-identical replicas
    assert r0["train_losses"] == r1["train_losses"]  # the reduced (global) loss, seen by both
    assert len(r0["train_losses"]) == 12
    assert r0["val_losses"][-1] < r0["val_losses"][0] - 0.2
    assert np.mean(r0["train_losses"][-3:]) < np.mean(r0["train_losses"][:3]) - 0.2
    # rank 0 wrote the checkpoint, and it holds the weights whose checksum both ranks report
    from m6rec_lib.training import load_checkpoint

    state, meta = load_checkpoint(two_process_run / "weights.pt")
    assert meta["world_size"] == 2 and meta["checksum"] == r0["checksum"]
    assert not list(two_process_run.glob(".weights.*"))  # no temporary file left behind


def test_one_process_takes_the_same_steps(two_process_run, tmp_path, monkeypatch):
    """The script without torchrun: same global batches, same gradient (up to float rounding)."""
    import importlib.util

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("pretrain_ddp", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    threads = torch.get_num_threads()
    try:
        assert script.main([*TINY, "--threads", "1", "--out", str(tmp_path / "w.pt"),
                            "--checksum-dir", str(tmp_path / "ranks")]) == 0
    finally:
        torch.set_num_threads(threads)
    single = json.loads((tmp_path / "ranks" / "rank0.json").read_text())
    double = _rank(two_process_run, 0)
    assert single["world_size"] == 1
    np.testing.assert_allclose(single["train_losses"], double["train_losses"], rtol=1e-4)
    np.testing.assert_allclose(single["val_losses"], double["val_losses"], rtol=1e-4)


def test_batch_must_split_over_ranks(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("pretrain_ddp", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setattr(script, "init_world", lambda backend: (0, 3, 0, torch.device("cpu")))
    with pytest.raises(ValueError, match="divisible"):
        script.main([*TINY, "--batch-size", "8"])
