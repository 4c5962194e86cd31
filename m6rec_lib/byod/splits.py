"""Two splits of a table of interactions, both as the course's :class:`~m6rec_lib.data.Split`.

* :func:`leave_one_out_split` -- the literature's protocol for next-item data (MovieLens papers):
  per user, the last interaction is the test target, the one before it the validation target, and
  everything earlier is training. Users with fewer than ``min_events`` interactions only train.
  Simple and comparable with published numbers, but it leaks time: another user's training
  interactions may come after this user's test moment (:func:`m6rec_lib.data.future_leakage`).
* :func:`temporal_split` -- the course's protocol (:func:`m6rec_lib.data.next_basket_split`): one
  global cut in time; validation and test targets are each returning user's first step after a
  cut, with nothing from the future in training.

In both, the item index is built from training interactions only (a target item never seen in
training stays in the targets as ``-1``: a miss for every model), and ``split.train`` has the
columns the course's models read: ``user`` (row), ``item`` (ID), ``invoice`` (one "basket" per
user and moment), ``invoice_date``, ``stock_code`` (your item ID) and ``description`` (its text).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from m6rec_lib.data import DataError, EvalSet, ItemIndex, Split, UserIndex, interaction_matrix
from m6rec_lib.data import next_basket_split
from m6rec_lib.data.splits import group_sequences


def _user_codes(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, key per code): users numbered 0..n-1 in sorted key order."""
    codes, keys = pd.factorize(table["user"], sort=True)
    return codes.astype(np.int64), np.asarray(keys, dtype=object)


def _texts(rows: pd.DataFrame) -> pd.Series | None:
    """Each item's most frequent text among ``rows`` (None when the table has no text column)."""
    if "text" not in rows.columns:
        return None
    texts = rows[rows["text"] != ""]
    if len(texts) == 0:
        return None
    counts = texts.groupby(["item", "text"]).size().rename("n").reset_index()
    counts = counts.sort_values(["item", "n"], ascending=[True, False], kind="stable")
    return counts.drop_duplicates("item").set_index("item")["text"]


def _check_sorted(table: pd.DataFrame) -> None:
    missing = [c for c in ("user", "item", "time", "row") if c not in table.columns]
    if missing:
        raise DataError(f"the table lacks {missing}; read it with m6rec_lib.byod.load_table(...) first")


def leave_one_out_split(table: pd.DataFrame, min_events: int = 3, seed: int = 0) -> Split:
    """Per user: last interaction = test, second-to-last = validation, the rest = training.

    ``table`` comes from :func:`~m6rec_lib.byod.load_table` (sorted by user, time, row: ties in
    time keep the file's order). Validation scores each user from the training part; test from the
    training part plus the validation interaction. ``split.info`` holds ``user_keys`` (your user ID of
    each user row) and the number of users left out of evaluation.
    """
    _check_sorted(table)
    if min_events < 3:
        raise ValueError("min_events must be at least 3: one interaction each to train, validate and test")
    df = table.sort_values(["user", "time", "row"], kind="stable").reset_index(drop=True)
    code, keys = _user_codes(df)
    df["pos_from_end"] = df.groupby(code).cumcount(ascending=False).to_numpy()
    size = df.groupby(code)["item"].transform("size").to_numpy()
    evaluated = size >= min_events
    if not evaluated.any():
        raise DataError(f"no user has {min_events} or more interactions: nothing to validate and test on.")
    pos = df["pos_from_end"].to_numpy()
    n_left_out = int(len(keys) - (evaluated & (pos == 0)).sum())
    held = evaluated & (pos <= 1)
    train_rows = df[~held]
    items = ItemIndex(train_rows["item"], descriptions=_texts(train_rows), seed=seed)
    users = UserIndex(np.arange(len(keys)), seed=seed)
    df["user_row"] = users.rows(code)
    df["item_id"] = items.ids(df["item"], unknown="minus_one")
    n_users, n_items = users.n_users, items.n_items

    def eval_set(position: int, name: str) -> EvalSet:
        mine = df[evaluated]
        target = mine[mine["pos_from_end"] == position].sort_values("user_row")
        before = mine[mine["pos_from_end"] > position]
        sequences = group_sequences(before["user_row"].to_numpy(), before["item_id"].to_numpy(), n_users)
        rows = target["user_row"].to_numpy(dtype=np.int64)
        return EvalSet(
            users=rows, targets=[np.array([i], dtype=np.int64) for i in target["item_id"].to_numpy()],
            history=interaction_matrix(before["user_row"], before["item_id"], n_users, n_items),
            sequences=[sequences[u] for u in rows], moments=target["time"].to_numpy(dtype="datetime64[ns]"),
            name=name, info={"n_users_left_out": n_left_out},
        )

    train = _as_lines(df[~held])
    return Split(
        name="leave-one-out", items=items, users=users, train=train,
        train_matrix=interaction_matrix(train["user"], train["item"], n_users, n_items),
        train_sequences=group_sequences(train["user"].to_numpy(), train["item"].to_numpy(), n_users),
        validation=eval_set(1, "validation"), test=eval_set(0, "test"),
        info={"min_events": min_events, "user_keys": keys,
              "n_users_left_out": n_left_out},
    )


