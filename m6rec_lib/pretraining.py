"""Generative pretraining on year-1 behaviour text: the data pipeline, the training run, the cache.

The pipeline, step by step (each step is a function a notebook can call on its own):

1. :func:`year1_customers` -- the cleaned lines before ``config.cut`` (2010-12-01), grouped per
   customer into invoices; a seeded share of customers is held out for validation perplexity.
2. :func:`tokenizer_texts` / :func:`pretraining_tokenizer` -- a byte-level BPE trained on the
   training customers' year-1 text only, cached by configuration.
3. :func:`build_examples` -- one example per year-1 invoice: the customer's history written as seen
   at that invoice's moment (``<bos>`` + history text ending in " Now buys"), followed by the
   invoice's basket and ``<eos>``; the oldest history is dropped to fit the context.
   (:func:`prepare_data` runs steps 1-3 and keeps their results together.)
4. :func:`make_batches` -- examples grouped by length into batches (little padding), in a seeded
   order, until the token budget is spent.
5. :func:`train_gpt` -- AdamW with warm-up and cosine decay, validation loss on held-out customers.
6. :func:`load_or_pretrain` -- the pretrained GPT and its tokenizer, from the cache when they exist
   for this configuration, trained otherwise. Later notebooks call only this.

Run as a script (``python -m m6rec_lib.pretraining [--smoke] [--rebuild]``) it pretrains and caches
the model outside a notebook.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from .config import resolve_smoke
from .data.retail import DataError
from .models.gpt import GPT, GPTConfig
from .seeding import seed_everything
from .text import serializer as ser
from .text.tokenizer import BehaviourTokenizer, load_or_train_tokenizer
from .training import CheckpointError, artifact_path, configure_threads, load_checkpoint, save_checkpoint

ARTIFACT_NAME = "gpt-pretrained"


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that decides the pretrained model (the cache key).

    Data: year-1 text = lines before ``cut``; ``holdout_fraction`` of the customers (seeded) are
    held out for validation; ``max_customers`` keeps only that many customers (smoke runs).
    Tokenizer: ``vocab_size``. Model: the GPT shape. Training: ``train_tokens`` non-padding
    tokens in batches of ``batch_size`` sequences, peak ``learning_rate`` after
    ``warmup_steps``, cosine decay to ``min_lr_ratio`` of it; validation on ``eval_examples``
    held-out examples every ``eval_every`` steps; ``precision`` "fp32", "bf16" (autocast: matrix
    products in bfloat16, weights and sums in float32) or "auto" (bf16 where this CPU multiplies
    bfloat16 matrices clearly faster than float32 ones, see :func:`pick_precision`).
    """

    cut: str = "2010-12-01"
    holdout_fraction: float = 0.1
    max_customers: int | None = None
    vocab_size: int = 2048
    context_length: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    dropout: float = 0.0
    batch_size: int = 8
    train_tokens: int = 300_000
    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_examples: int = 128
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        for name in ("batch_size", "train_tokens", "eval_every", "eval_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_customers is not None and self.max_customers < 10:
            raise ValueError("max_customers must be at least 10 (or None for all customers)")
        self.gpt_config()  # validates the model shape

    def gpt_config(self) -> GPTConfig:
        """The GPT this configuration trains (``pad_id`` = the tokenizer's ``<pad>``)."""
        return GPTConfig(
            vocab_size=self.vocab_size, context_length=self.context_length, n_layer=self.n_layer,
            n_head=self.n_head, d_model=self.d_model, dropout=self.dropout, pad_id=BehaviourTokenizer.pad_id,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def default_config(smoke: bool | None = None) -> PretrainConfig:
    """The course's configuration: full mode or smoke (a tiny model, a few steps).

    Full mode: a 4-layer GPT (d = 128, 4 heads, context 128, 2,048 BPE tokens, about 1.1 M
    parameters) trained on 300,000 tokens in batches of 8 sequences (about 1,000 tokens a step):
    small batches give many updates, which is what a short budget needs, and a 128-token context
    holds about ten purchase lines of history plus the basket; with the same budget a 256-token
    context saw half as many baskets and generated far fewer real product names. bfloat16
    autocast matches float32 losses here and is faster on CPUs with bfloat16 instructions
    ("auto" checks that).
    """
    if resolve_smoke(smoke):
        return PretrainConfig(
            max_customers=300, vocab_size=512, context_length=128, n_layer=2, n_head=2, d_model=64,
            batch_size=8, train_tokens=12_000, warmup_steps=4, eval_every=5, eval_examples=32,
        )
    return PretrainConfig()


# --------------------------------------------------------------------------- 1. the customers

@dataclass
class Year1Customers:
    """Year-1 histories: ``histories[customer_id] = (country, invoices oldest first)``; the
    ``train`` and ``heldout`` customer IDs (sorted)."""

    histories: dict[int, tuple[str | None, list[ser.Invoice]]]
    train: np.ndarray
    heldout: np.ndarray
    cut: pd.Timestamp

    def summary(self) -> pd.DataFrame:
        rows = []
        for part, ids in (("train", self.train), ("held out", self.heldout)):
            invoices = [len(self.histories[c][1]) for c in ids]
            lines = [sum(len(i.items) for i in self.histories[c][1]) for c in ids]
            rows.append({"customers": len(ids), "invoices": int(np.sum(invoices)), "lines": int(np.sum(lines))})
        return pd.DataFrame(rows, index=["train", "held out"])


def year1_customers(config: PretrainConfig, lines: pd.DataFrame | None = None) -> Year1Customers:
    """Cleaned lines before ``config.cut``, per customer, split into training and held-out customers.

    ``lines``: cleaned lines (default :func:`m6rec_lib.data.load_clean_lines`); later lines are
    dropped here, so nothing after the cut can reach the tokenizer or the model.
    """
    if lines is None:
        from .data import load_clean_lines

        lines, _ = load_clean_lines()
    cut = pd.Timestamp(config.cut)
    year1 = lines[lines["invoice_date"] < cut]
    if len(year1) == 0:
        raise DataError(f"no line before cut={config.cut}; pass cleaned lines that cover year 1")
    rng = np.random.default_rng(config.seed)
    customers = np.sort(year1["customer_id"].unique())
    if config.max_customers is not None and config.max_customers < len(customers):
        customers = np.sort(rng.choice(customers, size=config.max_customers, replace=False))
        year1 = year1[year1["customer_id"].isin(customers)]
    shuffled = rng.permutation(customers)
    n_held = max(1, int(round(config.holdout_fraction * len(customers))))
    heldout, train = np.sort(shuffled[:n_held]), np.sort(shuffled[n_held:])
    return Year1Customers(ser.customer_histories(year1), train, heldout, cut)


# --------------------------------------------------------------------------- 2. the tokenizer

def _basket(invoice: ser.Invoice) -> str:
    return "".join(invoice.line_pieces)  # == serializer.basket_text of its lines



def tokenizer_texts(customers: Year1Customers) -> Iterator[str]:
    """The tokenizer's training text, one string per *training* customer (held-out customers and
    later data never reach the vocabulary).

    Each customer's year-1 invoices are written once, each with time words relative to the
    customer's next invoice (so "this morning", "last Tuesday" and "three months ago" appear as
    often as in the model's examples), after a profile with the truncation marker and before the
    prompt and the last basket: the same format as the examples, linear in the data.
    """
    for cid in customers.train:
        country, invoices = customers.histories[int(cid)]
        n_before_last = sum(len(inv.items) for inv in invoices[:-1])
        pieces = [ser.profile_text(country, n_before_last)]
        for i, inv in enumerate(invoices[:-1]):
            later = next((x.moment for x in invoices[i + 1:] if x.moment > inv.moment), None)
            if later is not None:  # invoices at the very same moment are not each other's past
                pieces += inv.pieces(later)
        yield "".join(pieces) + ser.PROMPT + _basket(invoices[-1])


def pretraining_tokenizer(
    config: PretrainConfig, customers: Year1Customers | None = None, lines: pd.DataFrame | None = None,
    rebuild: bool = False,
) -> BehaviourTokenizer:
    """The byte-level BPE of this configuration, from the cache or trained on training customers'
    year-1 text (:func:`tokenizer_texts`)."""
    key = {"cut": config.cut, "holdout_fraction": config.holdout_fraction, "seed": config.seed,
           "max_customers": config.max_customers, "format": ser.FORMAT_VERSION}

    def texts():
        return tokenizer_texts(customers if customers is not None else year1_customers(config, lines))

    tokenizer, _ = load_or_train_tokenizer(key, texts, config.vocab_size, name="bpe-year1", rebuild=rebuild)
    return tokenizer


# --------------------------------------------------------------------------- 3. the examples

def example_pieces(
    country: str | None,
    invoices: Sequence[ser.Invoice],
    k: int,
    tokenizer: BehaviourTokenizer,
    context_length: int,
) -> list[str]:
    """The additive text pieces of the example for invoice ``k`` of one customer.

    The basket keeps its first lines up to half the context; the history (written as seen at
    invoice k's moment, ending with " Now buys") fills the rest, oldest lines dropped first.
    Together with ``<bos>`` and ``<eos>`` the example has at most ``context_length + 1`` tokens
    (inputs and shifted targets of ``context_length`` positions each). ``"".join`` gives its text.
    """
    target = invoices[k]
    n_before = sum(len(inv.items) for inv in invoices[:k])
    fixed = tokenizer.count(ser.profile_text(country, max(n_before, 1))) + tokenizer.count(ser.PROMPT)
    room = context_length + 1 - 2 - fixed  # what <bos>, <eos>, profile and prompt leave
    basket = target.line_pieces
    budget, n_items, used = min(context_length // 2, room), 0, 0
    for piece in basket:
        c = tokenizer.count(piece)
        if n_items and used + c > budget:
            break
        used += c
        n_items += 1
    basket = list(basket[:n_items])
    if n_items < len(target.items):  # the kept part ends like a basket
        basket[-1] = basket[-1][:-1] + "."
    history = ser.history_from_invoices(
        invoices[:k], target.moment, country, max_length=context_length + 1,
        length=tokenizer.count, reserve=min(used + 2, context_length + 1 - fixed),
    )
    return [*history.pieces, *basket]


def build_examples(
    customers: Year1Customers,
    which: str,
    tokenizer: BehaviourTokenizer,
    context_length: int,
) -> list[np.ndarray]:
    """Token ID arrays, one per invoice of the ``which`` ("train" or "heldout") customers.

    Each array is ``[<bos>] + history + basket + [<eos>]`` with at most ``context_length + 1``
    IDs (a basket too long for the context is cut at the end).
    """
    if which not in ("train", "heldout"):
        raise ValueError(f"which must be 'train' or 'heldout', got {which!r}")
    limit = context_length + 1
    tokenizer.prefill(p for cid in getattr(customers, which)
                      for inv in customers.histories[int(cid)][1] for p in inv.line_pieces)
    examples = []
    for cid in getattr(customers, which):
        country, invoices = customers.histories[int(cid)]
        for k in range(len(invoices)):
            pieces = example_pieces(country, invoices, k, tokenizer, context_length)
            ids = tokenizer.encode_pieces(pieces, bos=True, eos=True)
            examples.append(np.array(ids[:limit], dtype=np.int64))
    return examples


@dataclass
class PretrainingData:
    """Everything training needs, built once by :func:`prepare_data`: the customers, the
    tokenizer, and the token ID arrays of the training and held-out examples."""

    config: PretrainConfig
    customers: Year1Customers
    tokenizer: BehaviourTokenizer
    train: list[np.ndarray]
    heldout: list[np.ndarray]


def prepare_data(config: PretrainConfig, lines: pd.DataFrame | None = None) -> PretrainingData:
    """Steps 1-3 of the pipeline: year-1 customers, the (cached) tokenizer, the examples."""
    customers = year1_customers(config, lines)
    tokenizer = pretraining_tokenizer(config, customers)
    if tokenizer.vocab_size != config.vocab_size:
        raise DataError(
            f"the tokenizer learned {tokenizer.vocab_size} tokens, not the {config.vocab_size} asked "
            "for: the corpus is too small for that vocabulary; lower vocab_size"
        )
    return PretrainingData(
        config, customers, tokenizer,
        build_examples(customers, "train", tokenizer, config.context_length),
        build_examples(customers, "heldout", tokenizer, config.context_length),
    )


# --------------------------------------------------------------------------- 4. the batches

def pad_batch(examples: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad examples to the longest one: (inputs, targets), both (batch, max_len - 1).

    ``targets`` is ``inputs`` shifted by one; padded positions hold ``pad_id`` and cost nothing
    in the loss.
    """
    width = max(len(e) for e in examples)
    out = np.full((len(examples), width), pad_id, dtype=np.int64)
    for row, e in enumerate(examples):
        out[row, :len(e)] = e
    t = torch.from_numpy(out)
    return t[:, :-1], t[:, 1:].contiguous()


def make_batches(
    examples: Sequence[np.ndarray],
    batch_size: int,
    token_budget: int,
    seed: int = 0,
    pool: int = 50,
) -> list[np.ndarray]:
    """Which examples form each training batch, until ``token_budget`` target tokens are used.

    Examples are shuffled (seeded); every ``pool * batch_size`` of them are sorted by length and
    cut into batches, so a batch holds examples of similar length and padding stays small; the
    batches are shuffled again and the examples reused (new epoch) if the budget asks for more.
    Returns a list of index arrays.
    """
    if len(examples) < batch_size:
        raise ValueError(f"{len(examples)} examples are fewer than one batch of {batch_size}")
    rng = np.random.default_rng(seed)
    lengths = np.array([len(e) - 1 for e in examples])  # targets per example
    batches: list[np.ndarray] = []
    spent = 0
    while spent < token_budget:
        order = rng.permutation(len(examples))
        epoch = []
        for lo in range(0, len(order), pool * batch_size):
            chunk = order[lo:lo + pool * batch_size]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            epoch += [chunk[i:i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
        for i in rng.permutation(len(epoch)):
            batches.append(epoch[i])
            spent += int(lengths[epoch[i]].sum())
            if spent >= token_budget:
                break
    return batches


# --------------------------------------------------------------------------- 5. training

def pick_threads(probe_seconds: float = 0.15) -> int:
    """Set and return the number of CPU threads that trains fastest *right now*.

    ``$M6REC_THREADS`` wins when set. Otherwise a short probe times a training-sized matrix
    product with one thread and with all the cores this process may use
    (:func:`m6rec_lib.training.configure_threads`), and keeps the faster. On an idle laptop that
    is all cores; on a machine shared with other busy programs one thread can be several times
    faster, because threads that wait for each other at every operation lose their turn.
    """
    import os

    if os.environ.get("M6REC_THREADS", "").strip():
        return configure_threads()
    most = configure_threads()
    if most == 1:
        return 1
    a, b = torch.randn(4096, 128), torch.randn(128, 512)

    def speed(n: int) -> float:
        torch.set_num_threads(n)
        a @ b  # warm-up
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < probe_seconds:
            a @ b
            done += 1
        return done / (time.perf_counter() - started)

    best = max((1, most), key=speed)
    torch.set_num_threads(best)
    return best


def pick_precision(precision: str = "auto", probe_seconds: float = 0.1) -> str:
    """"fp32" or "bf16": ``precision`` itself, or for "auto" the faster on this CPU.

    Autocast to bfloat16 only pays where the CPU has bfloat16 matrix instructions (recent Intel
    and AMD server chips, AMX); elsewhere it is emulated and slower. A short probe times a
    training-sized product in both types and picks bfloat16 only when it is at least 1.3x faster.
    """
    if precision != "auto":
        return precision
    a, b = torch.randn(4096, 128), torch.randn(128, 512)

    def speed(dtype: torch.dtype) -> float:
        x, y = a.to(dtype), b.to(dtype)
        x @ y
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < probe_seconds:
            x @ y
            done += 1
        return done / (time.perf_counter() - started)

    return "bf16" if speed(torch.bfloat16) > 1.3 * speed(torch.float32) else "fp32"


def learning_rate(step: int, total_steps: int, config: PretrainConfig) -> float:
    """Linear warm-up to ``config.learning_rate``, then cosine decay to ``min_lr_ratio`` of it."""
    peak = config.learning_rate
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    floor = peak * config.min_lr_ratio
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def _autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def evaluate_loss(
    model: GPT, examples: Sequence[np.ndarray], batch_size: int = 32, precision: str = "fp32"
) -> float:
    """Mean next-token cross-entropy (nats per token) of ``model`` over ``examples``, padding
    excluded; ``exp`` of it is the perplexity."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = np.argsort([len(e) for e in examples], kind="stable")  # similar lengths together
    pad = model.config.pad_id
    for lo in range(0, len(order), batch_size):
        x, y = pad_batch([examples[i] for i in order[lo:lo + batch_size]], pad)
        with _autocast(precision):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=pad, reduction="sum")
        total += float(loss)
        count += int((y != pad).sum())
    model.train(was_training)
    return total / max(count, 1)


def optimizer_for(model: GPT, config: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, LayerNorms or position vectors)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("pos_emb")]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not n.startswith("pos_emb"))]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate, betas=(0.9, 0.95),
    )


