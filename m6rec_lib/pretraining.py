"""Generative pretraining on behaviour text: the data pipeline, the training runs, the cache.

Two checkpoints, two *stages*, one tokenizer:

- ``"year1"``: a GPT pretrained from scratch on year-1 text (lines before :data:`YEAR1_CUT`,
  2010-12-01). It never read a product first sold in year 2, which is what notebook 08's zero-shot
  lesson on the year-cut split needs.
- ``"main"``: the year-1 model trained further on the text of the main split's whole training
  period (lines before :data:`MAIN_CUT`, 2011-10-01, the first validation day of
  :func:`m6rec_lib.data.next_basket_split`): the model for the main-split notebooks (05, 07, 09,
  10, 11), which then read the same period as the ID models they are compared with.

``load_or_pretrain(smoke=SMOKE)`` returns the year-1 model, ``load_or_pretrain(smoke=SMOKE,
stage="main")`` the continued one (training the year-1 model first when it is missing). Both use
the tokenizer learned on year-1 text (:func:`pretraining_tokenizer`); both load from the cache
in about a second.

The year-1 pipeline, step by step (each step is a function a notebook can call on its own):

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

The main stage reuses steps 3-5: :func:`main_customers` (every customer with a line before
:data:`MAIN_CUT`; the year-1 held-out customers stay held out, and a seeded share of the newcomers
joins them), :func:`prepare_continued_data` (examples for the invoices from
``ContinuedConfig.examples_from`` on, their histories going back to the customer's first line),
:func:`continue_pretraining`.

Run as a script (``python -m m6rec_lib.pretraining [--smoke] [--stage main] [--rebuild]``) it
pretrains and caches the model outside a notebook.
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
from .models.gpt import GPT, GPTConfig, grown
from .seeding import seed_everything
from .text import serializer as ser
from .text.tokenizer import BehaviourTokenizer, load_or_train_tokenizer
from .training import CheckpointError, artifact_path, configure_threads, load_checkpoint, save_checkpoint

ARTIFACT_NAME = "gpt-pretrained"
MAIN_ARTIFACT_NAME = "gpt-main"
#: Year-1 text ends here: the year-1 model, its tokenizer and the year-cut split
#: (:func:`m6rec_lib.data.year_cut_split`) all stop before this day.
YEAR1_CUT = "2010-12-01"
#: The main split's training period ends here (:func:`m6rec_lib.data.next_basket_split`'s first
#: validation day): the "main" model reads text before this day.
MAIN_CUT = "2011-10-01"
#: The checkpoints :func:`load_or_pretrain` knows, and which notebooks use them.
STAGES = {
    "year1": "year-1 text (before 2010-12-01); notebooks 04 and 08 (the year-cut split)",
    "main": "the year-1 model trained further on the main split's training period (before 2011-10-01); "
            "notebooks 05, 07, 09, 10, 11",
}


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

    cut: str = YEAR1_CUT
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
    """Histories up to a cut: ``histories[customer_id] = (country, invoices oldest first)``; the
    ``train`` and ``heldout`` customer IDs (sorted). (The main stage uses the same class for the
    main split's training period, see :func:`main_customers`.)"""

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


def main_customers(
    config: PretrainConfig, lines: pd.DataFrame | None = None, cut: str = MAIN_CUT,
    year1: Year1Customers | None = None,
) -> Year1Customers:
    """Every customer with a line before ``cut`` (the main split's training period), split so that
    no customer held out of year-1 pretraining is ever trained on.

    Held out: the year-1 held-out customers, and the same seeded share (``holdout_fraction``) of
    the customers whose first line is on or after ``config.cut``. With ``max_customers`` (smoke
    runs) the year-1 sample is kept and as many newcomers are added as would be in that share of
    the shop. ``year1``: the year-1 split, when already built (:func:`year1_customers`).
    """
    if lines is None:
        from .data import load_clean_lines

        lines, _ = load_clean_lines()
    if pd.Timestamp(cut) < pd.Timestamp(config.cut):
        raise ValueError(f"the main stage's cut {cut} must not come before the year-1 cut {config.cut}")
    year1 = year1 if year1 is not None else year1_customers(config, lines)
    period = lines[lines["invoice_date"] < pd.Timestamp(cut)]
    old = set(int(c) for c in customers_before(lines, config.cut))
    newcomers = np.sort(np.setdiff1d(period["customer_id"].unique(), np.fromiter(old, dtype=np.int64)))
    rng = np.random.default_rng(config.seed + 1)
    if config.max_customers is not None:
        n_new = int(round(len(newcomers) * len(year1.histories) / max(len(old), 1)))
        newcomers = np.sort(rng.choice(newcomers, size=min(n_new, len(newcomers)), replace=False))
    shuffled = rng.permutation(newcomers)
    n_held = int(round(config.holdout_fraction * len(newcomers)))
    heldout = np.sort(np.concatenate([year1.heldout, shuffled[:n_held]]))
    train = np.sort(np.concatenate([year1.train, shuffled[n_held:]]))
    period = period[period["customer_id"].isin(np.concatenate([heldout, train]))]
    return Year1Customers(ser.customer_histories(period), train, heldout, pd.Timestamp(cut))


def customers_before(lines: pd.DataFrame, cut: str = YEAR1_CUT) -> np.ndarray:
    """The IDs of every customer with a line before ``cut`` (sorted)."""
    return np.sort(lines.loc[lines["invoice_date"] < pd.Timestamp(cut), "customer_id"].unique())


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


def example_invoices(customers: Year1Customers, which: str, since=None) -> list[tuple[int, int]]:
    """``(customer_id, k)`` of every example :func:`build_examples` makes, in its order: invoice
    ``k`` (oldest first) of each ``which`` customer, from the moment ``since`` on (all when None)."""
    if which not in ("train", "heldout"):
        raise ValueError(f"which must be 'train' or 'heldout', got {which!r}")
    since = None if since is None else pd.Timestamp(since).to_pydatetime()
    out = []
    for cid in getattr(customers, which):
        invoices = customers.histories[int(cid)][1]
        out += [(int(cid), k) for k, inv in enumerate(invoices) if since is None or inv.moment >= since]
    return out


def build_examples(
    customers: Year1Customers,
    which: str,
    tokenizer: BehaviourTokenizer,
    context_length: int,
    since=None,
) -> list[np.ndarray]:
    """Token ID arrays, one per invoice of the ``which`` ("train" or "heldout") customers.

    Each array is ``[<bos>] + history + basket + [<eos>]`` with at most ``context_length + 1``
    IDs (a basket too long for the context is cut at the end). ``since``: only invoices from this
    moment on become examples (their histories still reach back to the first invoice);
    :func:`example_invoices` says which invoice each example is.
    """
    limit = context_length + 1
    wanted = example_invoices(customers, which, since)
    tokenizer.prefill(p for cid in getattr(customers, which)
                      for inv in customers.histories[int(cid)][1] for p in inv.line_pieces)
    examples = []
    for cid, k in wanted:
        country, invoices = customers.histories[cid]
        pieces = example_pieces(country, invoices, k, tokenizer, context_length)
        ids = tokenizer.encode_pieces(pieces, bos=True, eos=True)
        examples.append(np.array(ids[:limit], dtype=np.int64))
    return examples


def prefix_lengths(examples: Sequence[np.ndarray], tokenizer: BehaviourTokenizer) -> np.ndarray:
    """(n,) the length of each example's prefix: ``<bos>`` + history up to and including the last
    " Now buys" (what a prefix LM reads bidirectionally; the basket and ``<eos>`` follow)."""
    prompt = np.asarray(tokenizer.encode(ser.PROMPT), dtype=np.int64)
    m = len(prompt)
    out = np.empty(len(examples), dtype=np.int64)
    for i, e in enumerate(examples):
        if len(e) < m:
            raise DataError(f"example {i} has no prompt {ser.PROMPT!r}; build it with build_examples")
        hits = np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(e, m) == prompt, axis=1))
        if len(hits) == 0:
            raise DataError(f"example {i} has no prompt {ser.PROMPT!r}; build it with build_examples")
        out[i] = hits[-1] + m
    return out


