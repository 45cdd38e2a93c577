"""A pipeline model's scalar metrics: ``pipeline_loss`` may return what a model's ``forward``
returns, the mean loss or a mapping with ``"loss"`` and named 0-dim tensors or numbers (its
metrics, e.g. ``"accuracy"``), so ``pipeline`` and ``hybrid`` log the training and validation
metrics ``single`` logs for the same model.

Only the last stage computes them. Every rank must take part in the all-reduce that gives them to
all, so the names are agreed on once, the first time a step or an evaluation has them: each rank
gathers what the last stages saw (one ``all_gather_object``), and a refusal there (no ``"loss"``,
a name the trainer logs itself) is the same line on every rank. Whole-set ``"totals"`` are not
read from ``pipeline_loss``: the pipeline strategies report scalar metrics only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.distributed as dist

from deepseek.errors import UsageError
from deepseek.training.run_values import RESERVED_METRICS


class StageMetrics:
    """The metric names of one pipeline run, agreed on by every rank (see the module docstring)."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.names: tuple[str, ...] | None = None
        """The metrics ``pipeline_loss`` returns, sorted; ``None`` until the ranks agreed."""

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

    def missing_loss(self, loss: Any) -> str | None:
        """The line refusing a mapping without ``"loss"`` (``loss`` is what :meth:`split` found)."""
        if loss is None:
            return (f"model {self.model_name!r}: pipeline_loss returned a mapping without 'loss'; return the mean "
                    "loss (a 0-dim tensor) or a mapping with the key 'loss' and the model's metrics")
        return None

    def agree(self, seen: Iterable[str] | None, problem: str | None = None) -> tuple[str, ...]:
        """The run's metric names on every rank: ``seen`` on the last stages (``None`` on the
        others), gathered the first time; ``problem``, a last stage's refusal, is raised on every
        rank then (later, where it arises: the names are known by then)."""
        if self.names is not None:
            if problem is not None:
                raise UsageError(problem)
            return self.names
        mine = (tuple(sorted(seen)) if seen is not None else None, problem)
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        refused = next((p for _, p in gathered if p), None)
        if refused is not None:
            raise UsageError(refused)
        names = next((n for n, _ in gathered if n is not None), ())
        clash = RESERVED_METRICS.intersection(names)
        if clash:
            raise UsageError(f"model {self.model_name!r}: pipeline_loss returned metrics {sorted(clash)}, names the "
                             "trainer logs itself; rename the model's metric")
        self.names = names
        return names

    def values(self, loss: torch.Tensor, metrics: list[Mapping[str, torch.Tensor]], names: tuple[str, ...]) -> torch.Tensor:
        """``[loss, metric...]`` in the order of ``names``, each metric's mean over ``metrics``
        (one mapping per micro-batch), on ``loss``'s device; a name a micro-batch lacks is one line."""
        problem = self.partial_problem(metrics, names)
        if problem is not None:
            raise UsageError(problem)
        out = [loss.reshape(())]
        for name in names:
            out.append(torch.stack([m[name].to(loss.device) for m in metrics]).mean())
        return torch.stack(out)

    def partial_problem(self, metrics: list[Mapping[str, torch.Tensor]], names: Iterable[str] | None = None) -> str | None:
        """The line refusing a metric that some of a step's micro-batches (``metrics``, one mapping
        each) lack, or ``None``; ``names``: the agreed names (default: :attr:`names`, or before the
        ranks agreed, every name a micro-batch returned)."""
        if names is None:
            names = self.names if self.names is not None else sorted(set().union(*metrics))
        missing = next((n for n in names if any(n not in m for m in metrics)), None)
        if missing is None:
            return None
        return (f"model {self.model_name!r}: pipeline_loss returned metric {missing!r} for some micro-batches only; "
                "return the same metrics for every batch")
