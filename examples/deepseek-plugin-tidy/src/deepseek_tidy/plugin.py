"""The module named by deepseek-tidy's ``deepseek`` entry point.

It imports no torch: the graph pass, the model, the dataset and the strategy are registered as lazy
``module:attribute`` targets, and the training callbacks live in :mod:`deepseek_tidy.losses`
(stdlib only).
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
def deepseek_register_models(register: RegisterFn) -> None:
    """Register ``tidy.line-classifier``."""
    register("tidy.line-classifier", "deepseek_tidy.classifier:LineClassifier",
             description="classifies source lines as code, comment or import (bytes, mean-pooled)")


@hookimpl
def deepseek_register_datasets(register: RegisterFn) -> None:
    """Register ``tidy.source-lines``."""
    register("tidy.source-lines", "deepseek_tidy.lines:SourceLines",
             description="standard-library source lines labelled code / comment / import")


@hookimpl
def deepseek_register_strategies(register: RegisterFn) -> None:
    """Register ``tidy.allreduce``."""
    register("tidy.allreduce", "deepseek_tidy.allreduce:AllReduceStrategy",
             description="data parallel, one process per device; gradients averaged with one all-reduce")


@hookimpl
def deepseek_train_start(trainer: Any) -> None:
    """Start (or, on resume, trim) ``losses.csv`` in the run folder on rank 0."""
    losses.start(trainer)


@hookimpl
def deepseek_train_step_end(trainer: Any, step: int, metrics: dict[str, float]) -> None:
    """Append the step's loss to ``losses.csv`` (rank 0); stop on a NaN or infinite loss."""
    losses.step_end(trainer, step, metrics)