@dataclass
class PretrainingData:
    """Everything training needs, built once by :func:`prepare_data` (year 1) or
    :func:`prepare_continued_data` (the main stage): the customers, the tokenizer, and the token ID
    arrays of the training and held-out examples. ``continued`` is the main stage's configuration
    (None for year 1); ``since`` the first moment whose invoices became examples."""

    config: PretrainConfig
    customers: Year1Customers
    tokenizer: BehaviourTokenizer
    train: list[np.ndarray]
    heldout: list[np.ndarray]
    continued: "ContinuedConfig | None" = None
    since: pd.Timestamp | None = None

    @property
    def stage(self) -> str:
        return "year1" if self.continued is None else "main"

    @property
    def epoch_tokens(self) -> int:
        """Target tokens in one pass over the training examples (what "an epoch" is)."""
        return int(sum(len(e) - 1 for e in self.train))

    def owners(self, which: str = "heldout") -> np.ndarray:
        """(n,) the customer ID of each example of ``which`` ("train" or "heldout")."""
        return np.array([c for c, _ in example_invoices(self.customers, which, self.since)], dtype=np.int64)


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


@dataclass(frozen=True)
class ContinuedConfig:
    """How the "main" checkpoint continues the year-1 model (part of its cache key).

    Data: the text of every line before ``cut`` (default :data:`MAIN_CUT`); only invoices from
    ``examples_from`` on become examples (None: every invoice, year 1 again included), each with the
    customer's history back to their first line. Model: the year-1 GPT with ``context_length``
    positions (None: the year-1 context; a longer one grows it, new positions starting as copies of the last one, see
    :func:`m6rec_lib.models.gpt.grown`) and the attention ``layout`` ("causal", or "prefix": the
    history read bidirectionally, the loss on the basket only). Training: ``train_tokens`` target
    tokens in batches of ``batch_size``, warm-up to ``learning_rate`` and cosine decay to
    ``min_lr_ratio`` of it; validation on ``eval_examples`` held-out examples every ``eval_every``
    steps. Everything else (weight decay, clipping, precision) as in the year-1 configuration.
    """

    cut: str = MAIN_CUT
    examples_from: str | None = YEAR1_CUT
    context_length: int | None = None
    layout: str = "causal"
    train_tokens: int = 400_000
    batch_size: int = 8
    learning_rate: float = 1.5e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    eval_every: int = 50
    eval_examples: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layout not in ("causal", "prefix"):
            raise ValueError(f"layout must be 'causal' or 'prefix', got {self.layout!r}")
        if self.context_length is not None and self.context_length < 8:
            raise ValueError(f"context_length must be None (the year-1 model's) or >= 8, got {self.context_length}")
        for name in ("train_tokens", "batch_size", "eval_every", "eval_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.examples_from is not None and pd.Timestamp(self.examples_from) >= pd.Timestamp(self.cut):
            raise ValueError(f"examples_from={self.examples_from} leaves no invoice before cut={self.cut}")

    def to_dict(self) -> dict:
        return asdict(self)

    def context(self, base: PretrainConfig) -> int:
        """The main model's context: ``context_length``, or the year-1 model's when None."""
        return base.context_length if self.context_length is None else self.context_length

    def model_config(self, base: PretrainConfig) -> PretrainConfig:
        """The year-1 configuration with this stage's context: what ``Pretrained.config`` reports
        (its tokenizer and shape are the year-1 model's)."""
        return replace(base, context_length=self.context(base))

    def training_config(self, base: PretrainConfig) -> PretrainConfig:
        """The configuration :func:`train_gpt` runs the continued training with."""
        return replace(
            base, context_length=self.context(base), batch_size=self.batch_size,
            train_tokens=self.train_tokens, learning_rate=self.learning_rate, min_lr_ratio=self.min_lr_ratio,
            warmup_steps=self.warmup_steps, eval_every=self.eval_every, eval_examples=self.eval_examples,
            seed=self.seed,
        )


def default_continued(smoke: bool | None = None) -> ContinuedConfig:
    """The course's main stage: the year-1 model reads the year-2 part of the training period.

    Full mode: 400,000 tokens (about a third of one pass) of the examples of December 2010 to
    September 2011, at a peak learning rate of 1.5e-3 (half the year-1 peak), with the year-1
    context and the causal layout. Chosen on validation (October 2011 baskets) by
    ``scripts/sweep_pretraining.py``: twice the tokens, the prefix-LM layout and a 256-token
    context made no measurable difference or lost, and year-1 examples again lost on one yardstick
    (notebook 04, section 12). Smoke mode: a few steps.
    """
    if resolve_smoke(smoke):
        return ContinuedConfig(train_tokens=8_000, warmup_steps=4, eval_every=5, eval_examples=32)
    return ContinuedConfig()


def prepare_continued_data(
    config: PretrainConfig,
    continued: ContinuedConfig,
    tokenizer: BehaviourTokenizer | None = None,
    lines: pd.DataFrame | None = None,
) -> PretrainingData:
    """The main stage's data: :func:`main_customers`, the year-1 ``tokenizer`` (cached), and the
    examples of the invoices in ``[continued.examples_from, continued.cut)``."""
    if lines is None:
        from .data import load_clean_lines

        lines, _ = load_clean_lines()
    year1 = year1_customers(config, lines)
    tokenizer = tokenizer if tokenizer is not None else pretraining_tokenizer(config, year1)
    customers = main_customers(config, lines, continued.cut, year1)
    since = None if continued.examples_from is None else pd.Timestamp(continued.examples_from)
    return PretrainingData(
        config, customers, tokenizer,
        build_examples(customers, "train", tokenizer, continued.context(config), since),
        build_examples(customers, "heldout", tokenizer, continued.context(config), since),
        continued, since,
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
    """Set and return the number of CPU threads training uses.

    By default this is :func:`m6rec_lib.training.configure_threads`: ``$M6REC_THREADS`` when set,
    else every core this process may use. The number is fixed on purpose: the thread count changes
    the order in which a matrix product adds its terms, so a model trained with 1 thread differs
    from one trained with 2 (in float32 in the last bits, in bfloat16 visibly), and over hundreds
    of steps that grows into different recorded numbers. A fixed count makes the same machine give
    the same numbers on every run.

    ``M6REC_THREADS=auto`` asks for speed instead: a short probe times a training-sized matrix
    product with one thread and with all cores and keeps the faster (on a machine shared with
    other busy programs one thread can be several times faster). Results then depend on what else
    the machine was doing when the probe ran.
    """
    import os

    if os.environ.get("M6REC_THREADS", "").strip().lower() != "auto":
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


def prefix_targets(y: torch.Tensor, prefix: torch.Tensor | None, pad_id: int) -> torch.Tensor:
    """Targets of a prefix LM: ``y`` (batch, T) with the targets inside each row's prefix set to
    ``pad_id`` (no loss there). Target t is token t + 1, so row b keeps targets t >= P_b - 1:
    the basket's first token, predicted from the last prefix position, is the first one kept."""
    if prefix is None:
        return y
    t = torch.arange(y.shape[1])
    return y.masked_fill(t[None, :] < (prefix[:, None] - 1), pad_id)


def _batch(examples: Sequence[np.ndarray], rows, pad: int, prefix: Sequence[int] | None):
    """(inputs, targets, prefix lengths or None) of the examples ``rows``."""
    x, y = pad_batch([examples[i] for i in rows], pad)
    if prefix is None:
        return x, y, None
    P = torch.as_tensor(np.asarray(prefix)[np.asarray(rows)], dtype=torch.long)
    return x, prefix_targets(y, P, pad), P


@torch.no_grad()
def example_losses(
    model: GPT, examples: Sequence[np.ndarray], batch_size: int = 32, precision: str = "fp32",
    prefix_lengths: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per example: (summed next-token cross-entropy in nats, number of target tokens), two (n,)
    arrays; padding excluded. With ``prefix_lengths`` (a prefix LM) only the continuation's tokens
    count. Group them by customer for per-customer mean losses (:func:`customer_losses`)."""
    was_training = model.training
    model.eval()
    order = np.argsort([len(e) for e in examples], kind="stable")  # similar lengths together
    pad = model.config.pad_id
    total = np.zeros(len(examples))
    count = np.zeros(len(examples), dtype=np.int64)
    for lo in range(0, len(order), batch_size):
        rows = order[lo:lo + batch_size]
        x, y, P = _batch(examples, rows, pad, prefix_lengths)
        with _autocast(precision):
            logits = model(x, prefix_lengths=P)
        loss = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), y, ignore_index=pad, reduction="none")   # (b, T)
        total[rows] = loss.sum(1).double().numpy()
        count[rows] = (y != pad).sum(1).numpy()
    model.train(was_training)
    return total, count


def customer_losses(total: np.ndarray, count: np.ndarray, owners: np.ndarray) -> pd.Series:
    """Mean token loss per customer (nats per token over all of a customer's target tokens):
    the per-customer values a paired bootstrap over customers resamples. Index: customer ID."""
    frame = pd.DataFrame({"customer": owners, "total": total, "count": count}).groupby("customer").sum()
    return frame["total"] / frame["count"]


def evaluate_loss(
    model: GPT, examples: Sequence[np.ndarray], batch_size: int = 32, precision: str = "fp32",
    prefix_lengths: Sequence[int] | None = None,
) -> float:
    """Mean next-token cross-entropy (nats per token) of ``model`` over ``examples``, padding
    excluded (and the prefix, with ``prefix_lengths``); ``exp`` of it is the perplexity."""
    total, count = example_losses(model, examples, batch_size, precision, prefix_lengths)
    return float(total.sum() / max(count.sum(), 1))


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
    train_prefix: Sequence[int] | None = None,
    val_prefix: Sequence[int] | None = None,
    desc: str = "pretraining",
) -> pd.DataFrame:
    """Pretrain ``model`` in place on ``train_examples`` for ``config.train_tokens`` tokens.

    ``train_prefix`` / ``val_prefix``: each example's prefix length (:func:`prefix_lengths`) to
    train a prefix LM (bidirectional history, loss on the basket only); None: a causal LM.

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
    if (train_prefix is None) != (val_prefix is None):
        raise ValueError("pass prefix lengths for both the training and the held-out examples, or neither")
    val = list(val_examples)
    val_P = None if val_prefix is None else np.asarray(val_prefix)
    if len(val) > config.eval_examples:
        pick = np.sort(np.random.default_rng(config.seed + 1).choice(len(val), config.eval_examples, replace=False))
        val = [val[i] for i in pick]
        val_P = None if val_P is None else val_P[pick]
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
        val_loss = evaluate_loss(model, val, 32, precision, val_P)
        eval_seconds += time.perf_counter() - started
        rows.append({"step": step, "tokens": tokens, "train_loss": running / n_running if n_running else np.nan,
                     "val_loss": val_loss, "lr": optimizer.param_groups[0]["lr"], "seconds": train_seconds})
        running, n_running = 0.0, 0

    model.train()
    evaluate(0)
    bar = tqdm(batches, desc=desc, unit="batch", disable=not progress)
    for step, index in enumerate(bar, start=1):
        started = time.perf_counter()
        lr = learning_rate(step - 1, len(batches), config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y, P = _batch(train_examples, index, pad, train_prefix)
        with _autocast(precision):
            logits = model(x, prefix_lengths=P)
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=pad)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}; lower learning_rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        train_seconds += time.perf_counter() - started
        tokens += int((x != pad).sum())  # tokens read (a prefix LM has loss on fewer)
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

    ``model`` (a :class:`GPT` in eval mode), ``tokenizer`` (the year-1 BPE, for both stages),
    ``config`` (the year-1 :class:`PretrainConfig`; for the main stage with its ``context_length``
    set to the main model's), ``history`` (one row per evaluation, see :func:`train_gpt`),
    ``metrics`` (val_loss, val_perplexity, train_seconds, tokens_per_second, epoch_tokens,
    epoch_share, ...), ``cached`` (True when loaded, not trained), ``path`` of the checkpoint,
    ``stage`` ("year1" or "main") and ``continued`` (the main stage's :class:`ContinuedConfig`).
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
    stage: str = "year1"
    continued: ContinuedConfig | None = None

    @property
    def context_length(self) -> int:
        return self.model.config.context_length

    @property
    def text_cut(self) -> str:
        """The first day this model never read: its text ends before it."""
        return self.config.cut if self.continued is None else self.continued.cut

    def encode_history(self, history: ser.HistoryText | str) -> list[int]:
        """``[<bos>] +`` the token IDs of a serialised history: the prefix to score or generate from."""
        return self.tokenizer.encode(str(history), bos=True)


def cache_key(config: PretrainConfig, smoke: bool) -> dict:
    """The configuration the cached year-1 model is stored under."""
    return {"config": config.to_dict(), "smoke": bool(smoke), "format": ser.FORMAT_VERSION}


def main_cache_key(config: PretrainConfig, continued: ContinuedConfig, smoke: bool) -> dict:
    """The configuration the cached main-stage model is stored under (it includes the year-1 key)."""
    return {"base": cache_key(config, smoke), "continued": continued.to_dict()}


def _metrics(model: GPT, data: PretrainingData, history: pd.DataFrame, threads: int) -> dict:
    final = float(history["val_loss"].iloc[-1])
    return {
        "val_loss": final, "val_perplexity": math.exp(final),
        "initial_val_loss": float(history["val_loss"].iloc[0]),
        "train_examples": len(data.train), "heldout_examples": len(data.heldout),
        "epoch_tokens": data.epoch_tokens,
        "parameters": model.num_parameters(), "tokenizer": data.tokenizer.fingerprint(), "threads": threads,
        **{k: v if isinstance(v, str) else float(v) if isinstance(v, (float, np.floating)) else int(v)
           for k, v in history.attrs.items()},
        "epoch_share": float(history.attrs["train_tokens"]) / max(data.epoch_tokens, 1),
    }


def pretrain(
    config: PretrainConfig,
    lines: pd.DataFrame | None = None,
    progress: bool = True,
    data: PretrainingData | None = None,
) -> tuple[GPT, BehaviourTokenizer, pd.DataFrame, dict]:
    """Run the whole year-1 pipeline once: (model, tokenizer, history, metrics). Does not cache the
    model. ``data`` (from :func:`prepare_data` with the same configuration) skips steps 1-3.
    """
    threads = pick_threads()
    if data is None:
        data = prepare_data(config, lines)
    elif data.config != config or data.continued is not None:
        raise ValueError("data was prepared for another configuration or stage; call prepare_data(config) again")
    seed_everything(config.seed)
    model = GPT(config.gpt_config())
    history = train_gpt(model, data.train, data.heldout, config, progress=progress)
    return model, data.tokenizer, history, _metrics(model, data, history, threads)


def continue_pretraining(
    base: GPT,
    data: PretrainingData,
    progress: bool = True,
) -> tuple[GPT, pd.DataFrame, dict]:
    """The main stage: a copy of the year-1 ``base`` model (grown to the stage's context and
    layout, :func:`m6rec_lib.models.gpt.grown`) trained on ``data`` (:func:`prepare_continued_data`).
    Returns (model, history, metrics); ``base`` is left unchanged and nothing is cached."""
    if data.continued is None:
        raise ValueError("data is year-1 data; build the main stage's with prepare_continued_data(...)")
    threads = pick_threads()
    continued = data.continued
    seed_everything(continued.seed)
    model = grown(base, continued.context(data.config), continued.layout)
    train_P = val_P = None
    if continued.layout == "prefix":
        train_P, val_P = prefix_lengths(data.train, data.tokenizer), prefix_lengths(data.heldout, data.tokenizer)
    history = train_gpt(model, data.train, data.heldout, continued.training_config(data.config),
                        progress=progress, train_prefix=train_P, val_prefix=val_P, desc="continued pretraining")
    return model, history, _metrics(model, data, history, threads)


def load_or_pretrain(
    config: PretrainConfig | None = None,
    smoke: bool | None = None,
    *,
    stage: str = "year1",
    continued: ContinuedConfig | None = None,
    lines: pd.DataFrame | None = None,
    data: PretrainingData | None = None,
    rebuild: bool = False,
    progress: bool = True,
) -> Pretrained:
    """The pretrained GPT and its tokenizer, trained only when not cached.

    ``stage``: "year1" (default; the model of year-1 text, :data:`YEAR1_CUT`) or "main" (the
    year-1 model trained further on the main split's training period, :data:`MAIN_CUT`; see
    :data:`STAGES` for which notebook uses which). ``smoke``: None reads ``$M6REC_SMOKE``;
    ``config``: default :func:`default_config(smoke)`; ``continued`` (main stage only): default
    :func:`default_continued(smoke)`. ``lines`` (cleaned lines, to avoid loading them again) or
    ``data`` (from :func:`prepare_data`, or :func:`prepare_continued_data` for the main stage) are
    only used when training is needed; the main stage loads (or trains) the year-1 model first.
    ``rebuild`` trains this stage again even if cached. Checkpoints:
    ``<cache_dir>/gpt-pretrained-<hash>.pt`` (year 1) and ``gpt-main-<hash>.pt``, the tokenizer
    ``bpe-year1-<hash>.json`` next to them; loading takes about a second::

        pre = load_or_pretrain(smoke=SMOKE, stage="main")
        prefix = pre.encode_history(history_text(lines_of_customer, now))
        scores = pre.model.score_continuations(prefix, [pre.tokenizer.encode(candidate_text(d)) for d in texts])
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)} ({'; '.join(f'{k}: {v}' for k, v in STAGES.items())}), "
                         f"got {stage!r}")
    smoke = resolve_smoke(smoke)
    config = config or default_config(smoke)
    if stage == "main":
        return _load_or_continue(config, continued or default_continued(smoke), smoke, lines=lines, data=data,
                                 rebuild=rebuild, progress=progress)
    if continued is not None:
        raise ValueError("continued=... configures the main stage; pass stage='main' as well")
    key = cache_key(config, smoke)
    path = artifact_path(ARTIFACT_NAME, key)
    if path.is_file() and not rebuild:
        tokenizer = data.tokenizer if data is not None else pretraining_tokenizer(config, lines=lines)
        model = GPT(config.gpt_config())
        meta = _load_cached(path, model, key, tokenizer)
        if meta is not None:
            return Pretrained(model, tokenizer, config, pd.DataFrame(meta["history"]), meta["metrics"],
                              cached=True, path=path, smoke=smoke)
    if data is not None and data.continued is not None:
        raise ValueError("data holds the main stage's examples; the year-1 model needs prepare_data(config)")
    model, tokenizer, history, metrics = pretrain(config, lines, progress=progress, data=data)
    meta = {"key": key, "tokenizer": tokenizer.fingerprint(), "metrics": metrics,
            "history": history.to_dict(orient="list")}
    save_checkpoint(path, model, meta)
    return Pretrained(model, tokenizer, config, history, metrics, cached=False, path=path, smoke=smoke)


def _load_cached(path: Path, model: GPT, key: dict, tokenizer: BehaviourTokenizer) -> dict | None:
    """Load a cached checkpoint into ``model`` (set to eval mode) and return its metadata, or None
    (with a warning saying why) when it was written for another configuration or tokenizer."""
    try:
        _, meta = load_checkpoint(path, model, expected_meta={"key": key, "tokenizer": tokenizer.fingerprint()})
    except CheckpointError as exc:
        import warnings

        warnings.warn(f"pretraining again: {exc}")
        return None
    model.eval()
    return meta


def _load_or_continue(
    config: PretrainConfig, continued: ContinuedConfig, smoke: bool, *, lines, data, rebuild: bool, progress: bool,
) -> Pretrained:
    """``load_or_pretrain(..., stage="main")``."""
    key = main_cache_key(config, continued, smoke)
    path = artifact_path(MAIN_ARTIFACT_NAME, key)
    model_config = continued.model_config(config)
    if data is not None and (data.continued != continued or data.config != config):
        raise ValueError("data was prepared for another configuration or stage; use "
                         "prepare_continued_data(config, continued)")
    if path.is_file() and not rebuild:
        tokenizer = data.tokenizer if data is not None else pretraining_tokenizer(config, lines=lines)
        model = GPT(replace(model_config.gpt_config(), layout=continued.layout))
        meta = _load_cached(path, model, key, tokenizer)
        if meta is not None:
            return Pretrained(model, tokenizer, model_config, pd.DataFrame(meta["history"]), meta["metrics"],
                              cached=True, path=path, smoke=smoke, stage="main", continued=continued)
    if lines is None and data is None:
        from .data import load_clean_lines

        lines, _ = load_clean_lines()
    base = load_or_pretrain(config, smoke, lines=lines, progress=progress)
    if data is None:
        data = prepare_continued_data(config, continued, base.tokenizer, lines)
    model, history, metrics = continue_pretraining(base.model, data, progress=progress)
    model.eval()
    metrics["base_path"] = base.path.name
    meta = {"key": key, "tokenizer": data.tokenizer.fingerprint(), "metrics": metrics,
            "history": history.to_dict(orient="list")}
    save_checkpoint(path, model, meta)
    return Pretrained(model, data.tokenizer, model_config, history, metrics, cached=False, path=path,
                      smoke=smoke, stage="main", continued=continued)


# --------------------------------------------------------------------------- 7. reading the results

def customer_logliks(
    model: GPT, examples: Sequence[np.ndarray], owners: np.ndarray, precision: str = "fp32",
    prefix_lengths: Sequence[int] | None = None,
) -> pd.Series:
    """Mean log-likelihood per token (nats; higher is better) of each customer's examples: the
    per-customer values two models are compared on with a paired bootstrap. Index: customer ID.
    ``owners``: the customer of each example (:meth:`PretrainingData.owners`); ``prefix_lengths``:
    count the continuations only (:func:`example_losses`)."""
    total, count = example_losses(model, examples, precision=precision, prefix_lengths=prefix_lengths)
    return -customer_losses(total, count, np.asarray(owners))


def unigram_logliks(
    train_examples: Sequence[np.ndarray], examples: Sequence[np.ndarray], owners: np.ndarray, vocab_size: int,
) -> pd.Series:
    """The same for the unigram model: every token predicted by its frequency among the training
    examples' targets (add-one smoothing), whatever came before it."""
    counts = np.bincount(np.concatenate([e[1:] for e in train_examples]), minlength=vocab_size).astype(float) + 1.0
    logp = np.log(counts / counts.sum())
    total = np.array([-logp[e[1:]].sum() for e in examples])
    count = np.array([len(e) - 1 for e in examples])
    return -customer_losses(total, count, np.asarray(owners))


def sample_baskets(
    model: GPT, tokenizer: BehaviourTokenizer, customers: Year1Customers, customer_ids: Sequence[int],
    max_new_tokens: int = 48, temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
) -> pd.DataFrame:
    """Generate each customer's last basket from their history as seen at that basket.

    One row per customer: ``history`` (the prompt's text), ``generated`` (what the model wrote
    after " Now buys"), ``true basket``, ``names`` (the product names parsed from the generated
    basket). The history is cut to leave ``max_new_tokens`` of room in the context.
    """
    generator = torch.Generator().manual_seed(seed)
    budget = model.config.context_length - max_new_tokens - 1  # room for <bos> and the new tokens
    rows = []
    for cid in customer_ids:
        country, invoices = customers.histories[int(cid)]
        target = invoices[-1]
        history = ser.history_from_invoices(invoices[:-1], target.moment, country, max_length=budget,
                                            length=tokenizer.count)
        prompt = tokenizer.encode(history.text, bos=True)
        out = model.generate(torch.tensor([prompt]), max_new_tokens, temperature=temperature, top_k=top_k,
                             stop_token=tokenizer.eos_id, generator=generator)
        generated = tokenizer.decode(out[0, len(prompt):].tolist())
        rows.append({"customer": int(cid), "history": history.text, "generated": generated,
                     "true basket": "".join(target.line_pieces),
                     "names": [d for d, _ in ser.parse_basket(generated)]})
    return pd.DataFrame(rows)


def words_per_token(tokenizer: BehaviourTokenizer, examples: Sequence[np.ndarray]) -> float:
    """Words (separated by spaces) per token of ``examples``' text, ``<bos>``/``<eos>`` left out:
    to say how much text a number of tokens is, in a reader's terms."""
    words = sum(len(tokenizer.decode(e).split()) for e in examples)
    tokens = sum(int(np.sum((e != tokenizer.bos_id) & (e != tokenizer.eos_id))) for e in examples)
    return words / max(tokens, 1)


def sold_before(lines: pd.DataFrame, items, cut: str = YEAR1_CUT) -> np.ndarray:
    """(n_items + 1,) bool: True for the products of ``items`` (an ItemIndex) first sold before
    ``cut``, i.e. products whose names a model of the text before ``cut`` may have read."""
    first = lines.groupby("stock_code")["invoice_date"].min()
    ids = items.ids(first.index[first < pd.Timestamp(cut)], unknown="minus_one")
    out = np.zeros(items.n_items + 1, dtype=bool)
    out[ids[ids > 0]] = True
    return out


def text_gaps(lines: pd.DataFrame, split, eval_set=None, cut: str = YEAR1_CUT) -> pd.Series:
    """How far the text before ``cut`` is from an evaluation month of a split (default: its
    validation set), in three numbers: months from ``cut`` to the first evaluation day; the share
    of the evaluated customers' earlier purchase lines dated on or after ``cut``; the share of the
    evaluated baskets' lines (products known to the split) whose product was first sold on or
    after ``cut``."""
    es = split.validation if eval_set is None else eval_set
    cut = pd.Timestamp(cut)
    start = pd.Timestamp(es.moments.min()).normalize()
    cids = split.users.customer_ids[es.users]
    before = lines[lines["customer_id"].isin(cids) & (lines["invoice_date"] < start)]
    old = sold_before(lines, split.items, str(cut.date()))
    targets = np.concatenate([t[t > 0] for t in es.targets])
    return pd.Series({
        f"months from {cut.date()} to the first evaluation day": (start - cut).days / 30.44,
        f"share of the customers' earlier purchase lines dated after {cut.date()}": float((before["invoice_date"] >= cut).mean()),
        f"share of basket lines whose product was first sold after {cut.date()}": float((~old[targets]).mean()),
    })


def reading_table(stages: dict[str, tuple[PretrainingData, Pretrained]]) -> pd.DataFrame:
    """One row per stage: its text, examples, tokens in one pass over them, tokens read, and the
    share of one pass read. ``stages``: name -> (its data, its loaded model)."""
    rows = {}
    for name, (data, pre) in stages.items():
        since = "the start" if data.since is None else str(data.since.date())
        read = int(pre.metrics["train_tokens"])
        rows[name] = {"invoices read as examples": f"{since} to {data.customers.cut.date()}",
                      "examples": len(data.train), "tokens in one pass": data.epoch_tokens, "tokens read": read,
                      "share of one pass": round(read / max(data.epoch_tokens, 1), 3)}
    return pd.DataFrame(rows).T


def plot_history(history: pd.DataFrame, title: str = "", perplexity: bool = True):
    """Training and held-out loss against tokens read (and the held-out perplexity): a Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if perplexity else 1, figsize=(11 if perplexity else 6.5, 3.4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(history["tokens"][1:], history["train_loss"][1:], marker="o", ms=3, label="training (mean since last point)")
    ax.plot(history["tokens"], history["val_loss"], marker="o", ms=3, label="held-out customers")
    ax.set_xlabel("tokens read"); ax.set_ylabel("cross-entropy (nats/token)"); ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    if perplexity:
        ax = axes[0, 1]
        ax.plot(history["tokens"][1:], np.exp(history["val_loss"][1:]), marker="o", ms=3, color="C1")
        ax.set_xlabel("tokens read"); ax.set_ylabel("held-out perplexity"); ax.set_yscale("log")
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_line_coverage(total: pd.Series, shown: dict[int, pd.Series]):
    """Histogram (log scale) of the purchase lines before each customer's moment, and of the lines
    each context length shows (``shown[context_length]``): a Figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    bins = np.logspace(0, np.log10(max(2, float(total.max()))), 40)
    ax.hist(total.clip(lower=1), bins=bins, alpha=0.5, label="purchase lines before the basket")
    for ctx, n in shown.items():
        ax.hist(n.clip(lower=1), bins=bins, alpha=0.6, label=f"lines shown in {ctx} tokens")
    ax.set_xscale("log"); ax.set_xlabel("purchase lines (log scale)"); ax.set_ylabel("customers")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: pretrain (or load) the course's GPT and print its metrics.

    ``python -m m6rec_lib.pretraining [--smoke] [--stage main] [--rebuild]`` (one process; for
    several, see ``scripts/pretrain_ddp.py``).
    """
    parser = argparse.ArgumentParser(description="Pretrain the course's GPT on behaviour text.")
    parser.add_argument("--smoke", action="store_true", help="tiny configuration, a few steps")
    parser.add_argument("--stage", choices=sorted(STAGES), default="year1",
                        help="year1: year-1 text; main: continued on the main split's training period")
    parser.add_argument("--rebuild", action="store_true", help="train even if a cached model exists")
    parser.add_argument("--train-tokens", type=int, default=None, help="override the token budget (of the stage)")
    args = parser.parse_args(argv)
    config, continued = default_config(args.smoke), None
    if args.stage == "main":
        continued = default_continued(args.smoke)
        if args.train_tokens:
            continued = replace(continued, train_tokens=args.train_tokens)
    elif args.train_tokens:
        config = replace(config, train_tokens=args.train_tokens)
    pre = load_or_pretrain(config, smoke=args.smoke, stage=args.stage, continued=continued, rebuild=args.rebuild)
    print(f"{'loaded' if pre.cached else 'trained'} {pre.path}")
    for k, v in pre.metrics.items():
        print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