def _as_lines(rows: pd.DataFrame) -> pd.DataFrame:
    """Training rows in the columns the course's models read (see the module docstring)."""
    steps = pd.factorize(pd.MultiIndex.from_arrays([rows["user_row"], rows["time"]]))[0]
    out = pd.DataFrame({
        "user": rows["user_row"].to_numpy(dtype=np.int64), "item": rows["item_id"].to_numpy(dtype=np.int64),
        "invoice": steps.astype(np.int64), "invoice_date": rows["time"].to_numpy(),
        "stock_code": rows["item"].to_numpy(),
        "description": (rows["text"] if "text" in rows.columns else rows["item"]).to_numpy(),
    })
    return out[out["item"] > 0].reset_index(drop=True)


def temporal_split(
    table: pd.DataFrame,
    val_start: str | pd.Timestamp | None = None,
    test_start: str | pd.Timestamp | None = None,
    seed: int = 0,
) -> Split:
    """The course's global time split (:func:`m6rec_lib.data.next_basket_split`) on your table.

    Training: everything before ``val_start``; validation: each returning user's first step (all
    the items they took at that moment) in ``[val_start, test_start)``; test: the first step in
    ``[test_start, end]``. By default the cuts fall at the 80% and 90% quantiles of the
    interactions' times, so that about a tenth of the interactions lie in each window.
    """
    _check_sorted(table)
    df = table.sort_values(["time", "row"], kind="stable").reset_index(drop=True)
    times = df["time"]
    val_start = pd.Timestamp(val_start) if val_start is not None else times.quantile(0.8)
    test_start = pd.Timestamp(test_start) if test_start is not None else times.quantile(0.9)
    if not times.min() < val_start < test_start <= times.max():
        raise DataError(
            f"the cuts must fall inside the data ({times.min()} .. {times.max()}) in order: got "
            f"val_start={val_start}, test_start={test_start}. Pick dates between the first and last interaction."
        )
    code, keys = _user_codes(df)
    step = pd.factorize(pd.MultiIndex.from_arrays([code, df["time"]]))[0]
    lines = pd.DataFrame({
        "customer_id": code, "stock_code": df["item"].to_numpy(), "invoice": step.astype(str),
        "invoice_date": df["time"].to_numpy(), "line_no": df["row"].to_numpy(),
        "description": (df["text"].where(df["text"] != "", df["item"]) if "text" in df.columns
                        else df["item"]).to_numpy(),
    })
    split = next_basket_split(lines, val_start=val_start, test_start=test_start,
                              end=times.max() + pd.Timedelta(1, "ns"), seed=seed)
    split.name = "temporal (global cuts)"
    split.info["user_keys"] = keys
    return split
