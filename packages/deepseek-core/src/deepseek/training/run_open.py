"""Opening a run folder for writing, once the run's set-up has checked everything it reads: the
folder's lock, leftovers of a killed save removed, ``metrics.jsonl`` cut back to the checkpoint
(or emptied for a job that died before its first one), the dataset's copies, ``config.toml``
with notes on what a resume changed, the trackers, and the warnings on ineffective settings; and
giving it back when the run ends (:class:`RunFolder`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deepseek.config.ineffective import IneffectiveSettingWarning, ineffective_settings
from deepseek.config.load import write_config
from deepseek.errors import shown
from deepseek.tracking.session import TrackingSession, flat_params
from deepseek.tracking.tracker import RunInfo
from deepseek.training import checkpoint as ckpt
from deepseek.training.metrics import MetricsWriter
from deepseek.training.rank_zero import rank_zero_outcome
from deepseek.training.run_folder import (
    EditedConfigWarning,
    config_changes,
    copy_run_files,
    discard_unfinished,
    keep_edited_config,
)
from deepseek.training.run_lock import RunLock, lock_run_folder

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from deepseek.training.engine import StepEngine
    from deepseek.training.run_setup import RunSetup
    from deepseek.training.strategy import Strategy


@dataclass(frozen=True)
class OpenedRun:
    """What :meth:`RunFolder.open` started, for the trainer to keep."""

    metrics_out: MetricsWriter
    """``metrics.jsonl`` (written on rank 0)."""
    tracking: TrackingSession
    """The experiment trackers of ``logging.trackers`` (started on rank 0 only)."""


class RunFolder:
    """The folder ``path`` a run writes: :meth:`open` claims it (its lock) and opens it for writing,
    :meth:`close` gives it back when the run ends, removing what a fresh run that failed before its
    first step wrote. Its fields are set as :meth:`open` goes, so a run failing half-way through it
    still gives back what it took."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock: RunLock | None = None
        self.made = False
        """Rank 0 of a fresh run created the folder (it goes whole if the run fails before step 1)."""
        self.found: frozenset[str] | None = None
        """What an existing folder held before a fresh run (it stays if the run fails before step 1)."""
        self.closed = False
        """:meth:`close` gave the folder back: the run ended (a write after it takes the lock again: :meth:`claimed`)."""

    def open(self, made: RunSetup, engine: StepEngine, *, resume_from: Path | None, quiet: bool) -> OpenedRun:
        """Make the folder the run's (every rank; rank 0 writes): the run ``made`` (its config,
        dataset and a resume's restored fields) on ``engine``, resumed from ``resume_from``."""
        strategy, cfg, run_dir = engine.strategy, made.config, self.path
        zero = strategy.is_global_zero
        step = made.restored.step if made.restored is not None else 0
        self.made = zero and resume_from is None and not run_dir.exists()
        if zero and resume_from is None and not self.made:
            self.found = frozenset(os.listdir(run_dir))
        self.lock = lock_run_folder(run_dir, strategy)  # before anything in it changes
        ckpt_root = run_dir / "checkpoints"
        with rank_zero_outcome(strategy):  # rank 0's work; its error (a step-N it cannot rename back) every rank's
            if zero:
                run_dir.mkdir(parents=True, exist_ok=True)
                ckpt.remove_stale(ckpt_root)  # a moved-aside step-N resumed from is step-N again
                ckpt.update_pointers(ckpt_root)  # a kill between a commit and its pointer update
        if resume_from is not None:  # named as it is now, in what follows
            resume_from = ckpt.committed_path(resume_from)
        resumed_config = made.restored.config if made.restored is not None else None
        changes = config_changes(resumed_config, cfg.to_dict()) if resume_from is not None else []
        run = RunInfo(run_dir, run_dir.name, flat_params(cfg.to_dict()), step, strategy.world_size, quiet=quiet)
        metrics_out = MetricsWriter(run_dir, enabled=zero)
        try:
            with rank_zero_outcome(strategy):  # rank 0's work again (the others' writer and trackers do nothing)
                # resumed: what followed the checkpoint goes; fresh: a job that died before its first checkpoint
                metrics_out.truncate_after(step if resume_from is not None else -1)
                if zero:
                    self._write_files(made, engine, resume_from, changes)
                # a tracker that cannot start stops the run here, before its first step
                tracking = TrackingSession.open(cfg, engine.lookups, run, enabled=zero)
        except BaseException:
            metrics_out.close()
            raise
        if zero:  # once per run, when set-up has succeeded (an error is then its one line alone)
            for line in ineffective_settings(cfg, device_type=strategy.device.type, compute_dtype=engine.precision.name):
                warnings.warn(line, IneffectiveSettingWarning, stacklevel=4)  # at the caller of Trainer.fit
        return OpenedRun(metrics_out, tracking)

    def _write_files(self, made: RunSetup, engine: StepEngine, resume_from: Path | None, changes: list[str]) -> None:
        """Rank 0's writes of :meth:`open`: the dataset's copies, ``config.toml`` with notes on
        what a resume from ``resume_from`` changed (``changes``), kept where edited since."""
        cfg, run_dir, resumed = made.config, self.path, shown(resume_from)
        step = made.restored.step if made.restored is not None else 0
        resumed_config = made.restored.config if made.restored is not None else None
        if resume_from is not None:
            print(f"resumed from {resumed} at step {step}"
                  + (f", with config changes: {'; '.join(changes)}" if changes else ""), file=sys.stderr, flush=True)
        copy_run_files(made.dataset.run_files(), run_dir)  # first: a folder in a copy's place is refused
        if resume_from is not None:  # a config.toml edited since: kept, and said, not replaced silently
            edited = keep_edited_config(run_dir, cfg.to_dict(), resumed_config, resume=resume_from)
            if edited is not None:
                warnings.warn(edited, EditedConfigWarning, stacklevel=4)  # at Trainer.fit
        notes = [f"resumed from {resumed} at step {step}, changing {c}" for c in changes]
        # the optimizer follows the checkpoint there, not this file
        notes += [f"resumed from {resumed}: the optimizer kept the checkpoint's {s}" for s in engine.kept_settings]
        write_config(cfg, run_dir / "config.toml", notes)

    def close(self, *, discard: bool) -> None:
        """Release the lock; ``discard``: the run failed before its first step, so what it wrote
        goes (:func:`~deepseek.training.run_folder.discard_unfinished`: the whole folder if it
        created it, else what it added)."""
        self.closed = True
        if self.lock is not None:
            self.lock.release()
        if discard and (self.made or self.found is not None):
            discard_unfinished(self.path, None if self.made else self.found)

    @contextlib.contextmanager
    def claimed(self, strategy: Strategy) -> Iterator[None]:
        """The folder held for a write (``trainer.save_checkpoint()``): while the run goes, by its lock; after
        :meth:`close`, by the lock taken again for the write and given back after it, so nothing is written into
        a folder another job took since (:class:`~deepseek.training.run_lock.RunFolderBusy`, one line)."""
        if not self.closed:
            yield
            return
        lock = lock_run_folder(self.path, strategy)
        try:
            yield
        finally:
            lock.release()
