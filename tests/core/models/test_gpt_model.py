"""GPT decoder: shapes, loss at init, causality, KV cache, checkpointing, tracing."""

from __future__ import annotations

import math

import pytest
import torch

from deepseek.errors import ConfigError, UsageError
from deepseek.models import GPT, GPTConfig

CFG = GPTConfig(d_model=64, n_heads=4, n_layers=3, max_seq_len=32)


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG).eval()


def test_logits_shape_and_dtype(model: GPT) -> None:
    idx = torch.randint(0, 256, (3, 17))
    logits = model(idx)
    assert logits.shape == (3, 17, 256)
    assert logits.dtype == torch.float32


def test_loss_at_init_is_about_ln_vocab(model: GPT) -> None:
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 256, (8, 32), generator=g)
    targets = torch.randint(0, 256, (8, 32), generator=g)
    loss = model(idx, targets)
    assert loss.dim() == 0
    assert abs(loss.item() - math.log(256)) < 0.1


def test_loss_equals_cross_entropy_of_logits(model: GPT) -> None:
    idx = torch.randint(0, 256, (2, 9))
    targets = torch.randint(0, 256, (2, 9))
    ref = torch.nn.functional.cross_entropy(model(idx).reshape(-1, 256), targets.reshape(-1))
    torch.testing.assert_close(model(idx, targets), ref)


def test_future_tokens_do_not_change_past_logits(model: GPT) -> None:
    idx = torch.randint(0, 256, (2, 20))
    changed = idx.clone()
    changed[:, 12:] = torch.randint(0, 256, (2, 8))
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-3


def test_tied_embeddings_share_storage() -> None:
    tied = GPT(CFG)
    assert tied.lm_head.weight is tied.wte.weight
    untied = GPT(GPTConfig(d_model=64, n_heads=4, n_layers=3, max_seq_len=32, tie_embeddings=False))
    assert untied.lm_head.weight is not untied.wte.weight
    assert untied.num_parameters() - tied.num_parameters() == 256 * 64


def test_num_parameters_and_flops(model: GPT) -> None:
    d, L, V, T, f = 64, 3, 256, 32, 256
    per_block = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * f + f) + (f * d + d)
    total = V * d + T * d + L * per_block + 2 * d
    assert model.num_parameters() == total
    assert model.num_parameters(non_embedding=True) == total - T * d
    assert model.flops_per_token(32) == 6 * (total - T * d) + 12 * L * d * 32


def test_gpt2_init_scales_residual_projections() -> None:
    torch.manual_seed(0)
    m = GPT(GPTConfig(d_model=256, n_heads=4, n_layers=8, max_seq_len=16))
    assert abs(m.blocks[0].attn.qkv.weight.std().item() - 0.02) < 0.002
    assert abs(m.blocks[0].mlp.proj.weight.std().item() - 0.02 / 4) < 0.0005
    assert m.blocks[0].attn.qkv.bias.abs().max() == 0


def test_kv_cache_matches_full_forward(model: GPT) -> None:
    idx = torch.randint(0, 256, (2, 30))
    full = model(idx)
    cache = model.new_cache(2)
    parts = [model.forward_cached(idx[:, :11], cache)]
    parts += [model.forward_cached(idx[:, i : i + 1], cache) for i in range(11, 25)]
    parts.append(model.forward_cached(idx[:, 25:], cache))  # several tokens after a prefix
    assert cache.length == 30
    assert (torch.cat(parts, dim=1) - full).abs().max().item() < 1e-5


def test_generate_greedy_equals_uncached_argmax(model: GPT) -> None:
    prompt = torch.randint(0, 256, (2, 5))
    out = model.generate(prompt, 10, temperature=0)
    assert out.shape == (2, 15)
    assert torch.equal(out[:, :5], prompt)
    seq = prompt
    for _ in range(10):
        seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq)


def test_generate_beyond_window_and_seeded_sampling(model: GPT) -> None:
    prompt = torch.randint(0, 256, (1, 40))  # longer than max_seq_len=32: cropped
    a = model.generate(prompt, 50, top_k=5, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 50, top_k=5, generator=torch.Generator().manual_seed(3))
    assert a.shape == (1, 90) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() < 256


