"""A mixture-of-experts-like model that declares ``TrainableModel.skips_parameters``: each row is
routed to one of three experts by its ``route`` column (a router's softmax weighs the expert's
output), and the data leaves an expert without rows in some steps, on every rank (no gradient
anywhere), on one rank only, or in one micro-batch only (test helper).

Usage: ``python tests/pro/_skips_fit.py OUT STRATEGY...`` under torchrun (each STRATEGY a JSON
``[strategy]`` table). Rank 0 writes ``OUT/<i>.json``: the step losses and the final weights.
``train`` is the same run in one process, for ``single``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import deepseek
from deepseek.models.protocol import TrainableModel

EXPERTS = 3
# The route of each row, 8 rows a step (global batch), grad_accum 2 (4 rows a micro-batch, 2 per
# rank). Step 1: expert 2 gets no row; step 2: expert 2 only in the first micro-batch's first two
# rows (one rank); step 3: expert 0 alone; step 4: all three; step 5: expert 2 alone; step 6: 0 and 1.
ROUTES = [0, 1, 0, 1, 1, 0, 1, 0,
          2, 2, 0, 1, 0, 1, 1, 0,
          0, 0, 0, 0, 0, 0, 0, 0,
          0, 1, 2, 0, 1, 2, 0, 1,
          2, 2, 2, 2, 2, 2, 2, 2,
          1, 0, 1, 0, 0, 1, 1, 0]
STEPS = len(ROUTES) // 8


class RoutedExperts(TrainableModel):
    skips_parameters = True

    def __init__(self, options: object = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.router = nn.Linear(4, EXPERTS)
        self.experts = nn.ModuleList([nn.Linear(4, 8) for _ in range(EXPERTS)])
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, route: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gate = torch.softmax(self.router(x), dim=-1).gather(1, route[:, None])
        hidden = x.new_zeros(x.shape[0], 8)
        for e, expert in enumerate(self.experts):
            rows = (route == e).nonzero().flatten()
            if rows.numel():  # an expert without rows is not run: its weights get no gradient
                hidden = hidden.index_add(0, rows, expert(x[rows]))
        return F.cross_entropy(self.head(torch.relu(hidden * gate)), y)


def data() -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(len(ROUTES), 4, generator=g)
    return torch.utils.data.TensorDataset(x, torch.tensor(ROUTES), (x[:, 0] > 0).long())


def train(strategy: dict, run_dir: Path) -> tuple[list[float], dict[str, list]]:
    """The step losses and the final weights of ``STEPS`` steps under ``strategy``."""
    from safetensors.torch import load_file

    config = {"train": {"max_steps": STEPS, "lr": 3e-2, "warmup_steps": 0, "grad_accum": 2, "eval_interval": STEPS},
              "optimizer": {"weight_decay": 0.1}, "data": {"eval_batches": 1}, "precision": {"dtype": "fp32"},
              "strategy": strategy, "logging": {"progress": False, "plot": False}}
    result = deepseek.fit(RoutedExperts, data(), val_data=data(), names=("x", "route", "y"), batch_size=8,
                          shuffle=False, config=config, quiet=True, run_dir=run_dir)
    if not result.is_global_zero:
        return result.losses, {}
    weights = load_file(str(result.checkpoint / "model.safetensors"))
    return result.losses, {k: v.flatten().tolist() for k, v in weights.items()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    for i, table in enumerate(sys.argv[2:]):
        losses, weights = train(json.loads(table), out / f"run-{i}")
        if weights:
            (out / f"{i}.json").write_text(json.dumps({"losses": losses, "weights": weights}))
    sys.stdout.flush()
