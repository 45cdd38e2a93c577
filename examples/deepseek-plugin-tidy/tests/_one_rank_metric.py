"""``deepseek.fit`` of a model whose metric only some rows return (test helper for
``test_tidy_allreduce.py``), under the strategy named on the command line: under torchrun for
``tidy.allreduce``, in the test's own process for ``single``.

``Twos`` returns ``late`` (its mean probability of class 2 over the rows labelled 2) only for a
batch holding a row labelled 2, and the loss alone otherwise; beside them, for every batch, the
whole-set total ``twos`` (its rows labelled 2), which the strategy's ``reduce_sum`` adds up over
the ranks: ``val_twos`` is 1, whichever rank's rows held the row. Of the 24 training rows (3 steps of 8)
only row 13 is labelled 2, and of the 16 validation rows (2 batches of 8) only row 2: so on two
ranks one rank's rows return ``late`` at step 2 and in the first validation batch, and the other's
return no metric at all.

Usage: ``python _one_rank_metric.py OUT STRATEGY``; rank r writes ``OUT/seen-r.json`` (:func:`record`),
then leaves at once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import deepseek
import torch
import torch.nn.functional as F
from deepseek.models.protocol import TrainableModel
from deepseek.training.metrics import read_metrics
from torch import nn


class Twos(TrainableModel):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> Any:
        logits = self.net(x)
        loss = F.cross_entropy(logits, label)
        twos = label == 2
        totals = {"twos": twos.sum().double()}  # on every rank, 0 where its rows hold no 2
        if not bool(twos.any()):
            return {"loss": loss, "totals": totals}
        return {"loss": loss, "late": logits.softmax(-1)[twos, 2].mean(), "totals": totals}

    def metrics_from_totals(self, totals: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"twos": totals["twos"]}


def rows(n: int, seed: int, two_at: int) -> torch.utils.data.TensorDataset:
    """``n`` rows of 4 features labelled 0 or 1, but row ``two_at`` labelled 2."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    labels[two_at] = 2
    return torch.utils.data.TensorDataset(x, labels)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def record(run_dir: Path, strategy: str) -> dict[str, Any]:
    """3 steps of 8 rows under ``strategy``, evaluating both validation batches after step 2:
    ``{"steps": [each step's record without its timings], "val": the last evaluation}``; the
    steps on rank 0 only, which writes the run's ``metrics.jsonl``."""
    config = {"train": {"max_steps": 3, "lr": 0.5, "warmup_steps": 0, "eval_interval": 2, "seed": 3},
              "data": {"eval_batches": 2}, "precision": {"dtype": "fp32"},
              "checkpoint": {"interval": 0, "at_end": False}, "logging": {"progress": False, "plot": False},
              # a collective that waits this long fails the job instead of hanging it
              "strategy": {"name": strategy, **({"timeout_s": 60.0} if strategy != "single" else {})}}
    result = deepseek.fit(Twos, rows(24, 0, 13), val_data=rows(16, 1, 2), names=("x", "label"), batch_size=8,
                          shuffle=False, run_dir=run_dir, config=config, quiet=True)
    steps = [{k: v for k, v in r.items() if k not in ("step_time", "samples_per_s")}
             for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r] if _rank() == 0 else []
    return {"steps": steps, "val": result.val_metrics}


if __name__ == "__main__":
    torch.set_num_threads(1)
    out, name = Path(sys.argv[1]), sys.argv[2]
    seen = record(out / name, name)
    (out / f"seen-{_rank()}.json").write_text(json.dumps(seen), encoding="utf-8")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # past the C++ destructors: a gloo thread's at exit can abort a finished process
