"""The validation sweep behind notebook 05's SASRec configuration (main split, next basket).

Run: ``M6REC_THREADS=1 python scripts/sweep_sasrec.py`` (every setting, one after the other; 2-6
minutes each on a quiet laptop, several times longer on a busy machine) or ``--only course classic``
for some of them. Each setting changes the course's configuration
(:func:`m6rec_lib.models.sasrec.default_configs`) in a few places, is trained on the training period
only (cached by configuration, so a second run is quick) and evaluated after every epoch on the
**first half of the validation customers** (October 2011; :meth:`m6rec_lib.data.EvalSet.halves`),
NDCG@10 on items new to the customer, as the course's model is. Neither the second half nor the test
set is read.

Each row also gives the setting's difference from the course's setting in validation NDCG@10 (new
items), per customer, with a paired bootstrap interval (:func:`m6rec_lib.metrics.paired_bootstrap`):
the search reads one seed on about 570 customers, so a difference whose interval contains 0 is not
evidence for either setting.

The table, one row per setting (its best epoch), is written atomically to
``scripts/results/sweep_sasrec.csv``, which is committed: notebook 05 shows that file. A rerun
replaces the rows of the settings it ran and keeps the others.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sweep_common import cost_columns, parse_args, run_sweep

from m6rec_lib.data import load_clean_lines, next_basket_split
from m6rec_lib.metrics import per_user_metrics
from m6rec_lib.models.sasrec import default_configs, load_or_train_sasrec
from m6rec_lib.pretraining import pick_precision

RESULTS = Path(__file__).resolve().parent / "results" / "sweep_sasrec.csv"

# the configuration chosen before the attention-dropout and last-window rows were added
EARLIER = (dict(attention_dropout=None), dict(windows_per_customer=None, batch_size=16, lr=3e-3))
OLD = ({**EARLIER[0], "bag": False, "dropout": 0.2}, {**EARLIER[1], "lr_decay": False, "epochs": 6})  # the first one tried

#: name -> (description, model overrides, training overrides) on top of the course's configuration.
#: Each row makes one change to the row above it, except the last (a change to the course's).
SETTINGS: dict[str, tuple[str, dict, dict]] = {
    "classic": ("next item only (classic SASRec), dropout 0.2, constant learning rate", OLD[0],
                {**OLD[1], "next_item_weight": 1.0, "next_basket_weight": 0.0, "new_items_only": False}),
    "no_bag_dropout_0.2": ("+ next-basket targets (0.5 / 1), new items only", *OLD),
    "bag_dropout_0.2": ("+ a bag of the window's lines", {**OLD[0], "bag": True}, OLD[1]),
    "six_epochs": ("+ dropout 0.5, learning rate decaying over 6 epochs", EARLIER[0], {**EARLIER[1], "epochs": 6}),
    "ten_epochs": ("+ the same over 10 epochs", *EARLIER),
    "no_attention_dropout": ("+ no dropout on the attention weights", {}, EARLIER[1]),
    "last_window": ("+ each customer's last 200 lines only", {}, dict(batch_size=16, lr=3e-3)),
    "course": ("+ batches of 32, learning rate 4e-3 (the course's)", {}, {}),
    "basket_only": ("the course's without the next-item target (next basket only)", {}, dict(next_item_weight=0.0)),
}


def main() -> None:
    args = parse_args(__doc__, SETTINGS, RESULTS)
    lines, _ = load_clean_lines()
    split = next_basket_split(lines, seed=0)
    first_half = split.validation.part("first half")
    model_config, train_config = default_configs(False)

    def train_and_score(name: str, model_kw: dict, train_kw: dict):
        train = {**train_config, **train_kw}
        model, meta = load_or_train_sasrec(split, {**model_config, **model_kw}, train, progress=False)
        scores = per_user_metrics(model.score(first_half), first_half, ks=(10,), exclude_seen=True)
        return scores, pd.DataFrame(meta["history"]), train

    def row_for(name, description, history, train, threads, seconds, versus) -> dict:
        best = history.loc[history["NDCG@10"].idxmax()]
        return {"setting": name, "description": description,
                "validation NDCG@10 (new items)": round(float(best["NDCG@10"]), 4),
                "validation Recall@10 (new items)": round(float(best["Recall@10"]), 4),
                "minus the course's": round(versus.diff, 4), "95% low": round(versus.low, 4),
                "95% high": round(versus.high, 4),
                **cost_columns(history, train, "NDCG@10", threads, seconds),
                "output layer": pick_precision(train.get("precision", "fp32"))}   # what "auto" picks here

    run_sweep(args, SETTINGS, train_and_score, "NDCG@10", row_for)


if __name__ == "__main__":
    main()
