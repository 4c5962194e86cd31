"""Classification tasks on (customer history text, candidate product text) pairs, leakage-free.

The shop has no impressions (what a customer was shown and did not click), so a click / no-click
task is built from purchases, the way CTR data sets are usually simulated:

* **click task** -- at a customer's basket, each product *in* the basket is a positive (label 1);
  for each positive, ``negatives_per_positive`` products *not* in the basket are sampled as negatives
  (label 0). ``negatives="popularity"`` samples them in proportion to their number of buyers in the
  training period -- like products a shop would show -- so that the popularity of a product alone
  says nothing (positives are popular too: MostPop's AUC is about 0.5); ``"uniform"`` samples every
  catalogue product alike, so a non-click is usually an obscure product and a popularity count
  alone separates the classes (the trap notebook 07 shows).
* **bulk task** -- at a customer's basket, each product bought is a pair; label 1 if the quantity
  is at least ``bulk_threshold`` (12: a dozen or more, a reseller's quantity), else 0.

Where the pairs come from (:func:`build_pair_task`), for a split made by
:func:`m6rec_lib.data.next_basket_split`:

* ``"train"``: ``n_train_moments`` invoices sampled from the training period from ``train_from`` on,
  each from a customer with at least one earlier invoice;
* ``"validation"`` / ``"test"``: the split's evaluation baskets (each customer's first basket of
  the period), ``n_eval_customers`` of them sampled; targets unknown to the item index are left out
  (a text model could score them, an ID model could not: notebook 08 is about them).

Every history is written with :mod:`m6rec_lib.text.serializer` from lines strictly before the
basket's moment, with the training-period product texts; popularity for sampling comes from the
training period only. Nothing from a basket or from after it reaches its pair's input.

A :class:`PairTask` holds the token IDs, one history per customer moment (a *group*) shared by its
pairs, and yields :class:`m6rec_lib.adaptation.PairBatch` batches for :class:`AdaptedGPT`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .adaptation import PairBatch
from .data import DataError
from .text import serializer as ser

if TYPE_CHECKING:
    from .data import EvalSet, Split
    from .models.gpt import GPT
    from .text.tokenizer import BehaviourTokenizer

__all__ = ["PairTaskConfig", "PairTask", "build_pair_task", "build_pair_tasks", "lm_pair_scores",
           "pair_scores_from_rows", "course_task_config", "history_token_ids", "TASKS", "PARTS"]

TASKS = ("click", "bulk")
PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class PairTaskConfig:
    """How the pairs are drawn and written.

    ``max_history_tokens`` (with ``<bos>``) and ``max_candidate_tokens`` bound the text; a pair of
    an AdaptedGPT with P prompt positions needs ``max_history_tokens + max_candidate_tokens + P``
    positions. ``n_eval_customers`` evaluation baskets are sampled for the test part and
    ``n_validation_customers`` (default: as many) for validation. See the module docstring for the
    rest.
    """

    max_history_tokens: int = 128
    max_candidate_tokens: int = 24
    train_from: str = "2011-06-01"
    n_train_moments: int = 600
    positives_per_moment: int = 4
    negatives_per_positive: int = 1
    negatives: str = "popularity"
    n_eval_customers: int | None = 400
    n_validation_customers: int | None = None
    bulk_threshold: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        if self.negatives not in ("popularity", "uniform"):
            raise ValueError(f"negatives must be 'popularity' or 'uniform', got {self.negatives!r}")
        for name in ("max_history_tokens", "max_candidate_tokens", "n_train_moments",
                     "positives_per_moment", "negatives_per_positive", "bulk_threshold"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_history_tokens < 8:
            raise ValueError("max_history_tokens must leave room for a profile and the prompt (>= 8)")
        for name in ("n_eval_customers", "n_validation_customers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None (all)")

    def to_dict(self) -> dict:
        return asdict(self)


def course_task_config(smoke: bool, context_length: int, n_prompt: int = 8, negatives: str = "popularity",
                       seed: int = 0) -> PairTaskConfig:
    """The configuration notebook 07 uses (and later notebooks reuse to get the same pairs).

    The history gets what the context leaves after a 16-token candidate and ``n_prompt`` prompt
    positions. Full mode: 600 training moments, 240 test and 160 validation customers (enough for
    an AUC interval not much wider than the test set's, so that choices made on validation are
    not pure noise); smoke mode a few dozen. Negatives are popularity-matched by default: with ``"uniform"`` negatives the
    number of buyers of a product alone separates clicks from non-clicks (MostPop reaches an AUC
    near 0.8), so the task measures popularity rather than a customer's taste.
    """
    max_cand = 16
    return PairTaskConfig(
        max_history_tokens=context_length - max_cand - n_prompt, max_candidate_tokens=max_cand,
        n_train_moments=60 if smoke else 600, positives_per_moment=2 if smoke else 4,
        n_eval_customers=30 if smoke else 240, n_validation_customers=30 if smoke else 160,
        negatives=negatives, seed=seed,
    )


class GroupedPairs:
    """Pairs sorted by customer moment ("group"), served a few groups at a time.

    A subclass gives ``n_groups``, :meth:`pair_groups` (the group of every pair, non-decreasing)
    and ``batch(group_ids)``; this class cuts the groups into prediction batches and endless
    shuffled training batches. Shared by :class:`PairTask` and
    :class:`m6rec_lib.serving.SegmentedPairs`.
    """

    n_groups: int

    def pair_groups(self) -> np.ndarray:
        raise NotImplementedError

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, ends)``: the pairs of group ``g`` are rows ``starts[g]:ends[g]``."""
        g, n = self.pair_groups(), np.arange(self.n_groups)
        return np.searchsorted(g, n), np.searchsorted(g, n, side="right")

    def batches(self, groups_per_batch: int = 16) -> Iterator:
        """All pairs in order (for prediction), ``groups_per_batch`` customer moments at a time."""
        if groups_per_batch < 1:
            raise ValueError("groups_per_batch must be >= 1")
        for lo in range(0, self.n_groups, groups_per_batch):
            yield self.batch(np.arange(lo, min(lo + groups_per_batch, self.n_groups)))

    def stream(self, groups_per_batch: int = 16, seed: int = 0) -> Iterator:
        """Endless shuffled batches for training: epoch after epoch, each in a new seeded order."""
        if groups_per_batch > self.n_groups:
            raise ValueError(f"groups_per_batch={groups_per_batch} exceeds the {self.n_groups} groups")
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(self.n_groups)
            for lo in range(0, self.n_groups - groups_per_batch + 1, groups_per_batch):
                yield self.batch(order[lo:lo + groups_per_batch])


