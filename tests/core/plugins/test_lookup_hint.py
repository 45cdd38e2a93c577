"""An unknown component's line from Python says where an in-process plugin's names are: only on
the host it was registered on. A script that loaded its config on its own host and then forgot
``host=`` on ``Trainer`` (or on ``load_model``) got ``unknown dataset 'my.points'; available: ...
(see 'deepseek plugins list')``, and that command does not show in-process plugins. Under a
command the line is as before. ``config_from_dict(host='x')`` was an ``AttributeError``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import deepseek
from deepseek.cli.main import main
from deepseek.config.load import config_from_dict
from deepseek.errors import ComponentNotFoundError, UsageError
from deepseek.plugins.host import PluginHost
from deepseek.training.trainer import Trainer


class Net(torch.nn.Module):
    Options = deepseek.config.components.NoOptions

    def __init__(self, options: Any) -> None:
        super().__init__()
        self.body = torch.nn.Embedding(256, 256)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self.body(input_ids).transpose(1, 2), targets)


class Components:
    @deepseek.hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("hint.net", Net, description="a bigram table")


def test_a_trainer_without_the_configs_host_says_where_the_name_is(tmp_path: Path) -> None:
    host = PluginHost()
    assert host.register_plugin(Components(), dist="hint-data").status == "ok"
    config = config_from_dict({"model": {"name": "hint.net"}, "data": {"seq_len": 8, "batch_size": 2},
                               "train": {"max_steps": 1}, "strategy": {"device": "cpu"}}, host=host)
    with pytest.raises(ComponentNotFoundError) as raised:
        Trainer(config, run_dir=tmp_path / "run", quiet=True).fit()        # host= forgotten
    line = str(raised.value)
    assert line.startswith("unknown model 'hint.net'; available: ") and "\n" not in line
    assert line.endswith("(see 'deepseek plugins list'; registered in-process? pass the host= it was registered on)")
    assert not (tmp_path / "run").exists()


def test_under_a_command_the_line_names_the_command_only(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["config", "show", "--set", "model.name=hint.net"], host=PluginHost())
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and err.startswith("error: model.name: unknown model 'hint.net'; available: ")
    assert err.endswith("(see 'deepseek plugins list')"), err


def test_config_from_dict_checks_its_host() -> None:
    with pytest.raises(UsageError) as raised:
        config_from_dict({}, host="core")
    assert str(raised.value) == "host: expected a deepseek.plugins.host.PluginHost or None, got 'core' (str)"
