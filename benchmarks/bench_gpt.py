"""How fast the course's GPT trains and evaluates on this machine, against its matmul peak.

Run: ``python benchmarks/bench_gpt.py`` (full configuration) or ``--smoke``; ``--threads 1 2``
and ``--precision fp32 bf16`` choose what to compare (default: both). It prints

- the machine's measured matrix-multiplication peak (GFLOP/s, float32 and bfloat16);
- training throughput on real pretraining batches: sequences/s, tokens/s (non-padding target
  tokens), achieved GFLOP/s (3 x forward FLOPs of the positions computed) and the fraction of the
  float32 peak with the same number of threads;
- evaluation time: held-out loss over 128 examples, scoring 1,000 candidate product texts after one
  history, and sampling tokens/s.

The machine may be shared: numbers measured while other programs run are pessimistic. Each
number is the best of a few repetitions, which is the least disturbed one.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from m6rec_lib import pretraining as pt
from m6rec_lib.models.gpt import GPT, forward_flops_per_token
from m6rec_lib.seeding import seed_everything
from m6rec_lib.text import serializer as ser
from m6rec_lib.training import matmul_gflops


def train_throughput(config: pt.PretrainConfig, examples, threads: int, precision: str, steps: int) -> dict:
    """Time ``steps`` optimizer steps (after 2 warm-up steps) on real batches; best-of per step."""
    torch.set_num_threads(threads)
    seed_everything(0)
    model = GPT(config.gpt_config())
    optimizer = pt.optimizer_for(model, config)
    batches = pt.make_batches(examples, config.batch_size, token_budget=10**9, seed=0)[: steps + 2]
    pad = model.config.pad_id
    times, tokens, sequences, positions = [], [], [], []
    for i, index in enumerate(batches):
        x, y = pt.pad_batch([examples[j] for j in index], pad)
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=pad)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - started)
            tokens.append(int((y != pad).sum()))
            sequences.append(len(index))
            positions.append(x.shape[1] * len(index))
    seconds = float(np.sum(times))
    mean_len = float(np.mean([p / s for p, s in zip(positions, sequences)]))
    flops = 3 * forward_flops_per_token(config.gpt_config(), int(mean_len)) * float(np.sum(positions))
    return {
        "threads": threads, "precision": precision, "steps": len(times),
        "sequences/s": float(np.sum(sequences)) / seconds, "tokens/s": float(np.sum(tokens)) / seconds,
        "GFLOP/s": flops / seconds / 1e9, "median step s": float(np.median(times)),
    }


def eval_timings(config: pt.PretrainConfig, val_examples, tokenizer, threads: int, precision: str) -> dict:
    torch.set_num_threads(threads)
    seed_everything(0)
    model = GPT(config.gpt_config()).eval()
    val = val_examples[:128]
    started = time.perf_counter()
    pt.evaluate_loss(model, val, config.batch_size, precision)
    loss_s = time.perf_counter() - started
    # one history prefix, 1,000 candidate texts (the notebook 05 text scorer's inner loop)
    prefix = list(val[0][: config.context_length // 2])
    cands = [tokenizer.encode(ser.candidate_text(f"CANDIDATE PRODUCT NUMBER {i} RED HEART")) for i in range(1000)]
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        model.score_continuations(prefix, cands, batch_size=250)
    score_s = time.perf_counter() - started
    started = time.perf_counter()
    new = 64
    model.generate(torch.tensor([prefix] * 4), new, temperature=1.0, top_k=50,
                   generator=torch.Generator().manual_seed(0))
    gen_s = time.perf_counter() - started
    return {"threads": threads, "precision": precision, f"loss on {len(val)} examples s": loss_s,
            "score 1000 candidates s": score_s, "sampled tokens/s (4 rows)": 4 * new / gen_s}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the smoke configuration")
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts to compare")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per setting")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import os

    config = pt.default_config(args.smoke)
    steps = args.steps or (3 if args.smoke else 8)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = args.threads or sorted({1, cores})
    print(f"configuration: {'smoke' if args.smoke else 'full'}; {cores} cores available; "
          f"GPT d={config.d_model}, layers={config.n_layer}, context={config.context_length}, "
          f"vocab={config.vocab_size}, batch={config.batch_size}")

    started = time.perf_counter()
    customers = pt.year1_customers(config)
    tokenizer = pt.pretraining_tokenizer(config, customers)
    train_ex = pt.build_examples(customers, "train", tokenizer, config.context_length)
    val_ex = pt.build_examples(customers, "heldout", tokenizer, config.context_length)
    print(f"data pipeline (lines -> examples, tokenizer cached or trained): {time.perf_counter() - started:.1f} s")

    peaks = {(t, p): matmul_gflops(t, torch.float32 if p == "fp32" else torch.bfloat16)
             for t in threads for p in ("fp32", "bf16")}
    print("\nmatmul peak (1024 x 1024, GFLOP/s)")
    for (t, p), g in peaks.items():
        print(f"  {t} thread(s) {p}: {g:7.1f}")

    rows = []
    print("\ntraining throughput")
    for t in threads:
        for p in args.precision:
            r = train_throughput(config, train_ex, t, p, steps)
            r["fraction of fp32 peak"] = r["GFLOP/s"] / peaks[(t, "fp32")]
            r["fraction of own-precision peak"] = r["GFLOP/s"] / peaks[(t, p)]
            rows.append(r)
            print("  " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))

    evals = []
    print("\nevaluation")
    for t in threads:
        for p in args.precision:
            r = eval_timings(config, val_ex, tokenizer, t, p)
            evals.append(r)
            print("  " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))

    result = {"config": config.to_dict(), "peaks": {f"{t}x{p}": g for (t, p), g in peaks.items()},
              "training": rows, "evaluation": evals}
    if args.json:
        from m6rec_lib.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
