"""A pipeline's training loss checked by the rules ``single`` applies to a model's loss, with
their lines (:mod:`deepseek.models.checks`): ``pipeline_loss`` must return a 0-dim tensor, of a
floating dtype, that backward reaches the weights from (a ``grad_fn``).

Only the last stage computes the loss, so refusing it there alone would leave the other stages
waiting for gradients that never come (a hang in one process, another rank's "connection closed"
under a launcher). So on the first step a refused loss is recorded, the schedule is handed a zero
loss on the same graph in its place (``output.sum() * 0``: the step finishes on every rank without
changing a weight), and :meth:`LossCheck.agree`, called by every rank after the step, raises the
same line on every rank before the optimizer steps. Once a step has passed, the rules held for
this model and a later refusal is raised on the last stage at once.
"""

from __future__ import annotations

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
        """``loss`` when it passes; else, before the ranks agreed, a zero loss on ``output``'s graph
        (the refusal kept for :meth:`agree`), or, after, the refusal raised."""
        problem = loss_problem(loss, self.model_name)
        if problem is None:
            return loss
        if self.agreed:
            raise UsageError(problem)
        self.problem = self.problem or problem
        return output.float().sum() * 0.0

    def agree(self) -> None:
        """On every rank after a step (until one passes): raise the first rank's refusal, the
        same line everywhere; one gather of the (usually absent) refusals."""
        if self.agreed:
            return
        problems: list[str | None] = [None] * dist.get_world_size()
        dist.all_gather_object(problems, self.problem)
        refused = next((p for p in problems if p), None)
        if refused is not None:
            raise UsageError(refused)
        self.agreed = True
