"""Train the baselines and the course's SASRec on a split of your data, and report with intervals.

:func:`run_byod` is the whole path in one call::

    table = load_table("my_log.csv", user="customer", item="product", time="ts", text="title")
    result = run_byod(table)                 # leave-one-out; split="temporal" for the course's split
    print(result.report())

What it does, in order (nothing is chosen by looking at the test set):

1. splits the table (:mod:`m6rec_lib.byod.splits`);
2. picks the view: items the user had before are ranked too (``"all"``) when at least 5% of the
   interactions repeat an item of the same user, otherwise they are left out (``"new"``, as the
   published MovieLens results do);
3. tunes every baseline on the validation targets (:func:`m6rec_lib.baselines.tune`, NDCG@10 in that
   view): MostPop, Buy-Again (only when items repeat), ItemKNN, co-occurrence, EASE, iALS;
4. trains SASRec with settings derived from the data (:mod:`m6rec_lib.byod.settings`), keeping the
   epoch with the best validation NDCG@10 (cached in ``cache_dir()`` like every model of the course;
   scored as :mod:`m6rec_lib.byod.sequential` explains);
5. scores the test targets once, ranking the whole catalogue, and gives each metric a 95% bootstrap
   interval over users, and the headline differences (SASRec against the baseline that was best on
   validation, and against co-occurrence) a paired bootstrap interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from m6rec_lib.baselines import EASE, IALS, BuyAgain, CoOccurrence, ItemKNN, MostPop, tune
from m6rec_lib.data import Split
from m6rec_lib.metrics import PairedDifference, bootstrap_interval, comparison_table, paired_bootstrap, per_user_metrics

from .sequential import train_sequential
from .settings import SequentialSettings, suggest_settings
from .splits import leave_one_out_split, temporal_split
from .table import describe_table

KS = (10, 50)
METRICS = ("HR@10", "NDCG@10", "HR@50", "NDCG@50", "MRR")
REPEAT_SHARE_FOR_ALL = 0.05
MAX_DENSE_ITEMS = 20_000
"""ItemKNN and EASE hold an (n_items x n_items) matrix; above this many items they are left out."""

GRIDS: dict[str, tuple[Callable, dict, dict]] = {
    # name: (class, grid in full mode, grid in smoke mode)
    "MostPop": (MostPop, {"count": ["buyers"]}, {"count": ["buyers"]}),
    "BuyAgain": (BuyAgain, {"by": ["frequency", "recency"]}, {"by": ["frequency"]}),
    "ItemKNN": (ItemKNN, {"k": [50, 200, None], "shrinkage": [0.0, 10.0]}, {"k": [50], "shrinkage": [0.0]}),
    "CoOccurrence": (CoOccurrence, {"n_last": [1, 2, 3], "window": [1, 2]}, {"n_last": [1], "window": [1]}),
    "EASE": (EASE, {"lam": [50.0, 200.0, 500.0, 2000.0]}, {"lam": [200.0]}),
    "iALS": (IALS, {"factors": [64], "alpha": [1.0, 10.0], "reg": [0.1], "iterations": [8]},
             {"factors": [16], "alpha": [1.0], "reg": [0.1], "iterations": [2]}),
}


def choose_view(split: Split) -> tuple[str, float]:
    """``("all" | "new", repeat share)``: "all" when 5% or more of the training interactions repeat an item."""
    repeat_share = float(split.train.duplicated(["user", "item"]).mean()) if len(split.train) else 0.0
    return ("all" if repeat_share >= REPEAT_SHARE_FOR_ALL else "new"), repeat_share


@dataclass
class ByodResult:
    """Everything :func:`run_byod` measured.

    ``validation``: one row per model, the chosen parameters and their validation metrics.
    ``per_user``: per model, each test user's metric values (:func:`~m6rec_lib.metrics.per_user_metrics`).
    ``table``: per model and metric, the test mean and its 95% interval (``value``, ``low``, ``high``).
    ``comparisons``: the headline paired differences on test.
    """

    split: Split
    view: str
    repeat_share: float
    settings: SequentialSettings
    validation: pd.DataFrame
    per_user: dict[str, pd.DataFrame]
    table: pd.DataFrame
    comparisons: list[PairedDifference]
    best_baseline: str
    models: dict[str, Any] = field(repr=False)
    history: pd.DataFrame = field(repr=False)

    def results_table(self) -> pd.DataFrame:
        """The test results as text, one row per model: ``value [low, high]`` per metric."""
        def cell(metric: str) -> pd.Series:
            t = self.table
            return t[(metric, "value")].map("{:.4f}".format) + " [" + t[(metric, "low")].map("{:.4f}".format) + \
                ", " + t[(metric, "high")].map("{:.4f}".format) + "]"

        out = pd.DataFrame({m: cell(m) for m in METRICS})
        out["users"] = self.table[("HR@10", "n")].astype(int)
        return out

    def value(self, model: str, metric: str = "NDCG@10") -> float:
        """The test mean of ``metric`` for ``model``."""
        return float(self.table.loc[model, (metric, "value")])

    def report(self) -> str:
        """A plain-text report: split, view, settings, validation choices, test table, comparisons."""
        test = self.split.test
        lines = [
            f"split: {self.split.name}; {self.split.n_users:,} users, {self.split.n_items:,} items, "
            f"{len(self.split.train):,} training interactions, {len(test):,} test users",
            f"view: {self.view} (items the user had before are "
            f"{'ranked too' if self.view == 'all' else 'left out'}; repeat share {self.repeat_share:.1%})",
            "", "SASRec settings (derived from the data):", self.settings.explain()[["value"]].to_string(),
            "", "validation (the choices were made here):", self.validation.to_string(),
            "", f"test, full-catalogue ranking, view '{self.view}', 95% bootstrap intervals over users:",
            self.results_table().to_string(),
            "", "headline comparisons (paired bootstrap over users):",
        ]
        lines += [str(d) for d in self.comparisons]
        return "\n".join(lines)

    def comparison_table(self) -> pd.DataFrame:
        return comparison_table(self.comparisons)


def make_split(table: pd.DataFrame, split: str = "loo", seed: int = 0, **kwargs) -> Split:
    """``split="loo"`` (leave-one-out) or ``"temporal"`` (the course's global cuts) of a table."""
    if split in ("loo", "leave-one-out"):
        return leave_one_out_split(table, seed=seed, **kwargs)
    if split == "temporal":
        return temporal_split(table, seed=seed, **kwargs)
    raise ValueError(f"split must be 'loo' (leave-one-out) or 'temporal', got {split!r}")


def baselines_for(split: Split, view: str, smoke: bool) -> list[str]:
    """The baselines that make sense here (Buy-Again only in the "all" view; dense ones for small catalogues)."""
    names = ["MostPop", "ItemKNN", "CoOccurrence", "EASE", "iALS"]
    if view == "all":
        names.insert(1, "BuyAgain")
    if split.n_items > MAX_DENSE_ITEMS:
        names = [n for n in names if n not in ("ItemKNN", "EASE")]
    return names


def sasrec_scorer(model, eval_set) -> Callable[[np.ndarray], np.ndarray]:
    """``fn(positions) -> (len(positions), n_items + 1)`` SASRec scores from the eval set's sequences
    (:class:`~m6rec_lib.byod.sequential.AlignedSASRec`)."""
    return lambda positions: model.score_sequences([eval_set.sequences[i] for i in positions])


def intervals(per_user: dict[str, pd.DataFrame], metrics=METRICS, seed: int = 0) -> pd.DataFrame:
    """Per model and metric: the mean over users and its 95% bootstrap interval."""
    rows = {}
    for name, frame in per_user.items():
        row = {}
        for m in metrics:
            iv = bootstrap_interval(frame[m], seed=seed)
            row.update({(m, "value"): iv.value, (m, "low"): iv.low, (m, "high"): iv.high, (m, "n"): iv.n})
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["metric", "stat"])
    table.index.name = "model"
    return table


