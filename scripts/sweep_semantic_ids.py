"""The validation sweep behind notebook 09's semantic-ID model (main split, next basket).

Run: ``python scripts/sweep_semantic_ids.py`` (every setting, one after the other; one to three
minutes each on a laptop) or ``--only course next_item_too`` for some of them. Each setting changes
the course's configuration (:func:`m6rec_lib.semantic_ids.default_configs`) in a few places, builds
the semantic IDs of the product texts (residual k-means over the cached sentence embeddings), trains
on the training period only (cached by configuration) and runs the trie-constrained beam search on
the **validation** baskets (October 2011) after every epoch: NDCG@10 of the 10 beams on items new to
the customer. The test set is never read. The rows (one per setting and epoch) are added to
``<runs_dir>/sweep_semantic_ids.csv`` and the best epoch of each setting is printed.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

from m6rec_lib.atomic import atomic_write_text
from m6rec_lib.config import runs_dir
from m6rec_lib.data import load_clean_lines, next_basket_split
from m6rec_lib.semantic_ids import SemanticIds, default_configs, load_or_train_semantic_id_model
from m6rec_lib.sentence_encoder import cached_embeddings
from m6rec_lib.training import configure_threads

#: name -> (description, codebook sizes or None for the course's, model overrides, training overrides)
SETTINGS: dict[str, tuple[str, tuple[int, ...] | None, dict, dict]] = {
    "course": ("the course's: 3 x 64 codes, items as codes, next basket, dropout 0.5", None, {}, {}),
    "next_item_too": ("+ next-item targets at every position (weight 0.5, as SASRec)", None, {},
                      dict(next_item_weight=0.5)),
    "item_ids": ("+ an item-ID embedding next to the codes in the history", None, dict(item_ids=True), {}),
    "dropout_0.2": ("dropout 0.2 instead of 0.5", None, dict(dropout=0.2), {}),
    "lr_1e-3": ("learning rate 1e-3 instead of 3e-3", None, {}, dict(lr=1e-3)),
    "codes_32": ("3 x 32 codes", (32, 32, 32), {}, {}),
    "codes_256": ("3 x 256 codes", (256, 256, 256), {}, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="run only these settings")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: all cores, max 8)")
    args = parser.parse_args()
    configure_threads(args.threads)
    lines, _ = load_clean_lines()
    split = next_basket_split(lines, seed=0)
    embeddings = cached_embeddings(list(split.items.texts[1:]))
    sizes, model_config, train_config = default_configs(False)
    out = runs_dir() / "sweep_semantic_ids.csv"
    for name in args.only or list(SETTINGS):
        description, sizes_kw, model_kw, train_kw = SETTINGS[name]
        started = time.perf_counter()
        ids = SemanticIds.from_embeddings(embeddings, sizes_kw or sizes, seed=0)
        _, meta = load_or_train_semantic_id_model(split, ids, {**model_config, **model_kw}, {**train_config, **train_kw})
        history = pd.DataFrame(meta["history"])
        history.insert(0, "setting", name)
        history.insert(1, "description", description)
        history["config"] = json.dumps({"sizes": list(sizes_kw or sizes), "model": {**model_config, **model_kw},
                                        "train": {**train_config, **train_kw}})
        history["total_seconds"] = time.perf_counter() - started
        earlier = pd.read_csv(out) if out.exists() else None
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, pd.concat([earlier, history]).to_csv(index=False))
        best = history.loc[history["NDCG@10"].idxmax()]
        print(f"{name:>14}: best validation NDCG@10 (new items) {best['NDCG@10']:.4f} at epoch {int(best['epoch'])} "
              f"({description})", flush=True)
    print(f"added to {out}")


if __name__ == "__main__":
    main()
