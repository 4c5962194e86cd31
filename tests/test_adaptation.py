"""Soft prompts, option tuning, adapters and the wrapper that runs a frozen GPT with them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from m6rec_lib import adaptation as ad
from m6rec_lib.models.gpt import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


CFG = GPTConfig(vocab_size=50, context_length=40, n_layer=2, n_head=2, d_model=16)


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(CFG)
    # move away from the initialisation so LayerNorms and biases matter
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def make_batch(seed: int = 0, labels: bool = True) -> ad.PairBatch:
    rng = np.random.default_rng(seed)
    histories = [[1] + rng.integers(4, 50, size=n).tolist() for n in (5, 9, 3)]
    cands = [rng.integers(4, 50, size=n).tolist() for n in (2, 4, 1, 3, 2)]
    group = torch.tensor([0, 0, 1, 2, 2])
    h, hl = ad.PairBatch.pad(histories)
    c, cl = ad.PairBatch.pad(cands)
    y = torch.tensor([1, 0, 1, 0, 1]) if labels else None
    return ad.PairBatch(h, hl, c, cl, group, y)


def reference_final_hidden(gpt: GPT, tokens: list[int], prompt: torch.Tensor | None,
                           position: str = "suffix", n_history: int = 0, adapters=None) -> torch.Tensor:
    """The plain GPT on one concatenated pair, the prompt vectors inserted at their positions: (d,).

    suffix: [tokens][prompt], read at the end; infix: [history][prompt][candidate], read at the end.
    """
    idx = torch.tensor([tokens])
    x = gpt.embed(idx)
    if prompt is not None:
        cut = len(tokens) if position == "suffix" else n_history
        pos = torch.arange(cut, cut + prompt.shape[0])
        p = (prompt + gpt.pos_emb(pos))[None]
        rest = gpt.embed(idx[:, cut:], positions=cut + prompt.shape[0])
        x = torch.cat([x[:, :cut], p, rest], dim=1)
    for i, block in enumerate(gpt.blocks):
        if adapters is None:
            x = block(x)
        else:
            x = x + block.attn(block.ln_1(x))
            h = block.ln_2(x)
            x = x + block.mlp(h) + adapters[str(i)](h)
    return gpt.ln_f(x)[0, -1]


def test_no_prompt_matches_the_plain_gpt():
    gpt = tiny_gpt()
    model = ad.AdaptedGPT(gpt, ad.PromptTuningHead(CFG.d_model))
    batch = make_batch()
    with torch.no_grad():
        h = model.final_hidden(batch)
        ref = torch.stack([reference_final_hidden(gpt, t, None) for t in batch.concatenated()])
        # and the model's own hidden_states on the concatenated text
        states = torch.stack([gpt.hidden_states(torch.tensor([t]))[-1][0, -1] for t in batch.concatenated()])
    torch.testing.assert_close(h, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, states, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", ["suffix", "infix"])
@pytest.mark.parametrize("method", ad.METHODS)
def test_every_method_matches_a_concatenated_forward(method, position):
    gpt = tiny_gpt()
    model = ad.build_adapted(gpt, method, n_prompt=4, adapter_rank=3, prompt_position=position, seed=1)
    batch = make_batch()
    adapters = None
    with torch.no_grad():
        if method == "option + adapters":  # adapters start at zero; make them matter
            for a in model.adapters.values():
                a.up.weight.normal_(0, 0.1)
            adapters = model.adapters
        h = model.final_hidden(batch)
        ref = torch.stack([
            reference_final_hidden(model.backbone, t, model.prompt_vectors(), position,
                                   int(batch.history_len[batch.group[n]]), adapters)
            for n, t in enumerate(batch.concatenated())])
    torch.testing.assert_close(h, ref, atol=1e-5, rtol=1e-5)


def test_adapters_start_as_the_identity():
    gpt = tiny_gpt()
    plain = ad.build_adapted(gpt, "option tuning", n_prompt=4, seed=3)
    adapted = ad.build_adapted(gpt, "option + adapters", n_prompt=4, adapter_rank=2, seed=3)
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(plain(batch), adapted(batch))
    scales = [a.scale.item() for a in adapted.adapters.values()]
    assert scales == [1.0] * CFG.n_layer


def test_option_vectors_are_the_classifier_weights():
    gpt = tiny_gpt()
    model = ad.build_adapted(gpt, "option tuning", n_prompt=5, seed=0)
    head = model.head
    assert head.weight is head.options                                  # one tensor, two roles
    assert torch.equal(model.prompt_vectors()[-2:], head.options)       # the last C prompt inputs
    batch = make_batch()
    h = model.final_hidden(batch)
    torch.testing.assert_close(model(batch), h @ head.options.T)        # and the classifier
    # the options change the input too: a perturbation moves the final hidden state
    with torch.no_grad():  # (a constant shift would be invisible: every LayerNorm removes the mean)
        head.options.add_(0.5 * torch.randn_like(head.options))
    assert not torch.allclose(model.final_hidden(batch), h)
    # no separate head parameters exist
    assert ad.count_parameters(head) == 2 * CFG.d_model


@pytest.mark.parametrize("position", ["suffix", "infix"])
def test_gradient_through_frozen_text_equals_full_gradient(position):
    gpt = tiny_gpt()
    model = ad.build_adapted(gpt, "option tuning", n_prompt=4, prompt_position=position, seed=0)
    assert model.text_is_frozen
    batch = make_batch()
    model.loss(batch).backward()
    fast = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    # reference: the same loss through the concatenated forward, everything with gradients
    model.zero_grad()
    logits = []
    for n, t in enumerate(batch.concatenated()):
        h = reference_final_hidden(model.backbone, t, model.prompt_vectors(), position,
                                   int(batch.history_len[batch.group[n]]))
        logits.append(model.head(h[None])[0])
    torch.nn.functional.cross_entropy(torch.stack(logits), batch.labels).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, fast[n], atol=1e-5, rtol=1e-4)


def test_frozen_parameters_stay_frozen():
    gpt = tiny_gpt()
    before = {k: v.clone() for k, v in gpt.state_dict().items()}
    model = ad.build_adapted(gpt, "option + adapters", n_prompt=4, adapter_rank=2, seed=0)
    assert all(not p.requires_grad for p in gpt.parameters())
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    prompt_before = model.prompt.vectors.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        model.loss(make_batch()).backward()
        opt.step()
    assert all(p.grad is None for p in gpt.parameters())
    for k, v in gpt.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(model.prompt.vectors, prompt_before)      # the task parameters did move
    # fine-tuning works on a copy: the shared backbone is still untouched afterwards
    ft = ad.build_adapted(gpt, "fine-tuning")
    assert ft.backbone is not gpt and all(p.requires_grad for p in ft.backbone.parameters())
    opt = torch.optim.Adam(ft.parameters(), lr=0.05)
    ft.loss(make_batch()).backward()
    opt.step()
    for k, v in gpt.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_parameter_counts_match_the_formulas():
    gpt = tiny_gpt()
    d, L, P, r, C = CFG.d_model, CFG.n_layer, 6, 3, 2
    models = {m: ad.build_adapted(gpt, m, n_prompt=P, adapter_rank=r) for m in ad.METHODS}
    n_backbone = ad.count_parameters(gpt)  # frozen now: num_parameters() counts trainable ones
    table = ad.parameter_table(models, n_backbone)
    assert table.loc["fine-tuning", "trainable"] == n_backbone + ad.linear_head_parameters_formula(d, C)
    assert table.loc["prompt tuning", "trainable"] == (
        ad.soft_prompt_parameters_formula(P, d) + ad.linear_head_parameters_formula(d, C))
    assert table.loc["option tuning", "trainable"] == ad.soft_prompt_parameters_formula(P, d)  # P - C free + C options
    assert table.loc["option + adapters", "trainable"] == (
        P * d + L * ad.adapter_parameters_formula(d, r))
    assert ad.count_parameters(ad.LowRankAdapter(d, r)) == 2 * d * r + r + d + 1
    np.testing.assert_allclose(table["% of backbone"], 100 * table["trainable"] / n_backbone)


def test_two_tasks_share_one_backbone_and_save_only_their_parameters():
    gpt = tiny_gpt()
    a = ad.build_adapted(gpt, "option + adapters", n_prompt=4, adapter_rank=2, seed=0)
    b = ad.build_adapted(gpt, "option + adapters", n_prompt=4, adapter_rank=2, seed=1)
    assert a.backbone is b.backbone
    state = ad.task_state_dict(a)
    assert not any(k.startswith("backbone.") for k in state)
    assert sum(v.numel() for v in state.values()) == ad.count_parameters(a, trainable_only=True)
    with torch.no_grad():
        for p in a.parameters():
            if p.requires_grad:
                p.add_(0.1)
    state = ad.task_state_dict(a)
    ad.load_task_state_dict(b, state)
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(a(batch), b(batch))
    with pytest.raises(ValueError, match="lacks"):
        ad.load_task_state_dict(ad.build_adapted(gpt, "prompt tuning", n_prompt=4), state)


def test_errors_say_what_to_do():
    gpt = tiny_gpt()
    with pytest.raises(ValueError, match="rank"):
        ad.LowRankAdapter(16, 0)
    with pytest.raises(ValueError, match="method"):
        ad.build_adapted(gpt, "lora")
    with pytest.raises(ValueError, match="n_classes"):
        ad.OptionTuningHead(16, 1)
    long_hist, hl = ad.PairBatch.pad([[1] + [5] * 35])
    c, cl = ad.PairBatch.pad([[6, 7, 8]])
    batch = ad.PairBatch(long_hist, hl, c, cl, torch.tensor([0]))
    with pytest.raises(ValueError, match="max_history_tokens"):
        ad.build_adapted(gpt, "prompt tuning", n_prompt=4)(batch)
    with pytest.raises(ValueError, match="group"):
        ad.PairBatch(long_hist, hl, c, cl, torch.tensor([1]))


def test_training_fits_a_toy_task_and_keeps_the_best_round():
    gpt = tiny_gpt()
    r = np.random.default_rng(0)
    hist = [[1] + r.integers(4, 50, size=4).tolist() for _ in range(16)]
    labels = r.integers(0, 2, size=32)
    cands = [(r.integers(4, 20, size=3) if y else r.integers(30, 50, size=3)).tolist() for y in labels]
    h, hl = ad.PairBatch.pad(hist)
    c, cl = ad.PairBatch.pad(cands)
    batch = ad.PairBatch(h, hl, c, cl, torch.arange(32) // 2, torch.as_tensor(labels))
    from m6rec_lib.metrics import auc

    model = ad.build_adapted(gpt, "option + adapters", n_prompt=4, adapter_rank=2)
    cfg = ad.TuningConfig(lr=1e-2, rounds=5, steps_per_round=15, patience=5, grad_clip=None)
    history = ad.train_adapted(
        model, lambda rnd: iter([batch] * cfg.steps_per_round),
        lambda: auc(labels, ad.predict_scores(model, [batch])), cfg, progress=False)
    assert list(history.columns) == ["round", "step", "pairs", "train_loss", "val_auc", "seconds"]
    assert history["train_loss"].iloc[-1] < 0.8 * history["train_loss"].iloc[1]
    assert history["val_auc"].max() > 0.9
    final = auc(labels, ad.predict_scores(model, [batch]))   # the best round's parameters are back
    assert final == pytest.approx(history.attrs["best_val_auc"])


def test_task_models_are_cached_by_key(tmp_path, monkeypatch):
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    gpt = tiny_gpt()
    batch = make_batch()
    calls = []

    def train(model):
        calls.append(1)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.05)
        h = pd.DataFrame({"round": [0, 1], "val_auc": [0.5, 0.6]})
        h.attrs["best_round"] = 1
        return h

    key = {"method": "option tuning", "n": 1}
    a, hist, cached = ad.load_or_train_task_model("toy-task", key, ad.build_adapted(gpt, "option tuning", n_prompt=4), train)
    assert not cached and calls == [1]
    b, hist2, cached = ad.load_or_train_task_model("toy-task", key, ad.build_adapted(gpt, "option tuning", n_prompt=4), train)
    assert cached and calls == [1] and hist2.attrs["best_round"] == 1
    pd.testing.assert_frame_equal(hist, hist2)
    with torch.no_grad():
        torch.testing.assert_close(a(batch), b(batch))
    stored = list(tmp_path.glob("toy-task-*.pt"))
    assert len(stored) == 1 and stored[0].stat().st_size < 50_000     # the task, not the backbone


def test_parameter_map_diagram_draws_every_method():
    from matplotlib.figure import Figure

    from m6rec_lib.diagrams.adaptation import parameter_map

    fig = parameter_map({"fine-tuning": 100.0, "option + adapters": 1.02})
    assert isinstance(fig, Figure)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert all(m in texts for m in ("fine-tuning", "prompt tuning", "option tuning", "option + adapters", "1.02%"))
    with pytest.raises(ValueError, match="unknown methods"):
        parameter_map({"lora": 1.0})


def test_course_tuning_tries_the_grid_rate_where_it_matters():
    for method, rates in ad.COURSE_LEARNING_RATE_GRID.items():
        assert len(rates) == 2 and method in ad.METHODS
    ft = ad.course_tuning("fine-tuning", smoke=False, lr=1e-4)
    assert ft.backbone_lr == 1e-4 and ft.lr == ad.COURSE_LEARNING_RATES["fine-tuning"]   # the head keeps its rate
    pt = ad.course_tuning("prompt tuning", smoke=True, lr=1e-2)
    assert pt.lr == 1e-2 and pt.backbone_lr == 3e-4 and pt.rounds == 2
    assert ad.course_tuning("option tuning", smoke=False).lr == ad.COURSE_LEARNING_RATES["option tuning"]
    with pytest.raises(ValueError, match="lr"):
        ad.course_tuning("option tuning", smoke=False, lr=0.0)


def test_convergence_plot_reads_training_histories():
    from m6rec_lib.diagrams.adaptation import convergence

    h = pd.DataFrame({"pairs": [0, 100, 200], "val_auc": [0.5, 0.55, 0.53], "train_loss": [np.nan, 0.69, 0.66]})
    fig = convergence({"option tuning": h, "prompt tuning": h})
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) == 2   # one line per method (and 0.5 on the left)
    with pytest.raises(ValueError, match="val_auc"):
        convergence({"x": h.drop(columns="val_auc")})


def test_a_prefix_lm_backbone_is_refused():
    gpt = GPT(GPTConfig(vocab_size=50, context_length=64, n_layer=1, n_head=2, d_model=16, layout="prefix"))
    with pytest.raises(ValueError, match="causal"):
        ad.build_adapted(gpt, "option tuning")
