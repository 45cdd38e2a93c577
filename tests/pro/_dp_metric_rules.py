"""A model whose metric depends on its rows, given to ``deepseek.fit`` under data-parallel
strategies one after the other (test helper; :func:`attempt` runs it under ``single`` too).

``Twos`` returns ``late``, its mean probability of class 2 on the rows labelled 2, only for rows holding a 2, and the
loss alone otherwise: each step and each validation batch holds at most one 2, so on two ranks one
rank's rows return ``late`` and the other's no metric at all (their all-reduce once desynced or
hung). Step 1 has no 2 (the names are agreed on without ``late``), step 2 one, step 3 none;
validation batch 1 a 2, batch 2 none.

Usage: ``python tests/pro/_dp_metric_rules.py OUT [STRATEGY ...]`` under torchrun. Rank r writes
``OUT/seen-r.json`` after each strategy: ``{strategy: {type, message, steps, val}}``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import deepseek
from deepseek.models.protocol import TrainableModel
from deepseek.training.metrics import read_metrics


class Twos(TrainableModel):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> Any:
        out = self.net(x)
        loss = F.cross_entropy(out, label)
        twos = label == 2
        if not bool(twos.any()):
            return loss
        return {"loss": loss, "late": out.softmax(-1)[twos, 2].mean()}


def train_rows() -> torch.utils.data.TensorDataset:
    """24 rows (3 steps of 8): labels 0 and 1, but row 13 (step 2) labelled 2."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 4, generator=g)
    labels = torch.randint(0, 2, (24,), generator=g)
    labels[13] = 2
    return torch.utils.data.TensorDataset(x, labels)


def val_rows() -> torch.utils.data.TensorDataset:
    """16 rows (two batches of 8): row 2 labelled 2, the rest 0 and 1."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=g)
    labels = torch.randint(0, 2, (16,), generator=g)
    labels[2] = 2
    return torch.utils.data.TensorDataset(x, labels)


def attempt(out: Path, strategy: str) -> dict[str, Any]:
    """What ``deepseek.fit`` under ``strategy`` raised, or its step records and last evaluation."""
    config = {"train": {"max_steps": 3, "grad_accum": 2, "lr": 0.5, "warmup_steps": 0, "eval_interval": 2},
              "data": {"eval_batches": 2}, "precision": {"dtype": "fp32"}, "checkpoint": {"interval": 0},
              "strategy": {"name": strategy}, "logging": {"progress": False, "plot": False}}
    run_dir = out / strategy
    try:
        result = deepseek.fit(Twos, train_rows(), val_data=val_rows(), names=("x", "label"), batch_size=8,
                              shuffle=False, run_dir=run_dir, config=config, quiet=True)
    except BaseException as exc:  # noqa: BLE001 - the test reads what was raised
        return {"type": type(exc).__name__, "message": str(exc), "steps": [], "val": {}}
    timings = {"step_time", "samples_per_s"}
    steps = [{k: v for k, v in r.items() if k not in timings} for r in read_metrics(run_dir / "metrics.jsonl")
             if "loss" in r]
    return {"type": None, "message": "", "steps": steps, "val": result.val_metrics}


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    rank = int(os.environ.get("RANK", "0"))
    seen = {}
    for name in sys.argv[2:]:
        seen[name] = attempt(out, name)
        (out / f"seen-{rank}.json").write_text(json.dumps(seen, indent=1))  # what got this far
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
