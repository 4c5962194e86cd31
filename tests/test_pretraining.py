"""The pretraining pipeline on a small synthetic shop: no leakage, examples, batches, the cache."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from m6rec_lib import pretraining as pt
from m6rec_lib.text import serializer as ser

WORDS = ["RED", "BLUE", "HEART", "BAG", "JUMBO", "CAKE", "TIN", "SET", "OF", "3", "VINTAGE", "LIGHT",
         "HOLDER", "PAPER", "NAPKINS", "RETROSPOT", "DOORMAT", "MUG", "GLASS", "STAR"]
CUT = "2010-12-01"


def synthetic_lines(n_customers: int = 30, seed: int = 0) -> pd.DataFrame:
    """Clean-looking lines from 2010-01 to 2011-06; products named FUTURE ... only after the cut."""
    rng = np.random.default_rng(seed)
    products = [" ".join(rng.choice(WORDS, size=3, replace=False)) for _ in range(40)]
    rows, line_no = [], 0
    for c in range(n_customers):
        start = pd.Timestamp("2010-01-04") + pd.Timedelta(days=int(rng.integers(0, 200)))
        for i in range(int(rng.integers(2, 8))):
            moment = start + pd.Timedelta(days=int(45 * i + rng.integers(0, 30)), hours=int(rng.integers(8, 19)))
            future = moment >= pd.Timestamp(CUT)
            for j in range(int(rng.integers(1, 6))):
                desc = f"FUTURE {products[j]}" if future else products[int(rng.integers(0, 40))]
                rows.append((f"{c}{i:03d}", f"S{j}", desc, int(rng.integers(1, 13)), moment, 1.0,
                             12000 + c, ["France", "EIRE", "United Kingdom"][c % 3], line_no))
                line_no += 1
    return pd.DataFrame(rows, columns=["invoice", "stock_code", "description", "quantity", "invoice_date",
                                       "price", "customer_id", "country", "line_no"])


TINY = pt.PretrainConfig(
    vocab_size=300, context_length=64, n_layer=1, n_head=2, d_model=32, batch_size=8,
    train_tokens=4000, warmup_steps=2, eval_every=4, eval_examples=16, learning_rate=1e-2,
    holdout_fraction=0.2,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lines() -> pd.DataFrame:
    return synthetic_lines()


@pytest.fixture(scope="module")
def customers(lines) -> pt.Year1Customers:
    return pt.year1_customers(TINY, lines)


@pytest.fixture(scope="module")
def tokenizer(customers, tmp_path_factory):
    from m6rec_lib.text.tokenizer import train_bpe
    return train_bpe(pt.tokenizer_texts(customers), vocab_size=TINY.vocab_size)


def test_year1_only_and_disjoint_customers(lines, customers):
    assert (lines["invoice_date"] >= CUT).any()  # the synthetic data does have a future
    moments = [inv.moment for _, invs in customers.histories.values() for inv in invs]
    assert max(moments) < pd.Timestamp(CUT)
    assert not set(customers.train) & set(customers.heldout)
    assert set(customers.train) | set(customers.heldout) == set(customers.histories)
    assert len(customers.heldout) == round(0.2 * len(customers.histories))
    assert customers.summary().loc["train", "customers"] == len(customers.train)


def test_tokenizer_text_has_no_future_and_no_heldout_customer(lines, customers):
    text = " ".join(pt.tokenizer_texts(customers))
    assert "FUTURE" not in text
    assert text.count("A customer from") == len(customers.train)
    heldout_only = set(lines[lines.customer_id.isin(customers.heldout) & (lines.invoice_date < CUT)].invoice)
    assert heldout_only and not any(f" {inv} " in text for inv in heldout_only)


def test_examples(customers, tokenizer):
    examples = pt.build_examples(customers, "train", tokenizer, TINY.context_length)
    n_invoices = sum(len(customers.histories[int(c)][1]) for c in customers.train)
    assert len(examples) == n_invoices
    for ex in examples:
        assert 3 <= len(ex) <= TINY.context_length + 1 and ex[0] == tokenizer.bos_id
        assert tokenizer.eos_id not in ex[:-1] and tokenizer.pad_id not in ex
    text = tokenizer.decode(examples[0])
    assert text.startswith("A customer from") and ser.PROMPT in text
    # the first invoice of a customer has an empty history: profile, prompt, basket
    country, invoices = customers.histories[int(customers.train[0])]
    first = "".join(pt.example_pieces(country, invoices, 0, tokenizer, TINY.context_length))
    assert first.startswith(ser.profile_text(country) + ser.PROMPT + " ")
    # a later invoice is written as seen at its own moment, and its basket follows the prompt
    k = len(invoices) - 1
    pieces = pt.example_pieces(country, invoices, k, tokenizer, TINY.context_length)
    parsed = ser.parse_history("".join(pieces))
    assert [d for d, _ in ser.parse_basket(parsed.continuation)] == [d for d, _ in invoices[k].items][:len(ser.parse_basket(parsed.continuation))]
    assert tokenizer.encode_pieces(pieces) == tokenizer.encode("".join(pieces))
    with pytest.raises(ValueError, match="which"):
        pt.build_examples(customers, "test", tokenizer, 64)


def test_batches_and_padding():
    rng = np.random.default_rng(0)
    examples = [np.arange(1, int(n) + 1) for n in rng.integers(5, 60, size=200)]
    batches = pt.make_batches(examples, batch_size=8, token_budget=3000, seed=0, pool=5)
    used = sum(len(examples[i]) - 1 for b in batches for i in b)
    assert 3000 <= used < 3000 + 8 * 60 and all(len(b) == 8 for b in batches)
    x, y = pt.pad_batch([examples[i] for i in batches[0]], pad_id=0)
    assert x.shape == y.shape and torch.equal(x[:, 1:][y[:, :-1] != 0], y[:, :-1][y[:, :-1] != 0])
    # length-sorted pools waste less than random batches
    padded = sum(max(len(examples[i]) for i in b) * len(b) for b in batches)
    assert used / padded > 0.8
    again = pt.make_batches(examples, batch_size=8, token_budget=3000, seed=0, pool=5)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    with pytest.raises(ValueError, match="fewer than one batch"):
        pt.make_batches(examples[:3], 8, 100)


def test_learning_rate_schedule():
    cfg = replace(TINY, learning_rate=1.0, warmup_steps=4, min_lr_ratio=0.1)
    lrs = [pt.learning_rate(s, 20, cfg) for s in range(20)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    assert abs(pt.learning_rate(20, 20, cfg) - 0.1) < 1e-12


def test_config_validation():
    with pytest.raises(ValueError, match="precision"):
        replace(TINY, precision="fp16")
    with pytest.raises(ValueError, match="divisible"):
        replace(TINY, d_model=30, n_head=4)
    assert pt.default_config(smoke=True).n_layer < pt.default_config(smoke=False).n_layer


def test_load_or_pretrain_trains_then_loads(lines, monkeypatch, tmp_path):
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    first = pt.load_or_pretrain(TINY, smoke=True, lines=lines, progress=False)
    assert not first.cached and first.path.is_file() and first.path.parent == tmp_path
    h = first.history
    assert list(h.columns) == ["step", "tokens", "train_loss", "val_loss", "lr", "seconds"]
    assert h["val_loss"].iloc[-1] < h["val_loss"].iloc[0] - 0.5  # it learned something
    assert abs(h["val_loss"].iloc[0] - np.log(TINY.vocab_size)) < 0.5
    m = first.metrics
    assert m["train_tokens"] >= TINY.train_tokens and m["parameters"] == first.model.num_parameters()
    assert np.isclose(m["val_perplexity"], np.exp(m["val_loss"]))

    data = pt.prepare_data(TINY, lines)
    second = pt.load_or_pretrain(TINY, smoke=True, data=data)
    assert second.cached and second.tokenizer.fingerprint() == first.tokenizer.fingerprint()
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert second.metrics == pytest.approx(first.metrics)
    # smoke and full are cached apart, as is another configuration
    assert pt.artifact_path(pt.ARTIFACT_NAME, pt.cache_key(TINY, True)) != pt.artifact_path(
        pt.ARTIFACT_NAME, pt.cache_key(TINY, False))
    with pytest.raises(ValueError, match="another configuration"):
        pt.pretrain(replace(TINY, seed=1), data=data)
    # the prefix helper and scoring work end to end
    prefix = second.encode_history(ser.history_text(lines[lines.customer_id == 12000], "2010-11-30"))
    scores = second.model.score_continuations(prefix[-40:], [second.tokenizer.encode(ser.candidate_text("RED MUG"))])
    assert np.isfinite(np.nansum(scores))


MAIN_CUT = "2011-03-01"  # the synthetic shop ends mid-2011
TINY_MAIN = pt.ContinuedConfig(cut=MAIN_CUT, examples_from=CUT, train_tokens=1500, warmup_steps=2,
                               eval_every=4, eval_examples=16, learning_rate=5e-3)


def test_cut_constants_match_the_splits():
    import inspect

    from m6rec_lib.data import next_basket_split, year_cut_split

    assert pt.MAIN_CUT == inspect.signature(next_basket_split).parameters["val_start"].default
    assert pt.YEAR1_CUT == inspect.signature(year_cut_split).parameters["cut"].default == pt.PretrainConfig().cut
    assert pt.default_continued(False).cut == pt.MAIN_CUT and set(pt.STAGES) == {"year1", "main"}


def test_main_customers_keep_year1_heldout_customers_out(lines, customers):
    main = pt.main_customers(TINY, lines, MAIN_CUT, customers)
    assert set(customers.heldout) <= set(main.heldout) and set(customers.train) <= set(main.train)
    assert not set(main.train) & set(main.heldout)
    before = set(lines.loc[lines.invoice_date < MAIN_CUT, "customer_id"])
    assert set(main.train) | set(main.heldout) == before
    moments = [inv.moment for _, invs in main.histories.values() for inv in invs]
    assert max(moments) < pd.Timestamp(MAIN_CUT) and min(moments) < pd.Timestamp(CUT)
    with pytest.raises(ValueError, match="not come before the year-1 cut"):
        pt.main_customers(TINY, lines, "2010-06-01")


def test_continued_examples_start_at_examples_from(lines, customers, tokenizer):
    main = pt.main_customers(TINY, lines, MAIN_CUT, customers)
    since = pd.Timestamp(CUT)
    which = pt.example_invoices(main, "train", since)
    assert which and all(main.histories[c][1][k].moment >= since for c, k in which)
    examples = pt.build_examples(main, "train", tokenizer, 96, since)
    assert len(examples) == len(which) and max(map(len, examples)) <= 97
    # a history written at a year-2 invoice reaches back into year 1
    text = tokenizer.decode(examples[-1])
    assert "FUTURE" in text
    P = pt.prefix_lengths(examples, tokenizer)
    for e, p in zip(examples[:20], P):
        assert tokenizer.decode(e[:p], skip_special_tokens=True).endswith(ser.PROMPT)
        assert ser.PROMPT not in tokenizer.decode(e[p:])
    # prefix-LM targets: nothing inside the prefix, everything after it
    x, y = pt.pad_batch(examples[:4], 0)
    masked = pt.prefix_targets(y, torch.as_tensor(P[:4]), 0)
    for row, p in enumerate(P[:4]):
        assert (masked[row, :p - 1] == 0).all() and torch.equal(masked[row, p - 1:], y[row, p - 1:])


def test_main_stage_continues_and_leaves_year1_unchanged(lines, monkeypatch, tmp_path):
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    year1 = pt.load_or_pretrain(TINY, smoke=True, lines=lines, progress=False)
    before = {k: v.clone() for k, v in year1.model.state_dict().items()}
    main = pt.load_or_pretrain(TINY, smoke=True, stage="main", continued=TINY_MAIN, lines=lines, progress=False)
    assert main.stage == "main" and not main.cached and main.path.name.startswith(pt.MAIN_ARTIFACT_NAME)
    assert main.tokenizer.fingerprint() == year1.tokenizer.fingerprint() and main.text_cut == MAIN_CUT
    assert main.metrics["base_path"] == year1.path.name and 0 < main.metrics["epoch_share"]
    # the year-1 checkpoint is untouched, and loads as before
    again = pt.load_or_pretrain(TINY, smoke=True, lines=lines)
    assert again.cached and all(torch.equal(before[k], v) for k, v in again.model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in main.model.state_dict().items())
    # the main stage loads from the cache too
    cached = pt.load_or_pretrain(TINY, smoke=True, stage="main", continued=TINY_MAIN, lines=lines)
    assert cached.cached and cached.continued == TINY_MAIN and cached.context_length == TINY.context_length
    assert all(torch.equal(a, b) for a, b in zip(main.model.state_dict().values(), cached.model.state_dict().values()))
    # a longer context and the prefix layout
    wide = replace(TINY_MAIN, context_length=96, layout="prefix", train_tokens=600)
    pre = pt.load_or_pretrain(TINY, smoke=True, stage="main", continued=wide, lines=lines, progress=False)
    assert pre.model.config.layout == "prefix" and pre.config.context_length == 96 == pre.context_length
    assert np.isfinite(pre.metrics["val_loss"])
    with pytest.raises(ValueError, match="stage must be one of"):
        pt.load_or_pretrain(TINY, smoke=True, stage="year2")
    with pytest.raises(ValueError, match="stage='main'"):
        pt.load_or_pretrain(TINY, smoke=True, continued=TINY_MAIN)


def test_per_customer_losses_add_up(lines, customers, tokenizer):
    from m6rec_lib.models.gpt import GPT

    torch.manual_seed(0)
    model = GPT(replace(TINY, vocab_size=tokenizer.vocab_size).gpt_config()).eval()
    examples = pt.build_examples(customers, "heldout", tokenizer, TINY.context_length)
    total, count = pt.example_losses(model, examples)
    assert np.isclose(total.sum() / count.sum(), pt.evaluate_loss(model, examples))
    assert (count == np.array([len(e) - 1 for e in examples])).all()
    owners = np.array([c for c, _ in pt.example_invoices(customers, "heldout")])
    per = pt.customer_losses(total, count, owners)
    assert sorted(per.index) == sorted(customers.heldout)
    c0 = per.index[0]
    assert np.isclose(per.loc[c0], total[owners == c0].sum() / count[owners == c0].sum())


def test_reading_the_results(lines, customers, tokenizer):
    import matplotlib

    matplotlib.use("Agg")
    from m6rec_lib.models.gpt import GPT

    torch.manual_seed(0)
    model = GPT(replace(TINY, vocab_size=tokenizer.vocab_size, context_length=160).gpt_config()).eval()
    train = pt.build_examples(customers, "train", tokenizer, TINY.context_length)
    held = pt.build_examples(customers, "heldout", tokenizer, TINY.context_length)
    owners = np.array([c for c, _ in pt.example_invoices(customers, "heldout")])
    gpt = pt.customer_logliks(model, held, owners)
    uni = pt.unigram_logliks(train, held, owners, tokenizer.vocab_size)
    assert list(gpt.index) == list(uni.index) == sorted(customers.heldout)
    # the unigram model by hand, for one customer
    counts = np.bincount(np.concatenate([e[1:] for e in train]), minlength=tokenizer.vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    mine = [e for e, o in zip(held, owners) if o == uni.index[0]]
    want = np.concatenate([logp[e[1:]] for e in mine]).mean()
    assert np.isclose(uni.iloc[0], want)
    # sampling: one row per customer, names parsed from the text
    out = pt.sample_baskets(model, tokenizer, customers, customers.heldout[:2], max_new_tokens=8, seed=0)
    assert len(out) == 2 and set(out.columns) >= {"history", "generated", "true basket", "names"}
    again = pt.sample_baskets(model, tokenizer, customers, customers.heldout[:2], max_new_tokens=8, seed=0)
    assert list(out["generated"]) == list(again["generated"])
    text = tokenizer.encode("A customer from France. Now buys RED MUG x2.", bos=True, eos=True)
    assert np.isclose(pt.words_per_token(tokenizer, [np.array(text)]), 9 / (len(text) - 2))  # 9 words
    history = pd.DataFrame({"tokens": [0, 10, 20], "train_loss": [np.nan, 3.0, 2.0], "val_loss": [4.0, 3.0, 2.5]})
    assert len(pt.plot_history(history).axes) == 2
    assert pt.plot_line_coverage(pd.Series([3, 40, 500]), {64: pd.Series([3, 10, 10])}).axes


def test_text_gaps_and_reading_table(lines, monkeypatch, tmp_path):
    from m6rec_lib.data import next_basket_split

    split = next_basket_split(lines, val_start="2010-12-15", test_start="2011-01-20")
    old = pt.sold_before(lines, split.items, CUT)
    future = [split.items.ids([c])[0] for c in split.items._id_of.index
              if lines.loc[lines.stock_code == c, "invoice_date"].min() >= pd.Timestamp(CUT)]
    assert not old[0] and not old[future].any() and old.sum() == split.n_items - len(future)
    gaps = pt.text_gaps(lines, split, cut=CUT)
    assert len(gaps) == 3 and 0 < gaps.iloc[0] < 1.5 and 0 <= gaps.iloc[1] <= 1 and 0 <= gaps.iloc[2] <= 1
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    pre = pt.load_or_pretrain(TINY, smoke=True, lines=lines, progress=False)
    data = pt.prepare_data(TINY, lines)
    table = pt.reading_table({"year 1": (data, pre)})
    assert table.loc["year 1", "tokens read"] == pre.metrics["train_tokens"]
    assert table.loc["year 1", "tokens in one pass"] == data.epoch_tokens
