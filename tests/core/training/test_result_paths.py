"""``TrainResult``'s paths (``run_dir``, ``checkpoint``, ``best_checkpoint``) were absolute for a
fresh ``deepseek.fit`` and relative after ``resume=`` of a relative path (``best_checkpoint`` of a
resumed run, every path of a finished run's result, whose ``best_checkpoint`` was lost too): now
absolute and resolved in every case (docs/python-api.md)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import deepseek
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.result import TrainResult


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.body(x)
        return {"loss": nn.functional.cross_entropy(logits, y), "accuracy": (logits.argmax(-1) == y).float().mean()}


def config(steps: int) -> dict[str, dict[str, object]]:
    return {"train": {"max_steps": steps, "warmup_steps": 0, "eval_interval": 2, "lr": 0.1},
            "checkpoint": {"interval": 2, "keep_best": True}, "data": {"eval_batches": 1},
            "logging": {"progress": False, "plot": False}}


def test_result_paths_are_absolute_and_resolved_after_a_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    monkeypatch.chdir(tmp_path / "link")  # a working folder reached through a link: the paths resolve past it
    x = torch.randn(48, 3, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
    host = PluginHost(PluginSettings(autoload=False))

    def fit(steps: int, **where: str) -> TrainResult:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the resumes' notes, the finished run's RunCompleteWarning
            return deepseek.fit(Linear, data, names=("x", "y"), batch_size=8, config=config(steps), quiet=True,
                                host=host, **where)

    fresh = fit(2, run_dir="runs/a")
    resumed = fit(4, resume="runs/a")
    branch = fit(6, resume="runs/a/checkpoints/step-4", run_dir="runs/b")
    finished = fit(4, resume="runs/a")  # nothing left to train: the run's result
    run_a, run_b = real / "runs" / "a", real / "runs" / "b"
    assert fresh.run_dir == resumed.run_dir == finished.run_dir == run_a and branch.run_dir == run_b
    assert (fresh.checkpoint, resumed.checkpoint, finished.checkpoint, branch.checkpoint) == (
        run_a / "checkpoints" / "step-2", run_a / "checkpoints" / "step-4", run_a / "checkpoints" / "step-4",
        run_b / "checkpoints" / "step-6")
    for result in (fresh, resumed, branch, finished):
        assert result.best_checkpoint is not None and result.best_checkpoint.is_absolute(), result
        assert result.best_checkpoint == result.best_checkpoint.resolve(), result
    assert finished.best_checkpoint == resumed.best_checkpoint  # a finished run's result keeps its best
