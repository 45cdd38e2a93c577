"""docs/plugins.md section 14 works as the page shows it: its optimizer (``SignSGD``) and its
schedule (``StepDecay``), the code blocks marked ``<!-- test: ... -->``, run as modules, are
registered on an in-process host and train a tiny GPT: the rates follow the schedule, the run
resumes exactly, and the optimizer's declarations hold (no state kept, the same step on a flat
concatenation as on the parameters apart)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import torch

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.config.schema import OptimizerConfig
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer

DOC = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"
BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\n```python\n(.*?)\n```", re.S)
TINY = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 16},
    "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
    "train": {"max_steps": 6, "warmup_steps": 1, "eval_interval": 0, "lr": 3e-3},
    "precision": {"dtype": "fp32"}, "strategy": {"name": "single", "device": "cpu"},
    "checkpoint": {"interval": 3, "keep_last": 3}, "logging": {"progress": False, "plot": False},
}


def _module(marker: str, monkeypatch: Any) -> types.ModuleType:
    """The page's block ``marker`` run as a module (in ``sys.modules`` for the test's length:
    its dataclasses look their module up there)."""
    blocks = dict(BLOCK.findall(DOC.read_text(encoding="utf-8")))
    module = types.ModuleType(f"doc_{marker.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(blocks[marker], f"docs/plugins.md:{marker}", "exec"), module.__dict__)  # noqa: S102
    return module


def test_the_pages_optimizer_and_schedule_train_resume_and_keep_their_declarations(
        tmp_path: Path, monkeypatch: Any) -> None:
    optim, schedules = _module("optimizer-plugin", monkeypatch), _module("schedule-plugin", monkeypatch)

    class Plugin:
        @hookimpl
        def deepseek_register_optimizers(self, register: Any) -> None:
            register("acme.signsgd", optim.SignSGD, description="steps by the gradient's sign")

        @hookimpl
        def deepseek_register_lr_schedules(self, register: Any) -> None:
            register("acme.step", schedules.StepDecay, description="step decay")

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-acme").status == "ok"
    config = config_from_dict({**TINY, "optimizer": {"name": "acme.signsgd", "weight_decay": 0.0, "scale": 0.5},
                               "lr_schedule": {"name": "acme.step", "factor": 0.5, "every": 2}}, host=host)
    whole = Trainer(config, run_dir=tmp_path / "whole", quiet=True, host=host).fit()
    rates = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "whole" / "metrics.jsonl") if "lr" in r}
    assert rates == {1: 3e-3, 2: 3e-3, 3: 1.5e-3, 4: 1.5e-3, 5: 7.5e-4, 6: 7.5e-4}
    resumed = Trainer(config, run_dir=tmp_path / "resumed", quiet=True, host=host,
                      resume=tmp_path / "whole" / "checkpoints" / "step-3").fit()
    assert resumed.losses == whole.losses[3:]
    # its option acts: `scale` multiplies the step though the trainer sets every group's lr from
    # the schedule (folded into create()'s lr it changed nothing, scale 1.0 and 0.01 the same losses)
    other = config_from_dict({**TINY, "optimizer": {"name": "acme.signsgd", "weight_decay": 0.0, "scale": 0.01},
                              "lr_schedule": {"name": "acme.step", "factor": 0.5, "every": 2},
                              "train": {**TINY["train"], "max_steps": 2}}, host=host)
    small = Trainer(other, run_dir=tmp_path / "small", quiet=True, host=host).fit()
    assert small.losses[0] == whole.losses[0] and small.losses[1] != whole.losses[1]
    layer = torch.nn.Linear(3, 2)
    before = layer.weight.detach().clone()
    layer(torch.ones(1, 3)).sum().backward()
    opt = optim.SignSGD(optim.SignSGDOptions(scale=0.5), OptimizerConfig()).create(
        [{"params": [layer.weight], "weight_decay": 0.0, "lr_scale": 1.0}], 1.0)
    for group in opt.param_groups:  # what the trainer does before every step (Strategy.set_lr)
        group["lr"] = 0.1 * group["lr_scale"]
    opt.step()
    assert torch.allclose(before - layer.weight.detach(), torch.full_like(before, 0.05))

    builder = optim.SignSGD(optim.SignSGDOptions(), OptimizerConfig())
    apart = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in apart]))
    grads = [torch.randn(4, 3), torch.randn(3)]
    for p, g in zip(apart, grads, strict=True):
        p.grad = g
    flat.grad = torch.cat([g.reshape(-1) for g in grads])
    for params in (apart, [flat]):
        opt = builder.create([{"params": params, "weight_decay": 0.0}], 0.1)
        opt.step()
        assert builder.state_bytes == 0 and not any(opt.state.values())
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in apart]), flat.detach())


def test_the_schedule_attributes_the_page_names_are_the_base_classes() -> None:
    """Section 14 names what ``LRSchedule`` keeps for ``lr_at`` (an outside author writing a
    cyclic schedule needed ``decay_steps`` and found only the constructor's keywords)."""
    from deepseek.training.schedule import LRSchedule

    page = " ".join(DOC.read_text(encoding="utf-8").split())
    names = ("options", "lr", "min_lr", "warmup_steps", "decay_steps")
    assert ("the base class keeps them as " + ", ".join(f"`self.{n}`" for n in names[:-1])
            + f" and `self.{names[-1]}`, which `lr_at` reads") in page
    schedule = LRSchedule(None, lr=0.5, min_lr=0.1, warmup_steps=2, decay_steps=9)
    assert [getattr(schedule, n) for n in names[1:]] == [0.5, 0.1, 2, 9]
    assert schedule.options == LRSchedule.Options()
