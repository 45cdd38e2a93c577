"""ZeRO-3's gather units (``strategy.gather_unit``): each block gathered whole as a DeepSpeed leaf
module, or DeepSpeed's per-submodule default.

- the choice ``auto`` makes for a model with and without blocks, and the refusals (no processes);
- models whose first block gets an input that needs no gradient (``_leaf_fit.py``, 2 processes):
  DeepSpeed reduces a leaf block's gradients in a full backward hook, which would fire before the
  block's own weights had gradients (a crash in DeepSpeed 0.19.8), so such an input is passed as
  one that asks for a gradient; both units then train as ``single`` does;
- a block that sits out every other step trains under ``block`` as under ``module``.

The tiny GPT's parity under both units is in ``test_deepspeed.py`` (``ds3``, ``ds3_blocks``,
``ds3_modules``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _leaf_fit import train
from _prohelpers import run_torchrun, tiny_config

from deepseek.config.load import config_from_dict
from deepseek.config.validate import build_dataclass
from deepseek.errors import ConfigError
from deepseek_pro.strategies.deepspeed import DeepSpeedOptions, DeepSpeedStrategy
from deepseek_pro.strategies.deepspeed_units import chosen_gather_unit

PROBE = Path(__file__).with_name("_leaf_fit.py")


def _options(**values: object) -> DeepSpeedOptions:
    return build_dataclass(DeepSpeedOptions, values, path="strategy")


def _tiny_gpt() -> torch.nn.Module:
    from deepseek.models.presets import TinyOptions, tiny

    with torch.device("meta"):
        return tiny(TinyOptions())


def test_auto_gathers_blocks_whole_where_the_model_has_blocks() -> None:
    gpt, plain = _tiny_gpt(), torch.nn.Linear(2, 2)
    assert chosen_gather_unit(gpt, _options(stage=3)) == "block"
    assert chosen_gather_unit(plain, _options(stage=3)) == "module"
    assert chosen_gather_unit(gpt, _options(stage=3, gather_unit="module")) == "module"
    assert chosen_gather_unit(gpt, _options(stage=2)) is None  # nothing is gathered below stage 3
    assert chosen_gather_unit(gpt, _options(stage=3, deepcompile=True)) == "module"  # its graph gathers


def test_refusals_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^strategy\.gather_unit: 'block' needs a model that offers its blocks"):
        chosen_gather_unit(torch.nn.Linear(2, 2), _options(stage=3, gather_unit="block"))
    with pytest.raises(ConfigError, match=r"^strategy\.gather_unit: 'block' marks DeepSpeed leaf modules"):
        _options(stage=3, gather_unit="block", deepcompile=True)
    with pytest.raises(ConfigError, match=r"strategy\.gather_unit: 'blocks' .*did you mean 'block'"):
        _options(stage=3, gather_unit="blocks")


def test_launch_refuses_block_for_a_model_without_blocks() -> None:
    config = config_from_dict(tiny_config("deepspeed", 1, options={"stage": 3, "gather_unit": "block"}))
    with pytest.raises(ConfigError, match=r"^strategy\.gather_unit: 'block' needs"):
        DeepSpeedStrategy.check_launch(config, 2, torch.nn.Linear(2, 2))
    DeepSpeedStrategy.check_launch(config, 2, _tiny_gpt())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("leaf")
    run_torchrun([str(PROBE), str(out)], timeout=600)
    return out


@pytest.mark.parametrize("model", ["frozen", "raw"])
@pytest.mark.parametrize("unit", ["block", "module"])
def test_first_block_without_input_gradient_trains_as_single(runs: Path, tmp_path: Path, model: str,
                                                             unit: str) -> None:
    single = train(model, {"name": "single"}, tmp_path / "single").losses
    got = json.loads((runs / f"{model}-{unit}.json").read_text())
    assert len(got) == 4
    assert got == pytest.approx(single, rel=1e-6, abs=0)


def test_a_block_that_sits_out_a_step_trains_as_under_deepspeeds_default(runs: Path) -> None:
    """A block that does not run in a step has no gradient; ZeRO-3 updates it as if its gradient
    were zero under either unit (docs/distributed.md), so the two units agree with each other
    (not with ``single``, whose AdamW leaves such a parameter alone)."""
    block = json.loads((runs / "skips-block.json").read_text())
    assert len(block) == 4
    assert block == pytest.approx(json.loads((runs / "skips-module.json").read_text()), rel=1e-6, abs=0)


@pytest.fixture
def fastpath_on() -> Iterator[None]:
    """torch's mha fast-path switch on for the test (the user's), and as the test found it after,
    however the test ended: a failed assertion while the strategy holds it off must not leave it
    off for the tests after (the switch is the process's)."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(True)
    yield
    torch.backends.mha.set_fastpath_enabled(before)


@pytest.mark.usefixtures("fastpath_on")
def test_the_fused_kernel_switch_comes_back_once_however_the_run_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """setup_environment turns torch's mha fast path off for the run (test_deepspeed_fused_kernels.py);
    a second call must not take the switch it turned off for the user's, and a process-group
    teardown that raises (the trainer tears down after a failure under contextlib.suppress) must
    not leave it off. No process group: the base class's set-up and teardown are stood in for."""
    from deepseek.training.mixed_precision import Precision
    from deepseek_pro.strategies.base import DistributedStrategy

    def joined(self: DistributedStrategy) -> None:
        self._device = torch.device("cpu")

    def broken(self: DistributedStrategy) -> None:
        raise RuntimeError("destroy_process_group failed")

    monkeypatch.setattr(DistributedStrategy, "setup_environment", joined)
    strategy = DeepSpeedStrategy({}, precision=Precision("fp32"))
    strategy.setup_environment()
    strategy.setup_environment()
    assert torch.backends.mha.get_fastpath_enabled() is False
    monkeypatch.setattr(DistributedStrategy, "teardown", broken)
    with pytest.raises(RuntimeError, match="destroy_process_group failed"):
        strategy.teardown()
    assert torch.backends.mha.get_fastpath_enabled() is True
    torch.backends.mha.set_fastpath_enabled(False)  # restored once: a second teardown leaves the switch alone
    with pytest.raises(RuntimeError, match="destroy_process_group failed"):
        strategy.teardown()
    assert torch.backends.mha.get_fastpath_enabled() is False
