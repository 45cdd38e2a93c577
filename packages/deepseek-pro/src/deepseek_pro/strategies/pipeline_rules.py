"""``pipeline``'s ``[strategy]`` keys and the rules a pipeline config must meet, checked without a
process (when a config loads and before ``deepseek launch``): one block per stage at least, rows
that split into the pipeline micro-batches, and 1F1B's micro-batch per stage. ``hybrid`` checks
its configs with the same rules; :mod:`deepseek_pro.strategies.pipeline` imports them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from deepseek.config.validate import non_negative
from deepseek.errors import ConfigError
from deepseek.models.capabilities import model_capabilities
from deepseek_pro.strategies.base import DistributedOptions

if TYPE_CHECKING:
    from torch import nn

    from deepseek.config.schema import Config


@dataclass(frozen=True)
class PipelineOptions(DistributedOptions):
    """``[strategy]`` keys of ``pipeline``."""

    schedule: Literal["gpipe", "1f1b"] = "1f1b"
    """``gpipe``: all forwards, then all backwards; ``1f1b``: interleaved (less activation memory)."""
    microbatches: int = field(default=0, metadata={"check": non_negative})
    """Pipeline micro-batches per step; 0: max(train.grad_accum, number of stages)."""


def pipeline_microbatches(options: Any, grad_accum: int, stages: int) -> int:
    """How many pipeline micro-batches one optimizer step runs (see the module docstring)."""
    return int(options.microbatches) or max(grad_accum, stages)


def model_blocks(model: nn.Module) -> int | None:
    """How many blocks ``model`` has (``None`` when it offers no per-block structure)."""
    return len(model.block_modules()) if "blocks" in model_capabilities(model) else None  # type: ignore[operator]


def check_pipeline_fit(config: Config, stages: int, dp: int, n_blocks: int | None) -> None:
    """ConfigError when ``config`` cannot run as ``stages`` pipeline stages x ``dp`` replicas
    (``n_blocks``: the model's blocks, one per stage at least; ``None``: not known)."""
    if n_blocks is not None and stages > n_blocks:
        raise ConfigError(
            f"strategy.name: {config.strategy.name!r} needs one block per stage, but the model has "
            f"{n_blocks} blocks for {stages} stages; use at most {n_blocks} stages or a deeper model"
        )
    rows = config.data.batch_size // max(dp, 1)
    n = pipeline_microbatches(config.strategy.options, config.train.grad_accum, stages)
    if config.data.batch_size % max(dp, 1) or rows % n:
        raise ConfigError(
            f"strategy.microbatches: {rows} rows per pipeline do not split into {n} micro-batches; "
            f"make data.batch_size a multiple of {n * max(dp, 1)} or set strategy.microbatches"
        )
    if config.strategy.options.schedule == "1f1b" and n < stages:
        raise ConfigError(
            f"strategy.microbatches: the 1f1b schedule needs at least one micro-batch per stage "
            f"({stages}), got {n}; raise strategy.microbatches or use schedule = 'gpipe'"
        )
