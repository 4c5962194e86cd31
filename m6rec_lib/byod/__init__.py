"""Bring your own data: the course's split, baselines and SASRec on any table of interactions.

Any log with a user, an item, a time and, maybe, an item text fits::

    from m6rec_lib import byod
    table = byod.load_table("log.csv", user="customer", item="product", time="ts", text="title")
    result = byod.run_byod(table)            # leave-one-out, baselines tuned on validation, SASRec
    print(result.report())                   # full-ranking results with 95% intervals

or, from a shell, ``python -m m6rec_lib.byod log.csv --user customer --item product --time ts``
(``python -m m6rec_lib.byod --help``). The parts, one concept per module:

- ``table``     read and check the table (:func:`load_table`), its statistics, k-core filtering
- ``splits``    leave-one-out (the literature's) and the course's temporal split
- ``settings``  the rule that derives SASRec's settings (history length, batch, steps) from the data
- ``run``       tune, train, evaluate once on test, intervals and paired comparisons
- ``markov``    a synthetic second-order chain whose best possible hit rate is known
"""

from .markov import MarkovSource, require_near_bound
from .run import GRIDS, ByodResult, choose_view, make_split, run_byod
from .settings import SequentialSettings, course_default_steps, suggest_settings
from .splits import leave_one_out_split, temporal_split
from .table import TableStats, describe_table, k_core, load_table

__all__ = [
    "MarkovSource", "require_near_bound", "GRIDS", "ByodResult", "choose_view", "make_split", "run_byod", "SequentialSettings",
    "course_default_steps", "suggest_settings", "leave_one_out_split", "temporal_split", "TableStats",
    "describe_table", "k_core", "load_table",
]
