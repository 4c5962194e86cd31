"""Train / validation / test splits without leakage.

Four protocols, each returning an object with ``train`` lines, a ``train_matrix``, ``train_sequences``
and ``validation`` / ``test`` :class:`EvalSet`s:

* :func:`next_basket_split` -- the course's main protocol. A global time split: models train only on
  invoices before ``val_start``; validation targets are each customer's first basket in
  ``[val_start, test_start)``, test targets each customer's first basket in ``[test_start, end)``,
  both scored from that customer's history up to the basket. Nothing after any evaluation moment,
  from any customer, reaches training.
* :func:`leave_last_basket_split` -- the common literature protocol (each customer's last basket is
  the test, the one before it validation, everything else training). It leaks: other customers'
  training lines happen after a customer's test moment; :func:`future_leakage` measures how much.
* :func:`invoice_sequence_split` -- the UniSRec / VQ-Rec protocol on the 2010-2011 sheet: each invoice
  is a sequence, leave-one-out, for comparison with published numbers.
* :func:`year_cut_split` -- train on year 1, evaluate on year 2, with items never sold before the cut
  flagged as cold (zero-shot lessons).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .evalset import EvalSet
from .indexing import PAD_ID, UNKNOWN_ID, ItemIndex, UserIndex
from .retail import DataError, item_descriptions

DATA_END = pd.Timestamp("2011-12-10")


@dataclass
class Split:
    """What every protocol returns.

    ``train``: cleaned lines of the training period with ``user`` (row) and ``item`` (ID) columns.
    ``train_matrix``: (n_users, n_items + 1) csr purchase-line counts of the training period.
    ``train_sequences``: per user row, the training item IDs oldest first.
    """

    name: str
    items: ItemIndex
    users: UserIndex
    train: pd.DataFrame
    train_matrix: sp.csr_matrix
    train_sequences: list[np.ndarray]
    validation: EvalSet
    test: EvalSet
    info: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return self.items.n_items

    @property
    def n_users(self) -> int:
        return self.users.n_users

    def summary(self) -> pd.DataFrame:
        """One row per part: customers, lines, targets, unknown targets."""
        rows = [{"part": "train", "customers": int((self.train_matrix.getnnz(axis=1) > 0).sum()),
                 "lines": len(self.train), "items": self.n_items}]
        for es in (self.validation, self.test):
            n_targets = sum(len(t) for t in es.targets)
            n_unknown = sum(int((t == UNKNOWN_ID).sum()) for t in es.targets)
            rows.append({"part": es.name, "customers": len(es), "lines": n_targets,
                         "items": len(np.unique(np.concatenate(es.targets))) if len(es) else 0,
                         "unknown targets": n_unknown})
        return pd.DataFrame(rows).set_index("part")


# --------------------------------------------------------------------------- building blocks

def interaction_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """Count matrix (n_users, n_items + 1) from parallel arrays; unknown (-1) and padding IDs dropped."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    keep = items > PAD_ID
    m = sp.coo_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (users[keep], items[keep])),
        shape=(n_users, n_items + 1),
    ).tocsr()
    m.sum_duplicates()
    return m


