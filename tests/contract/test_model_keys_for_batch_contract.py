"""A model declares the ``[model]`` keys that follow its dataset's batches
(``TrainableModel.keys_for_batch``, docs/plugins.md section 10); the model suites (:mod:`_pairing`)
build it with them for each registered dataset, whoever registered it. Only
``multimodal.classifier`` was built so (a list of qualified names in the suite), so a plugin's
model whose width follows its data was called on no dataset of another width."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from _labelled import LabelledBatches
from _pairing import FirstBatches, batch_keys, call_on_batches, tiny_model
from torch import nn

from deepseek import hookimpl
from deepseek.errors import UsageError
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


@dataclass(frozen=True)
class WidthOptions:
    width: int = field(default=3, metadata={"check": lambda v: None if 1 <= v <= 16 else "must be in 1..16"})


class Widths(TrainableModel):
    """Squared error of a linear map of ``x`` ``(rows, width)``; a config sets ``width`` to its data's."""

    Options = WidthOptions

    def __init__(self, options: WidthOptions) -> None:
        super().__init__()
        self.fc = nn.Linear(options.width, 1)

    @classmethod
    def keys_for_batch(cls, batch: Any, build: Any) -> dict[str, Any]:
        x = batch.get("x")
        if not isinstance(x, torch.Tensor):
            return {}  # not the kind of batch it reads
        if x.dim() != 2:
            raise UsageError(f"data: x is {tuple(x.shape)}; model acme.widths takes x (rows, features)")
        return {"width": int(x.shape[1])}

    def check_data(self, batch: Any, dataset: Any) -> None:
        if "x" in batch and batch["x"].shape[-1] != self.fc.in_features:
            raise UsageError(f"model.width: {self.fc.in_features}, but the data has {batch['x'].shape[-1]} features; "
                             f"set model.width = {batch['x'].shape[-1]}")

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return ((self.fc(x).squeeze(-1) - label.float()) ** 2).mean()


class Listed(Widths):
    @classmethod
    def keys_for_batch(cls, batch: Any, build: Any) -> Any:
        return ["width", 8]  # not a mapping of [model] keys


@dataclass(frozen=True)
class RowsOptions:
    classes: int = 2
    shape: tuple[int, ...] = (8,)


class Rows(LabelledBatches):
    """``x`` of ``(rows, *shape)`` and labels 0 .. classes - 1."""

    Options = RowsOptions

    def _batch(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(index)
        return {"x": torch.randn(self.batch_size, *self.options.shape, generator=g),
                "label": torch.arange(self.batch_size) % self.options.classes}


@dataclass(frozen=True)
class WideOptions(RowsOptions):
    shape: tuple[int, ...] = (40,)


class Wide(Rows):
    Options = WideOptions


@dataclass(frozen=True)
class CubesOptions(RowsOptions):
    shape: tuple[int, ...] = (2, 3)


class Cubes(Rows):
    Options = CubesOptions


class WidthsPlugin:
    @hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("acme.widths", Widths, description="a width that follows the data")
        register("acme.listed", Listed, description="a broken keys_for_batch")

    @hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register("acme.rows8", Rows, description="8 features")
        register("acme.rows40", Wide, description="40 features (more than model.width takes)")
        register("acme.cubes", Cubes, description="x of (rows, 2, 3)")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(WidthsPlugin(), dist="acme-widths").status == "ok"
    return host


def test_a_plugin_models_declared_keys_follow_each_datasets_batches(host: PluginHost, tmp_path: Path) -> None:
    calls = call_on_batches(host, "acme.widths", tmp_path)
    assert list(calls.outputs) == ["acme-widths:acme.rows8"], calls.refused  # built with width 8, not 3
    data, val, _train = FirstBatches(host, tmp_path / "again").get("acme-widths:acme.rows8")
    assert tiny_model(host, "acme.widths", data, val).fc.in_features == 8
    # refused though of the kind it reads: reported, whether the build or working out the keys refused
    assert calls.unfit == {
        "acme-widths:acme.cubes": "data: x is (4, 2, 3); model acme.widths takes x (rows, features)",
        "acme-widths:acme.rows40": "model.width: must be in 1..16, got 40 (int)"}
    assert set(calls.refused) - set(calls.unfit) == {"deepseek-core:hf", "deepseek-core:text"}  # no x: not its kind


def test_a_keys_for_batch_answer_that_is_not_a_mapping_fails_naming_the_model(host: PluginHost, tmp_path: Path) -> None:
    data, val, _train = FirstBatches(host, tmp_path).get("acme-widths:acme.rows8")
    with pytest.raises(AssertionError, match=r"^model 'acme.listed': keys_for_batch returned \['width', 8\], not a "
                                             r"mapping of its \[model\] keys to values a config file holds"):
        batch_keys(host, "acme.listed", data, val)
