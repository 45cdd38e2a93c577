"""The monitored evaluation metric: best-checkpoint tracking and early stopping.

``train.monitor`` names an evaluation value (``val_loss``, or ``val_<metric>`` of a metric the
model reports) and ``train.monitor_mode`` whether lower (``min``) or higher (``max``) is better.
An evaluation *improves* when it beats the best so far by more than
``train.early_stop_min_delta``. With ``checkpoint.keep_best`` the trainer checkpoints each
improving evaluation and marks it best (kept from pruning); with ``train.early_stop_patience = N``
it stops after N evaluations in a row without improvement (Lightning's ``EarlyStopping``, the HF
Trainer's ``EarlyStoppingCallback``). The state is saved in every checkpoint, so a resumed run
continues the count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from deepseek.config.validate import did_you_mean
from deepseek.errors import CheckpointError, ConfigError


@dataclass
class Monitor:
    """Tracks the best value of one evaluation metric."""

    name: str = "val_loss"
    mode: str = "min"
    min_delta: float = 0.0
    patience: int = 0
    best: float | None = None
    best_step: int | None = None
    stale: int = 0
    """Evaluations in a row without improvement."""
    added_by: tuple[str, ...] = field(default=(), compare=False)
    """Distributions whose ``deepseek_evaluate`` hooks may add evaluation values: a monitored name
    the model and data do not report is then looked for in each evaluation's values (not saved)."""

    def check_name(self, names: Iterable[str], *, evaluated: bool = False) -> None:
        """Refuse (one line, field ``train.monitor``) a monitored name that is not one of
        ``names``. Before the first evaluation (``evaluated=False``) ``names`` are the values the
        model and data report (:func:`~deepseek.training.run_values.reported_values`): the
        trainer checks them on the first validation batch, before anything is written, unless a
        plugin's ``deepseek_evaluate`` hook may add the name (:attr:`added_by`); then the first
        evaluation's values, hooks' additions included, decide."""
        names = sorted(names)
        if self.name in names or (self.added_by and not evaluated):
            return
        added = f" (with what the deepseek_evaluate hooks of {', '.join(self.added_by)} add)" if self.added_by else ""
        raise ConfigError(
            f"train.monitor: {self.name!r} is not an evaluation value of this run"
            f"{did_you_mean(self.name, names)}; it reports {', '.join(names)}{added}"
        )

    def update(self, values: dict[str, float], step: int) -> bool:
        """Record one evaluation (its values, hooks' additions included); ``True`` when it
        improved on the best so far."""
        self.check_name(values, evaluated=True)
        value = _number(values[self.name])
        if value is None:
            raise ConfigError(f"train.monitor: {self.name!r} is {values[self.name]!r} in this evaluation's values (a "
                              "deepseek_evaluate hook set it); a monitored value must be a number")
        if not math.isfinite(value):
            improved = False
        elif self.best is None:
            improved = True
        elif self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best, self.best_step, self.stale = value, step, 0
        else:
            self.stale += 1
        return improved

    @property
    def exhausted(self) -> bool:
        """Whether early stopping should end the run now."""
        return self.patience > 0 and self.stale >= self.patience

    def describe(self) -> str:
        """One line for the log: why the run stopped early."""
        return (f"early stopping: {self.name} did not improve by more than {self.min_delta:g} in "
                f"{self.stale} evaluations (best {self.best:.4f} at step {self.best_step})")

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state for ``trainer.json``."""
        state = asdict(self)
        del state["added_by"]
        return state

    def load_state_dict(self, state: Any, where: Any) -> None:
        """Continue from a saved :meth:`state_dict` (``where`` names the file for errors); a state
        of another metric or direction starts over."""
        if not isinstance(state, dict):
            raise CheckpointError(f"{where}: 'monitor' must be a table, got {state!r}; resume from an earlier checkpoint")
        if (state.get("name"), state.get("mode")) != (self.name, self.mode):
            return
        best, step, stale = state.get("best"), state.get("best_step"), state.get("stale", 0)
        def count(v: Any) -> bool:  # true and false are ints to Python, not counts
            return isinstance(v, int) and not isinstance(v, bool) and v >= 0

        ok = (best is None or isinstance(best, (int, float)) and not isinstance(best, bool) and math.isfinite(best)) \
            and (step is None or count(step)) and count(stale)
        if not ok:
            raise CheckpointError(f"{where}: 'monitor' holds invalid values {state!r}; resume from an earlier checkpoint")
        self.best, self.best_step, self.stale = best, step, stale


def rank_zero_additions(strategy: Any, record: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's ``record`` after the ``deepseek_evaluate`` hooks, with what they added
    (the keys beyond ``step`` and the evaluation's own ``values``, which every rank holds alike)
    as rank 0 added it, on every rank (``strategy.broadcast_object``; 0-dim tensors as numbers).
    Rank 0's record is the one ``metrics.jsonl`` keeps; a hook that adds another value on another
    rank (its own rows, or rank 0 only) would otherwise have the ranks disagree on the best
    checkpoint and on early stopping, and stop or save at different steps."""
    added = {k: v.item() if isinstance(v, torch.Tensor) and v.dim() == 0 else v
             for k, v in record.items() if k != "step" and k not in values}
    return {"step": record["step"], **values, **strategy.broadcast_object(added)}