def train_gpt(
    model: GPT,
    train_examples: Sequence[np.ndarray],
    val_examples: Sequence[np.ndarray],
    config: PretrainConfig,
    progress: bool = True,
) -> pd.DataFrame:
    """Pretrain ``model`` in place on ``train_examples`` for ``config.train_tokens`` tokens.

    Returns the history, one row per evaluation: ``step``, ``tokens`` (target tokens seen),
    ``train_loss`` (mean over the steps since the last row), ``val_loss`` (held-out customers),
    ``lr``, ``seconds`` (training time so far, evaluation excluded). ``history.attrs`` holds
    ``train_seconds``, ``eval_seconds``, ``tokens_per_second``, ``sequences_per_second``,
    ``padding_share``, ``steps`` and ``precision`` (the one used).

    One process. ``scripts/pretrain_ddp.py`` is the same training written to run unchanged on one
    process or several (``torchrun``, DistributedDataParallel); notebook 11 explains it.
    """
    from tqdm.auto import tqdm

    batches = make_batches(train_examples, config.batch_size, config.train_tokens, seed=config.seed)
    val = list(val_examples)
    if len(val) > config.eval_examples:
        pick = np.random.default_rng(config.seed + 1).choice(len(val), config.eval_examples, replace=False)
        val = [val[i] for i in np.sort(pick)]
    optimizer = optimizer_for(model, config)
    precision = pick_precision(config.precision)
    pad = model.config.pad_id
    rows: list[dict] = []
    train_seconds = eval_seconds = 0.0
    tokens = sequences = positions = 0
    running, n_running = 0.0, 0

    def evaluate(step: int) -> None:
        nonlocal eval_seconds, running, n_running
        started = time.perf_counter()
        val_loss = evaluate_loss(model, val, 32, precision)
        eval_seconds += time.perf_counter() - started
        rows.append({"step": step, "tokens": tokens, "train_loss": running / n_running if n_running else np.nan,
                     "val_loss": val_loss, "lr": optimizer.param_groups[0]["lr"], "seconds": train_seconds})
        running, n_running = 0.0, 0

    model.train()
    evaluate(0)
    bar = tqdm(batches, desc="pretraining", unit="batch", disable=not progress)
    for step, index in enumerate(bar, start=1):
        started = time.perf_counter()
        lr = learning_rate(step - 1, len(batches), config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = pad_batch([train_examples[i] for i in index], pad)
        with _autocast(precision):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=pad)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}; lower learning_rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        train_seconds += time.perf_counter() - started
        tokens += int((y != pad).sum())
        sequences += len(index)
        positions += y.numel()
        running += loss.item()
        n_running += 1
        if step % config.eval_every == 0 or step == len(batches):
            evaluate(step)
            bar.set_postfix(train=f"{rows[-1]['train_loss']:.3f}", val=f"{rows[-1]['val_loss']:.3f}")
    bar.close()
    model.eval()
    history = pd.DataFrame(rows)
    history.attrs.update(
        steps=len(batches), train_seconds=train_seconds, eval_seconds=eval_seconds,
        tokens_per_second=tokens / train_seconds, sequences_per_second=sequences / train_seconds,
        padding_share=1 - tokens / positions, train_tokens=tokens, precision=precision,
    )
    return history


