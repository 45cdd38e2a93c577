"""What the trainer does when training goes wrong: non-finite steps (``train.on_nonfinite``),
checkpoints of non-finite weights (never written) and evaluations whose values are not finite
(said once per run: :class:`NonfiniteEvaluations`).

A step is non-finite when its loss is NaN or infinite, or when its gradient norm is and the step
was applied (under fp16 the loss scaler skips steps whose gradients overflow: those are normal).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from deepseek.errors import TrainingDivergedError


def nonfinite_step(record: Mapping[str, Any]) -> str | None:
    """What is not finite in a step record (``"loss"``, ``"gradient norm"``), or ``None``."""
    if not math.isfinite(record["loss"]):
        return "loss"
    if not math.isfinite(record["grad_norm"]) and not record.get("skipped"):
        return "gradient norm"
    return None


def check_steps(records: Iterable[Mapping[str, Any]], policy: str, lr_hint: float,
                first_step: int = 1) -> None:
    """Under ``policy == "stop"``, raise :class:`TrainingDivergedError` at the first non-finite
    step of ``records`` (read from the device, oldest first).

    ``first_step`` is this run's first step (``1``, or one after the step it resumed from). Its
    loss and gradient come from weights no update of this run has touched (the initial ones, or a
    checkpoint's, which are finite), so the learning rate cannot be the cause: the message then
    points at the data and the model instead."""
    if policy != "stop":
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
        raise TrainingDivergedError(
            f"training diverged: the {what} is {value} at step {record['step']} (train.lr={lr_hint:g}); "
            "lower train.lr or raise train.warmup_steps, or set train.on_nonfinite = 'skip' to drop "
            "such steps; no checkpoint was written after it"
        )


def refuse_nonfinite_checkpoint(step: int, policy: str) -> None:
    """Weights are not finite at ``step``: stop (``policy == "stop"``) or warn that the checkpoint
    is not written."""
    message = (f"the model's weights are not finite at step {step}; the checkpoint of this step is "
               "not written (lower train.lr or raise train.warmup_steps)")
    if policy == "stop":
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
