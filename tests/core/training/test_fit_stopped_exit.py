"""A ``deepseek.fit`` stopped by SIGTERM returns (``stopped_by``) rather than exiting, so a script
under ``deepseek run`` / ``deepseek launch -- run`` ended 0 and a requeue waiting for 75 took the
job for finished: docs/python-api.md's block ``fit-stopped`` makes the script exit 75. Here: the
block, run after a fit that a SIGTERM to this process stops at step 2, exits 75; after a fit that
completes it does nothing; and the stopped run resumes to the end."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from test_python_api_doc import blocks
from torch import nn

import deepseek
from deepseek.plugins.host import PluginHost
from deepseek.training.preemption import EXIT_PREEMPTED

CONFIG = {"train": {"max_steps": 4, "warmup_steps": 0, "eval_interval": 2}, "checkpoint": {"interval": 2},
          "logging": {"progress": False, "plot": False}}


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.body(x), y)


class TermAtStep2:
    """SIGTERM to this process after step 2, once."""

    sent = False

    @deepseek.hookimpl
    def deepseek_train_step_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        if step == 2 and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def the_page_block(result: Any) -> None:
    exec(compile(blocks()["fit-stopped"], "docs/python-api.md:fit-stopped", "exec"), {"result": result})  # noqa: S102


def test_a_stopped_fit_exits_75_through_the_page_block(tmp_path: Path) -> None:
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
    host = PluginHost()
    host.register_plugin(TermAtStep2(), dist="term-at-step-2")
    run = tmp_path / "run"
    stopped = deepseek.fit(Linear, data, names=("x", "y"), batch_size=8, config=CONFIG, run_dir=run, quiet=True,
                           host=host)
    assert (stopped.stopped_by, stopped.step) == ("SIGTERM", 2)
    with pytest.raises(SystemExit) as done:
        the_page_block(stopped)
    assert done.value.code == EXIT_PREEMPTED == 75
    finished = deepseek.fit(Linear, data, names=("x", "y"), batch_size=8, config=CONFIG, resume=run, quiet=True,
                            host=host)
    assert (finished.stopped_by, finished.resumed_at, finished.step) == (None, 2, 4)
    the_page_block(finished)  # a finished run: the script goes on
