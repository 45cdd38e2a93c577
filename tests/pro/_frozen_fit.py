"""A classifier with a frozen layer and BatchNorm (an integer buffer, ``num_batches_tracked``)
trained with ``deepseek.fit`` under DeepSpeed ZeRO-2 and ZeRO-3 in one torchrun job, each run to
step 4 with checkpoints at 2 and 4, then resumed from step 2 to step 4 (test helper).

Usage: ``python tests/pro/_frozen_fit.py OUT STAGE [STAGE ...]`` under torchrun. Rank 0 writes
``OUT/ds<stage>.json``: the step losses of both runs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import deepseek
from deepseek.models.protocol import TrainableModel


class FrozenInput(TrainableModel):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)  # the frozen layer's value, known to the test
        self.inp = nn.Linear(6, 16)
        self.inp.requires_grad_(False)
        self.norm = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 3)

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(torch.relu(self.norm(self.inp(features)))), label)


def rows(n: int, seed: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g))


def run(out: Path, stage: int) -> None:
    config = {"train": {"max_steps": 4, "lr": 1e-2, "warmup_steps": 0, "eval_interval": 4},
              "data": {"eval_batches": 2}, "precision": {"dtype": "fp32"},
              "checkpoint": {"interval": 2, "keep_last": 5},
              "strategy": {"name": "deepspeed", "stage": stage}, "logging": {"progress": False, "plot": False}}
    common = {"val_data": rows(32, 1), "names": ("features", "label"), "batch_size": 8, "shuffle": False,
              "config": config, "quiet": True}
    whole = deepseek.fit(FrozenInput, rows(64, 0), run_dir=out / f"ds{stage}", **common)
    resumed = deepseek.fit(FrozenInput, rows(64, 0), run_dir=out / f"ds{stage}-resumed",
                           resume=out / f"ds{stage}" / "checkpoints" / "step-2", **common)
    if whole.is_global_zero:
        (out / f"ds{stage}.json").write_text(json.dumps({"losses": whole.losses, "resumed": resumed.losses}))


if __name__ == "__main__":
    torch.set_num_threads(1)
    for stage in sys.argv[2:]:
        run(Path(sys.argv[1]), int(stage))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # past DeepSpeed's and gloo's threads, as _train_jobs.py
