"""A pipeline model's scalar metrics: ``pipeline_loss`` may return what a model's ``forward``
returns, the mean loss or a mapping with ``"loss"`` and named 0-dim tensors or numbers (its
metrics, e.g. ``"accuracy"``), so ``pipeline`` and ``hybrid`` log the training and validation
metrics ``single`` logs for the same model.

Only the last stage computes them. A step's pipeline micro-batches are combined by core's
:class:`~deepseek.training.step.MetricSums`, as ``single`` combines its micro-batches: each weighs
its share of the step's rows (or of its items, :func:`.pipeline_loss.chunk_weights`), and one whose metric is NaN, or that did not return it, did not
measure it there (the step's value is the weighted mean over those that did; NaN, left out of the
step record, where none did). An evaluation's batch is one part of weight ``weight``. The sums, the
measured weights and the loss reach every rank in one all-reduce (:meth:`StageMetrics.local`:
the other stages add zeros).

Every rank must take part in that all-reduce, so every rank holds the run's metric names,
agreed on after each step and evaluation by the multi-process strategies' one agreement
(:meth:`~deepseek_pro.strategies.metric_names.MetricNames.agree`, the last stages handing it the
names they saw): a metric that first appears after the first step is recorded from that step on,
as ``single`` records it, and an error found on one rank (a loss that cannot train, the model's
broken answer such as a mapping without ``"loss"``, any error the model raised on a stage during an evaluation, a metric named like
a value the trainer logs) ends every rank with the same line. Whole-set ``"totals"`` are not read
from ``pipeline_loss``: the pipeline strategies report scalar metrics only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch

from deepseek.models.checks import reserved_problem
from deepseek.plugins.calls import answer_error
from deepseek.training.step import MetricSums
from deepseek_pro.strategies.metric_names import MetricNames


class StageMetrics(MetricNames):
    """The metric names of one pipeline run, agreed on by every rank (see the module docstring):
    ``names`` are the metrics ``pipeline_loss`` returned so far; ``model_calls``, the model's
    block (``StepSettings.model_calls``), where a name it must not take is its broken answer."""

    def __init__(self, model_calls: Callable[[str], contextlib.AbstractContextManager[None]]) -> None:
        super().__init__()
        self.model_calls = model_calls

    def split(self, returned: Any) -> tuple[Any, dict[str, torch.Tensor]]:
        """``(loss, metrics)`` of what ``pipeline_loss`` returned: a mapping gives its ``"loss"``
        (``None`` when it has none) and its scalar entries as detached fp32 0-dim tensors; anything
        else is the loss itself, checked by the caller."""
        if not isinstance(returned, Mapping):
            return returned, {}
        metrics = {}
        for key, value in returned.items():
            if key == "loss":
                continue
            if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_complex():
                metrics[str(key)] = value.detach().float()
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[str(key)] = torch.tensor(float(value))
        return returned.get("loss"), metrics

    def check(self, names: set[str]) -> None:
        """Refuse a metric named like a value the trainer logs, the model's broken answer
        (``single`` refuses it in ``forward``'s output on its one process, with this wording)."""
        problem = reserved_problem("pipeline_loss returned", names)
        if problem is not None:
            raise answer_error(self.model_calls, "pipeline_loss", problem)

    @staticmethod
    def local(loss: torch.Tensor | None, sums: MetricSums | None, names: tuple[str, ...]) -> torch.Tensor:
        """What this rank adds to the all-reduce: ``[loss, total weight, each name's weighted sum,
        each name's measured weight]`` (names in the order of ``names``; a name ``sums`` lacks adds
        0 to both) on a last stage, fp32 on ``loss``'s device; zeros on the other stages
        (``loss`` ``None``)."""
        if loss is None or sums is None:
            return torch.zeros(2 + 2 * len(names))
        packed = sums.packed()
        zero = torch.zeros((), device=loss.device)
        values = [loss, packed.get(MetricSums.TOTAL, zero), *(packed.get(n, zero) for n in names),
                  *(packed.get(MetricSums.MEASURED + n, zero) for n in names)]
        return torch.stack([v.detach().float().reshape(()).to(loss.device) for v in values])

    @staticmethod
    def unpacked(reduced: torch.Tensor, names: tuple[str, ...]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, metrics)`` of :meth:`local`'s vector after the mean over the data-parallel
        replicas (:meth:`MetricSums.unpacked`: NaN for a name no part measured)."""
        k = len(names)
        if not k:
            return reduced[0], {}
        parts = {MetricSums.TOTAL: reduced[1]}
        for i, name in enumerate(names):
            parts[name] = reduced[2 + i]
            parts[MetricSums.MEASURED + name] = reduced[2 + k + i]
        return reduced[0], MetricSums.unpacked(parts)
