"""Training helpers shared by every model of the course: device, threads, the loop, checkpoints.

The loop is deliberately plain so that a notebook can show it and then switch to this version::

    def step(batch):                      # one batch -> scalar loss tensor
        users, items = batch
        return F.cross_entropy(model(users), items)

    history = train_loop(
        model, optimizer, batches=lambda epoch: make_batches(epoch), step=step, epochs=20,
        validate=lambda: evaluate(model, validation)["ndcg@10"],
        early_stopping=EarlyStopping(patience=3),
    )
    history.plot(x="epoch", y=["train_loss", "validation"])

Trained models that later notebooks reuse are cached by configuration with :func:`cached_model`
(or :func:`cached_artifact` for anything else): the first notebook that needs one trains it, the
others load it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from m6rec_lib import config
from m6rec_lib.atomic import atomic_path

CHECKPOINT_FORMAT = "m6rec-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable, or does not match the model or configuration asked for."""


# --------------------------------------------------------------------------------------------
# device and threads


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """The device to train on.

    ``None`` or ``"cpu"``: the CPU (the course's default, so numbers are the same everywhere).
    ``"auto"``: CUDA if available, else Apple's MPS, else the CPU. ``"cuda"``, ``"cuda:1"``,
    ``"mps"``: that device, or the CPU with a warning when it is not available. ``$M6REC_DEVICE`` is used
    when ``prefer`` is None.
    """
    if isinstance(prefer, torch.device):
        prefer = str(prefer)
    choice = (prefer or os.environ.get("M6REC_DEVICE", "") or "cpu").strip().lower()
    cuda_ok = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if choice == "auto":
        return torch.device("cuda" if cuda_ok else "mps" if mps_ok else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if cuda_ok:
            device = torch.device(choice)
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise ValueError(
                    f"{choice} asked for, but there are {torch.cuda.device_count()} CUDA devices"
                )
            return device
    elif choice == "mps":
        if mps_ok:
            return torch.device("mps")
    else:
        raise ValueError(f"unknown device {choice!r}; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'")
    warnings.warn(f"{choice} is not available on this machine; training on the CPU instead.")
    return torch.device("cpu")


def configure_threads(n: int | None = None) -> int:
    """Set how many CPU threads PyTorch uses for one operation; return the number set.

    ``None`` means ``$M6REC_THREADS`` if set to a number, else (unset, or ``auto``, which only
    :func:`m6rec_lib.pretraining.pick_threads` reads) the cores this process may use (its CPU
    affinity), capped at 8: more threads than cores only adds contention, and on a shared
    machine the affinity is what we really have.
    """
    if n is None:
        env = os.environ.get("M6REC_THREADS", "").strip()
        if env and env.lower() != "auto":
            try:
                n = int(env)
            except ValueError:
                raise ValueError(f"M6REC_THREADS={env!r} is neither a number of threads nor 'auto'") from None
        else:
            try:
                available = len(os.sched_getaffinity(0))
            except AttributeError:  # macOS, Windows
                available = os.cpu_count() or 1
            n = min(available, 8)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    n = int(n)
    torch.set_num_threads(n)
    return n


def matmul_gflops(threads: int, dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 5) -> float:
    """This machine's matrix-multiplication speed: the best GFLOP/s of an ``n x n`` by ``n x n``
    product (``2 n^3`` FLOPs) over ``repeats`` rounds, with ``threads`` threads (left set).

    The yardstick the benchmarks divide training speed by ("fraction of the matmul peak"); the best
    round, because on a shared machine the others measure the neighbours.
    """
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b                                                       # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        best = min(best, (time.perf_counter() - started) / 4)
    return 2 * n**3 / best / 1e9


# --------------------------------------------------------------------------------------------
# early stopping


class EarlyStopping:
    """Track a validation metric; say when it stopped improving and which epoch was best.

    ``mode="max"`` for metrics where higher is better (NDCG, recall), ``"min"`` for losses. An
    epoch improves when it beats the best so far by more than ``min_delta``. Training stops after
    ``patience`` epochs in a row without improvement.

    >>> stop = EarlyStopping(patience=2)
    >>> [stop.update(v) for v in (0.1, 0.3, 0.2, 0.25)]
    [True, True, False, False]
    >>> stop.should_stop, stop.best, stop.best_epoch
    (True, 0.3, 2)
    """

    def __init__(self, patience: int = 3, mode: str = "max", min_delta: float = 0.0) -> None:
        if not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"patience must be a non-negative integer, got {patience!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        self.patience = int(patience)
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.epochs_seen = 0

    def is_better(self, value: float) -> bool:
        """True when ``value`` beats the best so far by more than ``min_delta``."""
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, value: float, epoch: int | None = None) -> bool:
        """Record the metric of one epoch (1-based ``epoch``, default: count); True if improved."""
        self.epochs_seen += 1
        epoch = self.epochs_seen if epoch is None else int(epoch)
        value = float(value)
        if self.is_better(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True after ``patience`` epochs in a row without improvement (``patience=0``: one)."""
        return self.bad_epochs >= max(self.patience, 1)

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(patience={self.patience}, mode={self.mode!r}, best={self.best}, "
            f"best_epoch={self.best_epoch}, bad_epochs={self.bad_epochs})"
        )


# --------------------------------------------------------------------------------------------
# the training loop


def _as_metrics(result: Any) -> dict[str, float]:
    if isinstance(result, Mapping):
        return {str(k): float(v) for k, v in result.items()}
    if isinstance(result, torch.Tensor):
        result = result.item()
    return {"validation": float(result)}


def train_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int], Iterable] | Iterable,
    step: Callable[[Any], torch.Tensor],
    epochs: int,
    *,
    validate: Callable[[], float | Mapping[str, float]] | None = None,
    monitor: str | None = None,
    mode: str = "max",
    early_stopping: EarlyStopping | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    checkpoint_meta: Mapping[str, Any] | None = None,
    scheduler: Any = None,
    grad_clip: float | None = None,
    progress: bool = True,
    desc: str = "training",
) -> pd.DataFrame:
    """Train ``model`` for up to ``epochs`` epochs; return the history, one row per epoch.

    Parameters
    ----------
    batches
        What to iterate over in one epoch: either ``batches(epoch) -> iterable`` (epoch is
        1-based; reshuffle with a seed that depends on it) or a re-iterable such as a list or a
        ``DataLoader``.
    step
        ``step(batch) -> loss``: a scalar tensor to minimise. The loop does ``zero_grad``,
        ``backward``, optional gradient clipping and ``optimizer.step``; ``step`` only computes.
    validate
        Called after every epoch with the model in eval mode under ``torch.no_grad()``; returns a
        number (recorded as ``validation``) or a dict of numbers (each one a column).
    monitor
        The key of ``validate``'s dict that early stopping and the best checkpoint follow
        (default: its first key).
    mode
        ``"max"`` (default) when a higher monitored value is better, ``"min"`` for a loss; used to
        find the best epoch when there is no ``early_stopping`` (which has its own mode).
    early_stopping
        Stop when the monitored metric stops improving, and restore the best epoch's weights at
        the end. Needs ``validate``.
    checkpoint_path
        Save the model (:func:`save_checkpoint`) at every improvement, or after the last epoch
        when there is no validation. ``checkpoint_meta`` is stored with it.
    scheduler
        A learning-rate scheduler, stepped once per epoch.

    Returns
    -------
    DataFrame with columns ``epoch``, ``train_loss`` (mean over the epoch's batches), the
    validation metric(s), ``seconds``; ``history.attrs`` holds ``best_epoch``, ``best`` (the
    monitored value), ``monitor`` and ``stopped_early``.
    """
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if early_stopping is not None and validate is None:
        raise ValueError("early_stopping needs a validate function to follow")
    from tqdm.auto import tqdm

    tracker = early_stopping
    if tracker is None and validate is not None:
        tracker = EarlyStopping(patience=epochs, mode=mode)  # only to find the best epoch
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = []
    stopped_early = False

    bar = tqdm(range(1, int(epochs) + 1), desc=desc, disable=not progress, unit="epoch")
    for epoch in bar:
        started = time.perf_counter()
        model.train()
        total, n_batches = 0.0, 0
        for batch in batches(epoch) if callable(batches) else batches:
            loss = step(batch)
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise TypeError(
                    "step(batch) must return a scalar loss tensor (e.g. loss.mean()), got "
                    f"{type(loss).__name__}{tuple(loss.shape) if hasattr(loss, 'shape') else ''}"
                )
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss.item()} at epoch {epoch}, batch {n_batches + 1}; "
                    "lower the learning rate, or check the inputs for NaN."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            total += loss.item()
            n_batches += 1
        if n_batches == 0:
            raise ValueError(
                f"epoch {epoch} had no batches. Check what `batches` yields; a generator is used "
                "up after one epoch, so pass a function `epoch -> batches` instead."
            )
        if scheduler is not None:
            scheduler.step()
        row: dict[str, Any] = {"epoch": epoch, "train_loss": total / n_batches}

        improved = False
        if validate is not None:
            model.eval()
            with torch.no_grad():
                metrics = _as_metrics(validate())
            monitor = monitor or next(iter(metrics))
            if monitor not in metrics:
                raise KeyError(f"validate() returned {sorted(metrics)}; no {monitor!r} to monitor")
            row.update(metrics)
            improved = tracker.update(metrics[monitor], epoch)
            if improved and (early_stopping is not None or checkpoint_path is not None):
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds")})

        if checkpoint_path is not None and improved:
            meta = {**(checkpoint_meta or {}), "epoch": epoch, monitor: row[monitor]}
            save_checkpoint(checkpoint_path, model, meta)
        if early_stopping is not None and early_stopping.should_stop:
            stopped_early = epoch < epochs
            break
    bar.close()

    if checkpoint_path is not None and validate is None:
        save_checkpoint(checkpoint_path, model, {**(checkpoint_meta or {}), "epoch": epoch})
    if early_stopping is not None and best_state is not None:
        model.load_state_dict(best_state)  # the best epoch's weights, not the last epoch's
    frame = pd.DataFrame(history)
    frame.attrs.update(
        best_epoch=tracker.best_epoch if tracker else None,
        best=tracker.best if tracker else None,
        monitor=monitor,
        stopped_early=stopped_early,
    )
    return frame


# --------------------------------------------------------------------------------------------
# checkpoints


def _encode(obj: Any) -> Any:
    """Make ``obj`` loadable with ``weights_only=True``: NumPy arrays become tagged tensors."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("object arrays cannot be saved in a checkpoint; convert them first")
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_encode(v) for v in obj)
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_decode(v) for v in obj)
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _meta_json(meta: Mapping[str, Any] | None) -> str:
    try:
        return json.dumps(dict(meta or {}), sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"checkpoint metadata must be JSON-serialisable (numbers, strings, lists, dicts): {exc}"
        ) from exc


