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

import argparse
import time
from pathlib import Path

import pandas as pd

from m6rec_lib.atomic import atomic_write_text
from m6rec_lib.data import load_clean_lines, next_basket_split
from m6rec_lib.metrics import paired_bootstrap, per_user_metrics
from m6rec_lib.models.sasrec import default_configs, load_or_train_sasrec
from m6rec_lib.pretraining import pick_precision
from m6rec_lib.training import configure_threads

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


def summarise(name: str, description: str, history: pd.DataFrame, train_config: dict, threads: int,
              seconds: float, versus_course) -> dict:
    """One row of the table: the setting's best epoch on validation, against the course's, and its cost."""
    best = history.loc[history["NDCG@10"].idxmax()]
    return {
        "setting": name,
        "description": description,
        "validation NDCG@10 (new items)": round(float(best["NDCG@10"]), 4),
        "validation Recall@10 (new items)": round(float(best["Recall@10"]), 4),
        "minus the course's": round(versus_course.diff, 4),
        "95% low": round(versus_course.low, 4),
        "95% high": round(versus_course.high, 4),
        "best epoch": int(best["epoch"]),
        "epochs run": len(history),
        "max epochs": int(train_config["epochs"]),
        "seconds per epoch": round(float(history["seconds"].median()), 1),
        "output layer": pick_precision(train_config.get("precision", "fp32")),   # what "auto" picks on this machine
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
    model_config, train_config = default_configs(False)
    per_customer = {}
    names = args.only or list(SETTINGS)
    for name in ["course"] + [n for n in names if n != "course"]:      # the course's first: the reference
        description, model_kw, train_kw = SETTINGS[name]
        started = time.perf_counter()
        train = {**train_config, **train_kw}
        model, meta = load_or_train_sasrec(split, {**model_config, **model_kw}, train, progress=False)
        seconds = time.perf_counter() - started
        per_customer[name] = per_user_metrics(model.score(first_half), first_half, ks=(10,), exclude_seen=True)
        if name not in names:
            continue
        versus = paired_bootstrap(per_customer[name], per_customer["course"], metric="NDCG@10", names=(name, "course"),
                                  view="new items, first validation half")
        row = summarise(name, description, pd.DataFrame(meta["history"]), train, threads, seconds, versus)
        if abs(versus.a - row["validation NDCG@10 (new items)"]) > 1e-4:    # the weights kept are the best epoch's
            raise RuntimeError(f"{name}: the kept weights score {versus.a:.4f} on the first half, "
                               f"the history's best epoch {row['validation NDCG@10 (new items)']:.4f}")
        table = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame(columns=list(row))
        table = pd.concat([table[table["setting"] != name], pd.DataFrame([row])], ignore_index=True)
        table = table[list(row)]                                          # columns in the order of the row
        table = table.set_index("setting").reindex([s for s in SETTINGS if s in set(table["setting"])]).reset_index()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, table.to_csv(index=False))
        print(f"{name:>20}: validation NDCG@10 (new items) {row['validation NDCG@10 (new items)']:.4f} at epoch "
              f"{row['best epoch']} of {row['epochs run']}; {versus} ({description})", flush=True)
    print(f"written: {args.out.relative_to(Path.cwd()) if args.out.is_relative_to(Path.cwd()) else args.out.name}")


if __name__ == "__main__":
    main()
