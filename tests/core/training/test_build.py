"""deepseek.training.build: ``precision.fp32_residual`` and ``train.compile_scope`` in ``prepare_model`` and
``train.init_device`` in ``build_model``."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
from torch import nn

from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError
from deepseek.models.capabilities import model_capabilities, require_capabilities
from deepseek.models.encoder import TextTransformerEncoder
from deepseek.training.build import build_model, needed_capabilities, prepare_model


def test_prepare_model_applies_fp32_residual(tiny_config) -> None:
    off = tiny_config(precision={"fp32_residual": False})
    model = prepare_model(build_model(off), off)
    assert model.fp32_residual is False
    default = tiny_config()
    assert default.precision.fp32_residual is True
    assert prepare_model(build_model(default), default).fp32_residual is True


@pytest.mark.parametrize("make", [lambda: nn.Linear(4, 4), lambda: TextTransformerEncoder(d_model=32, n_heads=2, n_layers=1)],
                         ids=["plain-module", "text-encoder"])
def test_fp32_residual_off_needs_a_model_that_offers_it(tiny_config, make) -> None:
    model = make()
    assert "residual_dtype" not in model_capabilities(model)
    needed = needed_capabilities(tiny_config(precision={"fp32_residual": False}))
    with pytest.raises(ConfigError, match=r"^precision\.fp32_residual = false needs a configurable residual dtype "
                       r"\(set_fp32_residual\), which model 'm' \(\w+\) does not offer; set it to true, or use a "
                       r"model that offers it"):
        require_capabilities(model, needed, model_name="m")
    require_capabilities(model, needed_capabilities(tiny_config()), model_name="m")  # the default asks nothing


@pytest.mark.parametrize("scope", ["blocks", "model"])
def test_compile_scope_compiles_the_blocks_or_the_whole_model(tiny_config, scope: str) -> None:
    config = tiny_config(train={"compile": True, "compile_scope": scope})
    eager = build_model(config)
    model = prepare_model(build_model(config), config)
    compiled = {name for name, m in model.named_modules() if getattr(m, "_compiled_call_impl", None) is not None}
    blocks = {f"blocks.{i}" for i in range(len(model.block_modules()))}
    assert compiled == ({""} if scope == "model" else blocks)
    assert list(model.state_dict()) == list(eager.state_dict())  # in place: checkpoints keep their names


def _devices(model: nn.Module) -> set[str]:
    return {t.device.type for t in [*model.parameters(), *model.buffers()]}


def test_init_device_device_builds_on_the_given_device(tiny_config) -> None:
    cfg = tiny_config(train={"init_device": "device"})
    assert _devices(build_model(cfg, device=torch.device("meta"))) == {"meta"}
    assert _devices(build_model(cfg)) == {"cpu"}  # no device given: the CPU


def test_init_device_cpu_ignores_the_device(tiny_config) -> None:
    cfg = tiny_config()
    assert cfg.train.init_device == "cpu"
    model = build_model(cfg, device=torch.device("meta"))
    assert _devices(model) == {"cpu"}
    # Seeded the same way: identical weights to a build without a device, and to init_device =
    # "device" on the CPU (the CPU generator either way).
    for other in (build_model(cfg), build_model(tiny_config(train={"init_device": "device"}), device=torch.device("cpu"))):
        for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items(), strict=True):
            assert torch.equal(a, b), name


def test_init_device_rejects_other_values() -> None:
    with pytest.raises(ConfigError, match=r"^train\.init_device: 'gpu' \(str\) is not allowed.*allowed values: 'cpu', 'device'$"):
        config_from_dict({"train": {"init_device": "gpu"}})
    with pytest.raises(ConfigError, match=r"did you mean 'device'\?"):
        config_from_dict({"train": {"init_device": "devise"}})


@dataclasses.dataclass(frozen=True)
class _StageOptions:
    stage: typing.Literal[1, 2, 3] = 2


def test_a_quoted_number_where_a_number_is_meant_says_to_drop_the_quotes() -> None:
    """--set strategy.stage="3" said "'3' (str) is not allowed (did you mean '3'?)"."""
    from deepseek.config.validate import convert

    with pytest.raises(ConfigError, match=r"^x\.stage: '3' \(str\) is not allowed \(a string; write the number "
                                          r"without quotes: 3\); allowed values: 1, 2, 3$"):
        convert({"stage": "3"}, _StageOptions, path="x")
