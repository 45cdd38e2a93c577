"""A pipeline's training loss checked by the rules ``single`` applies to a model's loss, with
their lines (:mod:`deepseek.models.checks`): ``pipeline_loss`` must return a 0-dim tensor, of a
floating dtype, that backward reaches the weights from (a ``grad_fn``).

Only the last stage computes the loss, so refusing it there alone would leave the other stages
waiting for gradients that never come (a hang in one process, another rank's "connection closed"
under a launcher). So a refused loss is recorded, the schedule is handed a zero loss on the same
graph in its place (``output.sum() * 0``: the step finishes on every rank without changing a
weight), and :meth:`LossCheck.agree`, called by every rank after each step, raises the same line
on every rank before the optimizer steps. On the first step it gathers the ranks' refusals; on
later ones it asks first whether any rank refused one (``Strategy.any_rank``: one host-side
all-reduce of one number, as the stop request's at every step boundary) and gathers the line
only then, so a ``pipeline_loss`` refused on a later step only (for some batch) ends every rank
with the line too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from deepseek.errors import UsageError
from deepseek.models.checks import loss_dtype_problem, loss_grad_problem


def shape_problem(loss: Any, model_name: str) -> str | None:
    """The line refusing a ``pipeline_loss`` value that is not a 0-dim tensor, or ``None``."""
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        return (f"model {model_name!r}: pipeline_loss returned {got}; it must return the mean loss of the "
                "micro-batch, a 0-dim tensor (loss.mean(), or reduction='mean' in the loss function)")
    return None


def loss_problem(loss: Any, model_name: str) -> str | None:
    """The line refusing what ``pipeline_loss`` returned for training, or ``None``: a value that
    is not a 0-dim tensor (pipeline's own line), then the dtype and ``grad_fn`` rules (core's)."""
    return shape_problem(loss, model_name) or loss_dtype_problem(loss, model_name) or loss_grad_problem(loss, model_name)


class LossCheck:
    """The check of one pipeline run's losses (see the module docstring)."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.agreed = False
        """Whether a first step's losses passed on every rank."""
        self.problem: str | None = None
        """This rank's refusal on the step being agreed on (the first one it saw)."""

    def checked(self, loss: Any, output: torch.Tensor) -> torch.Tensor:
        """``loss`` when it passes; else a zero loss on ``output``'s graph, the refusal kept for
        :meth:`agree`."""
        problem = loss_problem(loss, self.model_name)
        if problem is None:
            return loss
        self.problem = self.problem or problem
        return output.float().sum() * 0.0

    def refuse(self, problem: str | None) -> None:
        """Keep ``problem`` (another refusal of the step's output on the last stage, such as a
        metric some micro-batches lack) for :meth:`agree`, unless a refusal is kept already."""
        self.problem = self.problem or problem

    def agree(self, any_rank: Callable[[bool], bool]) -> None:
        """On every rank after each step: raise the first rank's refusal, the same line
        everywhere. The first step gathers the (usually absent) refusals; later steps gather them
        only where ``any_rank`` (the strategy's host-side all-reduce of a flag) says a rank has one."""
        if self.agreed and not any_rank(self.problem is not None):
            return
        problems: list[str | None] = [None] * dist.get_world_size()
        dist.all_gather_object(problems, self.problem)
        refused = next((p for p in problems if p), None)
        if refused is not None:
            raise UsageError(refused)
        self.agreed = True
