"""``Trainer``'s arguments of the wrong kind are one ``UsageError`` line naming the argument
(docs/python-api.md, "A registered model from a config"), raised before anything is written, as
``deepseek.fit``'s are: a dict for ``config`` was an ``AttributeError`` (``'dict' object has no
attribute 'train'``), a string for ``host`` one from deep in the set-up, a number for ``run_dir``
torch's ``TypeError``. A registered dataset whose ``__init__`` keeps its class labels in
``self.label``, the base class's attribute that names it in errors, is refused in one line: the
run replaced the tensor by the dataset's name, and the first batch failed as the plugin's bug."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import deepseek
from deepseek.config.load import config_from_dict
from deepseek.data.dataset import Dataset
from deepseek.errors import PluginError, UsageError
from deepseek.plugins.host import PluginHost
from deepseek.training.trainer import Trainer


@pytest.mark.parametrize(("config", "kwargs", "line"), [
    ({"train": {"max_steps": 2}}, {}, "config: expected a deepseek.config.schema.Config, got dict; build one with "
                                      "deepseek.config.load.config_from_dict(mapping, host=host) or load_config"),
    (None, {"host": "core"}, "host: expected a deepseek.plugins.host.PluginHost or None, got 'core' (str)"),
    (None, {"run_dir": 5}, "run_dir: expected a path (a str or pathlib.Path), got 5 (int)"),
    (None, {"resume": ""}, "resume: expected a path (a str or pathlib.Path), got an empty path"),
    (None, {"quiet": "no"}, "quiet: expected True or False, got 'no' (str)"),
], ids=["config-dict", "host-str", "run_dir-int", "resume-empty", "quiet-str"])
def test_a_wrong_argument_is_one_line_naming_it(tiny_config: Any, tmp_path: Path, config: Any,
                                                kwargs: dict[str, Any], line: str) -> None:
    given = {"run_dir": tmp_path / "run", **kwargs}
    with pytest.raises(UsageError) as raised:
        Trainer(tiny_config(train={"max_steps": 2}) if config is None else config, **given).fit()
    assert str(raised.value).startswith(line), str(raised.value)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


@dataclass(frozen=True)
class PointsOptions:
    size: int = 64


class Points(Dataset):
    Options = PointsOptions

    def __init__(self, options: PointsOptions, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        self.x = torch.randn(options.size, 2, generator=torch.Generator().manual_seed(0))
        self.label = (self.x > 0).sum(1)       # the natural name, and the base class's

    def __next__(self) -> dict[str, torch.Tensor]:
        return {"x": self.x[: self.batch_size], "label": self.label[: self.batch_size]}

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        return [next(self)][:limit]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Net(torch.nn.Module):
    def __init__(self, options: Any) -> None:
        super().__init__()
        self.body = torch.nn.Linear(2, 3)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self.body(x), label)


Net.Options = deepseek.config.components.NoOptions  # type: ignore[attr-defined]


class Components:
    @deepseek.hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("lbl.net", Net, description="a linear classifier")

    @deepseek.hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register("lbl.points", Points, description="keeps its labels in self.label")


def test_a_dataset_keeping_its_labels_in_self_label_is_one_line(tmp_path: Path) -> None:
    host = PluginHost()
    assert host.register_plugin(Components(), dist="lbl-data").status == "ok"
    config = config_from_dict({"model": {"name": "lbl.net"}, "data": {"name": "lbl.points", "batch_size": 8},
                               "train": {"max_steps": 2}, "strategy": {"device": "cpu"}}, host=host)
    with pytest.raises(PluginError) as raised:
        Trainer(config, run_dir=tmp_path / "run", host=host, quiet=True).fit()
    assert str(raised.value) == (
        "dataset 'lbl.points' (lbl-data 0.0.0, registered by test_trainer_arguments): __init__ set self.label "
        "(a Tensor), which the Dataset base class keeps to name the dataset in errors; store the data under another "
        "name, such as self.labels (docs/plugins.md section 11)")
    assert not (tmp_path / "run").exists()
