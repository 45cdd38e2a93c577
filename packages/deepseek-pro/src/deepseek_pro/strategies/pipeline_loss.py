"""A pipeline's training loss checked by the rules ``single`` applies to a model's loss, with
their lines (:mod:`deepseek.models.checks`): ``pipeline_loss`` must return a 0-dim tensor, of a
floating dtype, that backward reaches the weights from (a ``grad_fn``). One breaking any of them
is the model's broken answer (:func:`~deepseek.plugins.calls.answer_error` in its
``model_calls``: a plugin model's one-line ``PluginError``), with ``single``'s wording of each
rule.

Only the last stage computes the loss, so refusing it there alone would leave the other stages
waiting for gradients that never come (a hang in one process, another rank's "connection closed"
under a launcher). So a refused loss is recorded, the schedule is handed a zero loss on the same
graph in its place (``output.sum() * 0``: the step finishes on every rank without changing a
weight), and every rank raises the same line after the step, before the optimizer steps: the
strategy hands :meth:`LossCheck.refusal` to
:meth:`~deepseek_pro.strategies.pipeline_metrics.StageMetrics.agree`, the one agreement of every
rank after each step (gathered on the first step, and on later ones only where a rank has a
refusal or a new metric name), so a ``pipeline_loss`` refused on a later step only (for some
batch) ends every rank with the line too.

A model weighing its loss by items (``TrainableModel.loss_items``) gets its pipeline
micro-batches weighed by their items (:func:`chunk_weights`), as ``single`` weighs its own: the
step's loss is then the global batch's loss per item whatever the number of micro-batches and
data-parallel replicas.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch

from deepseek.data.batch import Batch, split_rows
from deepseek.models.checks import loss_dtype_problem, loss_grad_problem
from deepseek.plugins.calls import answer_error
from deepseek.training.evaluation import weighed
from deepseek.training.loss_items import item_weights
from deepseek.training.step import MicroBatches

EXACT = 1e-9
"""How far from 1 this rank's share of a step's items may be and still be taken as exactly 1 (its
shard holding its share of the items): a share of ``p / q`` items differs from 1 by ``1 / q``."""


def shape_problem(loss: Any) -> str | None:
    """What is wrong with a ``pipeline_loss`` value that is not a 0-dim tensor (the model's broken
    answer: :class:`~deepseek.plugins.calls.BrokenAnswer`'s message), or ``None``. ``loss``: the
    ``"loss"`` of the mapping it returned, or what it returned where that is no mapping holding
    one (a mapping without ``"loss"`` is named so), in training and evaluation alike."""
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        mapping = ""
        if isinstance(loss, Mapping):
            got = f"a {got} without the key 'loss' (its keys: {', '.join(repr(k) for k in list(loss)[:8]) or 'none'})"
            mapping = ", or a mapping with the key 'loss' and the model's metrics"
        return (f"pipeline_loss returned {got}; it must return the mean loss of the micro-batch, a 0-dim tensor "
                f"(loss.mean(), or reduction='mean' in the loss function){mapping}")
    return None


class LossCheck:
    """The check of one pipeline run's losses (see the module docstring): ``model_calls``, the
    model's block (``StepSettings.model_calls``), makes a loss that is no 0-dim tensor the
    model's bug (a plugin model's one-line ``PluginError``), as is a 0-dim loss of an integer
    dtype or without ``grad_fn``."""

    def __init__(self, model_calls: Callable[[str], contextlib.AbstractContextManager[None]]) -> None:
        self.model_calls = model_calls
        self.problem: Exception | None = None
        """This rank's refusal of a loss (the first one it saw), the error every rank raises."""

    def checked(self, loss: Any, output: torch.Tensor) -> torch.Tensor:
        """``loss`` when it passes; else a zero loss on ``output``'s graph, the refusal kept for
        :meth:`refusal`."""
        line = shape_problem(loss) or loss_dtype_problem(loss, "pipeline_loss") \
            or loss_grad_problem(loss, "pipeline_loss")
        if line is None:
            return loss
        if self.problem is None:
            self.problem = answer_error(self.model_calls, "pipeline_loss", line)
        return output.float().sum() * 0.0

    def refusal(self) -> Exception | None:
        """The refusal this rank kept, as the error every rank raises, or ``None``."""
        return self.problem


def chunk_weights(model: Any, rows: Batch, n: int, micro_batches: Any, label: str) -> list[float] | None:
    """Each of the ``n`` pipeline micro-batches' weight in the step's loss (the schedule's chunks of
    this rank's ``rows``, equal in rows), for a model weighing by items: this rank's share of the
    global batch's items (the sum of the step's :class:`MicroBatches` weights) split by the chunks'
    items. ``None`` where the weights are absent or all chunks weigh alike (as many items each,
    this rank its share of the rows): the schedule's plain mean is then exact, in the floats of
    weighing by rows. ``label`` names the model in errors."""
    weights = micro_batches.weights if isinstance(micro_batches, MicroBatches) else None
    items = item_weights(model, label)
    if weights is None or items is None:
        return None
    counts = [items.count(chunk, "pipeline micro-batch") for chunk in split_rows(rows, n)]
    share = sum(weights)
    if len(set(counts)) == 1 and abs(share - 1.0) < EXACT:
        return None
    total = sum(counts)
    return [share * c / total if total else 0.0 for c in counts]


def step_loss(raw: list[torch.Tensor], weights: list[float] | None) -> torch.Tensor:
    """The step's loss from the micro-batches' ``raw`` losses: their mean, or their sum at
    ``weights`` (a micro-batch of weight 0 adds exactly 0: its mean over no item is NaN)."""
    if weights is None:
        return torch.stack(raw).mean()
    return torch.stack([weighed(loss, w) for loss, w in zip(raw, weights, strict=True)]).sum()
