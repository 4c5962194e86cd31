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

import argparse
import time
from pathlib import Path

import pandas as pd

from m6rec_lib.atomic import atomic_write_text
from m6rec_lib.data import load_clean_lines, next_basket_split
from m6rec_lib.metrics import paired_bootstrap, per_user_metrics
from m6rec_lib.models.two_tower import default_configs, load_or_train_two_tower
from m6rec_lib.pretraining import default_config, pretraining_tokenizer
from m6rec_lib.training import configure_threads

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


def summarise(name: str, description: str, history: pd.DataFrame, train_config: dict, threads: int,
              seconds: float, versus_course) -> dict:
    """One row of the table: the setting's best epoch on validation, against the course's, and its cost."""
    monitor = train_config.get("monitor", "Recall@100")
    best = history.loc[history[monitor].idxmax()]
    return {
        "setting": name,
        "description": description,
        f"validation {monitor} (new items)": round(float(best[monitor]), 4),
        "validation NDCG@10 (new items)": round(float(best["NDCG@10"]), 4),
        "minus the course's": round(versus_course.diff, 4),
        "95% low": round(versus_course.low, 4),
        "95% high": round(versus_course.high, 4),
        "best epoch": int(best["epoch"]),
        "epochs run": len(history),
        "max epochs": int(train_config["epochs"]),
        "seconds per epoch": round(float(history["seconds"].median()), 1),
        "threads": threads,
        "total seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="run only these settings")
    parser.add_argument("--threads", type=int, default=None,
                        help="PyTorch threads (default: $M6REC_THREADS, else all cores, max 8)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the table to write (default: %(default)s)")
    args = parser.parse_args()
    threads = configure_threads(args.threads)
    lines, _ = load_clean_lines()
    split = next_basket_split(lines, seed=0)
    first_half = split.validation.part("first half")
    tokenizer = pretraining_tokenizer(default_config(False), lines=lines)
    model_config, train_config = default_configs(False)
    per_customer = {}
    names = args.only or list(SETTINGS)
    for name in ["course"] + [n for n in names if n != "course"]:      # the course's first: the reference
        description, model_kw, train_kw = SETTINGS[name]
        started = time.perf_counter()
        train = {**train_config, **train_kw}
        model, meta = load_or_train_two_tower(split, tokenizer, {**model_config, **model_kw}, train, progress=False)
        seconds = time.perf_counter() - started
        per_customer[name] = per_user_metrics(model.score(first_half), first_half, ks=(10, 100), exclude_seen=True)
        if name not in names:
            continue
        versus = paired_bootstrap(per_customer[name], per_customer["course"], metric="Recall@100", names=(name, "course"),
                                  view="new items, first validation half")
        row = summarise(name, description, pd.DataFrame(meta["history"]), train, threads, seconds, versus)
        if abs(versus.a - row["validation Recall@100 (new items)"]) > 1e-4:    # the weights kept are the best epoch's
            raise RuntimeError(f"{name}: the kept weights score {versus.a:.4f} on the first half, "
                               f"the history's best epoch {row['validation Recall@100 (new items)']:.4f}")
        table = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame(columns=list(row))
        table = pd.concat([table[table["setting"] != name], pd.DataFrame([row])], ignore_index=True)
        table = table[list(row)]                                          # columns in the order of the row
        table = table.set_index("setting").reindex([s for s in SETTINGS if s in set(table["setting"])]).reset_index()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, table.to_csv(index=False))
        print(f"{name:>18}: {versus}", flush=True)
    print(pd.read_csv(args.out).to_string(index=False))


if __name__ == "__main__":
    main()
