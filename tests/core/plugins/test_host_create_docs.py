"""``host.create(kind, name, *args)`` as docs/plugins.md section 9 states it: the registered target
called with exactly the given arguments, no ``Options`` built, so a plugin's own tests on a host
they built pass the ``Options`` instance themselves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from deepseek import hookimpl
from deepseek.data.dataset import Dataset
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


@dataclass(frozen=True)
class WideOptions:
    width: int = 3


class Wide(TrainableModel):
    Options = WideOptions

    def __init__(self, options: WideOptions) -> None:
        super().__init__()
        self.fc = nn.Linear(options.width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).mean()


class Rows(Dataset):
    Options = WideOptions

    def __next__(self) -> dict[str, torch.Tensor]:
        return {"x": torch.zeros(self.batch_size, self.options.width)}

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        return [next(self)][:limit]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("wide.model", Wide, description="a linear model of a configurable width")

    @hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register("wide.rows", Rows, description="zero rows of a configurable width")


def test_host_create_passes_the_arguments_as_given() -> None:
    # an outside author's own test called host.create("model", NAME) as section 9's pass example does
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-wide").status == "ok"
    assert host.create("model", "wide.model", Wide.Options(width=5)).fc.in_features == 5
    rows = host.create("dataset", "wide.rows", Rows.Options(width=4), batch_size=8, seed=0)
    assert next(rows)["x"].shape == (8, 4)
    with pytest.raises(TypeError, match=r"__init__\(\) missing 1 required positional argument: 'options'"):
        host.create("model", "wide.model")
    doc = " ".join((Path(__file__).resolve().parents[3] / "docs" / "plugins.md").read_text().split())
    assert ("`host.create(kind, name, *args, **kwargs)` calls the registered target with exactly those arguments"
            in doc)
    assert "`host.create(\"model\", \"acme.mlp\", MLP.Options(hidden=32))`" in doc
