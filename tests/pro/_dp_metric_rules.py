"""A model whose metric depends on its rows, given to ``deepseek.fit`` under data-parallel
strategies one after the other (test helper; :func:`attempt` runs it under ``single`` too).

``Twos`` returns ``late``, its mean probability of class 2 on the rows labelled 2, only for rows holding a 2, and the
loss alone otherwise: each step and each validation batch holds at most one 2, so on two ranks one
rank's rows return ``late`` and the other's no metric at all (their all-reduce once desynced or
hung). Step 1 has no 2 (the names are agreed on without ``late``), step 2 one, step 3 none;
validation batch 1 a 2, batch 2 none.

Usage: ``python tests/pro/_dp_metric_rules.py OUT [STRATEGY ...]`` under torchrun. Rank r writes
``OUT/seen-r.json`` after each strategy: ``{strategy: record}`` (``_metric_rules_fit.fit_record``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _metric_rules_fit import fit_record, probe_main
from torch import nn

from deepseek.models.protocol import TrainableModel


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


def rows(n: int, seed: int, two_at: int) -> torch.utils.data.TensorDataset:
    """``n`` rows with labels 0 and 1 but row ``two_at`` labelled 2."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    labels[two_at] = 2
    return torch.utils.data.TensorDataset(x, labels)


def attempt(out: Path, strategy: str) -> dict[str, Any]:
    """What ``deepseek.fit`` under ``strategy`` raised, or its step records and last evaluation
    (``_metric_rules_fit.fit_record``): 24 training rows (3 steps of 8), row 13 (step 2) labelled
    2; 16 validation rows (two batches of 8), row 2 labelled 2."""
    return fit_record(Twos, rows(24, 0, 13), rows(16, 1, 2), out / strategy, strategy, lr=0.5)


if __name__ == "__main__":
    probe_main("seen", attempt, [])
