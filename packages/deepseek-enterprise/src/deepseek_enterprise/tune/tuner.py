"""The tuner contract: what one kind of study runs for a trial and the number it returns.

A tuner is registered through enterprise's ``deepseek_register_tuners`` hook; its target is a
:class:`Tuner` subclass with ``Options`` (the ``[tuner]`` table of the space file, validated like
a config section) and is created as ``target(options, host=host)``. ``deepseek tune`` then, for
every trial (after :meth:`Tuner.check_config` and :meth:`Tuner.check_objective` on the base
config, once): builds the trial's config (base config + the sampled values, validated), asks
:meth:`Tuner.skip_reason` whether running it is pointless (the system tuner asks the advisor's
memory model), and calls :meth:`Tuner.run` with a :class:`TrialRun`. ``run`` returns the
objective's value, reports intermediate values through :meth:`TrialRun.report` (the study's pruner
may then stop it: :class:`TrialStopped`), and raises :class:`TrialFailed` for a trial that ran
and broke (the study goes on).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from deepseek.config.components import NoOptions

Direction = Literal["minimize", "maximize"]


def positive(value: float) -> str | None:
    """``[tuner]`` option check: > 0."""
    return None if value > 0 else "must be positive"


def non_negative(value: float) -> str | None:
    """``[tuner]`` option check: >= 0."""
    return None if value >= 0 else "must be 0 or more"


def format_value(value: float) -> str:
    """A measured value for people: ``59,179`` for throughput, ``2.362`` for a loss."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


class TrialFailed(Exception):
    """The trial ran and broke (crash, out of memory, no objective value): recorded as failed,
    with this message, while the study goes on."""


class TrialStopped(Exception):
    """The study's pruner stopped the trial after an intermediate report (recorded as pruned)."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"stopped by the pruner at step {step} ({format_value(value)})")
        self.step, self.value = step, value


@dataclass
class TrialRun:
    """One trial as a tuner sees it."""

    number: int
    config: Any
    """The validated :class:`deepseek.config.schema.Config` of this trial."""
    config_path: Path
    """That config as TOML (``trial.toml``), runnable by ``deepseek train`` as is."""
    folder: Path
    """The trial's own folder (its run folder, logs, results)."""
    objective: str
    should_stop: Callable[[int, float], bool] = field(repr=False, default=lambda step, value: False)
    attrs: dict[str, Any] = field(default_factory=dict)
    """Facts kept with the trial in the study (shown in the trials table: ``note``)."""
    earlier: Path | None = None
    """For the re-run of a trial whose tuner died (SIGKILL, a lost machine, a stop signal), the
    folder of that trial: the same values, so a tuner may take up what it finished there instead
    of running it again (the ``training`` tuner takes a run whose training finished); ``None``
    otherwise."""
    echo: Callable[[str], None] = field(repr=False, default=lambda line: None)
    """Print one line to the study's output (``deepseek tune``'s), for what a person watching
    should know while the trial runs (the built-in ``training`` tuner: that it waits for the
    interrupted trial's training to end)."""

    def report(self, step: int, value: float) -> bool:
        """Report an intermediate objective value; True when the pruner wants the trial stopped."""
        return self.should_stop(step, value)


class Tuner(ABC):
    """Base class of a registered tuner (a kind of study)."""

    Options: ClassVar[type] = NoOptions
    objectives: ClassVar[tuple[str, ...]] = ()
    """Objectives this tuner measures; a name ending in ``*`` is a prefix (``val_*``)."""

    def __init__(self, options: Any, *, host: Any = None) -> None:
        self.options = options
        self.host = host

    @classmethod
    def measures(cls, objective: str) -> bool:
        """Whether ``objective`` is one this tuner can return."""
        return any(objective == o or (o.endswith("*") and objective.startswith(o[:-1]) and objective != o[:-1])
                   for o in cls.objectives)

    def direction(self, objective: str) -> Direction:
        """Whether a larger or a smaller ``objective`` is better (default: smaller for a loss or an
        error, larger for anything else, such as an accuracy)."""
        return "minimize" if "loss" in objective or "error" in objective else "maximize"

    def check_config(self, config: Any) -> None:
        """Raise :class:`deepseek.errors.ConfigError` when the base config cannot be tuned by this
        tuner (called once, before the first trial)."""

    def check_objective(self, objective: str, config: Any, values: Any) -> None:
        """Raise :class:`deepseek.errors.UsageError` (one line) when ``objective`` is not a value
        this tuner can read from trials of ``config``; ``values`` are the values a run of it
        reports (:class:`deepseek.training.run_values.RunValues`, from the model's declared
        metrics). Called once, before the first trial. Default: accept (the tuner measures the
        objective itself)."""

    def skip_reason(self, config: Any) -> str | None:
        """Why a trial with this config need not run (it cannot fit, ...), else ``None``; a
        skipped trial is recorded as pruned with this reason."""
        return None

    @abstractmethod
    def run(self, trial: TrialRun) -> float:
        """Run the trial; return the objective's final value."""