@dataclass
class PairTask(GroupedPairs):
    """Pairs of one task and part, grouped by customer moment.

    ``pairs``: one row per pair, sorted by ``group``: ``group``, ``item`` (ID), ``label``,
    ``quantity`` (bought quantity, 0 for sampled negatives), ``repeat`` (1 if the customer bought
    the item before the moment). ``groups``: one row per customer moment: ``user`` (row), ``customer_id``,
    ``moment``, ``eval_pos`` (position in the split's EvalSet, -1 for training moments), ``n_lines``
    (history lines written), ``n_not_shown`` (lines dropped to fit). ``histories``: per group the token
    IDs ``<bos>`` + history text (ending with " Now buys"). ``item_tokens``: item ID -> token IDs of
    its candidate text.
    """

    task: str
    part: str
    pairs: pd.DataFrame
    groups: pd.DataFrame
    histories: list[np.ndarray]
    item_tokens: dict[int, np.ndarray]
    config: PairTaskConfig
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def labels(self) -> np.ndarray:
        return self.pairs["label"].to_numpy()

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def summary(self) -> dict:
        """Pairs, groups, positive share, mean history tokens."""
        return {"task": self.task, "part": self.part, "groups": self.n_groups, "pairs": len(self),
                "positive share": float(self.labels.mean()),
                "history tokens (mean)": float(np.mean([len(h) for h in self.histories]))}

    def batch(self, group_ids: np.ndarray) -> PairBatch:
        """The pairs of ``group_ids`` (in that order) as one :class:`PairBatch`."""
        group_ids = np.asarray(group_ids, dtype=np.int64)
        starts, ends = self._bounds()
        hist, hist_len = PairBatch.pad([self.histories[g] for g in group_ids])
        rows = np.concatenate([np.arange(starts[g], ends[g]) for g in group_ids])
        local = np.repeat(np.arange(len(group_ids)), ends[group_ids] - starts[group_ids])
        items = self.pairs["item"].to_numpy()[rows]
        cand, cand_len = PairBatch.pad([self.item_tokens[int(i)] for i in items])
        labels = torch.as_tensor(self.pairs["label"].to_numpy()[rows], dtype=torch.long)
        return PairBatch(hist, hist_len, cand, cand_len, torch.as_tensor(local), labels)

    def pair_groups(self) -> np.ndarray:
        return self.pairs["group"].to_numpy()


