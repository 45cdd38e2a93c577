"""A classifier reporting macro F1 over the whole validation set (``"totals"``: a confusion
matrix, ``metrics_from_totals``: F1 from it), trained with ``deepseek.fit`` under several
strategies in one torchrun job (test helper).

Usage: ``python tests/pro/_totals_fit.py OUT STRATEGY [STRATEGY ...]`` under torchrun (``STRATEGY``:
a name, ``deepspeed-STAGE``, either with ``+ROWS`` validation rows, or ``ddp-unpadded`` / ``ddp-undeclared``).
Rank 0 writes ``OUT/<strategy>.json``: the run's final ``val_*`` values and its losses; a refused model
(:data:`REFUSED`) has every rank write its error's line to ``OUT/<strategy>-<rank>.txt``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from _probe import run_cases
from torch import nn

import deepseek
from deepseek.errors import UsageError
from deepseek.models.protocol import TrainableModel

CLASSES = 3


def confusion_of(label: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    return torch.zeros(CLASSES, CLASSES, dtype=torch.float64, device=label.device).index_put_(
        (label, pred), torch.ones(len(label), dtype=torch.float64, device=label.device), accumulate=True)


class Classifier(TrainableModel):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 16), nn.GELU(), nn.Linear(16, CLASSES))

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> dict[str, Any]:
        logits = self.body(x)
        return {"loss": nn.functional.cross_entropy(logits, label),
                "totals": {"confusion": confusion_of(label, logits.argmax(-1))}}

    def metrics_from_totals(self, totals: dict[str, torch.Tensor]) -> dict[str, Any]:
        c = totals["confusion"]
        tp = c.diag()
        precision, recall = tp / c.sum(0).clamp_min(1), tp / c.sum(1).clamp_min(1)
        return {"macro_f1": torch.nan_to_num(2 * precision * recall / (precision + recall)).mean(),
                "rows": c.sum()}


class Unpadded(Classifier):
    """Counts the classes up to the highest label of its rows only: its confusion matrix's shape
    depends on the rows, which one process cannot see on a set of one batch; two ranks holding
    different rows (and shapes) must both refuse it, not hang or sum mismatched tensors."""

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> dict[str, Any]:
        out = super().forward(x, label)
        k = int(label.max()) + 1
        return {**out, "totals": {"confusion": out["totals"]["confusion"][:k, :k]}}


class Undeclared(TrainableModel):
    """Returns totals without defining ``metrics_from_totals``: refused at the check of the first
    validation batch on every rank, also on one whose only row is a stand-in."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(2, CLASSES)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> dict[str, Any]:
        logits = self.body(x)
        return {"loss": nn.functional.cross_entropy(logits, label),
                "totals": {"confusion": confusion_of(label, logits.argmax(-1))}}


def points(n: int, seed: int) -> torch.utils.data.TensorDataset:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.TensorDataset(x, (x > 0).sum(1))


VAL_ROWS = 87
"""Validation rows: 5 batches of 16 and a last one of 7, which 2 ranks split 4 / 3 (``NAME+ROWS``
asks for another count: ``ddp+81`` leaves the second rank no row of the last batch, ``ddp+1`` no
row at all: its stand-in row's totals add zeros)."""

REFUSED = {"unpadded": (Unpadded, torch.utils.data.TensorDataset(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]),
                                                                   torch.tensor([0, 2]))),
           "undeclared": (Undeclared, points(1, 1))}
"""The models every rank refuses (``ddp-unpadded``, ``ddp-undeclared``) and their validation rows:
:class:`Unpadded` on two rows of classes 0 and 2, one for each of 2 ranks; :class:`Undeclared` on
one row, which leaves the second rank only a stand-in."""


def run(out: Path, name: str) -> None:
    strategy, _, rows = name.partition("+")
    strategy, _, stage = strategy.partition("-")
    options = {"stage": int(stage)} if strategy == "deepspeed" else {}  # ddp-unpadded: ddp, Unpadded
    if rows == "1" or stage in REFUSED:  # ranks that wait for each other fail in a minute, not at the job's timeout
        options["timeout_s"] = 60
    config = {"train": {"max_steps": 8, "lr": 1e-2, "warmup_steps": 0, "eval_interval": 4},
              "data": {"eval_batches": 6}, "precision": {"dtype": "fp32"},
              "strategy": {"name": strategy, **options}, "logging": {"progress": False, "plot": False}}
    if stage in REFUSED:  # refused at the check of the first validation batch, on every rank
        model, val = REFUSED[stage]
        try:
            deepseek.fit(model, points(64, 0), val_data=val, names=("x", "label"), batch_size=16,
                         shuffle=False, config=config, quiet=True, run_dir=out / name)
        except UsageError as exc:
            (out / f"{name}-{os.environ['RANK']}.txt").write_text(str(exc))
        return
    result = deepseek.fit(Classifier, points(256, 0), val_data=points(int(rows or VAL_ROWS), 1), names=("x", "label"),
                          batch_size=16, shuffle=False, config=config, quiet=True, run_dir=out / name)
    if result.is_global_zero:
        (out / f"{name}.json").write_text(json.dumps({"val": result.val_metrics, "losses": result.losses}))


if __name__ == "__main__":
    run_cases(run)
