"""The GPT: parameter count, shapes, the causal property, caches, scoring, generation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from m6rec_lib.models.gpt import GPT, GPTConfig, LayerCache, count_parameters_formula

TINY = GPTConfig(vocab_size=50, context_length=16, n_layer=2, n_head=2, d_model=16)


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(config: GPTConfig = TINY, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(config).eval()


@pytest.mark.parametrize("config", [
    TINY,
    GPTConfig(vocab_size=3000, context_length=256, n_layer=4, n_head=4, d_model=128),
    GPTConfig(vocab_size=97, context_length=33, n_layer=3, n_head=3, d_model=24, mlp_ratio=2),
])
def test_parameter_count_matches_the_closed_form(config):
    model = GPT(config)
    assert model.num_parameters() == count_parameters_formula(config)
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()  # tied


def test_shapes():
    model = _model()
    idx = torch.randint(0, 50, (3, 10))
    assert model(idx).shape == (3, 10, 50)
    assert model.embed(idx).shape == (3, 10, 16)
    states = model.hidden_states(idx)
    assert len(states) == TINY.n_layer + 1 and all(s.shape == (3, 10, 16) for s in states)
    assert model.token_logprobs(idx).shape == (3, 9)
    assert torch.allclose(model.lm_head(states[-1]), model(idx), atol=1e-5)


def test_blocks_can_be_called_one_by_one():
    model = _model()
    idx = torch.randint(0, 50, (2, 7))
    x = model.embed(idx)
    for block in model.blocks:
        x = block(x)
    assert torch.allclose(model.lm_head(model.ln_f(x)), model(idx), atol=1e-6)


def test_causal_property():
    """Changing a token at position t never changes the outputs at positions < t."""
    model = _model()
    idx = torch.randint(0, 50, (1, 12))
    base = model(idx)
    for t in range(12):
        changed = idx.clone()
        changed[0, t] = (changed[0, t] + 1) % 50
        out = model(changed)
        assert torch.allclose(out[:, :t], base[:, :t], atol=1e-6)
        assert not torch.allclose(out[:, t], base[:, t], atol=1e-6)


def test_attention_equals_the_formula():
    """The module's attention equals softmax(QK^T / sqrt(d_head) + causal mask) V written out."""
    model = _model()
    attn = model.blocks[0].attn
    x = torch.randn(2, 5, 16)
    q, k, v = attn.qkv(x).split(16, dim=-1)
    heads = lambda t: t.view(2, 5, 2, 8).transpose(1, 2)
    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(8)
    scores = scores.masked_fill(torch.triu(torch.ones(5, 5, dtype=torch.bool), 1), float("-inf"))
    manual = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 16))
    assert torch.allclose(attn(x), manual, atol=1e-6)


def test_key_value_cache_gives_the_same_logits():
    model = _model()
    idx = torch.randint(0, 50, (2, 11))
    full = model(idx)
    caches = [LayerCache() for _ in model.blocks]
    first = model(idx[:, :6], caches=caches)
    rest = model(idx[:, 6:], caches=caches)
    assert caches[0].length == 11
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=1e-5)


def test_score_continuations_equals_token_logprobs():
    model = _model()
    prefix = [1, 7, 8, 9]
    conts = [[3], [4, 5, 6], [10, 11]]
    got = model.score_continuations(prefix, conts, batch_size=2)
    assert got.shape == (3, 3) and np.isnan(got[0, 1:]).all()
    for row, c in enumerate(conts):
        lp = model.token_logprobs(torch.tensor([prefix + c]))[0, len(prefix) - 1:].numpy()
        np.testing.assert_allclose(got[row, :len(c)], lp, atol=1e-5)
    with pytest.raises(ValueError, match="exceed"):
        model.score_continuations(list(range(15)), [[1, 2]])


def test_loss_ignores_padding_and_starts_near_log_vocab():
    model = _model()
    idx = torch.randint(1, 50, (4, 9))
    targets = torch.randint(1, 50, (4, 9))
    loss = model.loss(idx, targets)
    assert abs(loss.item() - math.log(50)) < 0.5  # small initial weights: nearly uniform
    padded = targets.clone()
    padded[:, 5:] = TINY.pad_id
    by_hand = torch.nn.functional.cross_entropy(model(idx)[:, :5].reshape(-1, 50), targets[:, :5].reshape(-1))
    assert torch.allclose(model.loss(idx, padded), by_hand, atol=1e-6)


