"""Opening a run folder for writing, once the run's set-up has checked everything it reads: the
folder's lock, leftovers of a killed save removed, ``metrics.jsonl`` cut back to the checkpoint
(or emptied for a job that died before its first one), the dataset's copies, ``config.toml``
with notes on what a resume changed, the trackers, and the warnings on ineffective settings.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING

from deepseek.config.ineffective import IneffectiveSettingWarning, ineffective_settings
from deepseek.config.load import write_config
from deepseek.errors import shown
from deepseek.tracking.session import TrackingSession, flat_params
from deepseek.tracking.tracker import RunInfo
from deepseek.training import checkpoint as ckpt
from deepseek.training.metrics import MetricsWriter
from deepseek.training.run_folder import (
    EditedConfigWarning,
    config_changes,
    copy_run_files,
    keep_edited_config,
)
from deepseek.training.run_lock import lock_run_folder

if TYPE_CHECKING:
    from deepseek.training.trainer import Trainer


def open_run_folder(trainer: Trainer) -> None:
    """Make ``trainer.run_dir`` the run's (every rank; rank 0 writes): sets the trainer's lock,
    ``metrics_out`` and ``tracking``, and what a fresh run failing before its first step removes."""
    assert trainer.strategy is not None
    cfg = trainer.config
    zero = trainer.strategy.is_global_zero
    trainer._made_run_dir = zero and trainer.resume_from is None and not trainer.run_dir.exists()
    if zero and trainer.resume_from is None and not trainer._made_run_dir:
        trainer._found_in_run_dir = frozenset(os.listdir(trainer.run_dir))
    trainer._lock = lock_run_folder(trainer.run_dir, trainer.strategy)  # before anything in it changes
    ckpt_root = trainer.run_dir / "checkpoints"
    if zero:
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale(ckpt_root)
        ckpt.update_pointers(ckpt_root)  # a kill between a commit and its pointer update
    trainer.metrics_out = MetricsWriter(trainer.run_dir, enabled=zero)
    try:  # resumed: what followed the checkpoint goes; fresh: a job that died before its first checkpoint
        trainer.metrics_out.truncate_after(trainer.step if trainer.resume_from is not None else -1)
    except BaseException:
        trainer.metrics_out.close()
        raise
    changes = config_changes(trainer._resumed_config, cfg.to_dict()) if trainer.resume_from is not None else []
    resumed = shown(trainer.resume_from)
    if trainer.resume_from is not None and zero:
        print(f"resumed from {resumed} at step {trainer.step}"
              + (f", with config changes: {'; '.join(changes)}" if changes else ""), file=sys.stderr, flush=True)
    if zero:
        copy_run_files(trainer.dataset.run_files(), trainer.run_dir)  # first: a folder in a copy's place is refused
        if trainer.resume_from is not None:  # a config.toml edited since: kept, and said, not replaced silently
            edited = keep_edited_config(trainer.run_dir, cfg.to_dict(), trainer._resumed_config,
                                        resume=trainer.resume_from)
            if edited is not None:
                warnings.warn(edited, EditedConfigWarning, stacklevel=4)
        notes = [f"resumed from {resumed} at step {trainer.step}, changing {c}" for c in changes]
        # the optimizer follows the checkpoint there, not this file
        notes += [f"resumed from {resumed}: the optimizer kept the checkpoint's {s}"
                  for s in trainer.engine.kept_settings]
        write_config(cfg, trainer.run_dir / "config.toml", notes)
    run = RunInfo(trainer.run_dir, trainer.run_dir.name, flat_params(cfg.to_dict()), trainer.step, trainer.strategy.world_size,
                  quiet=trainer.quiet)
    try:  # a tracker that cannot start stops the run here, before its first step
        trainer.tracking = TrackingSession.open(cfg, trainer.engine.lookups, run, enabled=zero)
    except BaseException:
        trainer.metrics_out.close()
        raise
    if zero:  # once per run, when set-up has succeeded (an error is then its one line alone)
        for line in ineffective_settings(cfg, device_type=trainer.strategy.device.type, compute_dtype=trainer.precision.name):
            warnings.warn(line, IneffectiveSettingWarning, stacklevel=5)
