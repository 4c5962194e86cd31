"""Pretrain the course's GPT on one process or on several, with the very same script.

One process (a laptop)::

    python scripts/pretrain_ddp.py --smoke --steps 40

Several processes on one machine (PyTorch DistributedDataParallel; gloo on CPUs)::

    torchrun --nproc_per_node=2 scripts/pretrain_ddp.py --smoke --steps 40

Several machines (nccl on GPUs): start the same command on every node, pointing at one of them::

    torchrun --nnodes=4 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=node0:29500 \\
        scripts/pretrain_ddp.py --steps 2000

How it works (the pipeline is notebook 04's, :mod:`m6rec_lib.pretraining`):

1. ``torchrun`` starts ``WORLD_SIZE`` copies of this script and gives each its ``RANK`` (and
   ``LOCAL_RANK`` on its machine). Without ``torchrun`` the script is rank 0 of a world of 1 and
   never touches ``torch.distributed``.
2. Every rank builds the same examples and the same sequence of *global* batches (same seed), and
   trains on its share of each one: rows ``rank, rank + W, rank + 2W, ...``.
3. Every rank starts from the same weights (same seed; DDP also broadcasts rank 0's weights).
   After ``backward`` DDP averages the gradients over ranks (an all-reduce), so every rank takes the
   very same optimizer step and the replicas stay identical.
4. Each rank's loss is its tokens' summed cross-entropy divided by the *global* number of target
   tokens, times ``W`` (DDP averages, i.e. divides by ``W``): the averaged gradient is then exactly
   the gradient of the mean token loss over the whole global batch, as on one process.
5. Rank 0 alone writes the checkpoint (atomically). ``--checksum-dir`` makes every rank write a
   SHA-256 of its final weights and its loss history, so a test can check the replicas agree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

# Runnable from a checkout without installing the library.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from m6rec_lib import pretraining as pt  # noqa: E402
from m6rec_lib.atomic import atomic_write_text  # noqa: E402
from m6rec_lib.models.gpt import GPT  # noqa: E402
from m6rec_lib.seeding import seed_everything  # noqa: E402
from m6rec_lib.training import artifact_path, save_checkpoint  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="start from the smoke configuration (tiny model, 300 customers)")
    p.add_argument("--max-customers", type=int, default=None, help="keep only this many year-1 customers")
    p.add_argument("--vocab-size", type=int, default=None)
    p.add_argument("--context-length", type=int, default=None)
    p.add_argument("--n-layer", type=int, default=None)
    p.add_argument("--n-head", type=int, default=None)
    p.add_argument("--d-model", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="GLOBAL batch (sequences), split over the ranks")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--train-tokens", type=int, default=None, help="token budget (ignored with --steps)")
    p.add_argument("--steps", type=int, default=None, help="train exactly this many steps")
    p.add_argument("--eval-examples", type=int, default=None, help="held-out examples for the validation loss")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=None,
                   help="checkpoint path (default: <cache_dir>/gpt-ddp-<hash>.pt)")
    p.add_argument("--checksum-dir", type=Path, default=None,
                   help="every rank writes rank<r>.json (weights SHA-256, losses) here")
    p.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                   help="auto: nccl when CUDA is available, else gloo")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per rank (default: cores / local ranks)")
    p.add_argument("--quiet", action="store_true", help="no per-step log lines")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> pt.PretrainConfig:
    """The :class:`PretrainConfig` of the flags (unset flags keep the default/smoke values)."""
    config = pt.default_config(args.smoke)
    overrides = {
        "max_customers": args.max_customers, "vocab_size": args.vocab_size,
        "context_length": args.context_length, "n_layer": args.n_layer, "n_head": args.n_head,
        "d_model": args.d_model, "batch_size": args.batch_size, "learning_rate": args.lr,
        "train_tokens": args.train_tokens, "eval_examples": args.eval_examples, "seed": args.seed,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if args.steps is not None and config.warmup_steps >= args.steps:
        config = replace(config, warmup_steps=max(1, args.steps // 5))
    return config


# ------------------------------------------------------------------------------ the world

def init_world(backend: str) -> tuple[int, int, int, torch.device]:
    """(rank, world_size, local_rank, device); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("--backend nccl needs CUDA GPUs; use --backend gloo on CPUs")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1:
        # MASTER_ADDR / MASTER_PORT come from torchrun (env:// rendezvous)
        dist.init_process_group(backend=backend)
    return rank, world, local_rank, device


