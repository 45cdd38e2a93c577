"""deepseek-pro's entry-point plugin: distributed strategies and the launcher, registered lazily
(nothing heavy is imported until a component is created)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from deepseek.hookspecs import RegisterFn, hookimpl

if TYPE_CHECKING:
    from deepseek.training.trainer import Trainer


@hookimpl
def deepseek_register_strategies(register: RegisterFn) -> None:
    """ddp, fsdp (alias zero3), deepspeed, pipeline, hybrid, tp."""
    register("ddp", "deepseek_pro.strategies.ddp:DDPStrategy",
             description="torch DistributedDataParallel, optional gradient compression",
             declares={"memory_rows": ["ddp"]})
    register("fsdp", "deepseek_pro.strategies.fsdp:FSDPStrategy", aliases=("zero3",),
             description="FSDP2 fully_shard (ZeRO-3), mixed-precision policy, CPU offload",
             declares={"memory_rows": ["zero3", "zero3+offload"]})
    register("deepspeed", "deepseek_pro.strategies.deepspeed:DeepSpeedStrategy",
             description="DeepSpeed ZeRO stage 1/2/3 with optimizer/parameter CPU offload",
             declares={"memory_rows": ["single+offload", "zero1", "zero1+offload", "zero2", "zero2+offload"]})
    register("pipeline", "deepseek_pro.strategies.pipeline:PipelineStrategy",
             description="torch.distributed.pipelining, GPipe or 1F1B schedule")
    register("hybrid", "deepseek_pro.strategies.hybrid:HybridStrategy",
             description="pipeline stages x sharded data parallel on a 2-D DeviceMesh")
    register("tp", "deepseek_pro.strategies.tp:TPStrategy",
             description="tensor parallelism (DTensor parallelize_module), optional sequence parallelism",
             declares={"memory_rows": ["tp", "tp+sp"]})


@hookimpl
def deepseek_register_commands(register: RegisterFn) -> None:
    """``deepseek launch`` (torchrun's elastic agent with validation and a hang watchdog) and
    ``deepseek checkpoint`` (info / export to the canonical format)."""
    register("launch", "deepseek_pro.launch.cli:launch",
             description="run a command on N processes / nodes (wraps torchrun)")
    register("checkpoint", "deepseek_pro.checkpoint_cmd:checkpoint",
             description="inspect checkpoints; export any (sharded too) to the canonical format")


# ----------------------------------------------------------------------------- heartbeats
# Under ``deepseek launch`` every rank reports progress so that the launcher's watchdog can name
# a hung rank; outside the launcher ``beat`` is a no-op. ``trylast``: a step counts as done only
# after every other plugin's hook for it has returned.


@hookimpl(trylast=True)
def deepseek_train_start(trainer: Trainer) -> None:
    """Heartbeat: set-up is done."""
    from deepseek_pro.launch.heartbeat import beat

    beat("train", trainer.step)


@hookimpl(trylast=True)
def deepseek_train_step_end(trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
    """Heartbeat: optimizer step ``step`` is done."""
    from deepseek_pro.launch.heartbeat import beat

    beat("step", step)


@hookimpl(trylast=True)
def deepseek_evaluate(trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
    """Heartbeat: an evaluation is done (before step 1 it still counts as start-up)."""
    from deepseek_pro.launch.heartbeat import beat

    beat("eval" if step > 0 else "train", step)


@hookimpl(trylast=True)
def deepseek_checkpoint_saved(trainer: Trainer, path: Path, step: int) -> None:
    """Heartbeat: a checkpoint is written."""
    from deepseek_pro.launch.heartbeat import beat

    beat("checkpoint", step)


@hookimpl(trylast=True)
def deepseek_train_end(trainer: Trainer, metrics: dict[str, float]) -> None:
    """Heartbeat: training is over; the watchdog stops watching this rank."""
    from deepseek_pro.launch.heartbeat import beat

    beat("end", trainer.step)

