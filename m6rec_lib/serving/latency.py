"""Timing a model honestly: warm-up, every request timed alone, p50 and p95, and comparisons.

A single timed call says little (the first calls pay for allocation and lazy set-up; a busy machine
adds noise), so :func:`measure_latency` warms up and times every call of a stream. To compare
variants on a shared computer, :func:`compare_latency` interleaves them: every request goes to
every variant, in a random order, so a busy moment slows all of them alike; and
:func:`latency_difference` compares two variants request by request, with a paired bootstrap
interval over the requests (the course's rule for every comparison of measured numbers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..metrics import PairedDifference, paired_bootstrap

__all__ = ["Latency", "measure_latency", "compare_latency", "latency_difference"]


@dataclass
class Latency:
    """Timings of repeated calls: ``samples_ms`` (one per timed call) and their summary.

    ``work`` (optional, one per timed call): a machine-free cost of each call, e.g. the block
    positions a :class:`~m6rec_lib.serving.scorer.SegmentScorer` ran (:class:`~m6rec_lib.serving.scorer.Work`).
    """

    samples_ms: np.ndarray
    work: np.ndarray | None = None

    @property
    def mean_work(self) -> float:
        """Mean work per call (NaN when no work was counted)."""
        return float(np.mean(self.work)) if self.work is not None and len(self.work) else float("nan")

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 50))

    @property
    def p95_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 95))

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.samples_ms))

    def as_dict(self) -> dict[str, float]:
        out = {"p50 ms": self.p50_ms, "p95 ms": self.p95_ms, "mean ms": self.mean_ms,
               "calls": int(len(self.samples_ms))}
        if self.work is not None:
            out["work per call"] = self.mean_work
        return out


def measure_latency(
    fn: Callable[..., Any],
    inputs: Sequence[Any] | None = None,
    *,
    warmup: int = 3,
    repeats: int = 20,
) -> Latency:
    """Time calls of ``fn`` after ``warmup`` untimed calls (caches, allocator, lazy init).

    Without ``inputs``: ``fn()`` is timed ``repeats`` times. With ``inputs`` (e.g. a stream of
    requests): ``fn(x)`` for the first ``warmup`` inputs untimed, then ``fn(x)`` for every input,
    timed, cycling until at least ``repeats`` calls are timed. Each call is timed alone with
    :func:`time.perf_counter`; gradients are off.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got {warmup} and {repeats}")
    if inputs is not None and len(inputs) == 0:
        raise ValueError("inputs is empty: pass at least one request (or None to call fn())")
    samples = []
    with torch.inference_mode():
        if inputs is None:
            for _ in range(warmup):
                fn()
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - start)
        else:
            for i in range(warmup):
                fn(inputs[i % len(inputs)])
            n = max(repeats, len(inputs))
            for i in range(n):
                x = inputs[i % len(inputs)]
                start = time.perf_counter()
                fn(x)
                samples.append(time.perf_counter() - start)
    return Latency(np.asarray(samples) * 1000.0)


def compare_latency(
    fns: Mapping[str, Callable[[Any], Any]],
    inputs: Sequence[Any],
    *,
    warmup: int = 3,
    seed: int = 0,
    counters: Mapping[str, Callable[[], float]] | None = None,
) -> dict[str, Latency]:
    """Time several functions on the same stream of inputs, interleaved.

    After ``warmup`` untimed rounds (each function on each of the first ``warmup`` inputs), every
    input is given to every function once, in a new random order per input, each call timed alone.
    Interleaving makes a busy moment of the machine hit all functions alike, so their latencies
    can be compared even on a shared computer. Functions see the inputs in stream order (a cache
    inside one fills as it would in service). Returns name -> :class:`Latency`.

    ``counters`` (optional): name -> a function reading a running total of some machine-free cost
    (e.g. ``lambda: model.work.total``); the increase over each timed call is stored in
    :attr:`Latency.work`, request by request.
    """
    if not fns:
        raise ValueError("give at least one function to time")
    if len(inputs) == 0:
        raise ValueError("inputs is empty: pass at least one request")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    names = list(fns)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {n: [] for n in names}
    counters = dict(counters or {})
    unknown = sorted(set(counters) - set(names))
    if unknown:
        raise KeyError(f"counters for functions that are not timed: {unknown}")
    work: dict[str, list[float]] = {n: [] for n in counters}
    with torch.inference_mode():
        for i in range(warmup):
            for n in names:
                fns[n](inputs[i % len(inputs)])
        for x in inputs:
            for j in rng.permutation(len(names)):
                name = names[j]
                before = counters[name]() if name in counters else 0.0
                start = time.perf_counter()
                fns[name](x)
                samples[name].append(time.perf_counter() - start)
                if name in counters:
                    work[name].append(counters[name]() - before)
    return {n: Latency(np.asarray(v) * 1000.0, np.asarray(work[n], dtype=np.float64) if n in work else None)
            for n, v in samples.items()}


def latency_difference(latencies: Mapping[str, Latency], a: str, b: str, *, n_boot: int = 2000,
                       confidence: float = 0.95, seed: int = 0) -> PairedDifference:
    """Milliseconds per request that ``a`` saves against ``b``, with a paired bootstrap interval.

    ``latencies``: the output of :func:`compare_latency` (both variants timed on the same requests,
    in the same order, interleaved). Requests are resampled with replacement, the same draw for both
    variants, so a request that is slow for both (a long history, a busy moment) cancels out.

    The result reads like every comparison of the course, where higher is better: ``diff`` is the
    mean of ``ms(b) - ms(a)`` over requests (the time ``a`` saves), so the verdict "a beats b" means
    "a is faster than b on this stream" and holds only when the interval lies above 0. Its ``a`` and
    ``b`` fields are the two variants' mean milliseconds per request.
    """
    for name in (a, b):
        if name not in latencies:
            raise KeyError(f"no latency measured for {name!r}; measured: {sorted(latencies)}")
    sa = np.asarray(latencies[a].samples_ms, dtype=np.float64)
    sb = np.asarray(latencies[b].samples_ms, dtype=np.float64)
    if len(sa) != len(sb):
        raise ValueError(f"{a!r} and {b!r} were timed on {len(sa)} and {len(sb)} requests; a paired "
                         "comparison needs the same requests (time them together with compare_latency)")
    if len(sa) < 2:
        raise ValueError("a paired comparison needs at least 2 timed requests")
    # paired over requests: the mean of ms(b) - ms(a), with the interval of that mean
    d = paired_bootstrap(sb, sa, names=(a, b), metric="ms saved per request", view="requests",
                         n_boot=n_boot, confidence=confidence, seed=seed)
    return replace(d, a=float(sa.mean()), b=float(sb.mean()))
