"""A strategy that chooses one of its options for the model at set-up returns the choice from
``Strategy.resolved_options`` (docs/plugins.md, 'Strategies'): the run's ``config.toml`` and its
checkpoints record the value chosen in place of ``"auto"``, a resume from them runs it without a
"config changes" note, and a key the strategy's options lack is the plugin's bug, named."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import tomllib

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.single import SingleDeviceStrategy, SingleOptions
from deepseek.training.trainer import Trainer


@dataclass(frozen=True)
class PickOptions(SingleOptions):
    unit: Literal["auto", "layer", "tensor"] = "auto"


class Picks(SingleDeviceStrategy):
    """Chooses ``unit = "layer"`` for every model where the config says ``auto``."""

    Options = PickOptions
    seen: list[str] = []

    def setup(self, model: Any, optimizer_factory: Any, settings: Any) -> None:
        Picks.seen.append(self.options.unit)
        super().setup(model, optimizer_factory, settings)

    def resolved_options(self) -> dict[str, Any]:
        return {"unit": "layer"} if self.options.unit == "auto" else {}


class PicksUnknown(SingleDeviceStrategy):
    def resolved_options(self) -> dict[str, Any]:
        return {"unit": "layer"}


class PicksInvalid(SingleDeviceStrategy):
    Options = PickOptions

    def resolved_options(self) -> dict[str, Any]:
        return {"unit": "block"}  # not one of the Literal's values


class Plugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("picks", Picks, description="resolves unit")
        register("picks-unknown", PicksUnknown, description="resolves a key it lacks")
        register("picks-invalid", PicksInvalid, description="resolves a value its Options refuse")


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-picks").status == "ok"
    return host


def _config(strategy: str, tmp_path: Path, host: PluginHost, steps: int = 2) -> Any:
    data = {"model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 32},
            "data": {"seq_len": 16, "batch_size": 4}, "train": {"max_steps": steps, "eval_interval": 0},
            "checkpoint": {"interval": 1}, "strategy": {"name": strategy},
            "logging": {"runs_dir": str(tmp_path / "runs"), "plot": False, "progress": False}}
    return config_from_dict(data, host=host)


def test_the_choice_is_recorded_and_a_resume_runs_it_without_a_change_note(
        tmp_path: Path, host: PluginHost, capsys: pytest.CaptureFixture[str]) -> None:
    Picks.seen.clear()
    run = tmp_path / "run"
    Trainer(_config("picks", tmp_path, host, steps=1), run_dir=run, host=host, quiet=True).fit()
    assert tomllib.loads((run / "config.toml").read_text(encoding="utf-8"))["strategy"]["unit"] == "layer"
    saved = json.loads((run / "checkpoints" / "step-1" / "trainer.json").read_text(encoding="utf-8"))
    assert saved["config"]["strategy"]["unit"] == "layer"
    capsys.readouterr()
    # the requeue form: the config still says "auto"; the strategy chooses as before
    Trainer(_config("picks", tmp_path, host), run_dir=run, host=host, quiet=True, resume=run).fit()
    err = capsys.readouterr().err
    assert "config changes: train.max_steps 1 -> 2\n" in err  # and nothing about strategy.unit
    assert Picks.seen == ["auto", "auto"]
    recorded = (run / "config.toml").read_text(encoding="utf-8")
    assert "changing train.max_steps" in recorded and "strategy.unit" not in recorded


def test_a_key_the_options_lack_is_the_plugins_bug(tmp_path: Path, host: PluginHost) -> None:
    with pytest.raises(PluginError, match=r"^strategy 'picks-unknown' \(deepseek-picks 0.0.0, registered by [\w.]+\): resolved_options returned \{'unit': 'layer'\}; "
                                          r"it must return a dict of its own option keys \(device, sync_batchnorm\)"):
        Trainer(_config("picks-unknown", tmp_path, host), run_dir=tmp_path / "run", host=host, quiet=True).fit()


def test_a_value_the_options_refuse_is_the_plugins_bug_and_nothing_is_recorded(tmp_path: Path, host: PluginHost) -> None:
    run = tmp_path / "run"
    with pytest.raises(PluginError, match=r"^strategy 'picks-invalid' \(deepseek-picks 0.0.0, registered by [\w.]+\): resolved_options returned "
                                          r"strategy.unit = 'block', which its own Options refuse \('block' \(str\) is "
                                          r"not allowed; allowed values: 'auto', 'layer', 'tensor'\)"):
        Trainer(_config("picks-invalid", tmp_path, host), run_dir=run, host=host, quiet=True).fit()
    assert not (run / "config.toml").exists()
