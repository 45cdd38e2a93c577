"""The module named by deepseek-tidy's ``deepseek`` entry point.

It imports no torch: the graph pass is registered as a lazy ``module:attribute`` target, and
the training callbacks live in :mod:`deepseek_tidy.losses` (stdlib only).
"""

from __future__ import annotations

from typing import Any

from deepseek import hookimpl
from deepseek.hookspecs import RegisterFn

from deepseek_tidy import losses

PASS_NAME = "tidy.drop-noop-casts"


@hookimpl
def deepseek_register_passes(register: RegisterFn) -> None:
    """Register ``tidy.drop-noop-casts``."""
    register(
        PASS_NAME,
        "deepseek_tidy.casts:DropNoopCasts",
        description="remove .to()/.type()/.float()/.contiguous()/.cpu() calls that change "
        "nothing (same dtype, device and layout)",
    )


@hookimpl
def deepseek_train_start(trainer: Any) -> None:
    """Start (or, on resume, trim) ``losses.csv`` in the run folder on rank 0."""
    losses.start(trainer)


@hookimpl
def deepseek_train_step_end(trainer: Any, step: int, metrics: dict[str, float]) -> None:
    """Append the step's loss to ``losses.csv`` (rank 0); stop on a NaN or infinite loss."""
    losses.step_end(trainer, step, metrics)

