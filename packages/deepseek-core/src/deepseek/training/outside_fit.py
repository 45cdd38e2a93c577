"""The trainer's public calls outside :meth:`~deepseek.training.trainer.Trainer.fit`: before ``fit`` set a strategy
up each is one :class:`~deepseek.errors.UsageError` line naming the trainer's call; after it, those that reach the
model or the collectives ask :meth:`Strategy.engine_held` (a distributed strategy's teardown released them), and
those that need only what ``fit`` recorded (``trainer_state()``, ``read_every()``) still answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepseek.errors import UsageError

if TYPE_CHECKING:
    from deepseek.training.run_open import RunFolder
    from deepseek.training.strategy import Strategy

WHILE_FIT = "call it while fit() runs (from a deepseek_train_step_end or deepseek_train_end hook)"
"""When a call that reaches the model may come."""
DURING_OR_AFTER_FIT = "call it while fit() runs or after it returns"
"""When a call that reads what fit set up may come."""


def started(strategy: Strategy | None, call: str, *, when: str = DURING_OR_AFTER_FIT) -> Strategy:
    """The run's strategy for the trainer's public ``call`` (``"trainer_state()"``); before ``fit`` set one up, one
    line naming the call and ``when`` it may come."""
    if strategy is None:
        raise UsageError(f"trainer.{call} before fit(): fit() sets up the strategy and the model; {when}")
    return strategy


def held_strategy(strategy: Strategy | None, call: str) -> Strategy:
    """What the trainer's public ``call`` (``"evaluate()"``, ``"save_checkpoint()"``) reaches: refused in one line
    before ``fit`` set a strategy up, and by :meth:`Strategy.engine_held` once its teardown released the model,
    naming the trainer's call rather than the first strategy call it would have reached."""
    strategy = started(strategy, call, when=WHILE_FIT)
    strategy.engine_held(f"trainer.{call}")
    return strategy


def opened_folder(folder: RunFolder | None) -> RunFolder:
    """The run folder ``trainer.save_checkpoint()`` writes into: none when ``fit`` failed before it opened one."""
    if folder is None:
        raise UsageError("trainer.save_checkpoint() after fit() failed before it opened the run folder: nothing "
                         "was trained to save; fix the error fit() raised and run it again")
    return folder
