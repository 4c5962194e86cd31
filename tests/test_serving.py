"""m6rec_lib.serving: late interaction, early exit, layer sharing, pruning, int8, distillation, latency."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from m6rec_lib import serving as sv
from m6rec_lib.models.gpt import GPT, GPTConfig
from m6rec_lib.text import serializer as ser
from m6rec_lib.text.tokenizer import train_bpe

PRODUCTS = ["JUMBO BAG RED RETROSPOT", "REGENCY CAKESTAND 3 TIER", "PAPER NAPKINS", "WHITE HANGING HEART",
            "LUNCH BAG PINK", "PARTY BUNTING", "ALARM CLOCK BAKELIKE", "SET OF 3 CAKE TINS"]


def _lines() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for cust, country in ((1, "France"), (2, "United Kingdom"), (3, "EIRE")):
        for inv in range(3):
            moment = pd.Timestamp("2011-01-03 10:00") + pd.Timedelta(days=int(11 * inv + 5 * cust), hours=cust)
            for d in rng.choice(PRODUCTS, size=2 + inv, replace=False):
                rows.append({"customer_id": cust, "invoice": f"{cust}-{inv}", "invoice_date": moment,
                             "description": d, "quantity": int(rng.integers(1, 13)), "country": country})
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread is as fast, and far faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world():
    lines = _lines()
    now = pd.Timestamp("2011-03-01 09:00")
    histories = {c: ser.history_text(g, now) for c, g in lines.groupby("customer_id")}
    texts = [h.text + ser.candidate_text(p) for h in histories.values() for p in PRODUCTS] * 3
    tokenizer = train_bpe(texts, vocab_size=320, min_frequency=1)
    ids = {c: tokenizer.encode(h.text, bos=True) for c, h in histories.items()}
    segments = {c: sv.segments_from_tokens(i, tokenizer) for c, i in ids.items()}
    cands = [tuple(tokenizer.encode(ser.candidate_text(p))) for p in PRODUCTS]
    return tokenizer, ids, segments, cands


def _gpt(vocab: int, n_layer: int = 3, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, context_length=256, n_layer=n_layer, n_head=2, d_model=32)).eval()


def _batch(world, labels: bool = False) -> sv.RequestBatch:
    _, _, segments, cands = world
    hist = [segments[c] for c in (1, 2, 3)]
    group = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pick = [0, 1, 2, 3, 4, 5, 6, 7, 0]
    y = torch.tensor([1, 0, 1, 0, 1, 0, 0, 1, 1], dtype=torch.float32) if labels else None
    return sv.RequestBatch(hist, [cands[i] for i in pick], group, y)


# ------------------------------------------------------------------------------ latency

def test_measure_latency_warms_up_and_repeats():
    calls = []
    lat = sv.measure_latency(lambda: calls.append(1), warmup=4, repeats=25)
    assert len(calls) == 29 and len(lat.samples_ms) == 25
    assert 0 <= lat.p50_ms <= lat.p95_ms
    seen = []
    lat = sv.measure_latency(seen.append, inputs=[1, 2, 3], warmup=2, repeats=5)
    assert seen == [1, 2, 1, 2, 3, 1, 2] and len(lat.samples_ms) == 5
    with pytest.raises(ValueError):
        sv.measure_latency(lambda: None, repeats=0)


def test_compare_latency_interleaves_calls_in_stream_order():
    seen = {"a": [], "b": []}
    lat = sv.compare_latency({"a": seen["a"].append, "b": seen["b"].append}, [1, 2, 3], warmup=1)
    assert seen["a"] == [1, 1, 2, 3] and seen["b"] == [1, 1, 2, 3]
    assert set(lat) == {"a", "b"} and all(len(v.samples_ms) == 3 for v in lat.values())
    with pytest.raises(ValueError):
        sv.compare_latency({}, [1])


def test_compare_latency_records_work_per_call_and_refuses_unknown_counters():
    total = {"n": 0}

    def f(x):
        total["n"] += x

    lat = sv.compare_latency({"f": f, "g": lambda x: None}, [1, 2, 5], warmup=0,
                             counters={"f": lambda: total["n"]})
    assert lat["f"].work.tolist() == [1, 2, 5] and lat["g"].work is None
    assert lat["f"].mean_work == pytest.approx(8 / 3) and "work per call" in lat["f"].as_dict()
    with pytest.raises(KeyError, match="not timed"):
        sv.compare_latency({"f": f}, [1], counters={"h": lambda: 0})


def test_latency_difference_is_paired_over_requests():
    rng = np.random.default_rng(0)
    base = rng.uniform(5, 50, 200)                      # requests differ a lot from each other
    lat = {"slow": sv.Latency(base + 2.0), "fast": sv.Latency(base + rng.normal(0, 0.1, 200))}
    d = sv.latency_difference(lat, "fast", "slow")
    assert d.outcome == "a" and d.low > 0 and d.n_users == 200 and d.metric == "ms saved per request"
    assert d.verdict == "fast beats slow" and d.diff == pytest.approx(d.b - d.a)
    assert d.diff == pytest.approx(2.0, abs=0.05) and d.high - d.low < 0.1   # pairing removes the spread
    same = sv.latency_difference({"a": sv.Latency(base), "b": sv.Latency(base[::-1].copy())}, "a", "b")
    assert same.outcome == "none"
    with pytest.raises(ValueError, match="same requests"):
        sv.latency_difference({"a": sv.Latency(base), "b": sv.Latency(base[:10])}, "a", "b")
    with pytest.raises(KeyError):
        sv.latency_difference(lat, "fast", "nope")


def test_the_package_keeps_one_module_per_mechanism():
    import importlib

    for module, name in [("latency", "measure_latency"), ("segments", "SegmentCache"), ("scorer", "SegmentScorer"),
                         ("early_exit", "early_exit_weights"), ("sharing", "share_layers"),
                         ("pruning", "magnitude_masks"), ("quantization", "quantize_int8"),
                         ("distillation", "distillation_loss"), ("size", "size_on_disk"),
                         ("report", "variant_table"), ("traffic", "replay_traffic")]:
        assert getattr(importlib.import_module(f"m6rec_lib.serving.{module}"), name) is getattr(sv, name)
    assert all(hasattr(sv, n) for n in sv.__all__)


# ------------------------------------------------------------------------------ segments

def test_segments_tokenize_back_to_the_history(world):
    tokenizer, ids, segments, _ = world
    for c, segs in segments.items():
        assert [t for s in segs for t in s.tokens] == ids[c]
        roles = [sv.ROLES[s.role] for s in segs]
        assert roles[0] == "profile" and roles[-1] == "prompt"
        assert roles[1:-1] == ["time", "lines"] * 3  # three invoices: time words, then lines
        assert [s.recency for s in segs[1:-1]] == [2, 2, 1, 1, 0, 0]
        assert tokenizer.decode(segs[1].tokens).endswith("bought")


def test_segments_reject_text_in_another_format(world):
    tokenizer = world[0]
    ids = tokenizer.encode("A customer from France. Now buys", bos=True)
    segs = sv.segments_from_tokens(ids, tokenizer)  # no invoice: profile + prompt
    assert [sv.ROLES[s.role] for s in segs] == ["profile", "prompt"]


# ------------------------------------------------------------------------------ the scorer

def test_full_model_equals_the_plain_gpt_on_the_concatenated_text(world):
    tokenizer, ids, _, cands = world
    gpt = _gpt(tokenizer.vocab_size)
    model = sv.SegmentScorer(gpt, split=0).eval()
    batch = _batch(world)
    with torch.no_grad():
        got = model(batch)[:, 0]
        for n in range(len(batch)):
            hist = [t for s in batch.histories[int(batch.group[n])] for t in s.tokens]
            x = gpt.embed(torch.tensor([hist + list(batch.candidates[n])]))
            for block in gpt.blocks:
                x = block(x)
            want = model.heads["3"](x[:, -1])
            torch.testing.assert_close(got[n], want[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("split", [0, 1, 2])
def test_a_batch_scores_like_its_requests_one_by_one(world, split):
    tokenizer = world[0]
    torch.manual_seed(1)
    model = sv.SegmentScorer(_gpt(tokenizer.vocab_size), split=split, exits=[3]).eval()
    with torch.no_grad():  # non-zero segment embeddings, so they matter
        if split:
            model.role_emb.weight.normal_(0, 0.1)
            model.recency_emb.weight.normal_(0, 0.1)
    batch = _batch(world)
    together = model.score(batch)
    for g, hist in enumerate(batch.histories):
        rows = (batch.group == g).nonzero().ravel()
        alone = model.score(sv.RequestBatch.single(hist, [batch.candidates[i] for i in rows]))
        torch.testing.assert_close(together[rows], alone, atol=1e-5, rtol=1e-5)


def test_late_interaction_lower_layers_see_one_segment_only(world):
    tokenizer, _, segments, cands = world
    model = sv.SegmentScorer(_gpt(tokenizer.vocab_size), split=2).eval()
    seg = segments[1][2].tokens
    with torch.no_grad():
        alone = model.encode_segments([seg])[0]
        with_others = model.encode_segments([segments[2][0].tokens, seg, cands[0]])[1]
    torch.testing.assert_close(alone, with_others, atol=1e-5, rtol=1e-5)
    assert alone.shape == (len(seg), 32)  # the added <bos> is dropped


def test_the_cache_gives_the_same_scores_and_counts_hits(world):
    tokenizer = world[0]
    model = sv.SegmentScorer(_gpt(tokenizer.vocab_size), split=2).eval()
    batch = _batch(world)
    cache = sv.SegmentCache()
    first = model.score(batch, cache=cache)
    n_segments = sum(len(h) for h in batch.histories) + len(batch)
    assert cache.hits + cache.misses == n_segments
    # shared profile-free pieces: the prompt (3 customers) and a repeated candidate are hits already
    assert cache.hits >= 2 + 1
    cache.reset_stats()
    second = model.score(batch, cache=cache)
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, model.score(batch))  # no cache: the same numbers
    assert cache.hit_rate == 1.0 and cache.token_hit_rate == 1.0
    small = sv.SegmentCache(max_entries=3)
    model.score(batch, cache=small)
    assert len(small) == 3


def test_work_counts_block_positions_of_each_path(world):
    tokenizer = world[0]
    batch = _batch(world)
    n_hist = sum(len(s) for h in batch.histories for s in h)
    n_cand = sum(len(c) for c in batch.candidates)
    full = sv.SegmentScorer(_gpt(tokenizer.vocab_size), split=0, exits=[1, 2, 3]).eval()
    full.score(batch)
    assert (full.work.lower, full.work.upper, full.work.requests) == (0, 3 * (n_hist + n_cand), 3)
    full.work.reset()
    full.score(batch, layer=1)                                   # early exit after one layer
    assert full.work.total == n_hist + n_cand
    late = sv.SegmentScorer(_gpt(tokenizer.vocab_size), split=2).eval()
    cache = sv.SegmentCache()
    late.score(batch, cache=cache)
    assert late.work.upper == 1 * (n_hist + n_cand)
    # lower layers: each distinct segment once, with the <bos> added to all but the profile
    distinct = {s.tokens for h in batch.histories for s in h} | set(batch.candidates)
    assert late.work.lower == 2 * sum(len(t) + (t[0] != 1) for t in distinct)
    late.work.reset()
    late.score(batch, cache=cache)                               # everything cached now
    assert late.work.lower == 0 and late.work.upper == n_hist + n_cand


def test_early_exit_columns_and_max_layer(world):
    tokenizer = world[0]
    model = sv.SegmentScorer(_gpt(tokenizer.vocab_size), split=0, exits=[1, 2, 3]).eval()
    batch = _batch(world)
    with torch.no_grad():
        full = model(batch)
        two = model(batch, max_layer=2)
    assert full.shape == (len(batch), 3) and two.shape == (len(batch), 2)
    torch.testing.assert_close(full[:, :2], two)
    w = sv.early_exit_weights([1, 2, 3])
    torch.testing.assert_close(w, torch.tensor([1 / 6, 2 / 6, 3 / 6]))


def test_bad_split_and_exits_are_refused(world):
    gpt = _gpt(world[0].vocab_size)
    prefix = GPT(GPTConfig(vocab_size=world[0].vocab_size, context_length=64, n_layer=2, n_head=2, d_model=16,
                           layout="prefix"))
    with pytest.raises(ValueError, match="causal"):
        sv.SegmentScorer(prefix)
    with pytest.raises(ValueError, match="split"):
        sv.SegmentScorer(gpt, split=3)
    with pytest.raises(ValueError, match="exits"):
        sv.SegmentScorer(gpt, split=2, exits=[1, 3])


def test_training_lowers_the_loss(world):
    tokenizer = world[0]
    model = sv.SegmentScorer(_gpt(tokenizer.vocab_size, n_layer=2), split=1, exits=[2])
    batch = _batch(world, labels=True)
    history = sv.train_scorer(model, iter([batch] * 20), steps=20, lr=3e-3, head_lr=1e-2, progress=False)
    assert history["loss"].iloc[-5:].mean() < history["loss"].iloc[:5].mean() - 0.1


# ------------------------------------------------------------------------------ smaller models

def test_layer_sharing_keeps_one_block():
    gpt = _gpt(300, n_layer=4)
    shared = sv.share_layers(gpt)
    assert all(b is shared.blocks[0] for b in shared.blocks)
    per_block = sum(p.numel() for p in gpt.blocks[0].parameters())
    assert sv.count_parameters(gpt) - sv.count_parameters(shared) == 3 * per_block
    assert sv.size_on_disk(shared) < sv.size_on_disk(gpt)
    torch.testing.assert_close(shared.blocks[3].mlp.fc.weight, gpt.blocks[2].mlp.fc.weight)


def test_magnitude_pruning_drops_the_smallest_weights(tmp_path):
    gpt = _gpt(300, n_layer=2)
    model = sv.SegmentScorer(gpt, split=0)
    masks = sv.magnitude_masks(model, 0.8, include_embeddings=True)
    assert "backbone.tok_emb.weight" in masks and "backbone.blocks.0.attn.qkv.weight" in masks
    assert "backbone.tok_emb.weight" not in sv.magnitude_masks(model, 0.8)
    named = dict(model.named_parameters())
    for name, m in masks.items():
        assert abs(m.float().mean().item() - 0.2) < 0.01
        w = named[name].detach().abs()
        assert w[~m].max() <= w[m].min()  # every dropped weight is smaller than every kept one
    sv.apply_masks(model, masks)
    assert sv.sparsity(model, masks)["zeros among pruned matrices"] >= 0.79
    state = model.state_dict()
    buf = io.BytesIO()
    n_bytes = sv.save_pruned(state, masks, buf)
    buf.seek(0)
    back = sv.load_pruned(buf)
    assert set(back) == set(state)
    for k in state:
        torch.testing.assert_close(back[k], state[k])
    assert n_bytes < 0.45 * sv.size_on_disk(state)
    assert sv.save_pruned(state, masks, tmp_path / "p.pt") == (tmp_path / "p.pt").stat().st_size


def test_int8_rows_error_bound_and_quantized_scorer(world):
    w = torch.randn(16, 40)
    q, scale = sv.quantize_rows(w)
    assert q.dtype == torch.int8
    assert ((sv.dequantize_rows(q, scale) - w).abs() <= scale[:, None] / 2 + 1e-7).all()
    tokenizer = world[0]
    model = sv.SegmentScorer(_gpt(tokenizer.vocab_size), split=0).eval()
    quant = sv.quantize_int8(model)
    batch = _batch(world)
    a, b = model.score(batch), quant.score(batch)
    assert (a - b).abs().max() < 0.05 * a.abs().max() + 1e-3
    assert sv.size_on_disk(quant) < 0.4 * sv.size_on_disk(model)
    assert isinstance(model.backbone.tok_emb, torch.nn.Embedding)  # the original is untouched


def test_distillation_loss_gradient_matches_the_formula():
    torch.manual_seed(0)
    s = torch.randn(7, requires_grad=True)
    t, y = torch.randn(7), torch.randint(0, 2, (7,)).float()
    alpha, T = 0.3, 2.5
    sv.distillation_loss(s, t, y, alpha, T).backward()
    sig = torch.sigmoid
    want = (alpha * T * (sig(s / T) - sig(t / T)) + (1 - alpha) * (sig(s) - y)) / 7
    torch.testing.assert_close(s.grad, want.detach())
    hard = torch.nn.functional.binary_cross_entropy_with_logits(s, y)
    torch.testing.assert_close(sv.distillation_loss(s, t, y, alpha=0.0), hard)
    with pytest.raises(ValueError):
        sv.distillation_loss(s, t, y, alpha=1.5)


def test_student_copies_the_first_blocks():
    teacher = _gpt(300, n_layer=4)
    student = sv.make_student(teacher, 2)
    assert len(student.blocks) == 2
    torch.testing.assert_close(student.blocks[1].attn.qkv.weight, teacher.blocks[1].attn.qkv.weight)
    torch.testing.assert_close(student.tok_emb.weight, teacher.tok_emb.weight)
    with pytest.raises(ValueError):
        sv.make_student(teacher, 5)


def test_late_interaction_diagram_draws_and_checks_its_split():
    from matplotlib.figure import Figure

    from m6rec_lib.diagrams.serving import late_interaction

    fig = late_interaction(split=3, n_layers=4)
    assert isinstance(fig, Figure) and len(fig.axes[0].patches) > 10
    with pytest.raises(ValueError, match="split"):
        late_interaction(split=4, n_layers=4)


def test_variant_table_compares_every_variant_with_the_reference():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 4)
    labels = np.tile([1, 1, 0, 0], 60)
    good = labels + rng.normal(0, 0.8, len(labels))
    variants = {"full": sv.Variant(4, 1000, 4000, good),
                "copy": sv.Variant(4, 1000, 1000, good + rng.normal(0, 1e-3, len(labels))),
                "noise": sv.Variant(1, 250, 1000, rng.normal(0, 1, len(labels)))}
    ms = rng.uniform(5, 20, 50)
    latency = {"full": sv.Latency(ms + 4, np.full(50, 400.0)), "copy": sv.Latency(ms + rng.normal(0, 0.01, 50)),
               "noise": sv.Latency(ms + 1)}
    table, comparisons = sv.variant_table(variants, latency, labels, groups, n_boot=300)
    assert list(table.index) == ["full", "copy", "noise"] and set(comparisons) == {"copy", "noise"}
    assert table.loc["noise", "AUC vs full"] == "worse" and table.loc["copy", "AUC vs full"] == "no measurable difference"
    assert table.loc["copy", "time vs full"] == "faster" and table.loc["full", "work per request"] == 400.0
    assert np.isnan(table.loc["copy", "work per request"]) and table.loc["full", "size MB"] == 0.004
    assert comparisons["noise"]["auc"].outcome == "b" and comparisons["noise"]["latency"].outcome == "a"
    assert len(sv.plot_latency_quality(table).axes) == 1
    shown = sv.readable_table(table)
    assert shown.loc["full", "AUC - full [95%]"] == "" and shown.loc["noise", "AUC vs full"] == "worse"
    assert shown.loc["full", "work / request"] == "400" and shown.loc["copy", "AUC [95%]"].count("[") == 1
    with pytest.raises(KeyError, match="reference"):
        sv.variant_table(variants, latency, labels, groups, reference="teacher")


def test_replayed_traffic_is_in_time_order_and_writes_histories_like_the_task():
    from m6rec_lib.click_task import history_token_ids
    from m6rec_lib.data import next_basket_split
    from m6rec_lib.data.toy import make_toy_world

    lines = make_toy_world(n_users=40, n_items=25, baskets_per_user=6, draws_per_basket=4, seed=0).lines
    split = next_basket_split(lines)
    texts = [ser.serialize_history(g, g["invoice_date"].max() + pd.Timedelta(days=1)) for _, g in lines.groupby("customer_id")]
    tok = train_bpe(texts * 3, vocab_size=500)
    items = sv.catalogue_tokens(split, tok, max_tokens=6)
    assert items[0] == () and len(items) == split.n_items + 1 and all(0 < len(t) <= 6 for t in items[1:])
    start = pd.Timestamp(split.info["test_start"])
    customers = lines.loc[lines["invoice_date"] >= start, "customer_id"].unique()[:5]
    reqs = sv.replay_traffic(lines, split, tok, customers, items, start=start, max_history_tokens=120,
                             visits=2, views=3, candidates=7, seed=1)
    assert len(reqs) % 3 == 0 and all(len(r) == 7 and len(r.histories) == 1 for r in reqs)
    assert all(r.candidates[0] in items for r in reqs)
    first = reqs[0].histories[0]
    assert reqs[1].histories[0] is first and reqs[2].histories[0] is first        # three views of one visit
    visit = lines[lines["customer_id"].isin(customers) & (lines["invoice_date"] >= start)]["invoice_date"].min()
    who = lines.loc[(lines["invoice_date"] == visit) & lines["customer_id"].isin(customers), "customer_id"].min()
    want, _ = history_token_ids(lines, [who], [visit], tok, 120, dict(zip(split.items.codes[1:], split.items.texts[1:])))
    assert [t for s in first for t in s.tokens] == want[0].tolist()
    again = sv.replay_traffic(lines, split, tok, customers, items, start=start, max_history_tokens=120,
                              visits=2, views=3, candidates=7, seed=1)
    assert [r.candidates for r in again] == [r.candidates for r in reqs]              # seeded
    with pytest.raises(ValueError, match="candidates"):
        sv.replay_traffic(lines, split, tok, customers, items, start=start, max_history_tokens=120, candidates=10**6)
