"""An adapted language model that re-ranks a recommender's top candidates (M6-Rec's ranking task).

The pretrained GPT, frozen, reads ``history text + " Now buys " + candidate description`` and a
few trained vectors (option tuning, notebook 07: about 1% extra parameters) turn its last hidden
state into the log-odds that the customer buys the candidate. It is trained on the click task of
notebook 07 (:mod:`m6rec_lib.click_task`) built from **training-period** baskets: each bought
product a positive, products sampled by popularity the negatives, so that popularity alone says
little. Its epoch (round) is chosen on the first validation half.

At serving time it scores only the ``top_n`` best products of the first stage (the capstone's
blend) for each customer: :func:`candidate_pairs` writes those (history, candidate) pairs,
:func:`rerank_scores` scores them, and :func:`add_to_top` adds ``weight * z(log-odds)`` to the top
products' scores, so ``weight = 0`` is the blend itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from . import adaptation as ad
from .click_task import PairTask, build_pair_task, course_task_config, history_token_ids
from .metrics import auc
from .text import serializer as ser

if TYPE_CHECKING:
    from .data import EvalSet, Split
    from .new_products import Catalogue
    from .pretraining import Pretrained

__all__ = ["train_reranker", "candidate_pairs", "rerank_scores", "add_to_top", "top_candidates", "rerank",
           "choose_weight", "WeightChoice"]

N_PROMPT = 8


def train_reranker(pretrained: "Pretrained", split: "Split", lines: pd.DataFrame, smoke: bool,
                   select_on: "EvalSet", method: str = "option tuning", seed: int = 0,
                   progress: bool = False) -> tuple[ad.AdaptedGPT, pd.DataFrame, dict]:
    """The click task's adapted GPT, trained on training-period pairs, its round chosen on ``select_on``.

    ``select_on``: the validation customers whose pairs give the validation AUC (the first half:
    the second half stays blind for the decision to use the re-ranker). Returns ``(model, history,
    info)`` with the number of pairs and the trainable share of parameters in ``info``. Cached.
    """
    tok = pretrained.tokenizer
    cfg = course_task_config(smoke, pretrained.model.config.context_length, n_prompt=N_PROMPT,
                             negatives="popularity", seed=seed)
    train = build_pair_task(split, lines, tok, "click", "train", cfg)
    val = build_pair_task(dataclasses.replace(split, validation=select_on), lines, tok, "click", "validation", cfg)
    tcfg = ad.course_tuning(method, smoke, seed=seed)
    model = ad.build_adapted(pretrained.model, method, n_prompt=N_PROMPT, seed=seed)
    stream = train.stream(tcfg.groups_per_batch, seed=seed)
    key = {"backbone": pretrained.path.name, "pairs": cfg.to_dict(), "method": method, "tuning": tcfg.to_dict(),
           "select_on": [select_on.name, len(select_on), int(np.asarray(select_on.users).sum())], "smoke": bool(smoke)}

    def fit(m: ad.AdaptedGPT) -> pd.DataFrame:
        return ad.train_adapted(m, lambda rnd: stream, lambda: auc(val.labels, ad.predict_scores(m, val.batches(32))),
                                tcfg, progress=progress, desc="re-ranker")

    model, history, cached = ad.load_or_train_task_model("capstone-reranker", key, model, fit)
    trainable = sum(model.task_parameters().values())
    info = {"train pairs": len(train), "validation pairs": len(val), "cached": cached,
            "trainable parameters": int(trainable), "backbone parameters": int(ad.count_parameters(pretrained.model)),
            "best validation AUC": float(history.attrs.get("best_val_auc", np.nan))}
    return model, history, info


def top_candidates(scores: np.ndarray, top_n: int) -> np.ndarray:
    """(n, top_n) item IDs: each row's ``top_n`` best finite scores, best first (fewer: padded with 0)."""
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, axis=1, kind="stable")[:, :top_n]
    finite = np.isfinite(np.take_along_axis(s, order, axis=1))
    return np.where(finite, order, 0)


def candidate_pairs(pretrained: "Pretrained", catalogue: "Catalogue", lines: pd.DataFrame,
                    customer_ids: Sequence[int], eval_set: "EvalSet", items: np.ndarray) -> PairTask:
    """The (history, candidate) pairs of ``items`` ((n, top_n) item IDs of the catalogue, 0 = none)
    for each customer of ``eval_set``, written as the re-ranker was trained to read them."""
    tok = pretrained.tokenizer
    cfg = course_task_config(False, pretrained.model.config.context_length, n_prompt=N_PROMPT)
    descriptions = dict(zip(catalogue.codes[1:], catalogue.texts[1:]))
    histories, written = history_token_ids(lines, list(customer_ids), list(eval_set.moments), tok,
                                           cfg.max_history_tokens, descriptions)
    rows = [{"group": g, "item": int(i), "label": 0, "quantity": 0, "repeat": 0}
            for g, row in enumerate(np.asarray(items)) for i in row if i > 0]
    pairs = pd.DataFrame(rows, columns=["group", "item", "label", "quantity", "repeat"])
    item_tokens = {int(i): np.asarray(tok.encode(ser.candidate_text(catalogue.text(int(i))))[: cfg.max_candidate_tokens],
                                      dtype=np.int64) for i in np.unique(pairs["item"].to_numpy())}
    groups = pd.DataFrame({"user": np.asarray(eval_set.users), "customer_id": np.asarray(customer_ids),
                           "moment": pd.to_datetime(np.asarray(eval_set.moments)), "eval_pos": np.arange(len(eval_set)),
                           "n_lines": written["n_lines"].to_numpy(), "n_not_shown": written["n_not_shown"].to_numpy()})
    return PairTask("click", "rerank", pairs, groups, histories, item_tokens, cfg)


