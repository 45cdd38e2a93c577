"""A registered strategy or dataset class that leaves abstract methods of its base unimplemented
is refused when a config naming it loads, in one line naming the kind, the name, the providing
distribution and the methods; not later inside every worker as ``Can't instantiate abstract
class``."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.config.load import config_from_dict
from deepseek.data.text import TextDataset
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.strategy import Strategy


class NoSaveStrategy(Strategy):
    """Implements everything but the checkpoint methods."""

    @property
    def device(self) -> Any:
        import torch

        return torch.device("cpu")

    def setup(self, model: Any, optimizer_factory: Any, settings: Any) -> None:
        self.model, self.optimizer, self.settings = model, optimizer_factory(model.parameters()), settings

    def unwrapped_model(self) -> Any:
        return self.model


class NoStateText(TextDataset):
    """Declares ``state_dict`` abstract again (a plugin that forgot to implement it)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...


class Plugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("acme.nosave", NoSaveStrategy)

    @hookimpl
    def deepseek_register_datasets(self, register):  # noqa: ANN001, ANN201
        register("acme.nostate", NoStateText)


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-parallel", version="0.3").status == "ok"
    return host


STRATEGY = ("strategy 'acme.nosave' (acme-parallel 0.3, registered by test_abstract_components): NoSaveStrategy does not implement the abstract "
            "method(s) load_checkpoint, save_checkpoint of Strategy; implement them in the plugin")


def test_an_abstract_strategy_is_refused_when_the_config_loads(host: PluginHost) -> None:
    with pytest.raises(PluginError) as info:
        config_from_dict({"strategy": {"name": "acme.nosave"}}, host=host)
    assert str(info.value) == STRATEGY


def test_an_abstract_dataset_is_refused_when_the_config_loads(host: PluginHost) -> None:
    with pytest.raises(PluginError) as info:
        config_from_dict({"data": {"name": "acme.nostate"}}, host=host)
    assert str(info.value) == ("dataset 'acme.nostate' (acme-parallel 0.3, registered by test_abstract_components): "
                               "NoStateText does not implement the "
                               "abstract method(s) state_dict of Dataset; implement them in the plugin")


def test_deepseek_train_reports_it_in_one_line(host: PluginHost, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "tiny.toml"
    toml.write_text('[model]\nname = "tiny"\n', encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["train", str(toml), "--strategy", "acme.nosave"], host=host)
    assert (info.value.code, capsys.readouterr().err) == (1, f"error: {STRATEGY}\n")
