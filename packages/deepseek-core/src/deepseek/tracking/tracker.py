"""The tracker contract: what the trainer hands an experiment tracker, and when.

A tracker is created on the global-zero rank only, as ``cls(options)`` with its validated
``Options``, and called in this order: :meth:`Tracker.start` once before the first step,
:meth:`Tracker.log_metrics` for every row ``metrics.jsonl`` gets (training steps and evaluations,
in step order), :meth:`Tracker.log_artifact` for each artefact at the end, :meth:`Tracker.finish`
once. Every method has a default that does nothing, so a tracker overrides only what it records.

Failure policy (the trainer's, :mod:`deepseek.tracking.session`): an error in ``start`` stops the
run before its first step with one line (raise :class:`deepseek.errors.UsageError` for causes the
user can fix); an error after that warns once (:class:`TrackerWarning`) and disables that tracker
for the rest of the run, and training goes on.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from deepseek.config.components import NoOptions
from deepseek.errors import ConfigError

ARTIFACT_KINDS: tuple[str, ...] = ("plot", "config", "checkpoint")
"""``kind`` of :meth:`Tracker.log_artifact`: ``plot`` (``loss.png``), ``config`` (``config.toml``,
the resolved config), ``checkpoint`` (``final_checkpoint.json``: the final checkpoint's path and
step; the weights stay in the run folder)."""

Status = Literal["succeeded", "failed", "stopped"]
"""How a run ended: ``succeeded`` (trained to the end, or stopped early by ``train.monitor``),
``failed`` (an error) or ``stopped`` (SIGTERM/SIGUSR1; continue it with ``--resume``)."""


class TrackerWarning(UserWarning):
    """A tracker failed during a run; it is disabled for the rest of the run, training goes on."""


@dataclass(frozen=True)
class RunInfo:
    """What :meth:`Tracker.start` receives.

    ``params``: the resolved config flattened to ``section.key`` -> a string, number or boolean
    (lists as their TOML-like text), e.g. ``{"train.lr": 0.002, "model.name": "tiny"}``.
    ``start_step``: 0, or the step a resumed run continues from.
    ``quiet``: the run was asked to print nothing but its errors and summary (``--quiet``,
    ``deepseek.fit(quiet=True)``): a tracker keeps its library's banners to itself.
    """

    run_dir: Path
    run_name: str
    params: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    start_step: int = 0
    world_size: int = 1
    quiet: bool = False


class Tracker:
    """Base class of every experiment tracker (register it with ``deepseek_register_trackers``).

    Subclasses set ``Options`` to a dataclass of their ``[trackers.<name>]`` keys, each with a
    default (:class:`deepseek.config.components.NoOptions` when there are none), and override the
    methods they need. Import the tracker's library inside the methods, not at module level.
    """

    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    @classmethod
    def check(cls, options: Any) -> None:
        """Refuse options that cannot work, when the config is loaded and before anything runs:
        raise :class:`deepseek.errors.ConfigError` with one line (a missing library:
        :func:`require_library`; a malformed URI). No network here. Default: accept."""

    def start(self, run: RunInfo) -> None:
        """Open the tracker's run and record ``run.params``. Called once, before the first step;
        raise :class:`deepseek.errors.UsageError` (one line) when it cannot (server unreachable).
        Default: nothing."""

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record the numbers of one ``metrics.jsonl`` row at ``step`` (``loss``, ``lr``,
        ``grad_norm``, ``tokens_per_s``, ... or ``val_loss``, ``val_<metric>``). Steps arrive in
        order; an evaluation shares the step of the training step before it. Default: nothing."""

    def log_artifact(self, path: Path, kind: str) -> None:
        """Keep a copy of the file ``path``, one of :data:`ARTIFACT_KINDS`. Called at the end of a
        run that succeeded or was stopped. Default: nothing."""

    def finish(self, status: Status) -> None:
        """Close the tracker's run, marking how it ended. Called once, also after an error.
        Default: nothing."""


def require_library(module: str, extra: str, *, tracker: str) -> None:
    """Raise the one-line ConfigError of a tracker whose library ``module`` is not installed,
    naming the extra that installs it (``pip install 'deepseek-core[<extra>]'``), or of one whose
    version is outside the extra's range (:func:`deepseek.extras.check_extra`); for
    :meth:`Tracker.check`."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"logging.trackers: the {tracker!r} tracker needs the {module!r} package, which is not "
            f"installed; install it with: pip install 'deepseek-core[{extra}]'"
        )
    from deepseek.extras import check_extra

    check_extra(extra, where=f"logging.trackers: the {tracker!r} tracker", error=ConfigError)
