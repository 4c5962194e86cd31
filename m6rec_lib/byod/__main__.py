"""The command line of :mod:`m6rec_lib.byod`: your table in, a full-ranking results table with intervals out.

Examples::

    python -m m6rec_lib.byod log.csv --user customer --item product --time ts --text title
    python -m m6rec_lib.byod log.parquet --split temporal --out results/
    python -m m6rec_lib.byod --movielens ml-100k              # needs the download (--download)
    python -m m6rec_lib.byod --synthetic --smoke               # the known-answer source, quickly

It prints the table's statistics, the split, the SASRec settings derived from the data, the
validation choices, the test results (mean and 95% interval per model and metric) and the headline
paired comparisons. ``--out DIR`` also writes ``results.csv``, ``comparisons.csv``,
``validation.csv`` and ``settings.csv`` there (atomically). Bad input ends with a message that says
what to fix and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from m6rec_lib.data import DataError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m m6rec_lib.byod",
        description="Run the course's baselines and SASRec on your own (user, item, time[, text]) table "
                    "and print full-ranking results with 95% intervals.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("path", nargs="?", type=Path, help="a .csv/.tsv or .parquet file, one interaction per row")
    source.add_argument("--movielens", choices=["ml-100k", "ml-1m"], help="a MovieLens release instead of a file")
    source.add_argument("--synthetic", action="store_true",
                        help="the synthetic second-order Markov source, whose best possible HR@10 is known")
    cols = parser.add_argument_group("columns of your file")
    cols.add_argument("--user", default="user", help="user column (default: user)")
    cols.add_argument("--item", default="item", help="item column (default: item)")
    cols.add_argument("--time", default="time", help="time column: dates, or numbers of --time-unit since 1970")
    cols.add_argument("--text", default=None, help="optional item text column (title, description)")
    cols.add_argument("--sep", default=None, help="CSV separator (default: ',' or a tab for .tsv)")
    cols.add_argument("--time-unit", default="s", help="unit of numeric times: s (default), ms, D, ...")
    ml = parser.add_argument_group("MovieLens")
    ml.add_argument("--download", action="store_true", help="download the release if it is not cached (about 5 MB)")
    ml.add_argument("--movielens-folder", type=Path, help="an extracted MovieLens folder to read instead of the cache")
    run = parser.add_argument_group("the run")
    run.add_argument("--split", choices=["loo", "temporal"], default="loo",
                     help="loo: leave-one-out (default); temporal: the course's global time cuts")
    run.add_argument("--view", choices=["auto", "all", "new"], default="auto",
                     help="rank items the user had before (all) or leave them out (new); auto picks by the data")
    run.add_argument("--k-core", type=int, default=None,
                     help="keep users and items with at least K interactions (default: 5 for MovieLens, else 1)")
    run.add_argument("--min-events", type=int, default=3, help="leave-one-out: users with fewer only train (default 3)")
    run.add_argument("--steps", type=int, default=None, help="SASRec's budget in optimisation steps (default: 2000)")
    run.add_argument("--smoke", action="store_true", help="tiny settings: checks the pipeline, measures nothing")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--threads", type=int, default=None, help="torch threads (default: $M6REC_THREADS or all cores)")
    run.add_argument("--out", type=Path, default=None, help="also write the tables as CSV files into this folder")
    return parser


def synthetic_source(args: argparse.Namespace):
    """The Markov source of ``--synthetic`` (lesson 12's, smaller in smoke mode)."""
    from m6rec_lib.byod import MarkovSource

    if args.smoke:
        return MarkovSource(n_items=60, rank=4, seed=args.seed), 300
    return MarkovSource(n_items=150, rank=8, seed=args.seed), 1500


def load_source(args: argparse.Namespace):
    """The table the arguments name, with k-core filtering applied."""
    from m6rec_lib.byod import k_core, load_table

    if args.synthetic:
        source, n_users = synthetic_source(args)
        table = source.sample_table(n_users, min_len=15, max_len=30, seed=args.seed + 1)
        default_k = 1
    elif args.movielens:
        from m6rec_lib.data.movielens import movielens_table

        table = movielens_table(args.movielens, download=args.download, folder=args.movielens_folder)
        default_k = 5
    else:
        table = load_table(args.path, user=args.user, item=args.item, time=args.time, text=args.text,
                           sep=args.sep, time_unit=args.time_unit)
        default_k = 1
    return k_core(table, default_k if args.k_core is None else args.k_core)


def write_tables(result, folder: Path) -> list[Path]:
    from m6rec_lib.atomic import atomic_write_text

    tables = {"results.csv": result.results_table(), "comparisons.csv": result.comparison_table(),
              "validation.csv": result.validation, "settings.csv": result.settings.explain()}
    written = []
    for name, frame in tables.items():
        atomic_write_text(folder / name, frame.to_csv())
        written.append(folder / name)
    return written


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from m6rec_lib.byod import describe_table, run_byod
    from m6rec_lib.training import configure_threads

    configure_threads(args.threads)
    try:
        table = load_source(args)
        print(describe_table(table).to_frame().to_string(), end="\n\n")
        kwargs = {"min_events": args.min_events} if args.split == "loo" else {}
        result = run_byod(table, split=args.split, view=args.view, smoke=args.smoke, target_steps=args.steps,
                          seed=args.seed, split_kwargs=kwargs)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.report())
    if args.synthetic and result.split.name == "leave-one-out":
        source, _ = synthetic_source(args)
        test = result.split.test
        print(f"\nthe source's best possible HR@10 on these test users: {source.bound(result.split, test).mean():.4f}; "
              f"with the last item only: {source.first_order_bound(result.split, test).mean():.4f}")
    if args.smoke:
        print("\n(smoke mode: tiny settings; these numbers check the pipeline and measure nothing)")
    if args.out:
        for path in write_tables(result, args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
