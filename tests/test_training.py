"""Device choice, threads, early stopping, the training loop, checkpoints and the model cache."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from m6rec_lib import training as tr


# ------------------------------------------------------------------------------ device, threads


def test_pick_device_defaults_to_cpu(monkeypatch):
    monkeypatch.delenv("M6REC_DEVICE", raising=False)
    assert tr.pick_device() == torch.device("cpu")
    assert tr.pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    auto = tr.pick_device("auto")
    if expected:
        assert auto.type == "cuda"
    else:
        assert auto.type in ("cpu", "mps")
    monkeypatch.setenv("M6REC_DEVICE", "cpu")
    assert tr.pick_device(None).type == "cpu"


def test_pick_device_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="not available"):
        assert tr.pick_device("cuda") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        tr.pick_device("tpu")


def test_configure_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert tr.configure_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("M6REC_THREADS", "2")
        assert tr.configure_threads() == 2
        monkeypatch.delenv("M6REC_THREADS")
        n = tr.configure_threads()
        assert 1 <= n <= 8
        with pytest.raises(ValueError):
            tr.configure_threads(0)
        monkeypatch.setenv("M6REC_THREADS", "two")
        with pytest.raises(ValueError, match="neither a number of threads nor 'auto'"):
            tr.configure_threads()
        monkeypatch.setenv("M6REC_THREADS", "auto")   # only pick_threads reads it; here: every core
        assert tr.configure_threads() == n
    finally:
        torch.set_num_threads(before)


def test_pick_threads_is_fixed_unless_asked_to_probe(monkeypatch):
    """The thread count decides the numbers (summation order), so training must not choose it by
    timing the machine: by default it is every core, the same on every run; "auto" probes."""
    from m6rec_lib import pretraining as pt

    before = torch.get_num_threads()
    probed = []
    real_randn = torch.randn
    monkeypatch.setattr(pt.torch, "randn", lambda *a, **k: probed.append(a) or real_randn(*a, **k))
    try:
        monkeypatch.delenv("M6REC_THREADS", raising=False)
        assert pt.pick_threads() == tr.configure_threads() and not probed
        monkeypatch.setenv("M6REC_THREADS", "1")
        assert pt.pick_threads() == 1 and torch.get_num_threads() == 1 and not probed
        monkeypatch.setenv("M6REC_THREADS", "auto")
        n = pt.pick_threads(probe_seconds=0.01)
        assert 1 <= n <= tr.configure_threads()
        if tr.configure_threads() > 1:
            assert probed   # the probe ran
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------ early stopping


def test_early_stopping_max_and_min():
    stop = tr.EarlyStopping(patience=2)
    assert [stop.update(v) for v in (0.1, 0.3, 0.2)] == [True, True, False]
    assert not stop.should_stop
    stop.update(0.25)
    assert stop.should_stop and stop.best == 0.3 and stop.best_epoch == 2
    low = tr.EarlyStopping(patience=1, mode="min", min_delta=0.1)
    assert low.update(1.0) and not low.update(0.95)  # not better by more than min_delta
    assert low.should_stop and low.best_epoch == 1
    nan = tr.EarlyStopping(patience=3)
    assert not nan.update(float("nan")) and nan.best is None


@pytest.mark.parametrize(
    "kwargs", [dict(patience=-1), dict(mode="up"), dict(min_delta=-0.1), dict(patience=1.5)]
)
def test_early_stopping_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        tr.EarlyStopping(**kwargs)


# ------------------------------------------------------------------------------ train loop


def regression_problem(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return x, y


def make_batches(x, y, size=16):
    def batches(epoch):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x), size):
            idx = order[i : i + size]
            yield x[idx], y[idx]

    return batches


def test_train_loop_learns_and_records_history():
    torch.manual_seed(0)
    x, y = regression_problem()
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(batch):
        xb, yb = batch
        return ((model(xb).squeeze(-1) - yb) ** 2).mean()

    def validate():
        assert not model.training and not torch.is_grad_enabled()
        return {"mse": ((model(x).squeeze(-1) - y) ** 2).mean().item(), "neg": -1.0}

    history = tr.train_loop(
        model, opt, make_batches(x, y), step, epochs=15, validate=validate, monitor="mse",
        mode="min", progress=False,
    )
    assert isinstance(history, pd.DataFrame)
    assert list(history.columns) == ["epoch", "train_loss", "mse", "neg", "seconds"]
    assert history["epoch"].tolist() == list(range(1, 16))
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0] / 10
    assert history["mse"].iloc[-1] < 1e-2
    assert history.attrs["monitor"] == "mse" and history.attrs["best_epoch"] >= 10
    assert (history["seconds"] >= 0).all()


def test_train_loop_accepts_a_list_of_batches_and_no_validation(tmp_path):
    x, y = regression_problem()
    model = nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    data = list(zip(x.split(16), y.split(16)))
    path = tmp_path / "ckpt" / "last.pt"
    history = tr.train_loop(
        model, opt, data, lambda b: ((model(b[0]).squeeze(-1) - b[1]) ** 2).mean(), epochs=3,
        checkpoint_path=path, checkpoint_meta={"lr": 0.05}, progress=False,
    )
    assert len(history) == 3 and "validation" not in history
    state, meta = tr.load_checkpoint(path)
    assert meta == {"lr": 0.05, "epoch": 3}
    torch.testing.assert_close(state["weight"], model.weight)


def test_early_stopping_restores_the_best_weights(tmp_path):
    """A scripted validation curve peaks at epoch 3; the loop stops 2 epochs later, rolls back."""
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    curve = iter([0.1, 0.2, 0.5, 0.4, 0.3, 0.9, 0.9])
    snapshots = {}

    def validate():
        snapshots[len(snapshots) + 1] = model.weight.detach().clone()
        return next(curve)

    x = torch.randn(8, 2)
    path = tmp_path / "best.pt"
    history = tr.train_loop(
        model, opt, [x], lambda b: model(b).pow(2).mean() + 1.0, epochs=7, validate=validate,
        early_stopping=tr.EarlyStopping(patience=2), checkpoint_path=path,
        checkpoint_meta={"config": {"d": 2}}, progress=False,
    )
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert history.attrs["best_epoch"] == 3 and history.attrs["stopped_early"]
    assert history.attrs["best"] == 0.5
    torch.testing.assert_close(model.weight.detach(), snapshots[3])
    assert not torch.equal(snapshots[3], snapshots[5])
    _, meta = tr.load_checkpoint(path, expected_meta={"config": {"d": 2}})
    assert meta["epoch"] == 3 and meta["validation"] == 0.5


def test_train_loop_errors_are_actionable():
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.ones(2, 1)
    with pytest.raises(FloatingPointError, match="epoch 1, batch 1"):
        tr.train_loop(model, opt, [x], lambda b: model(b).sum() * float("nan"), 1, progress=False)
    with pytest.raises(TypeError, match="scalar loss"):
        tr.train_loop(model, opt, [x], lambda b: model(b), 1, progress=False)
    once = (b for b in [x])
    with pytest.raises(ValueError, match="generator is used up"):
        tr.train_loop(model, opt, once, lambda b: model(b).sum(), 2, progress=False)
    with pytest.raises(ValueError, match="needs a validate"):
        tr.train_loop(model, opt, [x], lambda b: model(b).sum(), 2,
                      early_stopping=tr.EarlyStopping(), progress=False)
    with pytest.raises(ValueError, match="epochs"):
        tr.train_loop(model, opt, [x], lambda b: model(b).sum(), 0, progress=False)


def test_progress_bar_runs(capsys):
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tr.train_loop(model, opt, [torch.ones(2, 1)], lambda b: model(b).pow(2).mean(), 2,
                  validate=lambda: 1.0, desc="tiny")
    assert "tiny" in capsys.readouterr().err


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_round_trip_with_numpy_and_meta(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    path = tr.save_checkpoint(tmp_path / "m.pt", model, {"config": {"hidden": 4}, "ndcg": 0.25})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # atomic: no temp file left
    fresh = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    state, meta = tr.load_checkpoint(path, fresh, expected_meta={"config": {"hidden": 4}})
    assert meta == {"config": {"hidden": 4}, "ndcg": 0.25}
    for a, b in zip(model.parameters(), fresh.parameters()):
        torch.testing.assert_close(a, b)

    arrays = {"factors": np.arange(6.0).reshape(2, 3), "n": np.int64(3), "names": ["a", "b"]}
    tr.save_checkpoint(tmp_path / "a.pt", arrays, {"seed": np.int64(1)})
    state, meta = tr.load_checkpoint(tmp_path / "a.pt")
    assert isinstance(state["factors"], np.ndarray)
    np.testing.assert_array_equal(state["factors"], arrays["factors"])
    assert state["n"] == 3 and state["names"] == ["a", "b"] and meta == {"seed": 1}


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train the model first"):
        tr.load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(tr.CheckpointError, match="corrupt"):
        tr.load_checkpoint(bad)
    model = nn.Linear(2, 2)
    good = tr.save_checkpoint(tmp_path / "good.pt", model, {"config": {"d": 2}})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(tr.CheckpointError, match="corrupt"):
        tr.load_checkpoint(truncated)
    with pytest.raises(tr.CheckpointError, match="config: checkpoint has .*'d': 2.*expected"):
        tr.load_checkpoint(good, expected_meta={"config": {"d": 3}})
    with pytest.raises(tr.CheckpointError, match="does not fit this model"):
        tr.load_checkpoint(good, nn.Linear(3, 2))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.ones(1)}, foreign)
    with pytest.raises(tr.CheckpointError, match="not written by"):
        tr.load_checkpoint(foreign)
    with pytest.raises(ValueError, match="JSON"):
        tr.save_checkpoint(tmp_path / "x.pt", model, {"when": object()})
    assert not (tmp_path / "x.pt").exists()


def test_checkpoints_are_loaded_with_weights_only(tmp_path, capsys):
    """A pickle that would run code is refused, not executed."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": tr.CHECKPOINT_FORMAT, "payload": Evil()}, evil, pickle_module=pickle)
    with pytest.raises(tr.CheckpointError):
        tr.load_checkpoint(evil)
    assert "pwned" not in capsys.readouterr().out


