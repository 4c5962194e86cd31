"""One seeding helper for the whole course, so a rerun gives the same recorded metrics."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int = 0, *, deterministic_torch: bool = True) -> np.random.Generator:
    """Seed Python, NumPy and PyTorch; return a NumPy ``Generator`` seeded the same way.

    With ``deterministic_torch`` PyTorch is asked to use deterministic kernels (on CPU this costs
    nothing measurable). Thread count is left alone, but it is part of what decides the
    numbers: matrix products add their terms in a thread-dependent order, so training with 1 and
    with 2 threads gives (slightly, and in bfloat16 visibly) different models. The same seed, thread
    count and precision give the same numbers on every run.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # the data lessons do not need torch
        pass
    else:
        torch.manual_seed(seed)
        if deterministic_torch:
            torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)