def all_reduce_sum(values: list[float], world: int, device: torch.device) -> list[float]:
    """Sum numbers over every rank (a no-op on one process)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def state_checksum(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor of the state dict, in name order (equal iff the weights are bit-identical)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------ the run

@torch.no_grad()
def validation_loss(model: GPT, examples: list[np.ndarray], rank: int, world: int, device: torch.device,
                    batch_size: int) -> float:
    """Mean token cross-entropy over ``examples``; each rank scores its share, the sums are reduced."""
    model.eval()
    pad = model.config.pad_id
    total = count = 0.0
    mine = examples[rank::world]
    for lo in range(0, len(mine), batch_size):
        x, y = pt.pad_batch(mine[lo:lo + batch_size], pad)
        x, y = x.to(device), y.to(device)
        logits = model(x)
        total += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                       ignore_index=pad, reduction="sum"))
        count += int((y != pad).sum())
    total, count = all_reduce_sum([total, count], world, device)
    model.train()
    return total / max(count, 1.0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rank, world, local_rank, device = init_world(args.backend)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = args.threads or max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                      else os.cpu_count() or 1) // local_world)
    torch.set_num_threads(threads)
    config = build_config(args)
    if config.batch_size % world:
        raise ValueError(f"the global batch ({config.batch_size}) must be divisible by the {world} ranks; "
                         f"pass --batch-size {world * max(1, config.batch_size // world)}")

    def log(msg: str) -> None:
        if rank == 0:
            print(msg, flush=True)

    # -- data: every rank builds the same examples (rank 0 trains the tokenizer first, the others load it)
    started = time.perf_counter()
    customers = pt.year1_customers(config)
    if rank == 0:
        tokenizer = pt.pretraining_tokenizer(config, customers)
    if world > 1:
        dist.barrier()
    if rank != 0:
        tokenizer = pt.pretraining_tokenizer(config, customers)
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"the tokenizer learned {tokenizer.vocab_size} tokens, not {config.vocab_size}: "
                         "lower --vocab-size or use more customers")
    train_ex = pt.build_examples(customers, "train", tokenizer, config.context_length)
    val_ex = pt.build_examples(customers, "heldout", tokenizer, config.context_length)
    if len(val_ex) > config.eval_examples:
        pick = np.random.default_rng(config.seed + 1).choice(len(val_ex), config.eval_examples, replace=False)
        val_ex = [val_ex[i] for i in np.sort(pick)]
    # with --steps: a budget no run of that many batches can exhaust, then keep the first batches
    budget = config.train_tokens if args.steps is None else args.steps * config.batch_size * config.context_length
    batches = pt.make_batches(train_ex, config.batch_size, budget, seed=config.seed)
    if args.steps is not None:
        batches = batches[:args.steps]
    log(f"world {world} ({'nccl' if device.type == 'cuda' else 'gloo' if world > 1 else 'single process'}), "
        f"{threads} threads/rank; {len(train_ex)} training examples, {len(batches)} steps of "
        f"{config.batch_size} sequences ({config.batch_size // world} per rank); data in "
        f"{time.perf_counter() - started:.1f} s")

    # -- model: same seed on every rank; DDP broadcasts rank 0's weights anyway
    seed_everything(config.seed)
    model = GPT(config.gpt_config()).to(device)
    ddp = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None) if world > 1 else model
    optimizer = pt.optimizer_for(model, config)
    pad = model.config.pad_id

    history = [{"step": 0, "val_loss": validation_loss(model, val_ex, rank, world, device, config.batch_size)}]
    train_losses: list[float] = []
    model.train()
    started = time.perf_counter()
    for step, index in enumerate(batches, start=1):
        lr = pt.learning_rate(step - 1, len(batches), config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = pt.pad_batch([train_ex[i] for i in index[rank::world]], pad)
        x, y = x.to(device), y.to(device)
        n_tokens = int((y != pad).sum())
        (global_tokens,) = all_reduce_sum([n_tokens], world, device)
        logits = ddp(x)
        loss_sum = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                   ignore_index=pad, reduction="sum")
        # DDP averages gradients over ranks; scaling by world / global tokens makes that average the
        # gradient of the mean token loss of the whole global batch.
        loss = loss_sum * (world / global_tokens)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        (total,) = all_reduce_sum([float(loss_sum.detach())], world, device)
        train_losses.append(total / global_tokens)
        if not math.isfinite(train_losses[-1]):
            raise FloatingPointError(f"the loss became {train_losses[-1]} at step {step}; lower --lr")
        if not args.quiet and (step % max(1, len(batches) // 10) == 0 or step == len(batches)):
            log(f"step {step:5d}/{len(batches)}  loss {train_losses[-1]:.4f}  lr {lr:.2e}")
    seconds = time.perf_counter() - started
    history.append({"step": len(batches), "val_loss": validation_loss(model, val_ex, rank, world, device,
                                                                      config.batch_size)})
    model.eval()
    checksum = state_checksum(model)
    log(f"trained in {seconds:.1f} s; validation loss {history[0]['val_loss']:.3f} -> {history[-1]['val_loss']:.3f}")

    if args.checksum_dir is not None:
        args.checksum_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.checksum_dir / f"rank{rank}.json", json.dumps({
            "rank": rank, "world_size": world, "checksum": checksum, "train_losses": train_losses,
            "val_losses": [h["val_loss"] for h in history], "seconds": seconds,
        }))
    if rank == 0:  # one writer; atomic, so a reader never sees half a file
        key = {"config": config.to_dict(), "steps": len(batches)}
        path = args.out or artifact_path("gpt-ddp", key)
        save_checkpoint(path, model, {"key": key, "world_size": world, "train_losses": train_losses,
                                      "history": history, "checksum": checksum})
        log(f"saved {path}")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
