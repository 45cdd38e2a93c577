"""A model whose training forward reads and updates a persistent buffer (a running mean of its
hidden features, as BatchNorm's running statistics but also used in training), trained with
``deepseek.fit`` under several strategies in one torchrun job: each run to step 6 with
checkpoints at 3 and 6 and an evaluation at 6, then resumed from step 3 to step 6 (test helper).

Usage: ``python tests/pro/_buffer_fit.py OUT STRATEGY [STRATEGY ...]`` under torchrun. Rank 0
writes ``OUT/<strategy>.json``: the step losses of both runs and the first run's last
``val_loss``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from _probe import run_cases
from torch import nn

import deepseek
from deepseek.models.protocol import TrainableModel


class RunningMean(TrainableModel):
    """Hidden features centred on their running mean (a persistent buffer the training forward
    reads, then updates from this rank's rows) plus their BatchNorm (running statistics, read in
    evaluation), beside a non-persistent cached constant."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(6, 16)
        self.norm = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 3)
        self.register_buffer("mean", torch.zeros(16))
        self.register_buffer("scale", torch.full((16,), 0.5), persistent=False)

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.inp(features)
        centred = (h - self.mean) * self.scale
        if self.training:
            with torch.no_grad():
                self.mean.mul_(0.5).add_(h.mean(0), alpha=0.5)
        return F.cross_entropy(self.head(torch.relu(centred) + self.norm(h)), label)


def rows(n: int, seed: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 6, generator=g) + 1.0,
                                          torch.randint(0, 3, (n,), generator=g))


def run(out: Path, strategy: str) -> None:
    options = {"stage": 2} if strategy == "deepspeed" else {}
    config = {"train": {"max_steps": 6, "lr": 1e-2, "warmup_steps": 0, "eval_interval": 6},
              "data": {"eval_batches": 2}, "precision": {"dtype": "fp32"},
              "checkpoint": {"interval": 3, "keep_last": 5},
              "strategy": {"name": strategy, **options}, "logging": {"progress": False, "plot": False}}
    common = {"val_data": rows(16, 1), "names": ("features", "label"), "batch_size": 8, "shuffle": False,
              "config": config, "quiet": True}
    whole = deepseek.fit(RunningMean, rows(64, 0), run_dir=out / strategy, **common)
    resumed = deepseek.fit(RunningMean, rows(64, 0), run_dir=out / f"{strategy}-resumed",
                           resume=out / strategy / "checkpoints" / "step-3", **common)
    if whole.is_global_zero:
        (out / f"{strategy}.json").write_text(json.dumps({"losses": whole.losses, "resumed": resumed.losses,
                                                          "val_loss": whole.val_metrics["val_loss"]}))


if __name__ == "__main__":
    run_cases(run)