def rerank_scores(model: ad.AdaptedGPT, pairs: PairTask, items: np.ndarray) -> np.ndarray:
    """(n, top_n) log-odds of the re-ranker for ``items`` (the array :func:`candidate_pairs` was built
    from; NaN where the item is 0)."""
    flat = ad.predict_scores(model, pairs.batches(32))
    out = np.full(np.asarray(items).shape, np.nan)
    out[np.asarray(items) > 0] = flat
    return out


def add_to_top(scores: np.ndarray, items: np.ndarray, rerank: np.ndarray, weight: float) -> np.ndarray:
    """The first stage's ``scores`` (n, n_items + 1) with ``weight * z(rerank)`` added to the top items
    (``z``: standardised over each customer's scored top items), lifted so they stay above every other
    product. ``weight = 0``: the first stage's order, unchanged."""
    out = np.array(scores, dtype=np.float64, copy=True)
    items = np.asarray(items)
    for row in range(len(out)):
        keep = items[row] > 0
        if not keep.any():
            continue
        ids, r = items[row, keep], rerank[row, keep]
        z = (r - r.mean()) / r.std() if len(r) > 1 and r.std() > 0 else np.zeros(len(r))
        top = out[row, ids] + weight * z
        rest = np.delete(out[row], ids)
        floor = rest[np.isfinite(rest)].max() if np.isfinite(rest).any() else -np.inf
        shift = max(0.0, floor - top.min() + 1.0) if np.isfinite(floor) else 0.0
        out[row, ids] = top + shift
    return out


def rerank(model: ad.AdaptedGPT, pretrained: "Pretrained", catalogue: "Catalogue", lines: pd.DataFrame,
           customer_ids: Sequence[int], eval_set: "EvalSet", first_stage: np.ndarray, top_n: int,
           weight: float) -> np.ndarray:
    """``first_stage`` (n, n_items + 1) with its ``top_n`` products per customer re-scored by the
    re-ranker (:func:`add_to_top` with ``weight``); ``weight = 0`` returns a copy unchanged."""
    if weight == 0:
        return np.array(first_stage, dtype=np.float64, copy=True)
    items = top_candidates(first_stage, top_n)
    logodds = rerank_scores(model, candidate_pairs(pretrained, catalogue, lines, customer_ids, eval_set, items), items)
    return add_to_top(first_stage, items, logodds, weight)


@dataclass
class WeightChoice:
    """:func:`choose_weight`'s result: the ``weight`` chosen (0 unless ``best_nonzero`` lies above 0),
    the ``table`` (weight -> NDCG@10) and ``best_nonzero``, the paired comparison of the re-ranker at
    its best non-zero weight with none."""

    weight: float
    table: pd.Series
    best_nonzero: object


def choose_weight(model: ad.AdaptedGPT, pretrained: "Pretrained", catalogue: "Catalogue", lines: pd.DataFrame,
                  customer_ids: Sequence[int], eval_set: "EvalSet", first_stage: np.ndarray, top_n: int,
                  weights: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 4.0), seed: int = 0) -> WeightChoice:
    """Choose the re-ranker's weight on ``eval_set`` (validation customers) by NDCG@10 on all items.

    ``0`` (the first stage alone) is always a candidate, and it is kept unless the re-ranker *wins*
    in the course's sense: its best non-zero weight beats ``0`` with a paired interval above 0. A
    point-estimate lead inside the noise would add a language-model call per request for a gain
    nobody measured (and flip from one training run to the next). The pairs are scored once."""
    from .metrics import evaluate, paired_bootstrap

    items = top_candidates(first_stage, top_n)
    logodds = rerank_scores(model, candidate_pairs(pretrained, catalogue, lines, customer_ids, eval_set, items), items)
    weights = sorted(set(float(w) for w in weights) | {0.0})
    scored = {w: add_to_top(first_stage, items, logodds, w) for w in weights}
    table = pd.Series({w: evaluate(s, eval_set, ks=(10,))["NDCG@10"] for w, s in scored.items()},
                      name=f"{eval_set.name}: NDCG@10, all items").rename_axis("re-ranker weight")
    nonzero = table.drop(0.0)
    if not len(nonzero):
        return WeightChoice(0.0, table, None)
    best = float(nonzero.idxmax())
    diff = paired_bootstrap(scored[best], scored[0.0], eval_set, names=(f"blend + re-ranker x {best:g}", "blend"),
                            view=eval_set.name, seed=seed)
    return WeightChoice(best if diff.outcome == "a" else 0.0, table, diff)
