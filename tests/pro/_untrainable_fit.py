"""Models whose loss cannot train (no trainable parameters, all frozen, a detached loss, an integer
or a complex loss) given to ``deepseek.fit`` under each named strategy in one torchrun job
(test helper).

Usage: ``python tests/pro/_untrainable_fit.py OUT STRATEGY [STRATEGY ...]`` under torchrun. Rank 0
writes ``OUT/messages.json``: ``{strategy: {model: [error type, message]}}`` and whether each run
folder was left behind.
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


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.layer(x), label)


class NoWeights(nn.Module):
    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return (x.sum() * 0 + 1.0).requires_grad_()


class Frozen(Net):
    def __init__(self) -> None:
        super().__init__()
        self.requires_grad_(False)


class Detached(Net):
    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return super().forward(x, label).detach()


class IntegerLoss(Net):
    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return (self.layer(x).argmax(-1) != label).sum()


class ComplexLoss(Net):
    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return super().forward(x, label).to(torch.complex64)


MODELS = {"NoWeights": NoWeights, "Frozen": Frozen, "Detached": Detached, "IntegerLoss": IntegerLoss,
          "ComplexLoss": ComplexLoss}


def rows(n: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))


def attempt(out: Path, strategy: str, name: str) -> dict[str, object]:
    config = {"train": {"max_steps": 2, "warmup_steps": 0}, "precision": {"dtype": "fp32"},
              "checkpoint": {"interval": 0}, "strategy": {"name": strategy},
              "logging": {"progress": False, "plot": False}}
    run_dir = out / f"{strategy}-{name}"
    try:
        deepseek.fit(MODELS[name], rows(64), val_data=rows(16), names=("x", "label"), batch_size=8, run_dir=run_dir,
                     config=config, quiet=True)
    except BaseException as exc:  # noqa: BLE001 - the test reads what was raised
        return {"type": type(exc).__name__, "message": str(exc), "left": run_dir.exists()}
    return {"type": None, "message": "", "left": run_dir.exists()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    seen = {s: {name: attempt(out, s, name) for name in MODELS} for s in sys.argv[2:]}
    if int(os.environ.get("RANK", "0")) == 0:
        (out / "messages.json").write_text(json.dumps(seen, indent=1))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # past DeepSpeed's and gloo's threads, as _train_jobs.py
