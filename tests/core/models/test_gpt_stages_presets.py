"""Pipeline stages and presets."""

from __future__ import annotations

import pytest
import torch

import deepseek
from deepseek.errors import ConfigError, UsageError
from deepseek.models import GPT, PRESETS, GPTConfig
from deepseek.models.stages import stage_sizes, tied_parameters


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_stages_compose_to_full_model(n: int) -> None:
    torch.manual_seed(0)
    m = GPT(GPTConfig(d_model=32, n_heads=2, n_layers=5, max_seq_len=16)).eval()
    idx = torch.randint(0, 256, (2, 16))
    stages = m.split_stages(n)
    assert len(stages) == n
    h = idx
    for s in stages:
        h = s(h)
    torch.testing.assert_close(h, m(idx), rtol=0, atol=0)


def test_stage_parameter_names_match_model_and_blocks_are_shared() -> None:
    m = GPT(GPTConfig(d_model=32, n_heads=2, n_layers=4, max_seq_len=16))
    stages = m.split_stages(2)
    names: dict[str, torch.Tensor] = {}
    for s in stages:
        names.update(s.state_dict())
    assert set(names) == set(m.state_dict())
    assert stages[0].blocks["0"] is m.blocks[0]
    assert stages[1].blocks["3"].attn.qkv.weight is m.blocks[3].attn.qkv.weight
    # The tied head is a separate, equal copy on the last stage; the pair is reported.
    first, last = tied_parameters(stages)
    assert first is m.wte.weight and last is not m.wte.weight
    assert torch.equal(first, last)
    assert tied_parameters(m.split_stages(1)) is None


def test_stage_sizes_balanced() -> None:
    assert stage_sizes(12, 4) == [3, 3, 3, 3]
    assert stage_sizes(5, 3) == [2, 2, 1]
    assert stage_sizes(24, 5) == [5, 5, 5, 5, 4]
    assert sum(stage_sizes(7, 4)) == 7 and max(stage_sizes(7, 4)) - min(stage_sizes(7, 4)) <= 1


def test_too_many_stages_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="1 to 2 stages"):
        GPT(GPTConfig(d_model=32, n_heads=2, n_layers=2, max_seq_len=8)).split_stages(3)


def test_preset_parameter_counts() -> None:
    assert 0.5e6 < deepseek.create_model("tiny").num_parameters() < 2e6
    s = deepseek.create_model("small", device="meta")
    assert (s.config.d_model, s.config.n_heads, s.config.n_layers) == (768, 12, 12)
    assert s.num_parameters() == 86_039_040
    big = deepseek.create_model("1.3b", device="meta")
    assert big.wte.weight.is_meta
    assert 1.2e9 <= big.num_parameters() <= 1.45e9
    assert big.num_parameters() == 1_213_321_216
    assert set(PRESETS) == {"tiny", "small", "1.3b"}


def test_preset_overrides_and_registry() -> None:
    m = deepseek.create_model("small", n_layers=2, d_model=64, n_heads=4, device="meta")
    assert m.config.d_ff == 256 and m.config.max_seq_len == 1024
    assert isinstance(deepseek.create_model("tiny"), GPT)


def test_unknown_override_suggests_field() -> None:
    with pytest.raises(ConfigError, match=r"model\.n_layer: unknown key \(did you mean 'n_layers'\?\)"):
        deepseek.create_model("tiny", n_layer=2)
    with pytest.raises(ConfigError, match="model.dropout"):
        deepseek.create_model("tiny", dropout="high")