# --------------------------------------------------------------------------- 6. the cache

@dataclass
class Pretrained:
    """What :func:`load_or_pretrain` returns.

    ``model`` (a :class:`GPT` in eval mode), ``tokenizer``, ``config``, ``history`` (one row per
    evaluation, see :func:`train_gpt`), ``metrics`` (val_loss, val_perplexity, train_seconds,
    tokens_per_second, ...), ``cached`` (True when loaded, not trained), ``path`` of the checkpoint.
    """

    model: GPT
    tokenizer: BehaviourTokenizer
    config: PretrainConfig
    history: pd.DataFrame
    metrics: dict
    cached: bool
    path: Path
    smoke: bool = False
    extras: dict = field(default_factory=dict)

    def encode_history(self, history: ser.HistoryText | str) -> list[int]:
        """``[<bos>] +`` the token IDs of a serialised history: the prefix to score or generate from."""
        return self.tokenizer.encode(str(history), bos=True)


def cache_key(config: PretrainConfig, smoke: bool) -> dict:
    """The configuration the cached model is stored under."""
    return {"config": config.to_dict(), "smoke": bool(smoke), "format": ser.FORMAT_VERSION}


def pretrain(
    config: PretrainConfig,
    lines: pd.DataFrame | None = None,
    progress: bool = True,
    data: PretrainingData | None = None,
) -> tuple[GPT, BehaviourTokenizer, pd.DataFrame, dict]:
    """Run the whole pipeline once: (model, tokenizer, history, metrics). Does not cache the model.

    ``data`` (from :func:`prepare_data` with the same configuration) skips steps 1-3.
    """
    threads = pick_threads()
    if data is None:
        data = prepare_data(config, lines)
    elif data.config != config:
        raise ValueError("data was prepared for another configuration; call prepare_data(config) again")
    seed_everything(config.seed)
    model = GPT(config.gpt_config())
    history = train_gpt(model, data.train, data.heldout, config, progress=progress)
    final = float(history["val_loss"].iloc[-1])
    metrics = {
        "val_loss": final, "val_perplexity": math.exp(final),
        "initial_val_loss": float(history["val_loss"].iloc[0]),
        "train_examples": len(data.train), "heldout_examples": len(data.heldout),
        "parameters": model.num_parameters(), "tokenizer": data.tokenizer.fingerprint(), "threads": threads,
        **{k: v if isinstance(v, str) else float(v) if isinstance(v, (float, np.floating)) else int(v)
           for k, v in history.attrs.items()},
    }
    return model, data.tokenizer, history, metrics


