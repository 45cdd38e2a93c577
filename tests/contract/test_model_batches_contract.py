"""The model contract's call on a batch (:mod:`_pairing`) catches what a plugin's model gets
wrong: a per-row loss vector, a metric named like a value the trainer logs, a non-finite loss;
and a model that no registered dataset fits is skipped with what to register."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _pairing import call_on_batches
from torch import nn

from deepseek import hookimpl
from deepseek.data.dataset import Dataset
from deepseek.errors import UsageError
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


class Rows(Dataset):
    """Batches ``{"x": (rows, 3), "y": (rows,)}`` from a fixed generator."""

    def __init__(self, options: Any, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        self.index = 0

    def _batch(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1000 + index)
        return {"x": torch.randn(self.batch_size, 3, generator=g), "y": torch.randn(self.batch_size, generator=g)}

    def __next__(self) -> dict[str, torch.Tensor]:
        self.index += 1
        return self._batch(self.index)

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        return [self._batch(-1 - i) for i in range(min(limit, 2))]

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = state["index"]


class Regressor(TrainableModel):
    """``model(x, y)``: squared error; ``MODE`` picks how the output breaks the contract."""

    MODE = "ok"

    def __init__(self, options: Any) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> Any:
        error = (self.fc(x).squeeze(-1) - y) ** 2
        mode = type(self).MODE
        if mode == "vector":
            return {"loss": error}
        if mode == "reserved":
            return {"loss": error.mean(), "lr": error.max()}
        if mode == "nan":
            return error.mean() * float("nan")
        return {"loss": error.mean(), "max_error": error.max()}


class Lonely(TrainableModel):
    """Takes batches no registered dataset has (``pixels``)."""

    def __init__(self, options: Any) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fc(pixels).mean()


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("acme.regressor", Regressor, description="squared error on three features")
        register("acme.lonely", Lonely, description="a model for data nobody registered")

    @hookimpl
    def deepseek_register_datasets(self, register):  # noqa: ANN001, ANN201
        register("acme.rows", Rows, description="three features and a target")


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-contract").status == "ok"
    return host


def test_a_model_that_meets_the_contract_is_called_on_the_data_it_takes(host: PluginHost, tmp_path: Path) -> None:
    calls = call_on_batches(host, "acme.regressor", tmp_path)
    assert list(calls.outputs) == ["acme.rows"]
    loss, metrics = calls.outputs["acme.rows"]
    assert loss.dim() == 0 and loss.item() > 0 and list(metrics) == ["max_error"]
    assert metrics["max_error"].item() >= loss.item() > 0
    assert set(calls.refused) == {"hf", "text"}  # GPT-style batches: forward takes x and y
    assert "unexpected ['input_ids', 'targets']" in calls.refused["text"]


@pytest.mark.parametrize(("mode", "error"), [
    ("vector", r"^model 'acme\.regressor': output\['loss'\] is a tensor of shape \(4,\)"),
    ("reserved", r"^model 'acme\.regressor': metrics \['lr'\] are names the trainer logs itself"),
])
def test_a_broken_output_fails_with_the_trainers_own_message(
        host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, error: str) -> None:
    monkeypatch.setattr(Regressor, "MODE", mode)
    with pytest.raises(UsageError, match=error):
        call_on_batches(host, "acme.regressor", tmp_path)


def test_a_non_finite_loss_fails(host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Regressor, "MODE", "nan")
    with pytest.raises(AssertionError, match=r"model 'acme\.regressor' on dataset 'acme\.rows': non-finite output"):
        call_on_batches(host, "acme.regressor", tmp_path)


def test_a_model_no_dataset_fits_is_skipped_saying_what_to_register(host: PluginHost, tmp_path: Path) -> None:
    calls = call_on_batches(host, "acme.lonely", tmp_path)
    assert calls.outputs == {}
    reason = calls.skip_reason("acme.lonely")
    assert reason.startswith("model 'acme.lonely': no registered dataset's batches fit it (")
    assert "acme.rows: model 'acme.lonely': the dataset's batches (keys ['x', 'y']) do not fit" in reason
    assert reason.endswith("register a dataset whose batches it takes (its check_data accepts them, its forward "
                           "takes their keys) in the same plugin, and this check calls the model on its first batch")
