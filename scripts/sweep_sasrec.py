"""The validation sweep behind notebook 05's SASRec configuration (main split, next basket).

Run: ``python scripts/sweep_sasrec.py`` (every setting, one after the other; 2-6 minutes each on a
laptop; notebook 05's table used ``--threads 1``) or ``--only course classic`` for some of them.
Each setting changes the course's configuration (:func:`m6rec_lib.models.sasrec.default_configs`)
in a few places, is trained on the training period only (cached by configuration, so a second run
is quick) and evaluated after every
epoch on the **validation** baskets (October 2011), NDCG@10 on items new to the customer; the test
set is never read. The rows (one per setting and epoch) are added to
``<runs_dir>/sweep_sasrec.csv`` and the best epoch of each setting is printed.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

from m6rec_lib.atomic import atomic_write_text
from m6rec_lib.config import runs_dir
from m6rec_lib.data import load_clean_lines, next_basket_split
from m6rec_lib.models.sasrec import default_configs, load_or_train_sasrec
from m6rec_lib.training import configure_threads

# the configuration chosen before the attention-dropout and last-window rows were added
EARLIER = (dict(attention_dropout=None), dict(windows_per_customer=None, batch_size=16, lr=3e-3))
OLD = ({**EARLIER[0], "bag": False, "dropout": 0.2}, {**EARLIER[1], "lr_decay": False, "epochs": 6})  # the first one tried

#: name -> (description, model overrides, training overrides) on top of the course's configuration
SETTINGS: dict[str, tuple[str, dict, dict]] = {
    "classic": ("next item only (classic SASRec), no bag, dropout 0.2, constant lr", OLD[0],
                {**OLD[1], "next_item_weight": 1.0, "next_basket_weight": 0.0, "new_items_only": False}),
    "no_bag_dropout_0.2": ("both targets, no bag, dropout 0.2, constant lr", *OLD),
    "bag_dropout_0.2": ("both targets, bag, dropout 0.2, constant lr", {**OLD[0], "bag": True}, OLD[1]),
    "six_epochs": ("bag, dropout 0.5, lr 3e-3 decaying over 6 epochs", EARLIER[0], {**EARLIER[1], "epochs": 6}),
    "ten_epochs": ("the same over 10 epochs", *EARLIER),
    "no_attention_dropout": ("the same without dropout on the attention weights", {}, EARLIER[1]),
    "last_window": ("the same on each customer's last 200 lines only", {}, dict(batch_size=16, lr=3e-3)),
    "course": ("the same in batches of 32, lr 4e-3 (the course's)", {}, {}),
    "basket_only": ("next basket only, otherwise the course's", {}, dict(next_item_weight=0.0)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="run only these settings")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: all cores, max 8)")
    args = parser.parse_args()
    configure_threads(args.threads)
    lines, _ = load_clean_lines()
    split = next_basket_split(lines, seed=0)
    model_config, train_config = default_configs(False)
    out = runs_dir() / "sweep_sasrec.csv"
    for name in args.only or list(SETTINGS):
        description, model_kw, train_kw = SETTINGS[name]
        started = time.perf_counter()
        _, meta = load_or_train_sasrec(split, {**model_config, **model_kw}, {**train_config, **train_kw})
        history = pd.DataFrame(meta["history"])
        history.insert(0, "setting", name)
        history.insert(1, "description", description)
        history["config"] = json.dumps({"model": {**model_config, **model_kw}, "train": {**train_config, **train_kw}})
        history["total_seconds"] = time.perf_counter() - started
        earlier = pd.read_csv(out) if out.exists() else None
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, pd.concat([earlier, history]).to_csv(index=False))
        best = history.loc[history["NDCG@10"].idxmax()]
        print(f"{name:>18}: best validation NDCG@10 (new items) {best['NDCG@10']:.4f} at epoch {int(best['epoch'])} "
              f"({description})", flush=True)
    print(f"added to {out}")


if __name__ == "__main__":
    main()
