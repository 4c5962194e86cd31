"""The validation sweep behind the two-tower retriever's configuration (notebook 06, section 4).

Run: ``python scripts/sweep_two_tower.py`` (every setting, one after the other; 10-20 minutes on a
laptop) or ``--only course dropout_0.2``. Each setting changes the course's
configuration (:func:`m6rec_lib.models.two_tower.default_configs`) in one or two places, trains on
the training period only (cached by configuration, so a second run is quick) and is measured on the
**validation** customers (October 2011), Recall@100 and NDCG@10 on items new to the customer; the
test set is never read. The rows are appended to ``<runs_dir>/sweep_two_tower.csv``.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from m6rec_lib.atomic import atomic_write_text
from m6rec_lib.config import runs_dir
from m6rec_lib.data import load_clean_lines, next_basket_split
from m6rec_lib.metrics import evaluate
from m6rec_lib.models.two_tower import default_configs, load_or_train_two_tower
from m6rec_lib.pretraining import default_config, pretraining_tokenizer
from m6rec_lib.training import configure_threads

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="run only these settings")
    args = parser.parse_args()
    configure_threads()
    lines, _ = load_clean_lines()
    split = next_basket_split(lines, seed=0)
    tokenizer = pretraining_tokenizer(default_config(False), lines=lines)
    model_config, train_config = default_configs(False)
    rows = []
    for name in args.only or SETTINGS:
        description, model_kw, train_kw = SETTINGS[name]
        started = time.perf_counter()
        model, meta = load_or_train_two_tower(split, tokenizer, {**model_config, **model_kw},
                                              {**train_config, **train_kw}, progress=False)
        res = evaluate(model.score(split.validation), split.validation, ks=(10, 100), exclude_seen=True)
        rows.append({"setting": name, "description": description, "epochs": len(meta["history"]),
                     "validation Recall@100 (new)": round(float(res["Recall@100"]), 4),
                     "validation NDCG@10 (new)": round(float(res["NDCG@10"]), 4),
                     "seconds": round(time.perf_counter() - started, 1)})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    out = runs_dir() / "sweep_two_tower.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    earlier = pd.read_csv(out) if out.exists() else None
    atomic_write_text(out, pd.concat([earlier, table]).to_csv(index=False))
    print(table.sort_values("validation Recall@100 (new)", ascending=False).to_string(index=False))


if __name__ == "__main__":
    main()
