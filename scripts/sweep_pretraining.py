"""The validation sweep behind the "main" pretraining stage (notebook 04, section 12).

Run: ``python scripts/sweep_pretraining.py`` (every setting; each continued pretraining takes a few
minutes on a laptop) or ``--only year1 main``; ``--sasrec`` adds the second yardstick (it trains
or loads the course's SASRec). Every setting is a :class:`m6rec_lib.pretraining.ContinuedConfig`
that continues the course's year-1 model (``year1`` itself is the starting point, not continued).
Each is scored on the main split's **validation** baskets (October 2011); the test set is never
read:

- ``win rate``: each basket product new to the customer against 4 products of the same
  popularity (:func:`m6rec_lib.text_scorer.matched_candidates`), per-customer share of pairs won;
- with ``--sasrec``: NDCG@10 after the GPT re-ranks SASRec's top-20 (all items and new items), as
  notebook 05 does on the test set.

Each setting is compared with the year-1 model and with the course's main stage by a paired
bootstrap over customers. The rows go to ``scripts/results/sweep_pretraining.csv`` (committed:
notebook 04 shows that table) and the comparisons to ``sweep_pretraining_comparisons.csv``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from m6rec_lib import pretraining as pt
from m6rec_lib.atomic import atomic_write_text
from m6rec_lib.data import load_clean_lines, next_basket_split
from m6rec_lib.metrics import paired_bootstrap, per_user_metrics
from m6rec_lib.text_scorer import (TextReranker, history_prefixes, matched_candidates, matched_win_rates)
from m6rec_lib.training import configure_threads

RESULTS = Path(__file__).resolve().parent / "results"
BASE = pt.default_continued(False)

#: name -> (description, ContinuedConfig or None for the year-1 model itself)
SETTINGS: dict[str, tuple[str, pt.ContinuedConfig | None]] = {
    "year1": ("the year-1 model (300k tokens of year-1 text), not continued", None),
    "year1_more": ("+ 400k more tokens of year-1 text (same text, more reading)",
                   replace(BASE, cut=pt.YEAR1_CUT, examples_from=None)),
    "main": ("+ 400k tokens of Dec 2010 - Sep 2011 text (the course's main stage)", BASE),
    "main_all_invoices": ("+ 400k tokens of all training-period invoices (year 1 again included)",
                          replace(BASE, examples_from=None)),
    "main_context_256": ("the main stage with a 256-token context (twice the history)",
                         replace(BASE, context_length=256)),
    "main_prefix_lm": ("the main stage as a prefix LM (history read bidirectionally, loss on the basket)",
                       replace(BASE, layout="prefix")),
    "main_800k": ("the main stage with 800k tokens", replace(BASE, train_tokens=800_000)),
}
N_CUSTOMERS = 600   # validation customers of the win-rate yardstick
N_RERANK = 400      # validation customers re-ranked with --sasrec
TOP_N = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="run only these settings")
    parser.add_argument("--sasrec", action="store_true", help="also re-rank SASRec's top-20 on validation")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: all cores, max 8)")
    args = parser.parse_args()
    configure_threads(args.threads)
    lines, _ = load_clean_lines()
    split = next_basket_split(lines, seed=0)
    val = split.validation
    popularity = np.asarray((split.train_matrix > 0).sum(axis=0), dtype=np.float64).ravel()
    task = matched_candidates(val, popularity, seed=0)
    keep = np.sort(np.random.default_rng(0).choice(len(task), size=min(N_CUSTOMERS, len(task)), replace=False))
    task = type(task)(task.positions[keep], [task.items[i] for i in keep], [task.pairs[i] for i in keep])
    cids = split.users.customer_ids[val.users[task.positions]]
    moments = val.moments[task.positions]
    first_stage = rerank_es = None
    rows, per_customer = [], {}
    if args.sasrec:
        from m6rec_lib.models.sasrec import load_or_train_sasrec

        sasrec, _ = load_or_train_sasrec(split)
        pick = np.sort(np.random.default_rng(1).choice(len(val), size=min(N_RERANK, len(val)), replace=False))
        rerank_es = val.subset(np.isin(np.arange(len(val)), pick), name="validation sample")
        first_stage = sasrec.score(rerank_es).numpy()
        row = {"setting": "SASRec", "description": "stage 1 alone (no re-ranking)"}
        for view in ("all", "new"):
            values = per_user_metrics(first_stage, rerank_es, ks=(10,), exclude_seen=view == "new")["NDCG@10"]
            per_customer[("SASRec", f"rerank NDCG@10 {view}")] = values.to_numpy()
            row[f"rerank NDCG@10 {view}"] = float(np.nanmean(values))
        rows.append(row)

    config = pt.default_config(False)
    year1_tokens = int(pt.load_or_pretrain(config, smoke=False, lines=lines).metrics["train_tokens"])
    for name in args.only or list(SETTINGS):
        description, continued = SETTINGS[name]
        started = time.perf_counter()
        pre = (pt.load_or_pretrain(config, smoke=False, lines=lines) if continued is None else
               pt.load_or_pretrain(config, smoke=False, stage="main", continued=continued, lines=lines))
        reranker = TextReranker(pre.model, pre.tokenizer, split.items.texts)
        prefixes = history_prefixes(lines, cids, moments, pre.tokenizer, pre.context_length,
                                    reranker.max_candidate_tokens)
        win = matched_win_rates(task, reranker.score_lists(prefixes, task.items, progress=False))
        per_customer[(name, "win rate")] = win
        row = {"setting": name, "description": description, "win rate": win.mean(),
               "tokens read": int(pre.metrics["train_tokens"]) + (0 if continued is None else year1_tokens),
               "epoch share": pre.metrics["epoch_share"],
               "train seconds": pre.metrics["train_seconds"], "tokens/s": pre.metrics["tokens_per_second"],
               "threads": pre.metrics["threads"]}
        if first_stage is not None:
            r_prefixes = history_prefixes(lines, split.users.customer_ids[rerank_es.users], rerank_es.moments,
                                          pre.tokenizer, pre.context_length, reranker.max_candidate_tokens)
            for view, excl in (("all", None), ("new", rerank_es.history[rerank_es.users])):
                scores = reranker.rerank(first_stage, r_prefixes, top_n=TOP_N, exclude=excl, progress=False)
                values = per_user_metrics(scores, rerank_es, ks=(10,), exclude_seen=view == "new")["NDCG@10"]
                per_customer[(name, f"rerank NDCG@10 {view}")] = values.to_numpy()
                row[f"rerank NDCG@10 {view}"] = float(np.nanmean(values))
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    comparisons = []
    for (name, metric), values in per_customer.items():
        for ref in ("year1", "main", "SASRec"):
            if ref == name or (ref, metric) not in per_customer:
                continue
            d = paired_bootstrap(values, per_customer[(ref, metric)], metric=metric, names=(name, ref), view="validation")
            comparisons.append(d.to_dict())
            print(d)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "sweep_pretraining.csv", pd.DataFrame(rows).to_csv(index=False))
    atomic_write_text(RESULTS / "sweep_pretraining_comparisons.csv", pd.DataFrame(comparisons).to_csv(index=False))
    print(f"wrote {RESULTS / 'sweep_pretraining.csv'}")


if __name__ == "__main__":
    main()
