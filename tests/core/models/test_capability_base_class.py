"""A plain ``nn.Module`` that defines a capability's methods (``serving_inputs`` and
``serving_forward``, what docs/python-api.md tells a ``deepseek.fit`` user to add for an export)
offers nothing, since capabilities are read from ``TrainableModel`` subclasses: the refusal said
the model 'does not offer capability serving (serving_inputs and serving_forward)' to a class
that defined both. It now says to derive the class from ``TrainableModel``, which offers them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from deepseek.errors import ConfigError, UsageError
from deepseek.graph.serving import export_serving
from deepseek.models.capabilities import require_capabilities
from deepseek.models.protocol import TrainableModel


class Serving:
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.body(x), label)

    def serving_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"x": batch["x"]}

    def serving_forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.body(inputs["x"])

    def set_activation_checkpointing(self, enabled: bool) -> None:
        pass


class Plain(Serving, nn.Module):
    pass


class Contract(Serving, TrainableModel):
    pass


BATCH = {"x": torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), "label": torch.tensor([0, 1, 2])}


def test_a_plain_module_with_the_methods_is_told_to_subclass(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        export_serving(Plain(), BATCH, tmp_path / "m.pt2")
    line = str(err.value)
    assert "does not offer capability 'serving'" in line and "\n" not in line
    assert "Plain defines serving_inputs and serving_forward, but capabilities are offered only by a subclass " \
           "of deepseek.models.protocol.TrainableModel" in line, line
    assert not (tmp_path / "m.pt2").exists()
    with pytest.raises(ConfigError, match="Plain defines set_activation_checkpointing, but capabilities"):
        require_capabilities(Plain(), {"activation_checkpointing": ("train.activation_checkpointing", "turn it off")},
                             model_name="script")


def test_a_subclass_offers_them_and_one_without_the_methods_gets_no_clause() -> None:
    require_capabilities(Contract(), {"serving": ("export", "-")}, model_name="script")  # offered: no error
    with pytest.raises(ConfigError) as err:
        require_capabilities(Contract(), {"pipeline": ("strategy pipeline", "use ddp")}, model_name="script")
    assert "capabilities are offered only" not in str(err.value)
