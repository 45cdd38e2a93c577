"""A model with BatchNorm in its training forward, trained with ``deepseek.fit`` on a global batch of
16 rows for 8 steps (test helper for test_sync_batchnorm.py).

Usage: ``python tests/pro/_syncbn_fit.py OUT NAME STRATEGY SYNC DEVICE`` (under torchrun for
ddp/fsdp; ``SYNC`` is ``0`` or ``1``, ``DEVICE`` the single strategy's device). Rank 0 writes
``OUT/NAME.json``: the step losses, the last ``val_loss`` and the checkpoint's BatchNorm running
mean.
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


class Normed(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Linear -> BatchNorm1d -> Linear: the loss depends on each
    batch's statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 32)
        self.norm = nn.BatchNorm1d(32)
        self.mid = nn.Linear(32, 16)
        self.norm2 = nn.BatchNorm1d(16, momentum=0.3)
        self.head = nn.Linear(16, 3)

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm(self.inp(features)))
        return F.cross_entropy(self.head(torch.relu(self.norm2(self.mid(h)))), label)


def rows(n: int, seed: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    x[n // 2:] += 2.0  # rows of differing statistics across the batch
    return torch.utils.data.TensorDataset(x, torch.randint(0, 3, (n,), generator=g))


def config(strategy: str, sync: bool, device: str) -> dict:
    options = {"sync_batchnorm": True} if sync else {}
    if strategy == "single":
        options["device"] = device
    return {"train": {"max_steps": 8, "lr": 1e-2, "warmup_steps": 0, "eval_interval": 8},
            "data": {"eval_batches": 2}, "precision": {"dtype": "fp32"},
            "strategy": {"name": strategy, **options}, "logging": {"progress": False, "plot": False}}


def main(out: Path, name: str, strategy: str, sync: bool, device: str) -> None:
    data = rows(128, 0)
    # a global batch of rows from both halves: each rank's 8 rows have other statistics than the 16
    order = torch.randperm(128, generator=torch.Generator().manual_seed(3)).tolist()
    data = torch.utils.data.Subset(data, order)
    result = deepseek.fit(Normed, data, val_data=rows(32, 1), names=("features", "label"), batch_size=16,
                          shuffle=False, config=config(strategy, sync, device), run_dir=out / name, quiet=True)
    if result.is_global_zero:
        from deepseek.training import checkpoint as ckpt

        state = ckpt.load_model_state(Path(result.checkpoint) / ckpt.MODEL_FILE)
        (out / f"{name}.json").write_text(json.dumps({
            "losses": result.losses, "val_loss": result.val_metrics["val_loss"],
            "running_mean": state["norm.running_mean"].tolist()}))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # past gloo's threads, as _train_jobs.py