def load_or_pretrain(
    config: PretrainConfig | None = None,
    smoke: bool | None = None,
    *,
    lines: pd.DataFrame | None = None,
    data: PretrainingData | None = None,
    rebuild: bool = False,
    progress: bool = True,
) -> Pretrained:
    """The pretrained GPT and its tokenizer for ``config``, trained only when not cached.

    ``smoke``: None reads ``$M6REC_SMOKE``; ``config``: default :func:`default_config(smoke)`.
    ``lines`` (cleaned lines, to avoid loading them again) or ``data`` (from :func:`prepare_data`)
    are only used when training is needed. The checkpoint is
    ``<cache_dir>/gpt-pretrained-<hash of (config, smoke)>.pt`` and the tokenizer
    ``bpe-year1-<hash>.json`` next to it; loading both takes well under a second::

        pre = load_or_pretrain(smoke=SMOKE)
        prefix = pre.encode_history(history_text(lines_of_customer, now))
        scores = pre.model.score_continuations(prefix, [pre.tokenizer.encode(candidate_text(d)) for d in texts])
    """
    smoke = resolve_smoke(smoke)
    config = config or default_config(smoke)
    key = cache_key(config, smoke)
    path = artifact_path(ARTIFACT_NAME, key)
    if path.is_file() and not rebuild:
        tokenizer = data.tokenizer if data is not None else pretraining_tokenizer(config, lines=lines)
        model = GPT(config.gpt_config())
        try:
            _, meta = load_checkpoint(path, model, expected_meta={"key": key, "tokenizer": tokenizer.fingerprint()})
        except CheckpointError as exc:
            import warnings

            warnings.warn(f"pretraining again: {exc}")
        else:
            model.eval()
            return Pretrained(model, tokenizer, config, pd.DataFrame(meta["history"]), meta["metrics"],
                              cached=True, path=path, smoke=smoke)
    model, tokenizer, history, metrics = pretrain(config, lines, progress=progress, data=data)
    meta = {"key": key, "tokenizer": tokenizer.fingerprint(), "metrics": metrics,
            "history": history.to_dict(orient="list")}
    save_checkpoint(path, model, meta)
    return Pretrained(model, tokenizer, config, history, metrics, cached=False, path=path, smoke=smoke)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: pretrain (or load) the course's GPT and print its metrics.

    ``python -m m6rec_lib.pretraining [--smoke] [--rebuild]`` (one process; for several, see
    ``scripts/pretrain_ddp.py``).
    """
    parser = argparse.ArgumentParser(description="Pretrain the course's GPT on year-1 behaviour text.")
    parser.add_argument("--smoke", action="store_true", help="tiny configuration, a few steps")
    parser.add_argument("--rebuild", action="store_true", help="train even if a cached model exists")
    parser.add_argument("--train-tokens", type=int, default=None, help="override the token budget")
    args = parser.parse_args(argv)
    config = default_config(args.smoke)
    if args.train_tokens:
        config = replace(config, train_tokens=args.train_tokens)
    pre = load_or_pretrain(config, smoke=args.smoke, rebuild=args.rebuild)
    print(f"{'loaded' if pre.cached else 'trained'} {pre.path}")
    for k, v in pre.metrics.items():
        print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
