"""A map-style training set with fewer samples than ``batch_size`` is refused in one
``UsageError`` line naming ``batch_size`` before a run folder is written (every batch would hold
samples several times: 10 samples at ``batch_size=32`` trained one step reading each 3-4 times);
validation data smaller than one batch is read as one short batch (docs/python-api.md, "The
data")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import deepseek
from deepseek.errors import UsageError

CONFIG = {"train": {"max_steps": 2, "warmup_steps": 0}, "logging": {"progress": False, "plot": False}}


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.body(x), y)


def rows(n: int, seed: int) -> torch.utils.data.TensorDataset:
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())


@pytest.mark.parametrize(("val", "said"), [(True, "data has 10 training sample(s), so"),
                                           (False, "data has 9 training sample(s) after the 1 held out")])
def test_a_batch_larger_than_the_training_set_is_refused(tmp_path: Path, val: bool, said: str) -> None:
    run = tmp_path / "run"
    with pytest.raises(UsageError) as err:
        deepseek.fit(Linear, rows(10, 0), val_data=rows(8, 1) if val else None, names=("x", "y"), batch_size=32,
                     config=CONFIG, run_dir=run, quiet=True)
    line = str(err.value)
    assert line.startswith("batch_size: 32 rows a batch") and said in line and "batch_size <= " in line, line
    assert "\n" not in line and not run.exists()


def test_a_batch_of_every_sample_and_a_short_validation_set_train(tmp_path: Path) -> None:
    val = rows(5, 1)
    result = deepseek.fit(Linear, rows(10, 0), val_data=val, names=("x", "y"), batch_size=10, config=CONFIG,
                          run_dir=tmp_path / "run", quiet=True)
    model = deepseek.load_model(tmp_path / "run", model=Linear())
    with torch.no_grad():
        assert result.val_metrics["val_loss"] == pytest.approx(float(model(*val.tensors)), rel=1e-6)
