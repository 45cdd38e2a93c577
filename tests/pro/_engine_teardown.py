"""``deepseek.fit`` runs one after another in one torchrun job, each making and destroying its own
process group, with what is still alive when the group is destroyed recorded (test helper).

Usage: ``python tests/pro/_engine_teardown.py OUT NAME [NAME ...]`` under torchrun; NAME a strategy
(``ddp``, ``fsdp``, ``pipeline``, ``deepspeed``) or ``<strategy>+fail`` for a run whose model raises
in its second step's forward. A callback keeps the Trainer (as a user holding it after ``fit``
does). Every rank writes ``OUT/<name>-rank<R>.json``: ``alive``, the engine objects
(``DistributedDataParallel``, ``FSDPModule``, ``PipelineStage``, ``DeepSpeedEngine``) the garbage
collector still tracks when ``destroy_process_group`` is called (every run's so far, before the
group of this one goes); ``model``, the class of ``trainer.model`` after the run (``None`` for
none); for a ``ddp`` run that succeeded, ``unwrapped``, whether ``strategy.unwrapped_model()`` is
that module, and ``diff``, the largest difference between its weights and the run's last checkpoint
(inf for a weight it lacks); ``error``, the class of the run's error.
"""

from __future__ import annotations

import gc
import json
import math
import os
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from _probe import run_cases
from _probe import token_rows as tokens
from deepspeed import DeepSpeedEngine
from torch.distributed.fsdp import FSDPModule
from torch.distributed.pipelining import PipelineStage
from torch.nn.parallel import DistributedDataParallel

import deepseek
from deepseek.plugins.host import PluginHost
from deepseek.training.checkpoint import load_model_state

ALIVE: list[list[str]] = []
ENGINES = DistributedDataParallel | FSDPModule | PipelineStage | DeepSpeedEngine
_destroy = dist.destroy_process_group


def destroy(*args: Any, **kwargs: Any) -> None:
    """torch's, after noting the engine objects alive (no collection first: what the strategy left)."""
    with warnings.catch_warnings():  # an isinstance of a lazy torch.distributed object warns
        warnings.simplefilter("ignore")
        ALIVE.append(sorted(type(o).__name__ for o in gc.get_objects() if isinstance(o, ENGINES)))
    _destroy(*args, **kwargs)


dist.destroy_process_group = destroy


class Keeper:
    def __init__(self) -> None:
        self.trainer: Any = None

    @deepseek.hookimpl
    def deepseek_train_start(self, trainer):  # noqa: ANN001, ANN201
        self.trainer = trainer


class Failing(torch.nn.Module):
    """A tiny GPT whose second training forward raises."""

    def __init__(self) -> None:
        super().__init__()
        self.gpt, self.calls = model(), 0

    def forward(self, **batch: Any) -> Any:
        self.calls += self.training
        if self.calls == 2:
            raise RuntimeError("model failure in step 2")
        return self.gpt(**batch)


def model(layers: int = 1) -> torch.nn.Module:
    return deepseek.create_model("tiny", d_model=16, n_heads=2, n_layers=layers, max_seq_len=16)


def run(out: Path, name: str) -> None:
    strategy, _, variant = name.partition("+")
    keeper, host = Keeper(), PluginHost()
    host.register_plugin(keeper, dist="trainer-keeper")
    config = {"train": {"max_steps": 2, "lr": 1e-2, "warmup_steps": 0}, "precision": {"dtype": "fp32"},
              "data": {"eval_batches": 0}, "strategy": {"name": strategy}, "logging": {"progress": False, "plot": False}}
    report: dict[str, Any] = {}
    try:
        build = Failing if variant == "fail" else partial(model, 2 if strategy == "pipeline" else 1)  # a block a stage
        result = deepseek.fit(build, tokens(32, 0), names=("input_ids", "targets"),
                              batch_size=8, config=config, quiet=True, run_dir=out / name, host=host)
    except Exception as exc:
        report["error"] = type(exc).__name__
    trainer = keeper.trainer
    report |= {"alive": ALIVE[-1], "model": None if trainer.model is None else type(trainer.model).__name__}
    if strategy == "ddp" and "error" not in report:
        saved = load_model_state(result.checkpoint / "model.safetensors")
        trained = trainer.model.state_dict()
        report["diff"] = max((trained[k] - v).abs().max().item() if k in trained else math.inf for k, v in saved.items())
        report["unwrapped"] = trainer.strategy.unwrapped_model() is trainer.model
    (out / f"{name}-rank{os.environ['RANK']}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    run_cases(run)
