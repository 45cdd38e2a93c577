"""What a training run returns: :class:`TrainResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    run_dir: Path
    """The run folder, absolute and resolved (as ``checkpoint`` and ``best_checkpoint`` are)."""
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    """``(step, val_loss)`` of every evaluation in this session."""
    losses: list[float] = field(default_factory=list)
    """Training loss of every step of this session."""
    seconds: float = 0.0
    is_global_zero: bool = True
    val_metrics: dict[str, float] = field(default_factory=dict)
    """Every ``val_*`` value of the last evaluation."""
    generates: bool = False
    """Whether the model samples text (``deepseek generate`` works on the run)."""
    best_checkpoint: Path | None = None
    """The run's best checkpoint (``checkpoint.keep_best``), one an earlier session wrote included."""
    monitor: dict[str, Any] = field(default_factory=dict)
    """The monitored metric's state (name, best value and step, evaluations without improvement)."""
    stopped_by: str | None = None
    """The signal that stopped the run before ``train.max_steps`` (``None``: no signal); see
    :mod:`deepseek.training.preemption`. The run can continue with ``resume``."""
    ended_early: str | None = None
    """Why a complete run ended before ``train.max_steps``: early stopping on ``train.monitor``, or
    a callback setting ``trainer.should_stop`` (``None``: it trained every step, or a signal
    stopped it, :attr:`stopped_by`)."""
    resumed_at: int | None = None
    """The checkpoint's step this session resumed from (``None``: it started the run); ``step``,
    the counts in ``metrics`` and the run folder are the run's, ``seconds`` and ``losses`` this
    session's."""

    def __post_init__(self) -> None:
        # absolute and resolved however the run was reached (a fresh run, ``resume=`` of a relative
        # path, a finished run's checkpoint): one run's results compare equal and outlive a chdir
        self.run_dir = Path(self.run_dir).resolve()
        self.checkpoint = None if self.checkpoint is None else Path(self.checkpoint).resolve()
        self.best_checkpoint = None if self.best_checkpoint is None else Path(self.best_checkpoint).resolve()
