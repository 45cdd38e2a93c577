"""A model whose second head gets a gradient on every second step only, trained with
``deepseek.fit`` under ``ddp`` (test helper, run by ``deepseek launch -n 2 -- run``).

Usage: ``_unused_fit.py OUT FIND_UNUSED`` (``0`` or ``1``: ``strategy.find_unused_parameters``).
Rank 0 writes ``OUT/losses.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import deepseek


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.heads = nn.ModuleList([nn.Linear(8, 2), nn.Linear(8, 2)])
        self.calls = 0

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        head = self.heads[self.calls % 2] if self.training else self.heads[0]
        return F.cross_entropy(head(torch.relu(self.body(x))), y)


def main(out: Path, find_unused: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
    config = {"train": {"max_steps": 4, "lr": 1e-2, "warmup_steps": 0, "eval_interval": 4},
              "data": {"eval_batches": 1}, "precision": {"dtype": "fp32"},
              "strategy": {"name": "ddp", "find_unused_parameters": find_unused},
              "logging": {"progress": False, "plot": False}}
    result = deepseek.fit(TwoHeads, data, names=("x", "y"), batch_size=16, config=config, run_dir=out / "run",
                          quiet=True)
    if result.is_global_zero:
        (out / "losses.json").write_text(json.dumps(result.losses))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), sys.argv[2] == "1")
