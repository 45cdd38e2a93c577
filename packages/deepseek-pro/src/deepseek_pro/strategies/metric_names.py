"""The metric names of a multi-process run, agreed on by every rank, and one rank's error ended on
every rank.

The model's metrics of a step or an evaluation reach every rank in one all-reduce of a vector
(the loss, then each name's weighted sum and measured weight: core's
:class:`~deepseek.training.step.MetricSums`). Every rank must send the same names in the same
order, yet the model returns a metric only for the rows that measure it (an accuracy on a class
one rank's rows lack), so one rank may hold a name another does not. :meth:`MetricNames.agree`,
called by every rank after each step and evaluation, gives every rank the run's names so far:
the first time, each rank gathers what the others saw (one ``all_gather_object``); afterwards
every rank asks first whether any rank has a name not yet agreed on or an error
(``Strategy.any_rank``: one host-side all-reduce of one number, as the stop request's at every
step boundary) and gathers only then. A name no rank's rows returned this time adds 0 to the sum
and to the measured weight: it was not measured (NaN, left out of the record, where no rank
measured it), as ``single`` records it. Used by the data-parallel strategies'
``reduce_mean`` (:class:`~deepseek_pro.strategies.base.DistributedStrategy`) and by the pipeline
strategies (:class:`~deepseek_pro.strategies.pipeline_metrics.StageMetrics`).

An error found on one rank (a pipeline stage refusing a loss, or raising during an evaluation)
is handed to the same agreement and raised on every rank (:func:`raise_shared`, which served
pipeline decoding uses too): the raising rank raises its own
exception (its traceback kept); the others raise one with its line (core's
:func:`~deepseek.errors.described` and :func:`~deepseek.errors.rebuilt`): :class:`UsageError`,
:class:`PluginError` (a component's bug, named in its line) or :class:`DeepseekError` for the
framework's own errors, so every rank ends with the same class of error, and for any other
exception (a ``RuntimeError`` in model code) :class:`~deepseek.errors.RankError` naming its class,
an internal error on every rank (exit code 1) that blames no component.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from deepseek.errors import Described, described, rebuilt


def raise_shared(problem: BaseException | None, gathered: list[Described | None]) -> None:
    """Raise the first error of ``gathered`` (each rank's :func:`described` error or ``None``, in
    rank order, as every rank gathered them) on this rank: ``problem``, this rank's own error,
    where it is that one (its traceback kept), else :func:`rebuilt`; nothing where no rank has one."""
    failed = next((p for p in gathered if p is not None), None)
    if failed is None:
        return
    if problem is not None and described(problem) == failed:
        raise problem
    raise rebuilt(failed)


class MetricNames:
    """The metric names of one run, agreed on by every rank (see the module docstring)."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] | None = None
        """The names agreed on so far, sorted; ``None`` until the ranks agreed."""

    def agree(self, seen: Iterable[str] | None, problem: BaseException | None,
              any_rank: Callable[[bool], bool]) -> tuple[str, ...]:
        """The run's metric names on every rank, called by every rank at the same point: ``seen``,
        the names this rank's rows returned (``None`` where the rank computes no metrics, a
        pipeline's earlier stages), are added to them; ``problem``, this rank's error, or the
        first rank's, is raised on every rank. Gathers the first time, later only where
        ``any_rank`` (the strategy's host-side all-reduce of a flag) says a rank has a new name
        or an error."""
        import torch.distributed as dist

        seen = tuple(sorted(seen)) if seen is not None else None
        if self.names is not None:
            new = seen is not None and not set(seen) <= set(self.names)
            if not any_rank(new or problem is not None):
                return self.names
        mine = (seen, None if problem is None else described(problem))
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        raise_shared(problem, [p for _, p in gathered])
        names = set(self.names or ())
        for found, _ in gathered:
            names.update(found or ())
        self.check(names)
        self.names = tuple(sorted(names))
        return self.names

    def check(self, names: set[str]) -> None:
        """Refuse agreed ``names`` (on every rank alike); default: every name is taken."""