# =============================================================================================
# building
# =============================================================================================

def _lines_with_ids(split: "Split", lines: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("customer_id", "stock_code", "invoice", "invoice_date", "quantity", "description")
               if c not in lines.columns]
    if missing:
        raise DataError(f"lines lack column(s) {missing}; pass the cleaned lines the split was built from")
    out = lines[["customer_id", "stock_code", "invoice", "invoice_date", "quantity", "description"]
                + (["country"] if "country" in lines.columns else [])].copy()
    try:
        out["user"] = split.users.rows(out["customer_id"].to_numpy())
    except KeyError as exc:
        raise DataError(f"{exc}; pass the same (possibly subsampled) lines the split was built from") from None
    out["item"] = split.items.ids(out["stock_code"], unknown="minus_one")
    return out


def _training_moments(split: "Split", config: PairTaskConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Sampled invoices of the training period from ``train_from`` on, with an earlier invoice."""
    train = split.train
    first = train.groupby("user")["invoice_date"].min()
    inv = train.drop_duplicates(["user", "invoice"])[["user", "invoice", "invoice_date"]]
    inv = inv[inv["invoice_date"] >= pd.Timestamp(config.train_from)]
    inv = inv[inv["invoice_date"].to_numpy() > first.reindex(inv["user"]).to_numpy()]
    if len(inv) == 0:
        raise DataError(f"no training invoice from train_from={config.train_from} has an earlier "
                        "invoice by the same customer; pick an earlier train_from")
    take = rng.choice(len(inv), size=min(config.n_train_moments, len(inv)), replace=False)
    out = inv.iloc[np.sort(take)].rename(columns={"invoice_date": "moment"})
    out["eval_pos"] = -1
    return out.reset_index(drop=True)


def _eval_moments(eval_set: "EvalSet", config: PairTaskConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = len(eval_set)
    pos = np.arange(n)
    wanted = config.n_eval_customers
    if eval_set.name == "validation" and config.n_validation_customers is not None:
        wanted = config.n_validation_customers
    if wanted is not None and wanted < n:
        pos = np.sort(rng.choice(n, size=wanted, replace=False))
    return pd.DataFrame({"user": eval_set.users[pos], "invoice": None,
                         "moment": pd.to_datetime(eval_set.moments[pos]), "eval_pos": pos})


def _popularity(split: "Split") -> np.ndarray:
    buyers = np.asarray((split.train_matrix > 0).sum(axis=0), dtype=np.float64).ravel()
    buyers[0] = 0.0
    return buyers


def _country_lookup(lines: pd.DataFrame) -> Callable[[int, pd.Timestamp], str | None]:
    """``country_at(customer, moment)``: the country of the customer's latest line before ``moment``
    (never a later one: a customer who moves abroad later is not written as abroad now)."""
    if "country" not in lines.columns:
        return lambda customer, moment: None
    ordered = lines.sort_values(["customer_id", "invoice_date"], kind="stable")
    by_customer = {int(c): (g["invoice_date"].to_numpy(), g["country"].to_numpy())
                   for c, g in ordered.groupby("customer_id", sort=False)}

    def country_at(customer: int, moment: pd.Timestamp) -> str | None:
        if customer not in by_customer:
            return None
        dates, countries = by_customer[customer]
        k = int(np.searchsorted(dates, np.datetime64(moment, "ns"), side="left"))
        value = countries[k - 1] if k > 0 else None
        return None if value is None or pd.isna(value) else str(value)

    return country_at


def history_token_ids(
    lines: pd.DataFrame,
    customer_ids: Sequence[int],
    moments: Sequence,
    tokenizer: "BehaviourTokenizer",
    max_tokens: int,
    descriptions: Mapping[str, str] | None = None,
) -> tuple[list[np.ndarray], pd.DataFrame]:
    """``[<bos>]`` + the history text (ending in " Now buys") of each (customer, moment), at most
    ``max_tokens`` tokens, oldest lines dropped first.

    Only lines strictly before each moment are written, with the country of the customer's latest
    line before it. ``descriptions``: stock code -> text (e.g. the training period's). Returns the
    token arrays and a frame with ``n_lines`` (lines written) and ``n_not_shown`` (lines dropped).
    """
    if len(customer_ids) != len(moments):
        raise ValueError(f"{len(customer_ids)} customers but {len(moments)} moments")
    if max_tokens < 8:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for a history")
    moments = pd.to_datetime(np.asarray(moments))
    latest = moments.max() if len(moments) else pd.Timestamp.min
    wanted = set(int(c) for c in customer_ids)
    mine = lines[lines["customer_id"].isin(wanted) & (lines["invoice_date"] < latest)]
    hist_of = ser.customer_histories(mine, descriptions=descriptions)
    country_at = _country_lookup(mine)
    out, rows = [], []
    for cid, moment in zip(customer_ids, moments):
        _, invoices = hist_of.get(int(cid), (None, []))
        text = ser.history_from_invoices(invoices, moment, country_at(int(cid), moment),
                                         max_length=max_tokens - 1, length=tokenizer.count)
        ids = tokenizer.encode(text.text, bos=True)
        if len(ids) > max_tokens:  # additivity makes this impossible; guard anyway
            ids = ids[:1] + ids[-(max_tokens - 1):]
        out.append(np.asarray(ids, dtype=np.int64))
        rows.append({"n_lines": text.n_lines, "n_not_shown": text.n_not_shown})
    return out, pd.DataFrame(rows, columns=["n_lines", "n_not_shown"])


def build_pair_task(
    split: "Split",
    lines: pd.DataFrame,
    tokenizer: "BehaviourTokenizer",
    task: str = "click",
    part: str = "train",
    config: PairTaskConfig = PairTaskConfig(),
) -> PairTask:
    """The pairs of one ``task`` ("click" or "bulk") and ``part`` ("train", "validation", "test").

    ``split``: a :func:`next_basket_split` of ``lines`` (the cleaned, possibly subsampled, lines it
    was built from; they give the histories' times and quantities). ``tokenizer``: the pretrained
    model's tokenizer. Sampling is seeded by ``config.seed`` and the part.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    rng = np.random.default_rng([config.seed, PARTS.index(part), TASKS.index(task)])
    all_lines = _lines_with_ids(split, lines)
    if part == "train":
        moments = _training_moments(split, config, rng)
    else:
        moments = _eval_moments(getattr(split, part), config, rng)
    moments = moments.sort_values(["user", "moment"], kind="stable").reset_index(drop=True)

    # the basket at each moment: items with quantities (the moment's lines of that customer)
    key = pd.MultiIndex.from_frame(moments[["user", "moment"]])
    at = all_lines.set_index(["user", "invoice_date"]).index.isin(key)
    basket_lines = all_lines[at & (all_lines["item"] > 0).to_numpy()]
    baskets = {}
    grouped = basket_lines.groupby(["user", "invoice_date", "item"])["quantity"].sum().reset_index()
    for (u, when), part_ in grouped.groupby(["user", "invoice_date"], sort=False):
        baskets[(int(u), pd.Timestamp(when))] = (part_["item"].to_numpy(np.int64), part_["quantity"].to_numpy(np.int64))
    before_cut = moments["moment"].max()
    past = all_lines[(all_lines["invoice_date"] < before_cut) & all_lines["user"].isin(moments["user"]).to_numpy()
                     & (all_lines["item"] > 0).to_numpy()]
    first_buy = past.groupby(["user", "item"])["invoice_date"].min()   # first purchase of each pair
    bought = dict(zip(zip(first_buy.index.get_level_values(0).tolist(), first_buy.index.get_level_values(1).tolist()),
                      first_buy.tolist()))

    popularity = _popularity(split)
    weights = popularity if config.negatives == "popularity" else (np.arange(len(popularity)) > 0).astype(float)
    if weights.sum() <= 0:
        raise DataError("the training matrix is empty: no product can be sampled as a negative")

    rows: list[dict] = []
    keep_groups: list[int] = []
    for g, m in enumerate(moments.itertuples(index=False)):
        if (int(m.user), pd.Timestamp(m.moment)) not in baskets:
            continue  # every target unknown to the item index
        items, qty = baskets[(int(m.user), pd.Timestamp(m.moment))]
        if task == "click":
            n_pos = min(config.positives_per_moment, len(items))
            pick = rng.choice(len(items), size=n_pos, replace=False)
            pos_items, pos_qty = items[pick], qty[pick]
            p = weights.copy()
            p[items] = 0.0
            n_neg = n_pos * config.negatives_per_positive
            n_neg = min(n_neg, int((p > 0).sum()))
            neg_items = rng.choice(len(p), size=n_neg, replace=False, p=p / p.sum())
            chosen = [(i, 1, q) for i, q in zip(pos_items, pos_qty)] + [(i, 0, 0) for i in neg_items]
        else:
            n_take = min(config.positives_per_moment * (1 + config.negatives_per_positive), len(items))
            pick = rng.choice(len(items), size=n_take, replace=False)
            chosen = [(i, int(q >= config.bulk_threshold), q) for i, q in zip(items[pick], qty[pick])]
        keep_groups.append(g)
        for item, label, q in chosen:
            first = bought.get((int(m.user), int(item)))
            rows.append({"group": len(keep_groups) - 1, "item": int(item), "label": int(label),
                         "quantity": int(q), "repeat": int(first is not None and first < m.moment)})
    if not rows:
        raise DataError(f"no {task} pair could be built for part {part!r}; are the lines those of the split?")
    groups = moments.iloc[keep_groups].reset_index(drop=True)
    groups["customer_id"] = split.users.customer_ids[groups["user"].to_numpy()]
    pairs = pd.DataFrame(rows)

    # the texts: histories from lines strictly before each moment, training-period product texts
    descriptions = dict(zip(split.items.codes[1:], split.items.texts[1:]))
    histories, written = history_token_ids(lines, groups["customer_id"].to_numpy(), groups["moment"].to_numpy(),
                                           tokenizer, config.max_history_tokens, descriptions)
    groups["n_lines"], groups["n_not_shown"] = written["n_lines"].to_numpy(), written["n_not_shown"].to_numpy()
    item_tokens = {}
    for item in np.unique(pairs["item"].to_numpy()):
        ids = tokenizer.encode(ser.candidate_text(split.items.text(int(item))))
        item_tokens[int(item)] = np.asarray(ids[: config.max_candidate_tokens], dtype=np.int64)
    info = {"negatives": config.negatives if task == "click" else "none (every pair is a purchase)",
            "pairs_without_history_lines": int((groups["n_lines"] == 0).sum())}
    return PairTask(task, part, pairs, groups, histories, item_tokens, config, info)


def build_pair_tasks(
    split: "Split", lines: pd.DataFrame, tokenizer: "BehaviourTokenizer", task: str = "click",
    config: PairTaskConfig = PairTaskConfig(),
) -> dict[str, PairTask]:
    """``{"train": ..., "validation": ..., "test": ...}`` of one task."""
    return {part: build_pair_task(split, lines, tokenizer, task, part, config) for part in PARTS}


# =============================================================================================
# baselines on the same pairs
# =============================================================================================

def pair_scores_from_rows(task: PairTask, score_rows: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Scores of an ID model for every pair of an evaluation part: (n_pairs,).

    ``score_rows(positions) -> (len(positions), n_items + 1)``: e.g. ``model.scorer(eval_set)`` of a
    baseline fitted on the split; positions are the groups' ``eval_pos``.
    """
    pos = task.groups["eval_pos"].to_numpy()
    if (pos < 0).any():
        raise ValueError("pair_scores_from_rows needs an evaluation part (validation or test): training "
                         "moments have no row in an EvalSet")
    rows = np.asarray(score_rows(pos), dtype=np.float64)
    g = task.pairs["group"].to_numpy()
    return rows[g, task.pairs["item"].to_numpy()]


@torch.no_grad()
def lm_pair_scores(model: "GPT", task: PairTask) -> np.ndarray:
    """Zero-shot scores: the length-normalised log-likelihood of each candidate's text after its
    history, ``mean_t log p(c_t | history, c_<t)``, from the pretrained GPT alone: (n_pairs,)."""
    starts, ends = task._bounds()
    items = task.pairs["item"].to_numpy()
    out = np.empty(len(task), dtype=np.float64)
    for g in range(task.n_groups):
        conts = [task.item_tokens[int(i)].tolist() for i in items[starts[g]:ends[g]]]
        logp = model.score_continuations(task.histories[g].tolist(), conts)
        out[starts[g]:ends[g]] = np.nanmean(logp, axis=1)
    return out
