"""One stage's part of a pipeline evaluation (``PipelineStrategy.evaluate``): a plain forward,
the input received from the stage before and the output sent to the stage after
(:mod:`deepseek_pro.strategies.pipeline_wire`), and on the last stage ``pipeline_loss``.

A stage whose forward, or ``pipeline_loss``, raises (a :class:`~deepseek.errors.DeepseekError`,
the model refusing a batch, or any other exception, a bug in model code) sends
:func:`~deepseek_pro.strategies.pipeline_wire.send_refusal` in place of its output, so every
stage after it skips its forward instead of waiting for a tensor that never comes; the error is returned, and every rank raises it through
:meth:`~deepseek_pro.strategies.metric_names.MetricNames.agree`, as a refused training loss: the
raising rank its own exception (a plain ``RuntimeError`` stays an internal error there, with its
traceback), the others one with its line. The model's code runs in ``settings.model_calls``
(:class:`~deepseek.training.step.StepSettings`): a plugin model's bug is its one-line
:class:`~deepseek.errors.PluginError` before the ranks agree, so every rank ends with the line
blaming the model, not that line on the raising rank and an internal error on the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepseek.data.batch import move_to
from deepseek.plugins.calls import BrokenAnswer
from deepseek_pro.strategies.pipeline_loss import shape_problem
from deepseek_pro.strategies.pipeline_wire import recv_output, send_refusal, send_tensor

if TYPE_CHECKING:
    from deepseek_pro.strategies.pipeline import PipelineStrategy
    from deepseek_pro.strategies.pipeline_metrics import StageMetrics


def evaluate_stage(strategy: PipelineStrategy, stage: nn.Module, args: Sequence[Any], target: torch.Tensor, *,
                   template: nn.Module, metrics: StageMetrics) -> tuple[
                       torch.Tensor | None, dict[str, torch.Tensor], Exception | None]:
    """``stage`` (this rank's, in eval mode, without gradients) on ``args`` (the stage-0 inputs
    ``template.pipeline_batch`` gave) or its predecessor's output: ``(loss, metrics, None)`` on
    the last stage, ``(None, {}, None)`` on the others once their output is sent on (or, told of
    an earlier stage's refusal, the refusal); ``(None, {}, error)`` where this stage refused."""
    following = None if strategy.is_last else strategy.pp_peer(strategy.pp_rank + 1)
    if strategy.is_first:
        inputs = tuple(move_to(list(args), strategy.device))
    else:
        received = recv_output(strategy.pp_peer(strategy.pp_rank - 1), strategy.comm_device, strategy.device)
        if received is None:  # an earlier stage refused: its error reaches every rank through agree
            if following is not None:
                send_refusal(following, strategy.comm_device)
            return None, {}, None
        # fp32 on the wire; a model served in bf16 (--dtype) computes in its own dtype
        inputs = (received.to(next(stage.parameters()).dtype),)
    blamed = strategy.settings.model_calls  # a plugin model's bug: its one line, the one every rank raises
    try:
        with strategy.autocast(), blamed("forward"):
            out = stage(*inputs)
        if following is not None:
            send_tensor(out, following, strategy.comm_device)
            return None, {}, None
        with blamed("pipeline_loss"):
            returned = template.pipeline_loss(out, target.to(strategy.device))  # type: ignore[operator]
            loss, found = metrics.split(returned)
            shape = shape_problem(returned if loss is None else loss)  # the training step's rule (LossCheck)
            if shape is not None:  # its broken answer: a plugin model's PluginError, raised in its block
                raise BrokenAnswer(shape)
    except Exception as exc:  # noqa: BLE001 - raised on every rank through agree
        if following is not None:
            send_refusal(following, strategy.comm_device)
        return None, {}, exc
    return loss.detach().float(), found, None
