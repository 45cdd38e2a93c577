"""A training run's set-up before its first step, once the trainer has its step engine (strategy,
precision, the attention kernel): the dataset and its validation batches, the model built and
checked on the data, the run folder picked and refused while another job holds it, a resumed
checkpoint's weights checked and its run fields restored, the learning-rate schedule and the
monitor. :func:`set_up` returns what it made (:class:`RunSetup`) for the trainer to keep; it
writes nothing into the run folder (a finished run resumed is only tidied), which the trainer then
opens for writing (:class:`~deepseek.training.run_open.RunFolder`). Everything it reads is checked
before anything is written.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepseek.data.dataset import checked_state_dict, dataset_calls
from deepseek.models.capabilities import model_capabilities
from deepseek.run_files import hooks_run_files, written_by
from deepseek.training.build import build_dataset, build_schedule
from deepseek.training.metrics import read_metrics
from deepseek.training.monitor import Monitor, metric_adding_plugins
from deepseek.training.run_folder import pick_run_folder
from deepseek.training.run_lock import refuse_if_busy
from deepseek.training.run_state import Restored, check_evaluation, check_resumed_weights, restore
from deepseek.training.run_validation import TrainingBatches, read_validation

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from deepseek.config.schema import Config
    from deepseek.data.batch import Batch
    from deepseek.data.dataset import Dataset, PredictedText
    from deepseek.training.engine import StepEngine
    from deepseek.training.schedule import LRSchedule


@dataclass(frozen=True)
class RunSetup:
    """What :func:`set_up` made, for the trainer to keep."""

    config: Config
    """The run's config with the options the strategy chose for the model (the engine's)."""
    dataset: Dataset
    val_set: list[Batch]
    """The fixed validation batches (none with ``data.eval_batches = 0``)."""
    val_texts: list[PredictedText | None]
    """What each validation batch predicts as text, for bits per byte."""
    generates: bool
    """The model declares generation (``deepseek generate`` can sample it)."""
    batches: TrainingBatches
    run_dir: Path
    schedule: LRSchedule
    monitor: Monitor
    restored: Restored | None
    """A resumed run's fields, as its checkpoint recorded them; ``None`` for a fresh run."""


def set_up(engine: StepEngine, *, run_dir: Path | None, resume_from: Path | None) -> RunSetup:
    """Build the run of ``engine`` (its config, plugin host and strategy) on every rank: in
    ``run_dir`` (``None``: the config's, or the resumed run's), resuming checkpoint
    ``resume_from`` (``None``: a fresh run) into the engine's strategy and precision."""
    cfg = engine.config
    dataset = build_dataset(cfg, engine.lookups)
    checked_state_dict(dataset)  # its position is JSON a checkpoint can record: said now, not at the first save
    engine.shard = dataset.shard
    val_set, val_texts = read_validation(cfg, dataset)  # none: data.eval_batches = 0
    model = engine.build_model()
    generates = "generation" in model_capabilities(model)
    # checks the model on val_set[0], else on the first training batch
    batches = TrainingBatches(dataset, cfg.data, model, val_set=val_set, engine=engine)
    strategy = engine.strategy
    written = written_by(engine.lookups, cfg.data.name, cfg.model.name)
    folder = pick_run_folder(cfg, strategy, run_dir=run_dir, resume_from=resume_from, host=engine.lookups,
                             copies=(*dataset.run_files(), *written, *hooks_run_files(engine.lookups)))
    refuse_if_busy(folder, strategy)  # a live job's folder: refused before reading it
    if resume_from is not None:  # another model's run or weights: one line, whatever the strategy's load does
        check_resumed_weights(cfg, model, resume_from, engine.lookups)
    engine.setup_model(model, resuming=resume_from is not None)
    cfg = engine.config  # with the options the strategy chose for the model
    t = cfg.train
    schedule = build_schedule(cfg, engine.lookups)
    monitor = Monitor(t.monitor, t.monitor_mode, t.early_stop_min_delta, t.early_stop_patience,
                      added_by=metric_adding_plugins(engine.lookups.hook.deepseek_evaluate))
    check_evaluation(engine, model, dataset, val_set, val_texts, monitor)
    restored = None
    if resume_from is not None:  # read (and checked) before anything is written
        restored = restore(engine, dataset, monitor, folder, resume_from)
        if strategy.is_global_zero:
            read_metrics(folder / "metrics.jsonl")  # the rows truncate_after keeps
    return RunSetup(cfg, dataset, val_set, val_texts, generates, batches, folder, schedule, monitor, restored)


def dataset_closer(dataset: Dataset) -> Callable[..., bool]:
    """An exit callback (``ExitStack.push``) calling :meth:`Dataset.close
    <deepseek.data.dataset.Dataset.close>` when the loop ends; what it raises is one line naming the
    dataset, and after a failure its own error is not let replace the run's."""

    def close(exc_type: type[BaseException] | None, *_: Any) -> bool:
        if exc_type is None:
            with dataset_calls(dataset, dataset.label, "close"):
                dataset.close()
        else:
            with contextlib.suppress(Exception):
                dataset.close()
        return False

    return close