def test_generate():
    model = _model()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    greedy = model.generate(prompt, 5, temperature=0)
    assert greedy.shape == (2, 8) and torch.equal(greedy[:, :3], prompt)
    assert torch.equal(greedy, model.generate(prompt, 5, temperature=0))
    # greedy generation equals repeatedly taking the argmax of a full forward pass
    seq = prompt
    for _ in range(5):
        seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(greedy, seq)
    g = torch.Generator().manual_seed(0)
    sampled = model.generate(prompt, 4, temperature=1.0, top_k=1, generator=g)
    assert torch.equal(sampled, greedy[:, :7])  # top_k=1 is greedy
    stop = int(greedy[0, 3])
    stopped = model.generate(prompt[:1], 5, temperature=0, stop_token=stop)
    assert stopped.shape == (1, 4)
    with pytest.raises(ValueError, match="exceed the context"):
        model.generate(prompt, 14)


def test_config_errors():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=10, d_model=10, n_head=4)
    with pytest.raises(ValueError, match="positive"):
        GPTConfig(vocab_size=0)
    with pytest.raises(ValueError, match="context"):
        _model()(torch.zeros(1, 17, dtype=torch.long))


def test_a_step_of_training_lowers_the_loss():
    model = _model()
    model.train()
    idx = torch.randint(1, 50, (8, 12))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = model.loss(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_prefix_lm_mask_and_layout():
    from m6rec_lib.models.gpt import grown, prefix_lm_mask

    m = prefix_lm_mask([3, 0], 5)
    assert m.shape == (2, 1, 5, 5)
    assert m[0, 0, :3, :3].all() and not m[0, 0, 2, 3]           # the prefix sees itself, not beyond
    assert torch.equal(m[1, 0], torch.ones(5, 5, dtype=torch.bool).tril())   # P = 0: causal
    with pytest.raises(ValueError, match="layout"):
        GPTConfig(vocab_size=50, layout="bidirectional")

    model = _model()
    prefix = grown(model, layout="prefix").eval()
    idx = torch.randint(4, 50, (1, 10))
    # a prefix LM: tokens inside the prefix see later prefix tokens; tokens after it stay causal
    base = prefix(idx, prefix_lengths=[6])
    changed = idx.clone(); changed[0, 4] = (changed[0, 4] + 1) % 50
    out = prefix(changed, prefix_lengths=[6])
    assert not torch.allclose(out[0, 2], base[0, 2])
    changed = idx.clone(); changed[0, 8] = (changed[0, 8] + 1) % 50
    out = prefix(changed, prefix_lengths=[6])
    assert torch.allclose(out[0, :8], base[0, :8], atol=1e-5)
    # scoring reads the prefix bidirectionally: the same as one pass with the prefix-LM mask
    logp = torch.log_softmax(base[0], -1)
    cont = idx[0, 6:].tolist()
    scores = prefix.score_continuations(idx[0, :6].tolist(), [cont])[0]
    want = [logp[5 + t, c].item() for t, c in enumerate(cont)]
    assert np.allclose(scores, want, atol=1e-4)


def test_grown_keeps_what_fits_the_old_context():
    from m6rec_lib.models.gpt import grown

    model = _model()
    wide = grown(model, 24).eval()
    assert wide.config.context_length == 24 and wide.num_parameters() == model.num_parameters() + 8 * 16
    idx = torch.randint(0, 50, (2, 16))
    assert torch.allclose(wide(idx), model(idx), atol=1e-6)
    assert wide(torch.randint(0, 50, (1, 24))).shape == (1, 24, 50)
    assert torch.equal(wide.pos_emb.weight[20], model.pos_emb.weight[-1])
    with pytest.raises(ValueError, match="grow"):
        grown(model, 8)


def test_attention_weights_reproduce_the_forward_pass():
    model = _model()
    idx = torch.randint(0, 50, (2, 9))
    maps = model.attention_weights(idx)
    assert len(maps) == TINY.n_layer and maps[0].shape == (2, TINY.n_head, 9, 9)
    assert torch.allclose(maps[0].sum(-1), torch.ones(2, TINY.n_head, 9), atol=1e-6)
    assert (maps[1][..., 0, 1:] == 0).all()                       # causal: the first token sees itself only
    # the first layer's output recomputed from its weights equals the block's attention output
    block = model.blocks[0]
    x = model.embed(idx)
    v = block.attn.qkv(block.ln_1(x)).split(16, -1)[2].view(2, 9, 2, 8).transpose(1, 2)
    y = block.attn.proj((maps[0] @ v).transpose(1, 2).reshape(2, 9, 16))
    assert torch.allclose(y, block.attn(block.ln_1(x)), atol=1e-5)
