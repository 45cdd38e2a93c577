"""deepseek-tidy inside the framework: with the real trainer and with deepseek.optimize."""

from __future__ import annotations

import csv
from pathlib import Path

import deepseek
import pytest
import torch
from deepseek.plugins.host import PluginHost, get_host
from deepseek.plugins.settings import PluginSettings
from torch import nn

from deepseek_tidy.casts import cast_method

TINY = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 2, "max_seq_len": 32},
    "data": {"seq_len": 32, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
    "train": {"max_steps": 5, "warmup_steps": 1, "eval_interval": 0},
    "precision": {"dtype": "fp32"},
    "strategy": {"name": "single", "device": "cpu"},
    "checkpoint": {"interval": 0, "at_end": False},
    "logging": {"progress": False, "plot": False},
}


@pytest.fixture
def tidy_loaded() -> None:
    """The trainer and ``deepseek.optimize`` look components up in the process's host, which
    loads every installed plugin the environment allows: deepseek-tidy must be one of them."""
    record = get_host().records.get("deepseek-tidy")
    assert record is not None and record.status == "ok", record and record.reason


def test_training_run_writes_losses_csv(tidy_loaded: None, tmp_path: Path) -> None:
    from deepseek.config.load import config_from_dict
    from deepseek.training.trainer import Trainer

    config = config_from_dict({**TINY, "logging": {**TINY["logging"], "runs_dir": str(tmp_path)}})
    result = Trainer(config, run_dir=tmp_path / "run", quiet=True).fit()
    with (result.run_dir / "losses.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "loss", "lr"]
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4, 5]
    assert [float(r[1]) for r in rows[1:]] == result.losses  # exact: written with repr()


class Casty(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x.float()).to(torch.float32)
        return self.b(torch.relu(h).contiguous())


def test_optimizer_runs_the_pass_by_name(tidy_loaded: None) -> None:
    torch.manual_seed(0)
    model = Casty().eval()
    x = torch.randn(3, 16)
    expected = model(x)
    optimized = deepseek.optimize(model, (x,), passes=["tidy.drop-noop-casts"], cache=False, runs=2, warmup=1)
    report = next(r for r in optimized.plan.passes if r.name == "tidy.drop-noop-casts")
    assert report.status == "applied", report
    assert report.changes == ["removed 3 no-op conversion(s): contiguous x1, float x1, to x1"]
    assert torch.equal(optimized(x), expected)
    assert [m for n in torch.fx.symbolic_trace(model).graph.nodes if (m := cast_method(n))] == ["float", "to", "contiguous"]


def test_auto_considers_the_pass() -> None:
    torch.manual_seed(0)
    model = Casty().eval()
    x = torch.randn(3, 16)
    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-tidy"})))
    optimized = deepseek.optimize(model, (x,), stages=["fx"], cache=False, runs=2, warmup=1, host=host)
    report = next(r for r in optimized.plan.passes if r.name == "tidy.drop-noop-casts")
    # fired and verified exact; kept ("applied") only when the timed pipeline was faster with it
    assert report.status in ("applied", "not-faster"), report
    assert report.max_rel_error == 0.0 and report.ms_with is not None and report.ms_without is not None
    assert torch.equal(optimized(x), model(x))
