"""Contract every registered parallelism strategy meets, in whatever environment runs it.

Each strategy subclasses :class:`Strategy`, declares a frozen ``Options`` dataclass whose
defaults form a valid configuration, and writes the canonical checkpoint format. Strategies
that train inside the calling process also train a few steps of a tiny GPT here; those that need
a launcher (``needs_launcher = True``) train under torchrun against ``single`` in
``test_launcher_strategies_contract.py`` (first-party ones: tests/pro).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from _pairing import qualified_names

import deepseek
from deepseek.config.validate import build_dataclass
from deepseek.errors import UsageError
from deepseek.plugins.host import get_host
from deepseek.training.strategy import Strategy

STRATEGIES = qualified_names("strategy")

TINY = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 2, "max_seq_len": 32},
    "data": {"seq_len": 32, "batch_size": 8, "eval_batches": 1, "shuffle_buffer": 64},
    "train": {"max_steps": 3, "warmup_steps": 1, "eval_interval": 0, "lr": 3e-3, "min_lr": 3e-4},
    "precision": {"dtype": "fp32"},
    "checkpoint": {"interval": 0},
    "logging": {"progress": False, "plot": False},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _strategy_class(name: str) -> type:
    return get_host().resolve("strategy", name).load()


def test_core_strategy_registered() -> None:
    assert "deepseek-core:single" in STRATEGIES


@pytest.mark.parametrize("name", STRATEGIES, ids=STRATEGIES)
def test_memory_row_is_one_it_declares(name: str) -> None:
    """The advisor row a strategy names for its default options (what ``deepseek tune`` checks a
    trial against) is one of the ``memory_rows`` it declared at registration, or none."""
    from deepseek.training.strategy_rules import checked_memory_row

    comp = get_host().resolve("strategy", name)
    checked_memory_row(comp, build_dataclass(comp.load().Options, {}, path="strategy"))  # the one rule


@pytest.mark.parametrize("name", STRATEGIES, ids=STRATEGIES)
def test_device_type_is_cpu_cuda_or_none(name: str) -> None:
    """The device a strategy declares for its default options before any process starts
    (``device_type``, what ``deepseek tune`` estimates a trial for): "cpu", "cuda" or None."""
    from deepseek.plugins.calls import class_calls
    from deepseek.training.strategy_rules import checked_device_type

    comp = get_host().resolve("strategy", name)
    with class_calls(comp, "device_type"):  # the one rule: a broken answer raises
        checked_device_type(comp.load(), build_dataclass(comp.load().Options, {}, path="strategy"))


@pytest.mark.parametrize("name", STRATEGIES, ids=STRATEGIES)
def test_subclasses_strategy_with_frozen_options(name: str) -> None:
    cls = _strategy_class(name)
    assert isinstance(cls, type) and issubclass(cls, Strategy), f"{name}: not a Strategy subclass"
    options = cls.Options
    assert dataclasses.is_dataclass(options), f"{name}: Options is not a dataclass"
    assert options.__dataclass_params__.frozen, f"{name}: Options must be frozen"
    defaults = build_dataclass(options, {}, path="strategy")  # every option has a default
    fields = dataclasses.fields(defaults)
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(defaults, fields[0].name, getattr(defaults, fields[0].name))
    assert isinstance(cls.supports_compression, tuple)
    assert isinstance(cls.needs_launcher, bool)
    assert isinstance(cls.steps_every_parameter, bool)


@pytest.mark.parametrize("name", STRATEGIES, ids=STRATEGIES)
def test_declares_its_data_parallel_ranks(name: str) -> None:
    """``data_parallel_size(config, world_size)``, what the launcher checks the batch split
    against, is a number of ranks between 1 and the processes, or a one-line ConfigError for a
    world size the strategy cannot use (hybrid's stages must divide it)."""
    from deepseek.config.load import config_from_dict
    from deepseek.errors import ConfigError

    cls = _strategy_class(name)
    config = config_from_dict({**TINY, "strategy": {"name": name}}, validate=False)
    for world_size in (1, 2, 4):
        try:
            ranks = cls.data_parallel_size(config, world_size)
        except ConfigError as exc:
            assert "\n" not in str(exc)
            continue
        assert isinstance(ranks, int) and 1 <= ranks <= world_size, f"{name}: {ranks} ranks of {world_size}"


@pytest.mark.parametrize("name", STRATEGIES, ids=STRATEGIES)
def test_unknown_option_is_rejected_with_field_path(name: str) -> None:
    from deepseek.config.load import config_from_dict
    from deepseek.errors import ConfigError

    with pytest.raises(ConfigError, match=r"strategy\.no_such_option: unknown key"):
        config_from_dict({"strategy": {"name": name, "no_such_option": 1}}, validate=False)


@pytest.mark.parametrize("name", STRATEGIES, ids=STRATEGIES)
def test_trains_in_process_and_writes_canonical_checkpoint(name: str, tmp_path: Path) -> None:
    from deepseek.config.load import config_from_dict
    from deepseek.training.checkpoint import load_model_state
    from deepseek.training.inference import load_trained
    from deepseek.training.trainer import Trainer

    cls = _strategy_class(name)
    if cls.needs_launcher:
        pytest.skip(f"{name} needs one process per device (needs_launcher); tested under torchrun in "
                    "test_launcher_strategies_contract.py (first-party ones: tests/pro)")
    config = config_from_dict({**TINY, "strategy": {"name": name},
                               "logging": {**TINY["logging"], "runs_dir": str(tmp_path)}})
    trainer = Trainer(config, run_dir=tmp_path / "run")
    try:
        result = trainer.fit()
    except UsageError as exc:
        if "launch" in str(exc) or "torchrun" in str(exc):
            pytest.skip(f"{name} refuses to run in one process ({exc}); it should set needs_launcher = True")
        raise
    losses = result.losses
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses), losses
    assert min(losses[1:]) < losses[0], f"{name}: loss did not go down: {losses}"

    # Canonical checkpoint: plain parameter names, loadable with core alone.
    weights = load_model_state(result.checkpoint / "model.safetensors")
    plain = deepseek.create_model("tiny", d_model=32, n_heads=2, n_layers=2, max_seq_len=32)
    assert set(weights) == set(plain.state_dict())
    model, _, state = load_trained(result.run_dir)
    assert state["step"] == 3
    trained = trainer.strategy.unwrapped_model().state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, trained[key].detach().float().cpu(), msg=key)
