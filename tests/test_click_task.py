"""The click / bulk pair tasks: labels, negatives, leakage, batches and baseline look-ups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from m6rec_lib import click_task as ct
from m6rec_lib.adaptation import PairBatch
from m6rec_lib.data import next_basket_split
from m6rec_lib.data.toy import make_toy_world
from m6rec_lib.models.gpt import GPT, GPTConfig
from m6rec_lib.text import serializer as ser
from m6rec_lib.text.tokenizer import train_bpe

pytestmark = pytest.mark.usefixtures("one_thread")


CFG = ct.PairTaskConfig(train_from="2011-03-01", n_train_moments=40, n_eval_customers=15,
                        max_history_tokens=200, positives_per_moment=3, negatives_per_positive=2)


@pytest.fixture(scope="module")
def world():
    w = make_toy_world(n_users=60, n_items=30, baskets_per_user=8, draws_per_basket=5, seed=0)
    lines = w.lines.copy()
    rng = np.random.default_rng(0)
    lines["quantity"] = np.where(rng.random(len(lines)) < 0.3, 24, lines["quantity"])  # some bulk lines
    split = next_basket_split(lines)
    texts = [ser.serialize_history(g, g["invoice_date"].max() + pd.Timedelta(days=1))
             for _, g in lines.groupby("customer_id")]
    tokenizer = train_bpe(texts * 3, vocab_size=600)
    return lines, split, tokenizer


@pytest.fixture(scope="module")
def click(world):
    lines, split, tok = world
    return ct.build_pair_tasks(split, lines, tok, "click", CFG)


def _basket(lines, split, user, moment):
    customer = split.users.customer_ids[user]
    mine = lines[(lines["customer_id"] == customer) & (lines["invoice_date"] == moment)]
    return mine.groupby("stock_code")["quantity"].sum()


def test_click_labels_and_negatives(world, click):
    lines, split, _ = world
    popularity = np.asarray((split.train_matrix > 0).sum(axis=0)).ravel()
    for part, task in click.items():
        assert task.summary()["pairs"] == len(task.pairs) > 0
        pairs = task.pairs.merge(task.groups, left_on="group", right_index=True)
        n_pos = pairs.groupby("group")["label"].sum()
        n_neg = pairs.groupby("group")["label"].apply(lambda s: int((s == 0).sum()))
        assert (n_pos >= 1).all() and (n_pos <= CFG.positives_per_moment).all()
        assert (n_neg <= CFG.negatives_per_positive * n_pos).all()
        for row in pairs.itertuples():
            basket = _basket(lines, split, row.user, row.moment)
            code = split.items.code(row.item)
            assert (code in basket.index) == bool(row.label), (part, row)
            if row.label:
                assert row.quantity == basket[code]
            else:
                assert popularity[row.item] > 0      # popularity sampling never draws an unsold item
        if part != "train":
            es = getattr(split, part)
            pos = task.groups["eval_pos"].to_numpy()
            assert (es.users[pos] == task.groups["user"].to_numpy()).all()
            # positives are the eval set's own targets
            for row in pairs[pairs["label"] == 1].itertuples():
                assert row.item in es.targets[row.eval_pos]
        else:
            assert (task.groups["moment"] >= pd.Timestamp(CFG.train_from)).all()
            assert (task.groups["moment"] < pd.Timestamp(split.info["val_start"])).all()


def test_histories_hold_only_the_past(world, click):
    lines, split, tok = world
    for task in click.values():
        for g in task.groups.itertuples():
            mine = lines[lines["customer_id"] == g.customer_id]
            invoices = ser.invoices_from_lines(mine)
            past_lines = sum(len(i.items) for i in invoices if i.moment < g.moment)
            assert g.n_lines + g.n_not_shown == past_lines
            text = tok.decode(task.histories[g.Index])
            assert text.endswith(ser.PROMPT) and len(task.histories[g.Index]) <= CFG.max_history_tokens
            assert task.histories[g.Index][0] == tok.bos_id
        # repeat = bought strictly before the moment
        pairs = task.pairs.merge(task.groups, left_on="group", right_index=True)
        for row in pairs.itertuples():
            customer_items = split.items.ids(
                lines[(lines["customer_id"] == row.customer_id) & (lines["invoice_date"] < row.moment)]["stock_code"],
                unknown="minus_one")
            assert row.repeat == int(row.item in set(customer_items.tolist()))


def test_bulk_labels(world):
    lines, split, tok = world
    task = ct.build_pair_task(split, lines, tok, "bulk", "validation", CFG)
    assert (task.labels == (task.pairs["quantity"] >= CFG.bulk_threshold)).all()
    assert 0 < task.labels.mean() < 1
    assert (task.pairs["quantity"] > 0).all()  # every pair is a purchase


def test_uniform_negatives_and_seeds(world):
    lines, split, tok = world
    cfg = ct.PairTaskConfig(**{**CFG.to_dict(), "negatives": "uniform"})
    a = ct.build_pair_task(split, lines, tok, "click", "train", cfg)
    b = ct.build_pair_task(split, lines, tok, "click", "train", cfg)
    pd.testing.assert_frame_equal(a.pairs, b.pairs)
    c = ct.build_pair_task(split, lines, tok, "click", "train", CFG)
    assert not a.pairs.equals(c.pairs)
    with pytest.raises(ValueError, match="negatives"):
        ct.PairTaskConfig(negatives="hard")
    with pytest.raises(ValueError, match="task"):
        ct.build_pair_task(split, lines, tok, "ctr", "train", CFG)


def test_batches_rebuild_each_pair(world, click):
    _, split, tok = world
    task = click["validation"]
    seen = 0
    for batch in task.batches(groups_per_batch=4):
        assert isinstance(batch, PairBatch)
        for n, tokens in enumerate(batch.concatenated()):
            group, item, label = task.pairs.iloc[seen + n][["group", "item", "label"]]
            expected = task.histories[group].tolist() + task.item_tokens[item].tolist()
            assert tokens == expected
            assert tok.decode(task.item_tokens[item]) == ser.candidate_text(split.items.text(item))
            assert batch.labels[n] == label
        seen += len(batch)
    assert seen == len(task)
    stream = click["train"].stream(groups_per_batch=8, seed=0)
    first = [next(stream) for _ in range(12)]                       # more than one epoch
    assert all(b.history.shape[0] == 8 for b in first)


def test_baseline_lookup_and_zero_shot_scores(world, click):
    _, split, tok = world
    task = click["test"]
    n_items = split.n_items
    matrix = np.random.default_rng(0).random((len(split.test), n_items + 1))
    got = ct.pair_scores_from_rows(task, lambda pos: matrix[pos])
    pairs = task.pairs.merge(task.groups, left_on="group", right_index=True)
    np.testing.assert_allclose(got, matrix[pairs["eval_pos"], pairs["item"]])
    with pytest.raises(ValueError, match="evaluation part"):
        ct.pair_scores_from_rows(click["train"], lambda pos: matrix[pos])
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=256, n_layer=1, n_head=2, d_model=16)).eval()
    scores = ct.lm_pair_scores(gpt, task)
    group, item = task.pairs.iloc[3][["group", "item"]]
    tokens = task.histories[group].tolist() + task.item_tokens[item].tolist()
    logp = gpt.token_logprobs(torch.tensor([tokens]))[0, -len(task.item_tokens[item]):]
    assert scores[3] == pytest.approx(float(logp.mean()), abs=1e-5)


def test_history_token_ids_never_read_the_future(world):
    lines, split, tok = world
    customer = int(lines["customer_id"].iloc[0])
    mine = lines[lines["customer_id"] == customer].sort_values("invoice_date")
    moment = mine["invoice_date"].iloc[len(mine) // 2]
    moved = lines.copy()
    later = (moved["customer_id"] == customer) & (moved["invoice_date"] >= moment)
    moved.loc[later, "country"] = "France"                     # the customer moves at the moment
    moved.loc[(moved["customer_id"] == customer) & ~later, "country"] = "Germany"
    ids, written = ct.history_token_ids(moved, [customer], [moment], tok, 200)
    text = tok.decode(ids[0])
    assert text.startswith("A customer from Germany") and "France" not in text
    n_before = sum(len(i.items) for i in ser.invoices_from_lines(mine) if i.moment < moment)
    assert written["n_lines"].iloc[0] + written["n_not_shown"].iloc[0] == n_before
    with pytest.raises(ValueError, match="moments"):
        ct.history_token_ids(lines, [customer], [], tok, 200)
    cfg = ct.course_task_config(smoke=True, context_length=128, n_prompt=8)
    assert cfg.max_history_tokens + cfg.max_candidate_tokens + 8 == 128
    assert cfg.negatives == "popularity"      # uniform negatives turn the task into a popularity test
