"""Core's other optimizers under the pro strategies (torchrun, 2 processes, CPU): sgd, adafactor
and lion under ``ddp`` and ``fsdp`` against ``single``, lion under DeepSpeed ZeRO-2 resumed from a
mid-run checkpoint, and DeepSpeed's refusal of adafactor when the config loads.

Tolerance as in test_ddp / test_fsdp: the same updates up to the summation order of the gradient
reduction, 1e-5 relative over a few fp32 steps (lion's sign is exact unless an element's
interpolated momentum sits within rounding of 0: the key third of each qkv bias, whose gradient is
zero in exact arithmetic, so lion's weights part there by up to 2 lr a step; the losses, which
do not depend on that bias, are what is compared)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _prohelpers import PARITY_STEPS, losses, run_single, run_train_jobs, tiny_run

from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError

RTOL = 1e-5
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer": {"name": "sgd", "nesterov": True}, "train": {"lr": 3e-2}},
    "adafactor": {"optimizer": {"name": "adafactor"}, "train": {"lr": 3e-2}},
    "lion": {"optimizer": {"name": "lion", "betas": [0.9, 0.99]}, "train": {"lr": 3e-4}},
}

UNSUPPORTED = {("fsdp", "adafactor")}
"""torch's Adafactor squares a column norm of an FSDP2 DTensor shard in place (a _NormPartial that
must become Replicate), which fails at the first step: the config refuses the pair
(:func:`test_adafactor_is_refused_where_the_strategy_shards_or_flattens_parameters`)."""


def _config(strategy: str, which: str, steps: int = PARITY_STEPS, **sections: Any) -> dict[str, Any]:
    return tiny_run(strategy, steps, **{**OPTIMIZERS[which], **sections})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("optimizer_runs")
    jobs = [{"name": f"{s}_{o}", "config": _config(s, o)} for o in OPTIMIZERS for s in ("ddp", "fsdp")
            if (s, o) not in UNSUPPORTED]
    ds = _config("deepspeed", "lion", 6, options={"stage": 2}, checkpoint={"interval": 3})
    jobs += [{"name": "ds_lion", "config": ds},
             {"name": "ds_lion_resumed", "config": ds, "resume": work / "ds_lion" / "checkpoints" / "step-3"}]
    records = run_train_jobs(jobs, work, timeout=900)
    for which in OPTIMIZERS:
        records[f"single_{which}"] = run_single(_config("single", which), work / f"single_{which}")
    return {**records, "dir": work}


@pytest.mark.parametrize(("which", "strategy"),
                         [(o, s) for o in sorted(OPTIMIZERS) for s in ("ddp", "fsdp") if (s, o) not in UNSUPPORTED])
def test_strategies_equal_single(which: str, strategy: str, runs: dict[str, Any]) -> None:
    ref = losses(runs[f"single_{which}"])
    assert len(ref) == PARITY_STEPS and ref[-1] < ref[0]
    assert losses(runs[f"{strategy}_{which}"]) == pytest.approx(ref, rel=RTOL)


def test_deepspeed_resumes_lion_exactly(runs: dict[str, Any]) -> None:
    straight, resumed = losses(runs["ds_lion"]), losses(runs["ds_lion_resumed"])
    assert len(straight) == 6
    assert resumed == straight[3:]  # exp_avg scattered back into the ZeRO partitions to the bit


def test_deepspeed_refuses_non_elementwise_optimizers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^optimizer.name: 'adafactor' is not element-wise"):
        config_from_dict(_config("deepspeed", "adafactor"))
    with pytest.raises(ConfigError, match=r"^strategy.optimizer: 'deepspeed' builds DeepSpeed's own AdamW"):
        config_from_dict(_config("deepspeed", "lion", options={"optimizer": "deepspeed"}))


SILENT_PLUGIN = """
from deepseek.hookspecs import hookimpl
from deepseek.training.lion import LionBuilder
from deepseek.training.optimizers import OptimizerBuilder

class SilentLion(LionBuilder):
    initial_state = OptimizerBuilder.initial_state  # says nothing about its state before a step

@hookimpl
def deepseek_register_optimizers(register):
    register("silentlion", "deepseek_silent:SilentLion", description="lion without initial_state")
"""


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_deepspeed_refuses_to_resume_an_optimizer_without_initial_state(runs: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    info = plugins / "deepseek_silent-0.1.dist-info"
    info.mkdir(parents=True)
    (plugins / "deepseek_silent.py").write_text(SILENT_PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-silent\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deepseek]\nsilent = deepseek_silent\n")
    run = tmp_path / "run"
    shutil.copytree(Path(runs["dir"]) / "ds_lion", run)
    before = _digest(run)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]),
           "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    sets = ["--set", "optimizer.name=silentlion"]
    proc = subprocess.run(
        [sys.executable, "-m", "deepseek", "launch", "-n", "2", "--", "train", str(run / "config.toml"),
         "--max-steps", "8", "--resume", str(run), *sets],
        capture_output=True, text=True, env=env, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert proc.returncode == 2, proc.stderr[-3000:]
    # one line from the launcher (Strategy.check_resume), not one per rank after DeepSpeed's set-up
    assert errors == ["error: --resume: optimizer 'silentlion' does not state its state before a first step "
                      "(OptimizerBuilder.initial_state), which strategy 'deepspeed' needs to load optimizer state "
                      "into ZeRO partitions; resume with strategy 'ddp' or 'fsdp' (same checkpoint)"], proc.stderr[-3000:]
    assert _digest(run) == before  # nothing written


@pytest.mark.parametrize(("strategy", "message"), [
    ("fsdp", "'adafactor' cannot step parameters sharded as DTensors, which strategy 'fsdp' gives it"),
    ("tp", "'adafactor' cannot step parameters sharded as DTensors, which strategy 'tp' gives it"),
    ("hybrid", "'adafactor' cannot step parameters sharded as DTensors, which strategy 'hybrid' gives it"),
    ("deepspeed", "'adafactor' is not element-wise (it reads each parameter's shape or norm), and strategy "
                  "'deepspeed' steps the optimizer on flat partitions"),
])
def test_adafactor_is_refused_where_the_strategy_shards_or_flattens_parameters(strategy: str, message: str) -> None:
    """One rule (core's placement_problem over Strategy.optimizer_parameters and the builder's
    declarations), when the config loads: before any process starts."""
    with pytest.raises(ConfigError, match="^optimizer.name: " + re.escape(message)) as info:
        config_from_dict({"optimizer": {"name": "adafactor"}, "strategy": {"name": strategy}})
    assert "\n" not in str(info.value)