def test_generate_restores_training_mode(model: GPT) -> None:
    model.train()
    model.generate(torch.zeros(1, 1, dtype=torch.long), 2)
    assert model.training


def test_activation_checkpointing_same_grads() -> None:
    torch.manual_seed(0)
    m = GPT(CFG)
    idx, tgt = torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16))
    m(idx, tgt).backward()
    ref = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    m.set_activation_checkpointing(True)
    m(idx, tgt).backward()
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], rtol=1e-5, atol=1e-7, msg=n)


def test_traces_with_fx_and_export(model: GPT) -> None:
    idx = torch.randint(0, 256, (1, 12))
    gm = torch.fx.symbolic_trace(model, concrete_args={"targets": None})
    torch.testing.assert_close(gm(idx), model(idx))
    ep = torch.export.export(model, (idx,))
    torch.testing.assert_close(ep.module()(idx), model(idx))


def test_sequence_too_long_is_a_usage_error(model: GPT) -> None:
    with pytest.raises(UsageError, match="max_seq_len=32"):
        model(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"d_model": 100, "n_heads": 3}, "model.n_heads"),
        ({"n_layers": 0}, "model.n_layers"),
        ({"dropout": 1.5}, "model.dropout"),
        ({"d_ff": -1}, "model.d_ff"),
        ({"vocab_size": 0}, "model.vocab_size"),
    ],
)
def test_config_validation_names_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        GPTConfig(**kwargs)


def test_config_d_ff_default_and_frozen() -> None:
    c = GPTConfig(d_model=64, n_heads=4)
    assert c.d_ff == 256 and c.head_dim == 16
    assert GPTConfig(**c.to_dict()) == c
    with pytest.raises(AttributeError):
        c.d_model = 3  # type: ignore[misc]


@pytest.mark.parametrize("shape", [
    {}, {"d_model": 2048, "n_heads": 16, "n_layers": 24, "max_seq_len": 2048},
    {"d_model": 64, "n_heads": 4, "n_layers": 3, "bias": False, "tie_embeddings": False},
    {"d_model": 64, "n_heads": 2, "head_dim": 16, "n_layers": 2},  # pruned heads
])
def test_parameter_count_is_what_the_built_model_has(shape: dict) -> None:
    config = GPTConfig(**shape)
    with torch.device("meta"):  # the same parameters, without allocating and initialising 1.2e9 of them
        model = GPT(config)
    assert config.parameter_count() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("shape", "message"), [
    ({"n_layers": 100_000_000}, r"^model\.n_layers: must be at most 4,096, got 100000000$"),
    ({"max_seq_len": 10**30}, r"^model: vocab_size=256, d_model=768, n_layers=12, d_ff=3072, max_seq_len=10{30} "
                              r"make 7\.68e\+32 parameters, more than the 1e\+12 a GPT here may have; check these "
                              r"sizes for a typo$"),
    ({"d_model": 10**7, "n_heads": 1}, r"^model: .* make 1\.44e\+16 parameters"),
])
def test_a_shape_too_large_to_build_is_refused_before_building(shape: dict, message: str) -> None:
    """Hostile sizes (from a config or a checkpoint's trainer.json) are one line, not a build that
    never ends or runs out of memory."""
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**shape)


@pytest.mark.parametrize("temperature", [1e-39, 1e-300, 5e-324])
def test_a_temperature_near_zero_samples_the_greedy_tokens(temperature: float) -> None:
    """Logits divided by 1e-39 overflowed to +-inf: a NaN softmax, and no tokens at all came out
    (exit 0). Near zero, sampling is greedy decoding, as the limit says."""
    from deepseek.models.decoding import sample_next

    logits = torch.tensor([[1.0, 3.0, -2.0, 2.5], [0.0, -1.0, 7.0, 6.9]])
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        assert sample_next(logits, temperature, None, generator).tolist() == [[1], [2]]
        assert sample_next(logits, temperature, 2, generator).tolist() == [[1], [2]]