def _number(value: Any) -> float | None:
    """A number, or a one-element tensor a hook logged, as a float; ``None`` for anything else."""
    if isinstance(value, (bool, str)) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


CALLBACK_STOP = "trainer.should_stop was set by a callback"
"""Why a run a callback ended stopped (``TrainResult.ended_early``)."""


def refuse_finished(where: Any, step: int, max_steps: int, monitor: Monitor, *, should_stop: bool = False) -> None:
    """The one rule for resuming a run that has nothing left to train: at ``train.max_steps``, or
    stopped early, by early stopping or by a callback's ``trainer.should_stop`` (``should_stop``:
    the checkpoint recorded it), since one more step would change the result an uninterrupted run gave.
    :class:`~deepseek.errors.RunComplete` naming the checkpoint ``where`` and the key that would
    let it train on; a :class:`~deepseek.errors.ConfigError` for ``train.max_steps`` below the
    checkpoint's step (asked for a shorter run than the one trained)."""
    from deepseek.arguments import given, spelled
    from deepseek.errors import ConfigError, RunComplete

    resume, more = given("--resume", "resume", where), spelled("--max-steps", "train.max_steps")
    if step > max_steps:  # asked for fewer steps than were trained: a mistake, not a finished job
        init_from = spelled(f'--set train.init_from="{where}"', f'train.init_from = "{where}"')
        raise ConfigError(f"train.max_steps: {max_steps} is below step {step}, where the checkpoint {resume} "
                          f"already is; a resumed run cannot train fewer steps: give {more} of at least "
                          f"{step}, or start a new run from its weights ({init_from})")
    if step == max_steps:
        raise RunComplete(f"{resume}: the run is complete, its checkpoint is at step {step} and "
                          f"train.max_steps is {max_steps}; nothing to train (raise {more} to train further)",
                          checkpoint=where, step=step)
    if monitor.exhausted:
        raise RunComplete(f"{resume}: the run is complete, it stopped early at step {step} "
                          f"({monitor.describe()}); nothing to train (raise train.early_stop_patience, 0: never, "
                          "to train further)", checkpoint=where, step=step, ended_early=monitor.describe())
    if should_stop:
        init_from = spelled(f'--set train.init_from="{where}"', f'train.init_from = "{where}"')
        raise RunComplete(f"{resume}: the run is complete, a callback ended it at step {step} ({CALLBACK_STOP}); "
                          f"nothing to train (to train on, start a new run from its weights: {init_from})",
                          checkpoint=where, step=step, ended_early=CALLBACK_STOP)


def metric_adding_plugins(hook: Any) -> tuple[str, ...]:
    """The distributions other than the editions whose implementations of ``hook`` (a pluggy hook
    caller: ``deepseek_evaluate``) may add values to an evaluation; the editions' own add none.
    pluggy knows each by ``dist:entry-point`` (core's built-ins by ``core:module``)."""
    from deepseek.plugins.catalogue import EDITIONS

    dists = {impl.plugin_name.partition(":")[0] for impl in hook.get_hookimpls()}
    return tuple(sorted(d for d in dists if d != "core" and d not in EDITIONS))
