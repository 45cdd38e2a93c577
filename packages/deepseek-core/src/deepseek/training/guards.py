"""What the trainer does when training goes wrong: non-finite steps (``train.on_nonfinite``),
checkpoints of non-finite weights (never written) and evaluations whose values are not finite
(said once per run: :class:`NonfiniteEvaluations`).

A step is non-finite when its loss is NaN or infinite, or when its gradient norm is and the step
was applied (under fp16 the loss scaler skips steps whose gradients overflow: those are normal).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from deepseek.config.groups import ParamGroupRule
from deepseek.config.schema import Config, OptimizerConfig, TrainConfig
from deepseek.errors import TrainingDivergedError


def nonfinite_step(record: Mapping[str, Any]) -> str | None:
    """What is not finite in a step record (``"loss"``, ``"gradient norm"``), or ``None``."""
    if not math.isfinite(record["loss"]):
        return "loss"
    if not math.isfinite(record["grad_norm"]) and not record.get("skipped"):
        return "gradient norm"
    return None


def _default(schema: type, key: str) -> Any:
    return next(f.default for f in dataclasses.fields(schema) if f.name == key)


def divergence_suspects(config: Config) -> tuple[str, str]:
    """The settings that can make a run diverge and that ``config`` moved from their defaults the
    way that does: ``train.lr`` (changed at all), ``optimizer.weight_decay`` and a group rule's
    (above ``optimizer.weight_decay``'s default), a group rule's ``lr_scale`` (above 1) and
    ``optimizer.eps`` (below its default). Returns them with their values
    (``"optimizer.weight_decay=50"``) and what to do (``"lower optimizer.weight_decay"``); a config
    that moved none of them gets ``train.lr``, the usual cause."""
    train, opt = config.train, config.optimizer
    wd_default, eps_default = _default(OptimizerConfig, "weight_decay"), _default(OptimizerConfig, "eps")
    found: list[tuple[str, float, str]] = []
    if train.lr != _default(TrainConfig, "lr"):
        found.append(("train.lr", train.lr, "lower"))
    if opt.weight_decay > wd_default:
        found.append(("optimizer.weight_decay", opt.weight_decay, "lower"))
    for i, rule in enumerate(opt.groups):
        if rule.lr_scale > _default(ParamGroupRule, "lr_scale"):
            found.append((f"optimizer.groups.{i}.lr_scale", rule.lr_scale, "lower"))
        if rule.weight_decay is not None and rule.weight_decay > wd_default:
            found.append((f"optimizer.groups.{i}.weight_decay", rule.weight_decay, "lower"))
    if opt.eps < eps_default:
        found.append(("optimizer.eps", opt.eps, "raise"))
    if not found:
        found.append(("train.lr", train.lr, "lower"))
    values = ", ".join(f"{key}={value:g}" for key, value, _ in found)
    return values, " or ".join(f"{verb} {key}" for key, _, verb in found)


def check_steps(records: Iterable[Mapping[str, Any]], config: Config, first_step: int = 1) -> None:
    """Under ``train.on_nonfinite == "stop"``, raise :class:`TrainingDivergedError` at the first
    non-finite step of ``records`` (read from the device, oldest first), naming
    :func:`divergence_suspects`.

    ``first_step`` is this run's first step (``1``, or one after the step it resumed from). Its
    loss and gradient come from weights no update of this run has touched (the initial ones, or a
    checkpoint's, which are finite), so the learning rate cannot be the cause: the message then
    points at the data and the model instead."""
    if config.train.on_nonfinite != "stop":
        return
    for record in records:
        what = nonfinite_step(record)
        if what is None:
            continue
        value = record["loss"] if what == "loss" else record["grad_norm"]
        if record["step"] == first_step:
            raise TrainingDivergedError(
                f"the {what} is {value} at step {record['step']}, the run's first step, before any "
                "update: the weights it started from are finite, so the data or the model's forward "
                "gives it (check the batch for NaN or infinite values and the loss for a division "
                "by zero or a log of 0), not train.lr; no checkpoint was written after it"
            )
        values, remedy = divergence_suspects(config)
        raise TrainingDivergedError(
            f"training diverged: the {what} is {value} at step {record['step']} ({values}); "
            f"{remedy} or raise train.warmup_steps, or set train.on_nonfinite = 'skip' to drop "
            "such steps; no checkpoint was written after it"
        )


def refuse_nonfinite_checkpoint(step: int, config: Config) -> None:
    """Weights are not finite at ``step``: stop (``train.on_nonfinite == "stop"``) or warn that the
    checkpoint is not written, naming :func:`divergence_suspects`'s remedy."""
    message = (f"the model's weights are not finite at step {step}; the checkpoint of this step is "
               f"not written ({divergence_suspects(config)[1]} or raise train.warmup_steps)")
    if config.train.on_nonfinite == "stop":
        raise TrainingDivergedError(f"training diverged: {message}")
    warnings.warn(message, RuntimeWarning, stacklevel=3)


class NonfiniteEvaluationWarning(RuntimeWarning):
    """An evaluation gave a ``val_*`` value that is NaN or infinite (a NaN in the validation data)."""


class NonfiniteEvaluations:
    """The one warning of a run (one trainer, ``deepseek train`` or ``deepseek.fit``) whose
    evaluation gives a ``val_*`` value that is NaN or infinite: the first such evaluation is said,
    naming its step and values, the later ones are not. The run goes on (such an evaluation never
    improves ``train.monitor``: :class:`~deepseek.training.monitor.Monitor`)."""

    def __init__(self) -> None:
        self.warned = False

    def check(self, step: int, values: Mapping[str, Any], *, report: bool) -> None:
        """Warn about ``values`` (an evaluation's record) at ``step`` unless this run warned already
        or this process does not ``report`` (the ranks other than 0, which hold the same values)."""
        bad = [f"{k} = {v}" for k, v in values.items()
               if k.startswith("val_") and isinstance(v, float) and not math.isfinite(v)]
        if self.warned or not bad or not report:
            return
        self.warned = True
        warnings.warn(NonfiniteEvaluationWarning(
            f"the evaluation at step {step} gave {', '.join(bad)}: check the validation data for NaN or infinite "
            "values and the model's forward for a log of 0 or a division by zero; such an evaluation never improves "
            "train.monitor (said once per run)"), stacklevel=3)
