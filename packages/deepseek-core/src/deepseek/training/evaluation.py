"""Evaluation: one batch through a model without gradients, and the mean over a validation set.

:func:`evaluate_batch` is the one implementation every strategy's ``evaluate`` and ``deepseek
eval`` use; :func:`summarize` turns per-batch results into ``{"val_loss": ..., "val_<metric>":
...}`` with one read from the device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from deepseek.data.batch import Batch, move_to
from deepseek.models.protocol import split_output
from deepseek.training.metrics import read_scalars

Evaluation = tuple[torch.Tensor, dict[str, torch.Tensor]]
"""``(loss, metrics)`` of one batch, detached fp32 0-dim tensors."""


def evaluate_batch(
    module: nn.Module,
    batch: Batch,
    *,
    device: torch.device,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
    model_name: str = "model",
) -> Evaluation:
    """``module(**batch)`` on ``device`` in eval mode without gradients (under ``autocast``)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            moved = move_to(batch, device)
            with autocast if autocast is not None else contextlib.nullcontext():
                loss, metrics = split_output(module(**moved), model_name=model_name)
    finally:
        module.train(was_training)
    return loss.detach().float(), {k: v.detach().float() for k, v in metrics.items()}


def summarize(results: Sequence[Evaluation]) -> dict[str, float]:
    """Means over batches: ``{"val_loss": ..., "val_<metric>": ...}`` (metric names of the first)."""
    names = sorted(results[0][1])
    values = read_scalars([v for loss, m in results for v in (loss, *(m[k] for k in names))])
    width = 1 + len(names)
    return {f"val_{key}": sum(values[j::width]) / len(results) for j, key in enumerate(["loss", *names])}
