"""deepseek-pro's entry-point plugin: distributed strategies and the launcher, registered lazily
(nothing heavy is imported until a component is created)."""

from deepseek.hookspecs import RegisterFn, hookimpl


@hookimpl
def deepseek_register_strategies(register: RegisterFn) -> None:
    """ddp, fsdp (alias zero3), deepspeed, pipeline, hybrid."""
    register("ddp", "deepseek_pro.strategies.ddp:DDPStrategy",
             description="torch DistributedDataParallel, optional gradient compression")
    register("fsdp", "deepseek_pro.strategies.fsdp:FSDPStrategy", aliases=("zero3",),
             description="FSDP2 fully_shard (ZeRO-3), mixed-precision policy, CPU offload")
    register("deepspeed", "deepseek_pro.strategies.deepspeed:DeepSpeedStrategy",
             description="DeepSpeed ZeRO stage 1/2/3 with optimizer/parameter CPU offload")
    register("pipeline", "deepseek_pro.strategies.pipeline:PipelineStrategy",
             description="torch.distributed.pipelining, GPipe or 1F1B schedule")
    register("hybrid", "deepseek_pro.strategies.hybrid:HybridStrategy",
             description="pipeline stages x sharded data parallel on a 2-D DeviceMesh")


@hookimpl
def deepseek_register_commands(register: RegisterFn) -> None:
    """``deepseek launch``: torchrun's elastic agent with validation and a hang watchdog."""
    register("launch", "deepseek_pro.launch.cli:launch",
             description="run a command on N processes / nodes (wraps torchrun)")
