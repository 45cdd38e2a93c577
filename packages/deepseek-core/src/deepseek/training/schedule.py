"""The learning-rate schedule contract, and core's registered schedules.

A schedule is a registered component (``deepseek_register_lr_schedules``): a subclass of
:class:`LRSchedule` whose :meth:`~LRSchedule.lr_at` gives the learning rate of an optimizer step
as a pure function of the step number, so resuming needs only the step. The ``[lr_schedule]``
table holds ``name`` and the schedule's own keys (its ``Options``); the shared numbers stay in
``[train]``: ``lr`` (the peak), ``min_lr`` (the floor), ``warmup_steps`` and ``decay_steps``
(default ``max_steps``).

Core registers ``cosine`` (the default), ``linear``, ``constant`` and ``wsd``
(warmup-stable-decay). Every one warms up linearly from 0 over ``warmup_steps`` (step 1 gets
``lr / warmup_steps``); they differ after that. Nothing here imports torch.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from deepseek.config.components import NoOptions
from deepseek.errors import UsageError


class LRSchedule:
    """Base class of every registered learning-rate schedule.

    Subclasses set ``Options`` (a dataclass of their ``[lr_schedule]`` keys, each with a default)
    and implement :meth:`decay`, or override :meth:`lr_at` for a schedule whose warm-up differs.
    Created as ``cls(options, lr=..., min_lr=..., warmup_steps=..., decay_steps=...)`` from
    ``[train]``; steps count from 1 (the first optimizer step). ``lr_at`` must be finite and
    ``>= 0`` for every step, and the same for the same step (the contract tests check both).
    """

    Options: ClassVar[type] = NoOptions
    label: str = "lr_schedule"
    """The registered component with its distribution, set by the framework when it builds the
    schedule for a run (for errors)."""

    def __init__(self, options: Any = None, *, lr: float, min_lr: float, warmup_steps: int,
                 decay_steps: int) -> None:
        self.options = options if options is not None else self.Options()
        self.lr, self.min_lr = float(lr), float(min_lr)
        self.warmup_steps, self.decay_steps = int(warmup_steps), int(decay_steps)

    @classmethod
    def check_config(cls, options: Any, train: Any) -> None:
        """Refuse ``[lr_schedule]`` keys that cannot work with ``[train]`` (``train``: its
        section), when the config loads: one-line :class:`deepseek.errors.ConfigError`. Default:
        accept."""

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (from 1): the linear warm-up, then
        :meth:`decay` of the progress through ``warmup_steps .. decay_steps`` (0 to 1), then
        ``min_lr`` from ``decay_steps`` on. A step that is not a whole number >= 0 is one line
        (a negative one would give a negative rate)."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise UsageError(f"lr_at: step must be a whole number >= 0 (optimizer steps count from 1), got {step!r:.40}")
        if self.warmup_steps > 0 and step <= self.warmup_steps:
            return self.lr * step / self.warmup_steps
        if step >= self.decay_steps:
            return self.min_lr
        span = max(self.decay_steps - self.warmup_steps, 1)
        return self.decay((step - self.warmup_steps) / span)

    def decay(self, progress: float) -> float:
        """The learning rate at ``progress`` (0 right after the warm-up, 1 at ``decay_steps``)."""
        raise NotImplementedError(f"{type(self).__qualname__} implements neither decay() nor lr_at()")

    def __call__(self, step: int) -> float:
        return self.lr_at(step)

    def state_dict(self) -> dict[str, Any]:
        """The schedule's numbers (recorded in ``trainer.json``): ``lr``, ``min_lr``,
        ``warmup_steps``, ``decay_steps`` and its options."""
        import dataclasses

        options = dataclasses.asdict(self.options) if dataclasses.is_dataclass(self.options) else {}
        return {"lr": self.lr, "min_lr": self.min_lr, "warmup_steps": self.warmup_steps,
                "decay_steps": self.decay_steps, **options}


def learning_rate(schedule: LRSchedule, step: int) -> float:
    """``schedule.lr_at(step)``, held to the contract: a rate that is not a finite number ``>= 0``
    is a :class:`deepseek.errors.PluginError` naming the schedule (its ``label``: name and
    distribution) and the step, before any optimizer step uses it. What a plugin's ``lr_at`` raises
    is one line naming it too; core's own schedules' errors keep their traceback
    (:func:`~deepseek.plugins.calls.instance_calls`)."""
    from deepseek.errors import PluginError
    from deepseek.plugins.calls import instance_calls

    with instance_calls(schedule, schedule.label, f"lr_at({step})"):
        lr = schedule.lr_at(step)
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr < 0:
        raise PluginError(f"{schedule.label}: lr_at({step}) returned {lr!r}; a schedule must return a "
                          "finite number >= 0 for every step (docs/plugins.md section 14)")
    return float(lr)


class Cosine(LRSchedule):
    """A half cosine from ``lr`` down to ``min_lr`` at ``decay_steps`` (the default)."""

    def decay(self, progress: float) -> float:
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))


WarmupCosine = Cosine
"""The name this schedule had before schedules were registered components."""


class Linear(LRSchedule):
    """A straight line from ``lr`` down to ``min_lr`` at ``decay_steps`` (Hugging Face's
    ``linear`` with a floor)."""

    def decay(self, progress: float) -> float:
        return self.lr + (self.min_lr - self.lr) * progress


class Constant(LRSchedule):
    """``lr`` after the warm-up, to the end of the run; ``min_lr`` and ``decay_steps`` are not
    used."""

    def lr_at(self, step: int) -> float:
        if self.warmup_steps > 0 and step <= self.warmup_steps:
            return self.lr * step / self.warmup_steps
        return self.lr


@dataclass(frozen=True)
class WSDOptions:
    """``wsd``'s own keys."""

    decay_fraction: float = field(
        default=0.2, metadata={"check": lambda v: None if 0.0 < v <= 1.0 else "must be in (0, 1]"})
    """Share of ``warmup_steps .. decay_steps`` spent decaying, at the end; the rest stays at ``lr``."""
    shape: Literal["linear", "cosine", "sqrt"] = "linear"
    """How the decay falls to ``min_lr``: a straight line, a half cosine, or ``1 - sqrt`` of the
    decay's progress (steep at first)."""


class WSD(LRSchedule):
    """Warmup-stable-decay: ``lr`` from the warm-up until the last ``decay_fraction`` of the
    span before ``decay_steps``, then down to ``min_lr`` by ``shape``. The stable part does not
    depend on the run's length, so a run can be continued from a checkpoint of it before the
    decay (raise ``max_steps`` and ``decay_steps`` on ``--resume``)."""

    Options = WSDOptions

    def decay(self, progress: float) -> float:
        start = 1.0 - self.options.decay_fraction
        if progress <= start:
            return self.lr
        t = (progress - start) / self.options.decay_fraction
        if self.options.shape == "cosine":
            fall = 0.5 * (1.0 - math.cos(math.pi * t))
        elif self.options.shape == "sqrt":
            fall = math.sqrt(t)
        else:
            fall = t
        return self.lr + (self.min_lr - self.lr) * fall
