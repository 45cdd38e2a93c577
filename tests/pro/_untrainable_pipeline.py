"""Pipeline models whose loss cannot train (``pipeline_loss`` detached, a constant, an integer or
complex tensor; every weight frozen), and two whose one stage is frozen (which train), given to
``deepseek.fit`` with ``strategy.name = "pipeline"`` in one torchrun job, one after the other
(test helper; :func:`attempt` runs one under ``single`` too).

Usage: ``python tests/pro/_untrainable_pipeline.py OUT [MODEL ...]`` under torchrun. Rank r
writes ``OUT/messages-r.json`` after each model: ``{model: {type, message, losses}}`` (the error
raised, or ``type`` None and the training loss of each step).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import deepseek
from deepseek.models.protocol import TrainableModel


class Net(TrainableModel):
    """Two linear stages; ``forward`` and ``pipeline_loss`` compute the same loss."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.last = nn.Linear(8, 3)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.loss(self.last(self.first(x)), label)

    def split_stages(self, n: int) -> list[nn.Module]:
        return [self.first, self.last]

    def pipeline_batch(self, batch: Mapping[str, torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        return (batch["x"],), batch["label"]

    def pipeline_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(output, target)


class Detached(Net):
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target).detach()


class Constant(Net):
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.ones((), device=output.device)


class IntegerLoss(Net):
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output.argmax(-1) != target).sum()


class ComplexLoss(Net):
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target).to(torch.complex64)


class Frozen(Net):
    def __init__(self) -> None:
        super().__init__()
        self.requires_grad_(False)


class LastStageFrozen(Net):
    def __init__(self) -> None:
        super().__init__()
        self.last.requires_grad_(False)


class FirstStageFrozen(Net):
    def __init__(self) -> None:
        super().__init__()
        self.first.requires_grad_(False)


class LaterNaN(Net):
    """Trains, but step 2's rows hold a NaN feature (:func:`rows`): the first stage passes NaN on
    and the last stage's loss is NaN on a step after the first."""


MODELS = {"Detached": Detached, "Constant": Constant, "IntegerLoss": IntegerLoss, "ComplexLoss": ComplexLoss,
          "Frozen": Frozen, "LastStageFrozen": LastStageFrozen, "FirstStageFrozen": FirstStageFrozen,
          "LaterNaN": LaterNaN}


def rows(n: int, nan_at: int | None = None) -> torch.utils.data.TensorDataset:
    """``n`` rows; ``nan_at``: that row's first feature is NaN."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    if nan_at is not None:
        x[nan_at, 0] = float("nan")
    return torch.utils.data.TensorDataset(x, torch.randint(0, 3, (n,), generator=g))


def attempt(out: Path, strategy: str, name: str) -> dict[str, Any]:
    """What ``deepseek.fit`` of model ``name`` under ``strategy`` raised (or the losses it
    trained with), its run folder ``OUT/STRATEGY-NAME``."""
    config = {"train": {"max_steps": 2, "warmup_steps": 0}, "precision": {"dtype": "fp32"},
              "checkpoint": {"interval": 0}, "strategy": {"name": strategy},
              "logging": {"progress": False, "plot": False}}
    run_dir = out / f"{strategy}-{name}"
    try:
        later = name == "LaterNaN"  # rows in order: row 12 is in step 2's batch (rows 8-15)
        result = deepseek.fit(MODELS[name], rows(64, 12 if later else None), val_data=rows(16), names=("x", "label"),
                              batch_size=8, run_dir=run_dir, config=config, quiet=True, **({"shuffle": False} if later else {}))
    except BaseException as exc:  # noqa: BLE001 - the test reads what was raised
        return {"type": type(exc).__name__, "message": str(exc), "losses": []}
    return {"type": None, "message": "", "losses": result.losses}


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    names = sys.argv[2:] or list(MODELS)
    rank = int(os.environ.get("RANK", "0"))
    seen = {}
    for name in names:
        seen[name] = attempt(out, "pipeline", name)
        (out / f"messages-{rank}.json").write_text(json.dumps(seen, indent=1))  # what got this far
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
