"""What the tests of deepseek.fit, deepseek.evaluate and deepseek run share (test_script_api,
test_script_cli, test_script_fit_options): a script's own nn.Module, torch datasets and config."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from deepseek.training.metrics import read_metrics

CONFIG = {"train": {"max_steps": 60, "lr": 1e-2, "warmup_steps": 5, "eval_interval": 20},
          "checkpoint": {"interval": 20, "keep_last": 5}, "logging": {"progress": False, "plot": False},
          "data": {"eval_batches": 4}}


def points(n: int, seed: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, 0] * x[:, 1] > 0).long())


class Quadrants(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        return {"loss": nn.functional.cross_entropy(logits, y), "accuracy": (logits.argmax(-1) == y).float().mean()}


class Stream(torch.utils.data.IterableDataset):
    """An iterable dataset whose order depends on the epoch (set_epoch), as a sharded stream's does."""

    def __init__(self, n: int) -> None:
        self.base, self.epoch = points(n, 0), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):  # type: ignore[no-untyped-def]
        order = torch.randperm(len(self.base), generator=torch.Generator().manual_seed(100 + self.epoch))
        for i in order.tolist():
            x, y = self.base[i]
            yield {"x": x, "y": y}


def losses(run: Path) -> list[tuple[int, float]]:
    rows = read_metrics(run / "metrics.jsonl")
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]