def save_checkpoint(
    path: str | os.PathLike[str],
    model_or_state: nn.Module | Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Save a model's ``state_dict`` (or any state dict) with JSON metadata, atomically.

    ``state`` may hold tensors, numbers, strings, lists, dicts and NumPy arrays (stored as
    tensors, given back as arrays). ``meta`` must be JSON-serialisable (a config, the epoch,
    metrics). The file is written to a temporary name and renamed, so a crash never leaves a
    half-written checkpoint.
    """
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    if not isinstance(state, Mapping):
        raise TypeError(f"expected an nn.Module or a dict, got {type(state).__name__}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "meta_json": _meta_json(meta),
        "state": _encode(dict(state)),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _mismatch(stored: Any, wanted: Any) -> bool:
    return json.loads(_meta_json({"x": stored})) != json.loads(_meta_json({"x": wanted}))


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    *,
    expected_meta: Mapping[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
    strict: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`; return ``(state, meta)``.

    Loading uses ``torch.load(..., weights_only=True)``: no code from the file is run. With
    ``model``, the state is also loaded into it. ``expected_meta`` lists metadata the checkpoint
    must have (e.g. ``{"config": config}``); any difference raises :class:`CheckpointError`.

    Raises ``FileNotFoundError`` when there is no file and :class:`CheckpointError` when it is
    unreadable or does not fit the model or the expected metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; train the model first (the notebook that trains it saves it)"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, unsafe pickle...
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]}). It is "
            "corrupt or was written by something else: delete it and train again."
        ) from exc
    if not (isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT):
        raise CheckpointError(
            f"{path} was not written by m6rec_lib.training.save_checkpoint; delete it and train "
            "again, or load it with torch.load yourself."
        )
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload['version']}, newer than this library "
            f"({CHECKPOINT_VERSION}); update m6rec_lib."
        )
    meta = json.loads(payload["meta_json"])
    state = _decode(payload["state"])
    if expected_meta:
        diffs = [
            f"{k}: checkpoint has {meta.get(k, '<missing>')!r}, expected {v!r}"
            for k, v in expected_meta.items()
            if k not in meta or _mismatch(meta[k], v)
        ]
        if diffs:
            raise CheckpointError(
                f"{path} does not match the configuration asked for: {'; '.join(diffs)}. Train a "
                "model with this configuration (or delete the file)."
            )
    if model is not None:
        own = model.state_dict()
        wrong = [f"{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}" for k, v in state.items()
                 if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]
        if wrong:  # checked first: load_state_dict would copy the tensors that fit before failing
            raise CheckpointError(
                f"{path} does not fit this model, nothing was loaded (was it trained with another "
                f"configuration? its metadata: {meta}): shapes differ for {'; '.join(wrong[:5])}")
        try:
            model.load_state_dict(state, strict=strict)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path} does not fit this model (was it trained with another configuration? "
                f"its metadata: {meta}): {exc}"
            ) from exc
    return state, meta


# --------------------------------------------------------------------------------------------
# caching trained things by configuration

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def config_hash(config_: Mapping[str, Any], length: int = 10) -> str:
    """A short, stable hash of a JSON-serialisable configuration (key order does not matter)."""
    return hashlib.sha256(_meta_json(config_).encode()).hexdigest()[:length]


_CODE_VERSION: str | None = None


def code_version() -> str:
    """A hash of the library's source code (every ``m6rec_lib/**/*.py``) and its version.

    It is part of every cache key, so weights trained by an older version of the code are never
    loaded by a newer one: any change to the library trains again, even one that would not have
    mattered (a stale model that still loads is the worse mistake).
    """
    global _CODE_VERSION
    if _CODE_VERSION is None:
        from . import __version__

        root = Path(__file__).resolve().parent
        digest = hashlib.sha256(__version__.encode())
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        _CODE_VERSION = digest.hexdigest()[:12]
    return _CODE_VERSION


def artifact_path(
    name: str, config_: Mapping[str, Any], directory: str | os.PathLike[str] | None = None
) -> Path:
    """``<cache_dir>/<name>-<hash of (config, code version)>.pt``: where a trained thing is cached."""
    if not _NAME_RE.match(name):
        raise ValueError(f"artifact names use letters, digits, '_', '.', '-'; got {name!r}")
    folder = Path(directory) if directory is not None else config.cache_dir()
    return folder / f"{name}-{config_hash({'config': dict(config_), 'code': code_version()})}.pt"


def cached_artifact(
    name: str,
    config_: Mapping[str, Any],
    build_fn: Callable[[], Mapping[str, Any]],
    *,
    directory: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
) -> dict[str, Any]:
    """Return the dict ``build_fn()`` makes for ``config_``, building it only when not cached.

    The dict (tensors, NumPy arrays, numbers, strings, lists, dicts) is stored in
    ``artifact_path(name, config_)`` together with the configuration, and loaded from there the
    next time, by this notebook or another one. ``rebuild=True`` builds it again. A cached file
    whose stored configuration differs (or that is unreadable) is rebuilt with a warning::

        factors = cached_artifact("ials", cfg, lambda: train_ials(train_matrix, **cfg))
        user_factors, item_factors = factors["users"], factors["items"]
    """
    path = artifact_path(name, config_, directory)
    if path.is_file() and not rebuild:
        try:
            state, _ = load_checkpoint(path, expected_meta={"name": name, "config": dict(config_)})
            return state
        except CheckpointError as exc:
            warnings.warn(f"rebuilding {name}: {exc}")
    state = build_fn()
    if isinstance(state, nn.Module):
        raise TypeError("build_fn returned a model; use cached_model() for models")
    save_checkpoint(path, state, {"name": name, "config": dict(config_)})
    return _decode(_encode(dict(state)))


def cached_model(
    name: str,
    config_: Mapping[str, Any],
    model: nn.Module,
    train_fn: Callable[[nn.Module], Any],
    *,
    directory: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load ``model``'s trained weights for ``config_`` from the cache, or train and cache them.

    ``model`` is a freshly built model for this configuration; ``train_fn(model)`` trains it in
    place and may return its history (a DataFrame from :func:`train_loop`, or a dict), which is
    stored too. Returns ``(model, meta)``: ``meta["cached"]`` says whether training was skipped,
    ``meta["history"]`` is the training history (list of row dicts) either way.
    """
    path = artifact_path(name, config_, directory)
    expected = {"name": name, "config": dict(config_)}
    if path.is_file() and not rebuild:
        try:
            _, meta = load_checkpoint(path, model, expected_meta=expected)
            return model, {**meta, "cached": True}
        except CheckpointError as exc:
            warnings.warn(f"retraining {name}: {exc}")
    started = time.perf_counter()
    result = train_fn(model)
    if isinstance(result, pd.DataFrame):
        history = json.loads(result.to_json(orient="records"))
    elif isinstance(result, Mapping):
        history = json.loads(_meta_json(result))
    else:
        history = None
    meta = {**expected, "history": history, "train_seconds": time.perf_counter() - started}
    save_checkpoint(path, model, meta)
    return model, {**meta, "cached": False}

