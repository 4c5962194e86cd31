"""The validation sweep behind notebook 05's SASRec configuration (main split, next basket).

Run: ``python scripts/sweep_sasrec.py`` (every setting, one after the other; an hour or more on a
laptop) or ``--only both_lr3e-3 classic_200`` for some of them; ``--jobs`` is not offered on
purpose: settings run in separate processes if you start several. Each setting is trained on the
training period only and evaluated after every epoch on the **validation** baskets (October 2011);
the test set is never read. Results are appended to ``<runs_dir>/sweep_sasrec.csv`` (one row per
setting and epoch) and the best epoch of each setting is printed.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

from m6rec_lib.atomic import atomic_write_text
from m6rec_lib.config import runs_dir
from m6rec_lib.data import load_clean_lines, next_basket_split
from m6rec_lib.models.sasrec import SASRec, SASRecConfig, TrainConfig, basket_ids, train_sasrec
from m6rec_lib.seeding import seed_everything
from m6rec_lib.training import configure_threads

BASE_MODEL = dict(max_len=200, d_model=64, n_heads=2, n_layers=2, dropout=0.2)
BASE_TRAIN = dict(epochs=6, batch_size=16, lr=2e-3, patience=6, next_item_weight=0.5, next_basket_weight=1.0,
                  new_items_only=True, validation_view="new")

#: name -> (description, model overrides, training overrides)
SETTINGS: dict[str, tuple[str, dict, dict]] = {
    "classic_50": ("next item only (classic SASRec), 50 lines", dict(max_len=50),
                   dict(next_item_weight=1.0, next_basket_weight=0.0, batch_size=64)),
    "classic_200": ("next item only (classic SASRec), 200 lines", {},
                    dict(next_item_weight=1.0, next_basket_weight=0.0)),
    "basket_only": ("next basket only, 200 lines", {}, dict(next_item_weight=0.0, next_basket_weight=1.0)),
    "both_lr2e-3": ("both targets (0.5 / 1), 200 lines, lr 2e-3", {}, {}),
    "both_lr3e-3": ("both targets (0.5 / 1), 200 lines, lr 3e-3", {}, dict(lr=3e-3)),
    "both_lr5e-3": ("both targets (0.5 / 1), 200 lines, lr 5e-3", {}, dict(lr=5e-3)),
    "both_50": ("both targets (0.5 / 1), 50 lines, lr 5e-3", dict(max_len=50), dict(lr=5e-3)),
    "both_untied": ("both targets, separate output table + item bias, lr 3e-3",
                    dict(tie_output=False, output_bias=True), dict(lr=3e-3)),
    "both_bag": ("both targets, + bag of the window's lines, lr 3e-3", dict(bag=True), dict(lr=3e-3)),
    "both_bag_do5_decay": ("the course's: + bag, dropout 0.5, lr 3e-3 decaying over 10 epochs",
                           dict(bag=True, dropout=0.5), dict(lr=3e-3, lr_decay=True, epochs=10, patience=2)),
}


def run(name: str, split, baskets) -> pd.DataFrame:
    description, model_kw, train_kw = SETTINGS[name]
    seed_everything(0)
    model = SASRec(SASRecConfig(n_items=split.n_items, **{**BASE_MODEL, **model_kw}))
    started = time.perf_counter()
    history = train_sasrec(model, split.train_sequences, split.validation, TrainConfig(**{**BASE_TRAIN, **train_kw}),
                           baskets=baskets, progress=True)
    history.insert(0, "setting", name)
    history.insert(1, "description", description)
    history["config"] = json.dumps({"model": {**BASE_MODEL, **model_kw}, "train": {**BASE_TRAIN, **train_kw}})
    history["total_seconds"] = time.perf_counter() - started
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="run only these settings")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: all cores, max 8)")
    args = parser.parse_args()
    configure_threads(args.threads)
    lines, _ = load_clean_lines()
    split = next_basket_split(lines)
    baskets = basket_ids(split)
    out = runs_dir() / "sweep_sasrec.csv"
    for name in args.only or list(SETTINGS):
        history = run(name, split, baskets)
        earlier = pd.read_csv(out) if out.exists() else None
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, pd.concat([earlier, history]).to_csv(index=False))
        best = history.loc[history["NDCG@10"].idxmax()]
        print(f"{name:>14}: best validation NDCG@10 (new items) {best['NDCG@10']:.4f} at epoch {int(best['epoch'])} "
              f"({SETTINGS[name][0]})", flush=True)
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
