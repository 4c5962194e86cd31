"""The validation sweep behind notebook 05's SASRec configuration (main split, next basket).

Run: ``M6REC_THREADS=1 python scripts/sweep_sasrec.py`` (every setting, one after the other; 2-6
minutes each on a quiet laptop, several times longer on a busy machine) or ``--only course classic``
for some of them. Each setting changes the course's configuration
(:func:`m6rec_lib.models.sasrec.default_configs`) in a few places, is trained on the training period
only (cached by configuration, so a second run is quick) and evaluated after every epoch on the
**first half of the validation customers** (October 2011; :meth:`m6rec_lib.data.EvalSet.halves`),
NDCG@10 on items new to the customer, as the course's model is. Neither the second half nor the test
set is read.

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
from m6rec_lib.models.sasrec import default_configs, load_or_train_sasrec
from m6rec_lib.pretraining import pick_precision
from m6rec_lib.training import configure_threads

RESULTS = Path(__file__).resolve().parent / "results" / "sweep_sasrec.csv"

# the configuration chosen before the attention-dropout and last-window rows were added
EARLIER = (dict(attention_dropout=None), dict(windows_per_customer=None, batch_size=16, lr=3e-3))
OLD = ({**EARLIER[0], "bag": False, "dropout": 0.2}, {**EARLIER[1], "lr_decay": False, "epochs": 6})  # the first one tried

#: name -> (description, model overrides, training overrides) on top of the course's configuration.
#: Each row makes one change to the row above it, except the last two (changes to the course's).
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
    "course_fp32": ("the course's with the output layer in float32", {}, dict(precision="fp32")),
}


def summarise(name: str, description: str, history: pd.DataFrame, train_config: dict, threads: int,
              seconds: float) -> dict:
    """One row of the table: the setting's best epoch on validation and what it cost."""
    best = history.loc[history["NDCG@10"].idxmax()]
    return {
        "setting": name,
        "description": description,
        "validation NDCG@10 (new items)": round(float(best["NDCG@10"]), 4),
        "validation Recall@10 (new items)": round(float(best["Recall@10"]), 4),
        "best epoch": int(best["epoch"]),
        "epochs run": len(history),
        "max epochs": int(train_config["epochs"]),
        "seconds per epoch": round(float(history["seconds"].median()), 1),
        "output layer": pick_precision(train_config.get("precision", "fp32")),
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
    model_config, train_config = default_configs(False)
    for name in args.only or list(SETTINGS):
        description, model_kw, train_kw = SETTINGS[name]
        started = time.perf_counter()
        train = {**train_config, **train_kw}
        _, meta = load_or_train_sasrec(split, {**model_config, **model_kw}, train, progress=False)
        row = summarise(name, description, pd.DataFrame(meta["history"]), train, threads,
                        time.perf_counter() - started)
        table = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame(columns=list(row))
        table = pd.concat([table[table["setting"] != name], pd.DataFrame([row])], ignore_index=True)
        table = table.set_index("setting").reindex([s for s in SETTINGS if s in set(table["setting"])]).reset_index()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, table.to_csv(index=False))
        print(f"{name:>20}: validation NDCG@10 (new items) {row['validation NDCG@10 (new items)']:.4f} at epoch "
              f"{row['best epoch']} of {row['epochs run']} ({description})", flush=True)
    print(f"written: {args.out.relative_to(Path.cwd()) if args.out.is_relative_to(Path.cwd()) else args.out.name}")


if __name__ == "__main__":
    main()
