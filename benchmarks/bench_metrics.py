"""How long the full-catalogue evaluator takes at the course's scale (~5.9k customers x ~4.6k items).

Run from the repository root: ``python benchmarks/bench_metrics.py`` (synthetic scores and baskets)
and ``python benchmarks/bench_metrics.py --baselines`` to also time fitting and scoring the baselines
on the bundled Online Retail II split. Prints seconds; on a busy machine expect several times more.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import scipy.sparse as sp

from m6rec_lib.data.evalset import EvalSet
from m6rec_lib.metrics import evaluate, evaluate_both, evaluate_sampled


def synthetic_eval_set(n_users: int = 5900, n_items: int = 4600, seed: int = 0) -> tuple[EvalSet, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.geometric(1 / 20, size=n_users)                  # basket sizes, mean ~20
    targets = [rng.choice(np.arange(1, n_items + 1), size=min(s, n_items), replace=False) for s in sizes]
    hist_len = rng.geometric(1 / 60, size=n_users)
    rows = np.repeat(np.arange(n_users), hist_len)
    cols = rng.integers(1, n_items + 1, size=len(rows))
    history = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items + 1))
    sequences = [np.zeros(0, dtype=np.int64)] * n_users                  # the metrics do not read them
    es = EvalSet(users=np.arange(n_users), targets=targets, history=history, sequences=sequences,
                 moments=np.zeros(n_users, dtype="datetime64[ns]"), name="bench")
    scores = rng.standard_normal((n_users, n_items + 1)).astype(np.float32)
    return es, scores


def timed(label: str, fn) -> None:
    fn()  # warm-up
    t0 = time.perf_counter()
    fn()
    print(f"{label:<45s} {time.perf_counter() - t0:6.3f} s")


def bench_baselines() -> None:
    from m6rec_lib.baselines import EASE, IALS, BuyAgain, CoOccurrence, ItemKNN, MostPop
    from m6rec_lib.data import load_clean_lines, next_basket_split

    lines, _ = load_clean_lines()
    split = next_basket_split(lines)
    X = split.train_matrix
    print(f"train matrix {X.shape[0]} x {X.shape[1] - 1} items, {X.nnz} non-zeros; "
          f"validation {len(split.validation)} customers")
    for model in [MostPop(), BuyAgain(), ItemKNN(k=100), CoOccurrence(), IALS(factors=64, iterations=10), EASE()]:
        t0 = time.perf_counter()
        model.fit(X, train_sequences=split.train_sequences)
        t1 = time.perf_counter()
        scores = model.score(split.validation)
        t2 = time.perf_counter()
        evaluate_both(scores, split.validation)
        t3 = time.perf_counter()
        print(f"{type(model).__name__:<13s} fit {t1 - t0:6.2f} s   score {t2 - t1:5.2f} s   "
              f"evaluate_both {t3 - t2:5.2f} s")


if __name__ == "__main__":
    es, scores = synthetic_eval_set()
    print(f"{len(es)} users x {es.n_items} items, {sum(len(t) for t in es.targets)} target lines")
    timed("evaluate, all items", lambda: evaluate(scores, es))
    timed("evaluate, new to the customer", lambda: evaluate(scores, es, exclude_seen=True))
    timed("evaluate, integer-valued scores (many ties)", lambda: evaluate(np.round(scores), es))
    timed("evaluate_both", lambda: evaluate_both(scores, es))
    timed("evaluate via a callable", lambda: evaluate(lambda pos: scores[pos], es))
    timed("evaluate_sampled (100 uniform negatives)", lambda: evaluate_sampled(scores, es))
    if "--baselines" in sys.argv[1:]:
        bench_baselines()
