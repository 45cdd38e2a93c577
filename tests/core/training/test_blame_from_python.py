"""A plugin's bug reported as one ``PluginError`` line says where its traceback is for the
reader at hand: ``--debug`` under a ``deepseek`` command, the exception's ``__cause__`` from
Python (``Trainer.fit``, ``deepseek.create_*``), where no ``--debug`` exists. It said ``--debug
shows the traceback`` to a script too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import deepseek
from deepseek.cli.main import main
from deepseek.config.components import NoOptions
from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost
from deepseek.training.trainer import Trainer

LINE = (f"model 'bug.net' (bug-data 0.0.0, registered by {__name__}): forward raised ValueError: shape bug; a bug in the plugin: upgrade it or "
        "report it to its authors ")


class Net(torch.nn.Module):
    Options = NoOptions

    def __init__(self, options: Any) -> None:
        super().__init__()
        self.body = torch.nn.Linear(64, 1)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise ValueError("shape bug")


class Components:
    @deepseek.hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("bug.net", Net, description="raises in forward")


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost()
    assert host.register_plugin(Components(), dist="bug-data").status == "ok"
    return host


def test_from_python_the_cause_holds_the_traceback(host: PluginHost, tmp_path: Path) -> None:
    config = config_from_dict({"model": {"name": "bug.net"}, "data": {"seq_len": 64, "batch_size": 4},
                               "train": {"max_steps": 1}, "strategy": {"device": "cpu"}}, host=host)
    with pytest.raises(PluginError) as raised:
        Trainer(config, run_dir=tmp_path / "run", host=host, quiet=True).fit()
    assert str(raised.value) == LINE + "(its __cause__ holds the original traceback)"
    assert isinstance(raised.value.__cause__, ValueError) and raised.value.__cause__.__traceback__ is not None


def test_under_a_command_debug_shows_it(host: PluginHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["train", "--set", "model.name=bug.net", "--set", "data.seq_len=64", "--set", "data.batch_size=4",
              "--max-steps", "1", "--quiet", "--run-dir", str(tmp_path / "run")], host=host)
    assert done.value.code == 1
    assert capsys.readouterr().err.strip() == "error: " + LINE + "(--debug shows the traceback)"