def group_sequences(users: np.ndarray, items: np.ndarray, n_users: int) -> list[np.ndarray]:
    """Per user row, the items in the given order (the caller sorts by time). Unknown IDs dropped."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    keep = items > PAD_ID
    users, items = users[keep], items[keep]
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    bounds = np.searchsorted(users, np.arange(n_users + 1))
    return [items[bounds[u]:bounds[u + 1]] for u in range(n_users)]


def _with_ids(lines: pd.DataFrame, items: ItemIndex, users: UserIndex) -> pd.DataFrame:
    out = lines.copy()
    out["user"] = users.rows(out["customer_id"].to_numpy())
    out["item"] = items.ids(out["stock_code"], unknown="minus_one")
    return out


def eval_set_from_baskets(
    lines: pd.DataFrame,
    basket_keys: pd.DataFrame,
    n_users: int,
    n_items: int,
    name: str,
) -> EvalSet:
    """Build an EvalSet from one target basket per customer.

    ``lines``: all lines with ``user``, ``item``, ``invoice``, ``invoice_date`` (time-ordered).
    ``basket_keys``: one row per evaluated user: ``user``, ``invoice``, ``moment``. The history of a
    user is every line of that user strictly before the moment.
    """
    keys = basket_keys.sort_values("user").reset_index(drop=True)
    moment_of = pd.Series(keys["moment"].to_numpy(), index=keys["user"].to_numpy())
    mine = lines[lines["user"].isin(keys["user"])]
    before = mine["invoice_date"].to_numpy() < moment_of.reindex(mine["user"].to_numpy()).to_numpy()
    hist = mine[before]
    history = interaction_matrix(hist["user"], hist["item"], n_users, n_items)
    seq_all = group_sequences(hist["user"].to_numpy(), hist["item"].to_numpy(), n_users)

    target_lines = mine.merge(keys[["user", "invoice"]], on=["user", "invoice"])
    tgt = target_lines.groupby("user")["item"].agg(lambda s: np.unique(s.to_numpy()))
    targets = [tgt[u] for u in keys["user"]]
    return EvalSet(
        users=keys["user"].to_numpy(dtype=np.int64),
        targets=targets,
        history=history,
        sequences=[seq_all[u] for u in keys["user"]],
        moments=keys["moment"].to_numpy(dtype="datetime64[ns]"),
        name=name,
    )


def first_baskets(lines: pd.DataFrame, start, end, require_history: bool = True) -> pd.DataFrame:
    """Each customer's first invoice in ``[start, end)`` (user, invoice, moment).

    With ``require_history`` customers with no earlier line are left out (they are cold customers,
    counted in the returned frame's ``attrs["n_cold_customers"]``).
    """
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    window = lines[(lines["invoice_date"] >= start) & (lines["invoice_date"] < end)]
    firsts = (
        window.sort_values(["invoice_date", "invoice"], kind="stable")
        .drop_duplicates("user")[["user", "invoice", "invoice_date"]]
        .rename(columns={"invoice_date": "moment"})
    )
    n_cold = 0
    if require_history:
        first_seen = lines.groupby("user")["invoice_date"].min()
        has_history = first_seen.reindex(firsts["user"]).to_numpy() < firsts["moment"].to_numpy()
        n_cold = int((~has_history).sum())
        firsts = firsts[has_history]
    firsts = firsts.reset_index(drop=True)
    firsts.attrs["n_cold_customers"] = n_cold
    return firsts


def _finish(name, items, users, lines, train_mask, val_keys, test_keys, info) -> Split:
    train = lines[train_mask].reset_index(drop=True)
    n_users, n_items = users.n_users, items.n_items
    split = Split(
        name=name,
        items=items,
        users=users,
        train=train,
        train_matrix=interaction_matrix(train["user"], train["item"], n_users, n_items),
        train_sequences=group_sequences(train["user"].to_numpy(), train["item"].to_numpy(), n_users),
        validation=eval_set_from_baskets(lines, val_keys, n_users, n_items, "validation"),
        test=eval_set_from_baskets(lines, test_keys, n_users, n_items, "test"),
        info=info,
    )
    for es, keys in ((split.validation, val_keys), (split.test, test_keys)):
        es.info["n_cold_customers_left_out"] = keys.attrs.get("n_cold_customers", 0)
    return split


# --------------------------------------------------------------------------- protocols

def next_basket_split(
    lines: pd.DataFrame,
    val_start: str = "2011-10-01",
    test_start: str = "2011-11-01",
    end: str | pd.Timestamp = DATA_END,
    seed: int = 0,
) -> Split:
    """The course's main protocol: a global time split with next-basket targets.

    ``lines`` are clean lines (``clean_transactions``). The item index and item texts are built from
    training lines only; target items never sold before ``val_start`` are kept as ``-1`` (misses).
    """
    val_start, test_start, end = pd.Timestamp(val_start), pd.Timestamp(test_start), pd.Timestamp(end)
    if not lines["invoice_date"].min() < val_start < test_start < end:
        raise ValueError(
            f"need data start < val_start < test_start < end; got val_start={val_start.date()}, "
            f"test_start={test_start.date()}, end={end.date()} for data from "
            f"{lines['invoice_date'].min().date()}"
        )
    lines = lines[lines["invoice_date"] < end]
    train_mask = (lines["invoice_date"] < val_start).to_numpy()
    if not train_mask.any():
        raise DataError(f"no line before val_start={val_start.date()}: nothing to train on.")
    items = ItemIndex(lines.loc[train_mask, "stock_code"],
                      descriptions=item_descriptions(lines[train_mask]), seed=seed)
    users = UserIndex(lines["customer_id"], seed=seed)
    lines = _with_ids(lines, items, users)
    val_keys = first_baskets(lines, val_start, test_start)
    test_keys = first_baskets(lines, test_start, end)
    if len(val_keys) == 0 or len(test_keys) == 0:
        raise DataError("the validation or test window holds no returning customer; widen the windows.")
    info = {"val_start": str(val_start.date()), "test_start": str(test_start.date()), "end": str(end.date())}
    return _finish("next-basket (global time)", items, users, lines, train_mask, val_keys, test_keys, info)


def leave_last_basket_split(lines: pd.DataFrame, min_baskets: int = 3, seed: int = 0) -> Split:
    """The literature protocol: per customer, last basket = test, the one before = validation.

    Customers with fewer than ``min_baskets`` invoices stay in training only. Training keeps every
    other line of every customer, including lines later than other customers' test moments; see
    :func:`future_leakage`.
    """
    if min_baskets < 3:
        raise ValueError("min_baskets must be at least 3 (one for training, validation and test each)")
    items_all = ItemIndex(lines["stock_code"], item_descriptions(lines), seed=seed)
    users = UserIndex(lines["customer_id"], seed=seed)
    lines = _with_ids(lines, items_all, users)
    baskets = (
        lines.drop_duplicates(["user", "invoice"])[["user", "invoice", "invoice_date"]]
        .sort_values(["user", "invoice_date", "invoice"], kind="stable")
    )
    baskets["k_from_end"] = baskets.groupby("user").cumcount(ascending=False)
    baskets["n"] = baskets.groupby("user")["invoice"].transform("size")
    evaluated = baskets[baskets["n"] >= min_baskets]
    test_keys = evaluated[evaluated["k_from_end"] == 0].rename(columns={"invoice_date": "moment"})
    val_keys = evaluated[evaluated["k_from_end"] == 1].rename(columns={"invoice_date": "moment"})
    held = pd.concat([test_keys, val_keys])[["user", "invoice"]]
    is_held = lines.set_index(["user", "invoice"]).index.isin(pd.MultiIndex.from_frame(held))
    # The item index must not contain items only seen in held-out baskets.
    train_codes = lines.loc[~is_held, "stock_code"]
    items = ItemIndex(train_codes, item_descriptions(lines[~is_held]), seed=seed)
    lines = _with_ids(lines.drop(columns=["user", "item"]), items, users)
    split = _finish("leave-last-basket-out", items, users, lines, ~is_held,
                    val_keys[["user", "invoice", "moment"]].reset_index(drop=True),
                    test_keys[["user", "invoice", "moment"]].reset_index(drop=True),
                    {"min_baskets": min_baskets})
    # The validation history must not contain the test basket; it does not, because the test
    # basket is later. The test history does contain the validation basket, as it should.
    return split


def future_leakage(split: Split, eval_set: EvalSet | None = None) -> float:
    """Mean, over evaluated customers, of the share of training lines dated after their moment.

    Zero for the global time split; far from zero for leave-last-basket-out.
    """
    es = eval_set if eval_set is not None else split.test
    times = np.sort(split.train["invoice_date"].to_numpy())
    after = len(times) - np.searchsorted(times, es.moments, side="right")
    return float(np.mean(after / len(times)))


def invoice_sequence_split(
    lines: pd.DataFrame,
    order: str = "shuffle",
    seed: int = 0,
    k_core: int = 5,
    start: str = "2010-12-01",
) -> Split:
    """The UniSRec / VQ-Rec protocol on the 2010-2011 sheet (see the course map).

    Each invoice is a sequence (customer IDs are not needed: guest invoices count), items are stock
    codes; lines without a description are dropped; (invoice, item, quantity, time) duplicates
    dropped; iterative ``k_core`` filtering on invoices and items; leave-one-out (last item test,
    second-to-last validation). All lines of an invoice share one timestamp, so ``order`` decides the
    order inside an invoice: ``"file"`` (the sheet's order, where neighbouring lines are often variants
    of one product) or ``"shuffle"`` (seeded, what the published preprocessing amounts to).

    ``lines`` may be the clean lines or the raw lines with customers missing; this function only
    needs positive quantities and non-cancelled invoices, which it checks.
    """
    if order not in ("file", "shuffle"):
        raise ValueError(f"order must be 'file' or 'shuffle', not {order!r}")
    if k_core < 1:
        raise ValueError("k_core must be >= 1")
    df = lines[lines["invoice_date"] >= pd.Timestamp(start)]
    df = df[(df["quantity"] > 0) & ~df["invoice"].astype(str).str.startswith("C")]
    df = df[df["description"].notna() & df["stock_code"].notna()]
    df = df.drop_duplicates(["invoice", "stock_code", "quantity", "invoice_date"])
    while True:  # k-core until stable
        inv_n = df.groupby("invoice")["stock_code"].transform("size")
        item_n = df.groupby("stock_code")["invoice"].transform("size")
        keep = (inv_n >= k_core) & (item_n >= k_core)
        if keep.all():
            break
        df = df[keep]
    if len(df) == 0:
        raise DataError(f"no invoice survives {k_core}-core filtering")
    df = df.sort_values(["invoice_date", "invoice", "line_no"], kind="stable").reset_index(drop=True)
    if order == "shuffle":
        rng = np.random.default_rng(seed)
        df["_r"] = rng.random(len(df))
        df = df.sort_values(["invoice_date", "invoice", "_r"], kind="stable").drop(columns="_r")
        df = df.reset_index(drop=True)
    df["pos_from_end"] = df.groupby("invoice").cumcount(ascending=False)
    train_mask = (df["pos_from_end"] >= 2).to_numpy()
    items = ItemIndex(df.loc[train_mask, "stock_code"], item_descriptions(df[train_mask]), seed=seed)
    inv_codes = pd.Index(df["invoice"].unique())
    rng_u = np.random.default_rng(seed + 1)
    inv_perm = inv_codes[rng_u.permutation(len(inv_codes))]
    row_of = pd.Series(np.arange(len(inv_perm)), index=inv_perm)
    df["user"] = row_of.reindex(df["invoice"]).to_numpy()
    df["item"] = items.ids(df["stock_code"], unknown="minus_one")
    n_users, n_items = len(inv_perm), items.n_items

    def loo(pos_target: int, name: str) -> EvalSet:
        tgt = df[df["pos_from_end"] == pos_target].sort_values("user")
        hist = df[df["pos_from_end"] > pos_target]
        history = interaction_matrix(hist["user"], hist["item"], n_users, n_items)
        seqs = group_sequences(hist["user"].to_numpy(), hist["item"].to_numpy(), n_users)
        users_ = tgt["user"].to_numpy(dtype=np.int64)
        return EvalSet(users=users_, targets=[np.array([i]) for i in tgt["item"].to_numpy()],
                       history=history, sequences=[seqs[u] for u in users_],
                       moments=tgt["invoice_date"].to_numpy(dtype="datetime64[ns]"), name=name)

    train = df[train_mask].reset_index(drop=True)
    users = UserIndex(np.arange(n_users))  # invoices play the users' role; rows are already shuffled
    users.customer_ids = np.arange(n_users)
    return Split(
        name=f"invoice sequences ({order} order)", items=items, users=users, train=train,
        train_matrix=interaction_matrix(train["user"], train["item"], n_users, n_items),
        train_sequences=group_sequences(train["user"].to_numpy(), train["item"].to_numpy(), n_users),
        validation=loo(1, "validation"), test=loo(0, "test"),
        info={"order": order, "k_core": k_core, "n_invoices": n_users, "invoice_of_row": inv_perm.to_numpy()},
    )


def year_cut_split(
    lines: pd.DataFrame,
    cut: str = "2010-12-01",
    test_start: str = "2011-03-01",
    end: str | pd.Timestamp = DATA_END,
    seed: int = 0,
) -> Split:
    """Train on year 1, evaluate on year 2; items never sold before ``cut`` are cold.

    Unlike the other protocols the item index covers every item (a text model can score an item it
    has never seen sold), with texts from each item's first appearance period: training texts for
    warm items, year-2 texts for cold ones. ``split.info["is_cold"]`` is a (n_items + 1,) bool array.
    Validation: each customer's first basket in ``[cut, test_start)``; test: first basket in
    ``[test_start, end)``, scored from all earlier lines (including year-2 lines before it).
    """
    cut, test_start, end = pd.Timestamp(cut), pd.Timestamp(test_start), pd.Timestamp(end)
    if not lines["invoice_date"].min() < cut < test_start < end:
        raise ValueError("need data start < cut < test_start < end")
    lines = lines[lines["invoice_date"] < end]
    train_mask = (lines["invoice_date"] < cut).to_numpy()
    warm_desc = item_descriptions(lines[train_mask])
    cold_desc = item_descriptions(lines[~train_mask])
    desc = pd.concat([warm_desc, cold_desc[~cold_desc.index.isin(warm_desc.index)]])
    items = ItemIndex(lines["stock_code"], desc, seed=seed)
    users = UserIndex(lines["customer_id"], seed=seed)
    lines = _with_ids(lines, items, users)
    warm_ids = np.unique(lines.loc[train_mask, "item"])
    is_cold = np.ones(items.n_items + 1, dtype=bool)
    is_cold[0] = False
    is_cold[warm_ids] = False
    val_keys = first_baskets(lines, cut, test_start)
    test_keys = first_baskets(lines, test_start, end)
    info = {"cut": str(cut.date()), "test_start": str(test_start.date()), "is_cold": is_cold,
            "n_cold_items": int(is_cold.sum())}
    return _finish("year cut (cold start)", items, users, lines, train_mask, val_keys, test_keys, info)