def run_byod(
    data: pd.DataFrame | Split,
    *,
    split: str = "loo",
    view: str = "auto",
    smoke: bool = False,
    target_steps: int | None = None,
    baselines: list[str] | None = None,
    seed: int = 0,
    progress: bool = True,
    split_kwargs: dict | None = None,
) -> ByodResult:
    """Split, tune, train and evaluate on ``data`` (a table from ``load_table`` or a ready ``Split``).

    ``view``: "all", "new" or "auto" (see the module docstring); ``target_steps``: SASRec's budget in
    optimisation steps (default: the rule's); ``baselines``: names among :data:`GRIDS` (default:
    :func:`baselines_for`).
    """
    if isinstance(data, Split):
        sp = data
    else:
        if {"user", "item", "time", "row"} - set(data.columns):
            raise ValueError("data must be a table from m6rec_lib.byod.load_table (user, item, time, row) or a Split")
        sp = make_split(data, split, seed=seed, **(split_kwargs or {}))
    auto_view, repeat_share = choose_view(sp)
    if view == "auto":
        view = auto_view
    if view not in ("all", "new"):
        raise ValueError(f"view must be 'all', 'new' or 'auto', got {view!r}")
    exclude_seen = view == "new"
    names = baselines or baselines_for(sp, view, smoke)
    unknown = [n for n in names if n not in GRIDS]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose among {list(GRIDS)}")

    models: dict[str, Any] = {}
    scorers: dict[str, Callable] = {}
    validation_rows = {}
    for name in names:
        cls, grid, smoke_grid = GRIDS[name]
        fit_kwargs = {"train_sequences": sp.train_sequences} if name == "CoOccurrence" else None
        params, table, model = tune(cls, smoke_grid if smoke else grid, sp.train_matrix, sp.validation,
                                    metric="NDCG@10", exclude_seen=exclude_seen, fit_kwargs=fit_kwargs,
                                    return_model=True)
        best = table.loc[table["NDCG@10"].idxmax()]
        validation_rows[name] = {"chosen": ", ".join(f"{k}={v}" for k, v in params.items()),
                                 "NDCG@10": float(best["NDCG@10"]), "Recall@10": float(best["Recall@10"])}
        models[name] = model
        scorers[name] = model.scorer(sp.test)

    settings = suggest_settings(sp, view=view, smoke=smoke, target_steps=target_steps, seed=seed)
    sasrec, meta = train_sequential(sp, settings, progress=progress)
    history = pd.DataFrame(meta["history"] or [])
    best_epoch = int(history["NDCG@10"].idxmax()) if len(history) else 0
    validation_rows["SASRec"] = {
        "chosen": f"epoch {int(history.loc[best_epoch, 'epoch'])} of {len(history)}" if len(history) else "",
        "NDCG@10": float(history.loc[best_epoch, "NDCG@10"]) if len(history) else float("nan"),
        "Recall@10": float(history.loc[best_epoch, "Recall@10"]) if len(history) else float("nan"),
    }
    models["SASRec"] = sasrec
    scorers["SASRec"] = sasrec_scorer(sasrec, sp.test)
    validation = pd.DataFrame.from_dict(validation_rows, orient="index").rename_axis("model")

    # the test set, scored once
    per_user = {name: per_user_metrics(fn, sp.test, ks=KS, exclude_seen=exclude_seen) for name, fn in scorers.items()}
    table = intervals(per_user, seed=seed)
    best_baseline = str(validation.drop(index="SASRec")["NDCG@10"].idxmax())
    comparisons = [paired_bootstrap(per_user["SASRec"], per_user[best_baseline], metric="NDCG@10",
                                    names=("SASRec", best_baseline), view=view, seed=seed)]
    if "CoOccurrence" in per_user and best_baseline != "CoOccurrence":
        comparisons.append(paired_bootstrap(per_user["SASRec"], per_user["CoOccurrence"], metric="HR@10",
                                            names=("SASRec", "CoOccurrence"), view=view, seed=seed))
    return ByodResult(split=sp, view=view, repeat_share=repeat_share, settings=settings, validation=validation,
                      per_user=per_user, table=table, comparisons=comparisons, best_baseline=best_baseline,
                      models=models, history=history)


def describe(table: pd.DataFrame) -> pd.DataFrame:
    """The statistics of a table (:func:`~m6rec_lib.byod.table.describe_table`) as a one-column frame."""
    return describe_table(table).to_frame()
