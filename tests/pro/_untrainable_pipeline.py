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


class Kept(nn.Module):
    """A stage holding one of the model's modules under its name in the model (so its weights
    keep the model's names, as the pipeline strategy asks of ``split_stages``)."""

    def __init__(self, key: str, module: nn.Module) -> None:
        super().__init__()
        self.key = key
        self.add_module(key, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_submodule(self.key)(x)


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
        return [Kept("first", self.first), Kept("last", self.last)]

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


class LaterDetached(Net):
    """Trains on the first step, but detaches the loss of a batch whose labels are all 0: step 2's
    rows (:func:`rows`), where only the loss check of a step after the first can refuse it."""

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(output, target)
        return loss.detach() if bool((target == 0).all()) else loss


MODELS = {"Detached": Detached, "Constant": Constant, "IntegerLoss": IntegerLoss, "ComplexLoss": ComplexLoss,
          "Frozen": Frozen, "LastStageFrozen": LastStageFrozen, "FirstStageFrozen": FirstStageFrozen,
          "LaterNaN": LaterNaN, "LaterDetached": LaterDetached}


def rows(n: int, nan_at: int | None = None, zeros: slice | None = None) -> torch.utils.data.TensorDataset:
    """``n`` rows; ``nan_at``: that row's first feature is NaN; ``zeros``: those rows' labels are 0."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    if nan_at is not None:
        x[nan_at, 0] = float("nan")
    labels = torch.randint(0, 3, (n,), generator=g)
    if zeros is not None:
        labels[zeros] = 0
    return torch.utils.data.TensorDataset(x, labels)


def attempt(out: Path, strategy: str, name: str) -> dict[str, Any]:
    """What ``deepseek.fit`` of model ``name`` under ``strategy`` raised (or the losses it
    trained with), its run folder ``OUT/STRATEGY-NAME``."""
    config = {"train": {"max_steps": 2, "warmup_steps": 0}, "precision": {"dtype": "fp32"},
              "checkpoint": {"interval": 0}, "strategy": {"name": strategy},
              "logging": {"progress": False, "plot": False}}
    run_dir = out / f"{strategy}-{name}"
    try:
        # the Later models' rows in order: step 2's batch is rows 8-15
        data = {"LaterNaN": rows(64, nan_at=12), "LaterDetached": rows(64, zeros=slice(8, 16))}.get(name, rows(64))
        later = name.startswith("Later")
        result = deepseek.fit(MODELS[name], data, val_data=rows(16), names=("x", "label"), batch_size=8,
                              run_dir=run_dir, config=config, quiet=True, **({"shuffle": False} if later else {}))
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
