"""A validation set whose size is not a multiple of the batch size is evaluated whole: its last,
shorter batch counts each of its rows once (the batches' means weighed by their rows), in
``deepseek.fit``'s evaluations, ``deepseek.evaluate`` and whole-set totals; only the last
validation batch may be shorter. Two processes: tests/pro/test_whole_set_metrics_pro.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import deepseek
from deepseek.data.dataset import Dataset
from deepseek.errors import UsageError
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

CONFIG = {"train": {"max_steps": 6, "lr": 1e-2, "warmup_steps": 0, "eval_interval": 3},
          "logging": {"progress": False, "plot": False}, "data": {"eval_batches": 8}, "precision": {"dtype": "fp32"}}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(PluginSettings(autoload=False))


class Regressor(TrainableModel):
    """Mean squared error, and the rows it saw as a whole-set total."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        err = (self.body(x).squeeze(-1) - y) ** 2
        return {"loss": err.mean(), "totals": {"rows": torch.tensor(float(len(y))), "sq": err.sum()}}

    def metrics_from_totals(self, totals: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"rows": totals["rows"], "mse": totals["sq"] / totals["rows"]}


def rows(n: int, seed: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return torch.utils.data.TensorDataset(x, x.sum(1) + 0.1 * torch.randn(n, generator=g))


def mse_by_hand(model: nn.Module, data: torch.utils.data.TensorDataset) -> float:
    x, y = data.tensors
    with torch.no_grad():
        return float(((model(x, y)["totals"]["sq"]) / len(y)).double())


def test_fit_evaluates_every_validation_row(tmp_path: Path, host: PluginHost) -> None:
    val = rows(40, 1)  # batches of 16, 16 and 8
    result = deepseek.fit(Regressor, rows(128, 0), val_data=val, names=("x", "y"), batch_size=16, config=CONFIG,
                          quiet=True, run_dir=tmp_path / "run", host=host)
    model = Regressor()
    values = deepseek.evaluate(model, val, names=("x", "y"), checkpoint=tmp_path / "run")  # loads the weights
    expected = mse_by_hand(model, val)
    assert result.val_metrics["val_rows"] == 40.0
    assert result.val_metrics["val_mse"] == pytest.approx(expected, rel=1e-5)
    # the mean of the batches' means weighs the short batch by its rows: the mean over the 40 rows,
    # not the three batches' means alike
    assert result.val_metrics["val_loss"] == pytest.approx(expected, rel=1e-5)
    alike = sum(mse_by_hand(model, rows_of(val, a, b)) for a, b in ((0, 16), (16, 32), (32, 40))) / 3
    assert abs(alike - expected) > 1e-3 * expected
    assert values["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert values["val_rows"] == 40.0


def rows_of(data: torch.utils.data.TensorDataset, start: int, stop: int) -> torch.utils.data.TensorDataset:
    return torch.utils.data.TensorDataset(*(t[start:stop] for t in data.tensors))


def test_evaluate_takes_a_set_smaller_than_one_batch() -> None:
    model, val = Regressor(), rows(5, 2)
    values = deepseek.evaluate(model, val, names=("x", "y"), batch_size=32)
    assert values["val_rows"] == 5.0
    assert values["val_loss"] == pytest.approx(mse_by_hand(model, val), rel=1e-5)


def test_the_batches_limit_counts_the_short_batch() -> None:
    model, val = Regressor(), rows(40, 3)
    assert deepseek.evaluate(model, val, names=("x", "y"), batch_size=16, batches=2)["val_rows"] == 32.0
    assert deepseek.evaluate(model, val, names=("x", "y"), batch_size=16, batches=3)["val_rows"] == 40.0


class ShortFirst(Dataset):
    """Gives a shorter validation batch before a full one: only the last may be shorter."""

    @dataclass(frozen=True)
    class Options:
        pass

    def _batch(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))
        return {"x": x, "y": x.sum(1)}

    def __next__(self) -> dict[str, torch.Tensor]:
        return self._batch(self.batch_size, 0)

    rows = (13, 16)

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        return [self._batch(n, i) for i, n in enumerate(self.rows)][:limit]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EmptyLast(ShortFirst):
    rows = (16, 0)


@pytest.mark.parametrize(("data", "rows"), [(ShortFirst, 13), (EmptyLast, 0)])
def test_a_short_batch_that_is_not_the_last_or_an_empty_one_is_one_line(tmp_path: Path, host: PluginHost,
                                                                         data: type[Dataset], rows: int) -> None:
    with pytest.raises(UsageError) as info:
        deepseek.fit(Regressor, data, batch_size=16, config=CONFIG, quiet=True, run_dir=tmp_path / "run", host=host)
    message = str(info.value)
    assert f"gave a validation batch of {rows} rows, but data.batch_size is 16" in message
    assert "only the last validation batch may hold fewer, at least one" in message
    assert "\n" not in message
    assert not (tmp_path / "run").exists()


class Ragged(ShortFirst):
    """A script's own Dataset class whose training batches' tensors disagree on their rows."""

    rows = (16,)

    def __next__(self) -> dict[str, torch.Tensor]:
        batch = self._batch(self.batch_size, 0)
        return {**batch, "y": batch["y"][:-1]}


def _ragged_collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    x, y = (torch.stack([s[k] for s in samples]) for k in ("x", "y"))
    return {"x": x, "y": y[:-1]}  # the user's collate drops a row of one tensor


@pytest.mark.parametrize("given", ["Dataset class", "torch data and collate_fn"])
def test_the_users_own_batches_that_disagree_on_their_rows_stay_the_users_error(tmp_path: Path, host: PluginHost,
                                                                                given: str) -> None:
    """The check a plugin dataset's misshapen batch fails as the plugin's bug (test_plugin_blame.py)
    is the user's UsageError (exit code 2) for the data a script hands to deepseek.fit."""
    if given == "Dataset class":
        args: dict[str, Any] = {"data": Ragged}
    else:
        args = {"data": rows(64, 0), "val_data": rows(32, 1), "names": ("x", "y"), "collate_fn": _ragged_collate}
    with pytest.raises(UsageError) as info:
        deepseek.fit(Regressor, **args, batch_size=16, config=CONFIG, quiet=True, run_dir=tmp_path / "run", host=host)
    message = str(info.value)
    assert "every tensor of a batch needs the rows along its first dimension, and the same number of them; got " \
           "first dimensions [15, 16]" in message, message
    assert "a bug in the plugin" not in message and "\n" not in message
    assert not (tmp_path / "run").exists()
