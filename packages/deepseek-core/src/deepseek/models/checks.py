"""What the trainer checks of a model before and while it trains: the metrics it declares
against those its ``forward`` returns, what a call returns (:func:`split_output`: the loss and
the metrics, :mod:`deepseek.models.protocol` says the contract), and whether it takes a
dataset's batches (:func:`check_model_data`). Each check refuses in one line naming the model.

A model answering outside its contract (a ``forward`` whose output holds no 0-dim loss, a loss
of no floating dtype or, in training, without ``grad_fn``, a metric named like a value the trainer
logs itself, a ``metric_names()`` that is no tuple of names or differs from what ``forward``
returns, a ``check_data`` that returns anything but ``None``) is the model's bug, never the
user's (a model the user's config left nothing trainable in is refused before it trains,
``StepEngine.build_model``): each raises a
:class:`~deepseek.plugins.calls.BrokenAnswer` in the model's block (``model_calls``, as
:mod:`deepseek.models.declared` reads its declarations), a plugin model's one-line
``PluginError`` naming its distribution and the method (exit code 1); core's own model's, an
internal error; a script's (``deepseek.fit``), the script's ``UsageError``. The user's data that a ``check_data`` refuses
by raising, and a pairing of model and data that does not fit, stay the user's ``UsageError``."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from deepseek.errors import UsageError
from deepseek.models.declared import Blame, answer_block
from deepseek.models.protocol import Batch, TrainableModel
from deepseek.plugins.calls import BrokenAnswer
from deepseek.plugins.catalogue import SCRIPT_COMPONENT
from deepseek.training.run_values import RESERVED_METRICS


def declared_metrics(model: Any, *, calls: Blame | None = None) -> tuple[str, ...] | None:
    """The metric names ``model`` declares (:meth:`TrainableModel.metric_names`), sorted; ``None``
    for a model that declares none or is not a :class:`TrainableModel`. Read in ``calls``, the
    model's block (``None``: the caller's): a declaration that is not a tuple of names is its
    broken answer (the module docstring); one naming a value the trainer logs itself is refused
    in one line."""
    if not isinstance(model, TrainableModel):
        return None
    with answer_block(calls, "metric_names"):
        names = model.metric_names()
        if names is not None and (not isinstance(names, (tuple, list))
                                  or not all(isinstance(n, str) and n for n in names)):
            raise BrokenAnswer(f"metric_names() returned {names!r:.80}; it must return a tuple of the metric names "
                               "forward reports (() for none) or None when not declared (docs/plugins.md, 'Models')")
        problem = None if names is None else reserved_problem("metric_names() declares", names)
        if problem is not None:
            raise BrokenAnswer(problem)
    return None if names is None else tuple(sorted(set(names)))


def reserved_problem(answered: str, names: Iterable[str]) -> str | None:
    """What is wrong with metric ``names`` a model ``answered`` (``"forward returned"``: its
    answer's words) that a value the trainer logs itself (:data:`RESERVED_METRICS`) takes, or
    ``None``: the model's broken answer, whose metrics the trainer would write over. The one
    wording of this rule: :func:`declared_metrics`, :func:`split_output` and a pipeline's metrics
    (``deepseek_pro.strategies.pipeline_metrics``)."""
    clash = RESERVED_METRICS.intersection(names)
    if not clash:
        return None
    return (f"{answered} metrics {sorted(clash)}, names the trainer logs itself; its metrics must take other names "
            "(any but " + ", ".join(sorted(RESERVED_METRICS)) + ") (docs/plugins.md, 'Models')")


def check_declared_metrics(model: Any, reported: Iterable[str], *, whole_set: bool = False,
                           calls: Blame | None = None) -> tuple[str, ...]:
    """The metric names of a run: ``reported`` (what ``forward`` returned on the first validation
    batch, with the whole-set metrics of that batch), which must equal the names ``model``
    declares when it declares them; refused in one line naming the model otherwise. A model that
    offers whole-set metrics (``whole_set``: it overrides ``metrics_from_totals``, which may leave
    out a metric the data gave nothing to measure) may report fewer than it declares, none
    undeclared. ``calls``: the model's block, where the declaration is read (:func:`declared_metrics`)."""
    got = tuple(sorted(reported))
    declared = declared_metrics(model, calls=calls)
    if declared is not None and (declared != got if not whole_set else not set(got) <= set(declared)):
        with answer_block(calls, "metric_names"):  # the model's two answers disagree: its broken answer
            raise BrokenAnswer(
                f"metric_names() declares {list(declared)} but forward returned {list(got)} on the first validation "
                "batch (metrics are its scalar entries: a per-row tensor is not one, reduce it with .mean()); "
                "metric_names() must return the names forward reports (docs/plugins.md, 'Models')"
            )
    return got


def split_output(output: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, metrics)`` of what a model returned for a batch (see the module docstring); a
    metric named like a value the trainer logs itself (:data:`RESERVED_METRICS`) is refused, on
    training steps and evaluations alike. Call it in the model's ``forward`` block
    (``model_calls``): an output holding no 0-dim loss (a tensor of another shape, no mapping, a
    mapping without ``"loss"``), a loss of no floating dtype, or such a metric is the model's
    broken answer there."""
    if isinstance(output, torch.Tensor):
        if output.dim() != 0:
            raise BrokenAnswer(
                f"forward returned a tensor of shape {tuple(output.shape)} for a batch; it must return the mean "
                "loss (a 0-dim tensor: loss.mean(), or reduction='mean' in the loss function) or a mapping with "
                "the key 'loss' (docs/plugins.md, 'Models')"
            )
        return _real_loss(output), {}
    if not isinstance(output, Mapping) or "loss" not in output:
        got = type(output).__name__
        if isinstance(output, Mapping):
            keys = ", ".join(repr(k) for k in list(output)[:8]) or "none"
            got = f"a {got} without the key 'loss' (its keys: {keys})"
        raise BrokenAnswer(
            f"forward returned {got} for a batch; it must return the mean loss (a 0-dim tensor) or a mapping "
            "with the key 'loss' (docs/plugins.md, 'Models')"
        )
    loss = output["loss"]
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        got = (f"a tensor of shape {tuple(loss.shape)} ({str(loss.dtype).removeprefix('torch.')})"
               if isinstance(loss, torch.Tensor) else type(loss).__name__)
        raise BrokenAnswer(
            f"forward returned a 'loss' that is {got}; it must be the mean loss over the batch's rows, a 0-dim "
            "tensor: reduce it (loss.mean(), or reduction='mean' in the loss function)"
        )
    _real_loss(loss)
    metrics: dict[str, torch.Tensor] = {}
    for key, value in output.items():
        if key == "loss":
            continue
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            metrics[str(key)] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[str(key)] = torch.tensor(float(value), device=loss.device)
    problem = reserved_problem("forward returned", metrics)
    if problem is not None:
        raise BrokenAnswer(problem)
    return loss, metrics


def _real_loss(loss: torch.Tensor) -> torch.Tensor:
    """``loss`` (0-dim) of a floating dtype, which backward and the mean over batches need; an
    integer, bool or complex loss is the model's broken answer."""
    problem = loss_dtype_problem(loss, "forward")
    if problem is not None:
        raise BrokenAnswer(problem)
    return loss


def loss_dtype_problem(loss: torch.Tensor, call: str) -> str | None:
    """What is wrong with a loss tensor that ``call`` (``"forward"``, ``"pipeline_loss"``)
    returned that is not floating-point (integer, bool, complex), or ``None``: the model's broken
    answer (the module docstring). The one wording of this rule: :func:`split_output` and a
    pipeline's last stage (``deepseek_pro.strategies.pipeline_loss``) both raise it."""
    if loss.is_floating_point():
        return None
    return (f"{call} returned a loss of dtype {str(loss.dtype).removeprefix('torch.')}; it must be a floating-point tensor "
            "computed from the model's parameters (e.g. cross_entropy(logits, labels))")


def loss_grad_problem(loss: torch.Tensor, call: str) -> str | None:
    """What is wrong with a training loss that ``call`` returned that backward cannot reach any
    weight from (no ``grad_fn``), or ``None`` (always ``None`` where gradients are off): the
    model's broken answer, as a model with trainable parameters detached it (one with none, the
    user's config freezing everything, is refused before it trains: ``StepEngine.build_model``).
    The one wording of this rule: the base strategy's step and a pipeline's last stage both raise it."""
    if loss.requires_grad or not torch.is_grad_enabled():
        return None
    return (f"{call} returned a loss that does not depend on any trainable parameter (no grad_fn: computed under "
            "torch.no_grad(), .detach()ed, or a constant); it must compute it from the model's outputs")


def check_model_data(model: Any, batch: Batch, dataset: Any, *, model_name: str | None = None,
                     calls: Blame | None = None) -> None:
    """For any module :func:`check_batch_keys` (batches the forward cannot take are refused
    before the model's own check reads them), then ``model.check_data(batch, dataset)`` for a
    :class:`TrainableModel`, in ``calls``, the model's block (``None``: the caller's). What it
    raises on purpose (a ``UsageError`` refusing the user's data) passes as it is; a model that
    *returns* anything but ``None`` (its refusal as a string, ``False``) answers outside its
    contract, its broken answer (the module docstring) saying what it returned, before anything
    is written."""
    name = model_name or type(model).__name__  # the registered name where the run has one
    if isinstance(model, nn.Module):
        check_batch_keys(model, batch, model_name=name)
    if isinstance(model, TrainableModel):
        with answer_block(calls, "check_data"):
            answer = model.check_data(batch, dataset)
            if answer is not None:
                raise BrokenAnswer(f"check_data returned {answer!r:.200}; it must return None to accept the data "
                                   "or raise UsageError (one line) to refuse it (docs/plugins.md, 'Models')")


def parameter_list(params: Iterable[inspect.Parameter]) -> str:
    """A signature's parameters as a call would show them: ``x, y, *rest, **inputs``."""
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return ", ".join(stars.get(p.kind, "") + p.name for p in params)


def check_batch_keys(model: nn.Module, batch: Batch, *, model_name: str) -> None:
    """Refuse in one line a ``batch`` that ``model(**batch)`` cannot take: a key the model's
    ``forward`` has no parameter for, or a parameter without a default that the batch lacks. A
    ``forward`` with ``**kwargs`` takes any keys and is not checked."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a builtin): the call will tell
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    takes = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = {p.name for p in params if p.default is p.empty and p.kind is not p.VAR_POSITIONAL}
    keys = {str(k) for k in batch}
    unexpected, missing = sorted(keys - takes), sorted(required - keys)
    if not unexpected and not missing:
        return
    wrong = "; ".join(part for part in (f"unexpected {unexpected}" if unexpected else "",
                                        f"missing {missing}" if missing else "") if part)
    fix = ("name the samples' parts as forward's arguments with names=(...) (a mapping sample's keys are "
           "its names), or change forward's arguments" if model_name == SCRIPT_COMPONENT else  # fit, evaluate
           "use a dataset whose batches have the keys the model's forward takes (data.name), or another model "
           "(model.name)")
    raise UsageError(
        f"model {model_name!r}: the dataset's batches (keys {sorted(keys)}) do not fit "
        f"{type(model).__name__}.forward({parameter_list(params)}): {wrong}; {fix}"
    )
