"""The validation sweep behind the two-tower retriever's configuration (notebook 06, section 4).

Run: ``M6REC_THREADS=1 python scripts/sweep_two_tower.py`` (every setting, one after the other;
10-20 minutes on a quiet laptop, several times longer on a busy machine) or ``--only course
dropout_0.2``. Each setting changes the course's configuration
(:func:`m6rec_lib.models.two_tower.default_configs`) in one or two places, trains on the training
period only (cached by configuration, so a second run is quick) and is early-stopped and measured on
the **first half of the validation customers** (October 2011; :meth:`m6rec_lib.data.EvalSet.halves`),
Recall@100 and NDCG@10 on items new to the customer, as the course's model is. Neither the second
half nor the test set is read.

Each row also gives the setting's difference from the course's setting in validation Recall@100 (new
items), per customer, with a paired bootstrap interval (:func:`m6rec_lib.metrics.paired_bootstrap`):
the search reads one seed on about 570 customers, so a difference whose interval contains 0 is not
evidence for either setting.

The table, one row per setting (its best epoch), is written atomically to
``scripts/results/sweep_two_tower.csv``, which is committed: notebook 06 shows that file. A rerun
replaces the rows of the settings it ran and keeps the others.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sweep_common import cost_columns, parse_args, run_sweep

from m6rec_lib.data import load_clean_lines, next_basket_split
from m6rec_lib.metrics import per_user_metrics
from m6rec_lib.models.two_tower import default_configs, load_or_train_two_tower
from m6rec_lib.pretraining import default_config, pretraining_tokenizer

RESULTS = Path(__file__).resolve().parent / "results" / "sweep_two_tower.csv"

#: name -> (description, model overrides, training overrides) on top of the course's configuration
SETTINGS: dict[str, tuple[str, dict, dict]] = {
    "course": ("next basket, new items only (16 per basket), last 100 items, dropout 0.5 (the course's)", {}, {}),
    "targets_8": ("the same, 8 targets per basket", {}, dict(basket_targets=8)),
    "decay": ("8 targets per basket, learning rate decaying over 16 epochs", {}, dict(lr_decay=True, basket_targets=8)),
    "dropout_0.2": ("8 targets per basket, dropout 0.2", dict(dropout=0.2), dict(basket_targets=8)),
    "basket_60": ("next basket, repeats included, last 60 items, dropout 0.2, 8 epochs", dict(dropout=0.2),
                  dict(target_items="basket", history_cap=60, epochs=8, basket_targets=8)),
    "basket_new_60": ("next basket, new items only, last 60 items, dropout 0.2, 8 epochs", dict(dropout=0.2),
                      dict(history_cap=60, epochs=8, basket_targets=8)),
    "basket_new_60_b64": ("the same, batches of 64", dict(dropout=0.2),
                          dict(history_cap=60, batch_size=64, basket_targets=8)),
    "b16": ("last 100 items, dropout 0.2, batches of 16", dict(dropout=0.2), dict(batch_size=16, basket_targets=8)),
    "decay_dropout_0.2": ("last 100 items, dropout 0.2, learning rate decaying over 12 epochs", dict(dropout=0.2),
                          dict(epochs=12, lr_decay=True, basket_targets=8)),
    "history_200": ("last 200 items, dropout 0.2", dict(dropout=0.2), dict(history_cap=200, basket_targets=8)),
}


def main() -> None:
    args = parse_args(__doc__, SETTINGS, RESULTS)
    lines, _ = load_clean_lines()
    split = next_basket_split(lines, seed=0)
    first_half = split.validation.part("first half")
    tokenizer = pretraining_tokenizer(default_config(False), lines=lines)
    model_config, train_config = default_configs(False)

    def train_and_score(name: str, model_kw: dict, train_kw: dict):
        train = {**train_config, **train_kw}
        model, meta = load_or_train_two_tower(split, tokenizer, {**model_config, **model_kw}, train, progress=False)
        scores = per_user_metrics(model.score(first_half), first_half, ks=(10, 100), exclude_seen=True)
        return scores, pd.DataFrame(meta["history"]), train

    def row_for(name, description, history, train, threads, seconds, versus) -> dict:
        monitor = train.get("monitor", "Recall@100")
        best = history.loc[history[monitor].idxmax()]
        return {"setting": name, "description": description,
                f"validation {monitor} (new items)": round(float(best[monitor]), 4),
                "validation NDCG@10 (new items)": round(float(best["NDCG@10"]), 4),
                "minus the course's": round(versus.diff, 4), "95% low": round(versus.low, 4),
                "95% high": round(versus.high, 4), **cost_columns(history, train, monitor, threads, seconds)}

    run_sweep(args, SETTINGS, train_and_score, "Recall@100", row_for)


if __name__ == "__main__":
    main()
