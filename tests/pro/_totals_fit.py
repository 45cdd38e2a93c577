"""A classifier reporting macro F1 over the whole validation set (``"totals"``: a confusion
matrix, ``metrics_from_totals``: F1 from it), trained with ``deepseek.fit`` under several
strategies in one torchrun job (test helper).

Usage: ``python tests/pro/_totals_fit.py OUT STRATEGY [STRATEGY ...]`` under torchrun (``STRATEGY``:
a name, ``deepspeed-STAGE``, either with ``+ROWS`` validation rows, or ``ddp-`` and a key of :data:`REFUSED`).
Rank 0 writes ``OUT/<strategy>.json``: the run's final ``val_*`` values and its losses; a refused model
(:data:`REFUSED`) has every rank write its error's line to ``OUT/<strategy>-<rank>.txt`` and its
class and the class it names (a ``RankError``'s ``type_name``) to ``OUT/<strategy>-<rank>.class``.
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
from deepseek.errors import RankError, UsageError
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


class RaisingOnRank1(Classifier):
    """Raises in evaluation on rank 1 only (a bug in model code that one rank's rows bring out):
    rank 0's forward succeeds and goes on to the mean over the ranks, where it must not wait for
    rank 1, but end with rank 1's error."""

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> dict[str, Any]:
        if not self.training and torch.distributed.get_rank() == 1:
            raise RuntimeError(f"cannot evaluate these {len(x)} rows")
        return super().forward(x, label)


def points(n: int, seed: int) -> torch.utils.data.TensorDataset:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.TensorDataset(x, (x > 0).sum(1))


VAL_ROWS = 87
"""Validation rows: 5 batches of 16 and a last one of 7, which 2 ranks split 4 / 3 (``NAME+ROWS``
asks for another count: ``ddp+81`` leaves the second rank no row of the last batch, ``ddp+1`` no
row at all: its stand-in row's totals add zeros)."""

def ragged_on_rank1() -> torch.utils.data.TensorDataset:
    """32 rows, 2 batches of 16 whose even rows (rank 0's shard) are all of class 2, and whose odd
    rows (rank 1's) are of class 2 in the first batch and 1 in the second: :class:`Unpadded`'s
    confusion matrix is 3x3 on both ranks in the first batch (the check before training, of that
    batch, passes), and in the second 3x3 on rank 0 and 2x2 on rank 1, which refuses it alone
    (``TotalsCapture``'s check within a rank) in the evaluation at step 4."""
    x = torch.ones(32, 2)
    x[17:32:2, 1] = -1.0
    return torch.utils.data.TensorDataset(x, (x > 0).sum(1))


REFUSED = {"unpadded": (Unpadded, torch.utils.data.TensorDataset(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]),
                                                                   torch.tensor([0, 2]))),
           "undeclared": (Undeclared, points(1, 1)),
           "ragged": (Unpadded, ragged_on_rank1()),
           "raising": (RaisingOnRank1, points(2, 1))}
"""The models every rank refuses (``ddp-unpadded``, ``ddp-undeclared``, ``ddp-ragged``,
``ddp-raising``) and their validation rows: :class:`Unpadded` on two rows of classes 0 and 2,
one for each of 2 ranks; :class:`Undeclared` on one row, which leaves the second rank only a
stand-in; :class:`Unpadded` on :func:`ragged_on_rank1`, and :class:`RaisingOnRank1`, each an
error of rank 1 alone, in its forward's totals or its forward."""


def run(out: Path, name: str) -> None:
    strategy, _, rows = name.partition("+")
    strategy, _, stage = strategy.partition("-")
    options = {"stage": int(stage)} if strategy == "deepspeed" else {}  # ddp-unpadded: ddp, Unpadded
    if rows == "1" or stage in REFUSED:  # ranks that wait for each other fail in a minute, not at the job's timeout
        options["timeout_s"] = 60
    config = {"train": {"max_steps": 8, "lr": 1e-2, "warmup_steps": 0, "eval_interval": 4},
              "data": {"eval_batches": 6}, "precision": {"dtype": "fp32"},
              "strategy": {"name": strategy, **options}, "logging": {"progress": False, "plot": False}}
    if stage in REFUSED:  # refused in an evaluation, on every rank
        model, val = REFUSED[stage]
        try:
            deepseek.fit(model, points(64, 0), val_data=val, names=("x", "label"), batch_size=16,
                         shuffle=False, config=config, quiet=True, run_dir=out / name)
        except (UsageError, RuntimeError) as exc:  # another rank's RuntimeError: a RankError naming its class
            (out / f"{name}-{os.environ['RANK']}.txt").write_text(str(exc))
            named = exc.type_name if isinstance(exc, RankError) else type(exc).__name__
            (out / f"{name}-{os.environ['RANK']}.class").write_text(f"{type(exc).__name__} {named}")
        return
    result = deepseek.fit(Classifier, points(256, 0), val_data=points(int(rows or VAL_ROWS), 1), names=("x", "label"),
                          batch_size=16, shuffle=False, config=config, quiet=True, run_dir=out / name)
    if result.is_global_zero:
        (out / f"{name}.json").write_text(json.dumps({"val": result.val_metrics, "losses": result.losses}))


if __name__ == "__main__":
    run_cases(run)