# ------------------------------------------------------------------------------ cache


def test_config_hash_is_stable_and_order_free():
    assert tr.config_hash({"a": 1, "b": [1, 2]}) == tr.config_hash({"b": [1, 2], "a": 1})
    assert tr.config_hash({"a": 1}) != tr.config_hash({"a": 2})
    assert len(tr.config_hash({"a": 1})) == 10
    with pytest.raises(ValueError):
        tr.artifact_path("bad name/", {"a": 1})


def test_cached_artifact_builds_once(monkeypatch, tmp_path):
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return {"items": np.ones((2, 2)), "score": 0.5}

    cfg = {"factors": 2, "reg": 0.1}
    first = tr.cached_artifact("ials", cfg, build)
    second = tr.cached_artifact("ials", dict(reversed(list(cfg.items()))), build)
    assert len(calls) == 1
    np.testing.assert_array_equal(first["items"], second["items"])
    assert second["score"] == 0.5
    assert tr.artifact_path("ials", cfg).parent == tmp_path
    tr.cached_artifact("ials", {"factors": 3, "reg": 0.1}, build)
    assert len(calls) == 2
    tr.cached_artifact("ials", cfg, build, rebuild=True)
    assert len(calls) == 3


def test_cached_artifact_rebuilds_a_corrupt_file(tmp_path):
    cfg = {"k": 1}
    tr.artifact_path("x", cfg, tmp_path).write_bytes(b"junk")
    with pytest.warns(UserWarning, match="rebuilding x"):
        out = tr.cached_artifact("x", cfg, lambda: {"v": torch.zeros(1)}, directory=tmp_path)
    assert torch.equal(out["v"], torch.zeros(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr.cached_artifact("x", cfg, lambda: pytest.fail("should be cached"), directory=tmp_path)


def test_cached_model_trains_once_and_keeps_the_history(tmp_path):
    cfg = {"d": 3, "epochs": 2}
    x, y = regression_problem()
    runs = []

    def train(model):
        runs.append(1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return tr.train_loop(model, opt, [(x, y)],
                             lambda b: ((model(b[0]).squeeze(-1) - b[1]) ** 2).mean(),
                             cfg["epochs"], progress=False)

    torch.manual_seed(0)
    trained, meta = tr.cached_model("lin", cfg, nn.Linear(3, 1), train, directory=tmp_path)
    assert not meta["cached"] and len(meta["history"]) == 2
    torch.manual_seed(1)
    again, meta2 = tr.cached_model("lin", cfg, nn.Linear(3, 1), train, directory=tmp_path)
    assert meta2["cached"] and runs == [1]
    assert meta2["history"] == meta["history"] and meta2["config"] == cfg
    torch.testing.assert_close(again.weight, trained.weight)


def test_cache_key_includes_the_code_version(monkeypatch, tmp_path):
    """A change to the library's code changes every cache file name: stale weights are never reused."""
    cfg = {"k": 1}
    before = tr.artifact_path("x", cfg, tmp_path)
    assert tr.code_version() in (tr.code_version(),) and len(tr.code_version()) == 12
    monkeypatch.setattr(tr, "_CODE_VERSION", "another-code")
    assert tr.artifact_path("x", cfg, tmp_path) != before
    calls = []
    tr.cached_artifact("x", cfg, lambda: calls.append(1) or {"v": 1}, directory=tmp_path)
    monkeypatch.setattr(tr, "_CODE_VERSION", "changed-again")
    tr.cached_artifact("x", cfg, lambda: calls.append(1) or {"v": 1}, directory=tmp_path)
    assert calls == [1, 1]                               # built again after the "code change"


def test_code_version_follows_the_source(tmp_path, monkeypatch):
    monkeypatch.setattr(tr, "_CODE_VERSION", None)
    first = tr.code_version()
    monkeypatch.setattr(tr, "_CODE_VERSION", None)
    assert tr.code_version() == first                    # stable for the same code


def test_a_shape_mismatched_checkpoint_loads_nothing(tmp_path):
    source = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    path = tr.save_checkpoint(tmp_path / "m.pt", source)
    target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))   # first layer fits, second does not
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(tr.CheckpointError, match="nothing was loaded.*1.weight"):
        tr.load_checkpoint(path, target)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_tests_use_their_own_cache_folder():
    import os
    from pathlib import Path

    from m6rec_lib.config import REPO_ROOT, cache_dir

    assert cache_dir() != REPO_ROOT / "cache"
    assert Path(os.environ["M6REC_CACHE"]) == cache_dir()


def test_matmul_gflops_is_a_positive_speed():
    from m6rec_lib.training import matmul_gflops

    assert matmul_gflops(1, n=64, repeats=2) > 0
