"""What must fit the job's size before ``deepseek launch`` starts any process.

Rules that need no world size live with what they concern and run whenever a config is loaded
(``deepseek train`` and ``deepseek launch`` alike): the strategy's own ``Strategy.check_config``,
the one compression rule of core (``deepseek.training.grad_compression.compression_problem``), the
capabilities the strategy needs from the model. Here: the rules that need the number of
processes, then the strategy's ``Strategy.check_launch(config, world_size, model)`` with the model
built on the meta device, and the ``[[optimizer.groups]]`` rules against its parameter names
(``deepseek.training.param_groups.check_model_rules``, which each rank runs again at set-up).
Every rule raises one line naming the fields and the fix.

The batch must split over the data-parallel ranks: each rank checks that at set-up
(``deepseek.training.engine.check_batch_split``), and the launcher runs the same rule first over
the ranks the strategy declares it will form (``Strategy.data_parallel_size``: every process by
default; ``tp`` and ``pipeline`` 1; ``hybrid`` from its mesh).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from deepseek.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from deepseek.config.schema import Config
    from deepseek.plugins.host import PluginHost


def check_launch(
    config: Config, world_size: int, *, cuda_devices: int, nproc_per_node: int, host: PluginHost | None = None,
    resume: str | None = None,
) -> None:
    """Rules that need the job's size (and, with ``resume``, the strategy's
    ``Strategy.check_resume``): raise ConfigError or UsageError before any process starts."""
    import torch

    from deepseek.plugins.calls import class_calls
    from deepseek.training.build import build_model, run_host, strategies_where
    from deepseek.training.engine import check_batch_split
    from deepseek.training.param_groups import check_model_rules
    from deepseek.training.strategy_rules import skipped_parameters_problem

    name = config.strategy.name
    lookups = run_host(config, host)
    component = lookups.resolve("strategy", name)
    cls: Any = component.load()
    if world_size > 1 and not cls.needs_launcher:
        several = strategies_where(lookups, lambda c: c.needs_launcher)
        raise ConfigError(
            f"strategy.name: {name!r} trains in one process, but this launch starts {world_size}; "
            f"use --strategy {' or '.join(several) or 'with needs_launcher'}, or launch -n 1"
        )
    with class_calls(component, "device_type"):  # a declared device that is none: the plugin's bug, one line
        backend, device = _backend_device(cls, config.strategy.options, cuda_devices=cuda_devices)
        if device == "cuda" and not cuda_devices:
            raise ConfigError(_no_cuda_line(cls, name, config.strategy.options, backend))
    if cuda_devices and device == "cuda" and nproc_per_node > cuda_devices:
        raise ConfigError(
            f"launch: -n {nproc_per_node} processes per node but only {cuda_devices} CUDA device(s) "
            f"are visible; use -n {cuda_devices} or fewer (one process per GPU)"
        )
    check_batch_split(config, cls.data_parallel_size(config, world_size))
    with torch.random.fork_rng(devices=[]):
        model = build_model(config, host=host, strategy_cls=cls, create_on=torch.device("meta"))
    check_model_rules(config.optimizer.groups, model)
    skipped = skipped_parameters_problem(model, cls, model_name=config.model.name, strategy_name=name, host=lookups)
    if skipped is not None:
        raise UsageError(skipped)
    cls.check_launch(config, world_size, model)
    if resume:
        import warnings

        from deepseek.training.build import create_optimizer_builder
        from deepseek.training.checkpoint import resolve_checkpoint
        from deepseek.training.checkpoint_dirs import CheckpointWarning
        from deepseek.training.run_state import check_resumed_weights

        cls.check_resume(config, create_optimizer_builder(config, host))
        with warnings.catch_warnings():  # a checkpoint passed over is said once, by the workers' trainer
            warnings.simplefilter("ignore", CheckpointWarning)
            check_resumed_weights(config, model, resolve_checkpoint(resume, resuming=True), lookups)  # the workers' first check


def _backend_device(cls: Any, options: Any, *, cuda_devices: int) -> tuple[str, str | None]:
    """``strategy.backend`` and the device the ranks compute on (None: neither). Pro's strategies
    answer by their declared rule (``DistributedStrategy.resolved_device_type``); a strategy on
    core's ``Strategy`` by its optional ``backend`` field (docs/plugins.md section 12; ``auto``
    without it): gloo on the CPU, nccl on CUDA, auto on CUDA where devices are visible."""
    from deepseek_pro.strategies.base import DistributedStrategy

    if issubclass(cls, DistributedStrategy):
        return options.backend, cls.resolved_device_type(options, cuda_available=cuda_devices > 0)
    declared = {f.name for f in dataclasses.fields(options)} if dataclasses.is_dataclass(options) else set()
    backend = options.backend if "backend" in declared else "auto"
    return backend, {"gloo": "cpu", "nccl": "cuda", "auto": "cuda" if cuda_devices else "cpu"}.get(backend)


def _no_cuda_line(cls: Any, name: str, options: Any, backend: str) -> str:
    """The line refusing a launch whose ranks compute on CUDA (under ``backend``) where no CUDA
    device is visible: the backends that put this strategy's ranks on the CPU instead (gloo and
    auto for nccl, by the rule :func:`_backend_device` reads), or, for a strategy that computes
    on CUDA under every backend (its declared ``device_type``), a machine with CUDA devices."""
    cpu = [other for other in ("gloo", "auto") if other != backend
           and _backend_device(cls, dataclasses.replace(options, backend=other), cuda_devices=0)[1] == "cpu"]
    if cpu and backend == "nccl":
        return f"strategy.backend: 'nccl' needs CUDA devices and none is visible; use {' or '.join(map(repr, cpu))}"
    if cpu:
        return (f"strategy.backend: strategy {name!r} computes on CUDA devices under {backend!r} (its device_type) "
                f"and none is visible; use {' or '.join(map(repr, cpu))}")
    return (f"strategy.name: {name!r} computes on CUDA devices under every backend (its device_type) and none is "
            "visible; launch it where CUDA devices are visible, or use a strategy whose ranks run on the CPU "
            "(ddp with strategy.backend = 'gloo')")
