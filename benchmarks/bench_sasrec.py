"""How fast the ID-based generative recommender (SASRec) trains and evaluates on this machine.

Run: ``python benchmarks/bench_sasrec.py`` (the course's configuration on the real main split) or
``--smoke`` (a small model, a few steps); ``--threads 1 2`` chooses the thread counts to compare.
It prints

- the machine's measured float32 matrix-multiplication peak (GFLOP/s) for each thread count;
- training throughput on real training windows, for the plain loss (``F.cross_entropy`` on the
  full ``(targets, n_items)`` logit matrix) and the chunked loss the library uses: sequences
  (windows) per second, target tokens per second, achieved GFLOP/s (:func:`training_flops`) and
  the fraction of the matmul peak with the same number of threads, plus the implied epoch time;
- evaluation time: scoring the test customers and computing both views' metrics.

The machine may be shared: numbers measured while other programs run are pessimistic. Each number
is the best of a few repetitions, the least disturbed one.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from m6rec_lib.data import load_clean_lines, next_basket_split
from m6rec_lib.metrics import evaluate_both
from m6rec_lib.models.sasrec import SASRec, SASRecConfig, default_configs, make_windows, training_flops
from m6rec_lib.seeding import seed_everything
from m6rec_lib.training import matmul_gflops

COURSE = default_configs(smoke=False)[0]      # the model notebook 05 trains
SMOKE = default_configs(smoke=True)[0]


def plain_loss(model: SASRec, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The same loss as ``SASRec.loss``, with the whole logit matrix in memory."""
    states = model.encode(inputs)
    keep = targets != 0
    logits = model.item_logits(states[keep])[:, 1:]
    return F.cross_entropy(logits, targets[keep] - 1)


def train_throughput(model_kw: dict, n_items: int, inputs: torch.Tensor, targets: torch.Tensor,
                     threads: int, batch_size: int, steps: int, chunked: bool) -> dict:
    """Best time per optimizer step over ``steps`` steps (after one warm-up step)."""
    torch.set_num_threads(threads)
    seed_everything(0)
    torch.utils.deterministic.fill_uninitialized_memory = False
    config = SASRecConfig(n_items=n_items, **model_kw)
    model = SASRec(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    best, best_flops, best_seqs, best_tokens = float("inf"), 0, 0, 0
    for step in range(steps + 1):
        idx = torch.randint(0, len(inputs), (batch_size,), generator=generator)
        x, y = inputs[idx], targets[idx]
        started = time.perf_counter()
        loss = model.loss(x, y) if chunked else plain_loss(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds = time.perf_counter() - started
        if step and seconds < best:
            best = seconds
            best_tokens = int((y != 0).sum())
            best_flops = training_flops(config, x.numel(), best_tokens)
            best_seqs = len(x)
    return {"seconds_per_step": best, "sequences_per_s": best_seqs / best,
            "target_tokens_per_s": best_tokens / best, "gflops": best_flops / best / 1e9}


def eval_seconds(model_kw: dict, split, threads: int, repeats: int = 2) -> float:
    torch.set_num_threads(threads)
    model = SASRec(SASRecConfig(n_items=split.n_items, **model_kw)).eval()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        evaluate_both(model.score(split.test), split.test)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small model and a few steps")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=None, help="timed steps per setting")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per step")
    args = parser.parse_args()
    model_kw = SMOKE if args.smoke else COURSE
    steps = args.steps or (2 if args.smoke else 5)

    lines, _ = load_clean_lines()
    split = next_basket_split(lines)
    inputs, targets = make_windows(split.train_sequences, model_kw["max_len"])
    print(f"main split: {split.n_items} items, {len(inputs):,} training windows of {model_kw['max_len']}, "
          f"{int((targets != 0).sum()):,} target tokens per epoch; model {model_kw}")
    results = []
    for threads in args.threads:
        peak = matmul_gflops(threads)
        print(f"\n{threads} thread(s): float32 matmul peak {peak:.1f} GFLOP/s")
        for chunked in (False, True):
            r = train_throughput(model_kw, split.n_items, inputs, targets, threads, args.batch_size, steps, chunked)
            r.update(threads=threads, loss="chunked" if chunked else "plain", peak_gflops=peak,
                     fraction_of_peak=r["gflops"] / peak,
                     epoch_seconds=len(inputs) / r["sequences_per_s"])
            results.append(r)
            print(f"  train, {r['loss']:>7} loss: {r['seconds_per_step']:.3f} s/step, "
                  f"{r['sequences_per_s']:.0f} sequences/s, {r['target_tokens_per_s']:,.0f} tokens/s, "
                  f"{r['gflops']:.1f} GFLOP/s = {r['fraction_of_peak']:.0%} of peak, "
                  f"epoch ~{r['epoch_seconds']:.0f} s")
        ev = eval_seconds(model_kw, split, threads)
        results.append({"threads": threads, "eval_seconds": ev})
        print(f"  evaluation: score {len(split.test):,} test customers + both views' metrics: {ev:.2f} s")
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
