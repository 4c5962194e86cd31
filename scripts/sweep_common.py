"""What the validation sweeps of SASRec and the two-tower share (``sweep_sasrec.py``,
``sweep_two_tower.py``): the command line, the loop over settings with the course's setting as the
reference, the paired interval of each setting against it, and the table written after each row.

Both read only the first half of the validation customers; the test set is never read.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from m6rec_lib.atomic import atomic_write_text
from m6rec_lib.metrics import paired_bootstrap
from m6rec_lib.training import configure_threads

#: (setting name, model overrides, training overrides) -> (per-customer metrics on the first
#: validation half, the training history, the training configuration used)
TrainAndScore = Callable[[str, dict, dict], tuple[pd.DataFrame, pd.DataFrame, dict]]


def parse_args(doc: str, settings: Mapping, default_out: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(settings), help="run only these settings")
    parser.add_argument("--threads", type=int, default=None,
                        help="PyTorch threads (default: $M6REC_THREADS, else all cores, max 8)")
    parser.add_argument("--out", type=Path, default=default_out, help="the table to write (default: %(default)s)")
    return parser.parse_args()


def cost_columns(history: pd.DataFrame, train_config: dict, monitor: str, threads: int, seconds: float) -> dict:
    """The best epoch (by ``monitor``) and what the setting cost."""
    best = history.loc[history[monitor].idxmax()]
    return {"best epoch": int(best["epoch"]), "epochs run": len(history), "max epochs": int(train_config["epochs"]),
            "seconds per epoch": round(float(history["seconds"].median()), 1), "threads": threads,
            "total seconds": round(seconds, 1)}


def run_sweep(args: argparse.Namespace, settings: Mapping[str, tuple], train_and_score: TrainAndScore,
              metric: str, row_for: Callable[..., dict]) -> None:
    """Train the course's setting, then every chosen one; after each, add its row to ``args.out``.

    ``row_for(name, description, history, train_config, threads, seconds, versus)`` makes the row;
    ``versus`` is the setting minus the course's in ``metric`` (new items, first validation half),
    with its paired 95% interval.
    """
    threads = configure_threads(args.threads)
    names = args.only or list(settings)
    per_customer = {}
    for name in ["course"] + [n for n in names if n != "course"]:      # the course's first: the reference
        description, model_kw, train_kw = settings[name]
        started = time.perf_counter()
        per_customer[name], history, train = train_and_score(name, model_kw, train_kw)
        seconds = time.perf_counter() - started
        if name not in names:
            continue
        versus = paired_bootstrap(per_customer[name], per_customer["course"], metric=metric, names=(name, "course"),
                                  view="new items, first validation half")
        row = row_for(name, description, history, train, threads, seconds, versus)
        kept = row[f"validation {metric} (new items)"]
        if abs(versus.a - kept) > 1e-4:                                   # the weights kept are the best epoch's
            raise RuntimeError(f"{name}: the kept weights score {versus.a:.4f} on the first half, "
                               f"the history's best epoch {kept:.4f}")
        table = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame(columns=list(row))
        table = pd.concat([table[table["setting"] != name], pd.DataFrame([row])], ignore_index=True)
        table = table[list(row)]                                          # columns in the order of the row
        table = table.set_index("setting").reindex([s for s in settings if s in set(table["setting"])]).reset_index()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, table.to_csv(index=False))
        print(f"{name:>20}: validation {metric} (new items) {kept:.4f} at epoch {row['best epoch']} of "
              f"{row['epochs run']}; {versus} ({description})", flush=True)
    print(pd.read_csv(args.out).to_string(index=False))
