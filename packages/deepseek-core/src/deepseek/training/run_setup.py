"""A training run's set-up, before its first step: the step engine (strategy, precision, the
attention kernel), the dataset and its validation batches, the model built and checked on the
data, the run folder picked and refused while another job holds it, a resumed checkpoint's
weights checked and its run fields restored, the learning-rate schedule and the monitor; then the
run folder opened for writing (:func:`~deepseek.training.run_open.open_run_folder`). Everything it
reads is checked before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepseek.data.dataset import checked_state_dict
from deepseek.models.capabilities import model_capabilities
from deepseek.run_files import written_by
from deepseek.training.build import build_dataset, build_schedule
from deepseek.training.engine import StepEngine
from deepseek.training.metrics import read_metrics
from deepseek.training.monitor import Monitor, metric_adding_plugins
from deepseek.training.run_folder import pick_run_folder
from deepseek.training.run_lock import refuse_if_busy
from deepseek.training.run_open import open_run_folder
from deepseek.training.run_state import check_evaluation, check_resumed_weights, restore
from deepseek.training.run_validation import TrainingBatches, read_validation

if TYPE_CHECKING:
    from deepseek.training.trainer import Trainer


def set_up(trainer: Trainer) -> None:
    """Build ``trainer``'s run on every rank (sets its engine, hooks, precision, strategy, dataset,
    validation batches, run folder, schedule and monitor, and a resumed run's step, counters and
    metrics), then open the run folder; ends at a barrier, so every rank starts the loop together."""
    cfg = trainer.config
    trainer.engine = engine = StepEngine(cfg, host=trainer.host)
    trainer.hooks = engine.lookups.hook
    trainer.precision = engine.precision
    trainer.strategy = strategy = engine.strategy
    engine.setup_environment()
    trainer._scope.enter_context(engine.attention_kernel())
    trainer.dataset = build_dataset(cfg, engine.lookups)
    checked_state_dict(trainer.dataset)  # its position is JSON a checkpoint can record: said now, not at the first save
    engine.shard = trainer.dataset.shard
    trainer.val_set, trainer.val_texts = read_validation(cfg, trainer.dataset)  # none: data.eval_batches = 0
    model = engine.build_model()
    trainer.generates = "generation" in model_capabilities(model)
    trainer._batches = TrainingBatches(trainer, model)  # checks the model on val_set[0], else on the first training batch
    trainer.run_dir = pick_run_folder(cfg, strategy, run_dir=trainer._run_dir_arg, resume_from=trainer.resume_from,
                                      copies=(*trainer.dataset.run_files(), *written_by(trainer.dataset, model)))
    refuse_if_busy(trainer.run_dir, strategy)  # a live job's folder: refused before reading it
    if trainer.resume_from is not None:  # another model's run or weights: one line, whatever the strategy's load does
        check_resumed_weights(cfg, model, trainer.resume_from)
    engine.setup_model(model, resuming=trainer.resume_from is not None)
    trainer.config = cfg = engine.config  # with the options the strategy chose for the model
    t = cfg.train
    trainer.schedule = build_schedule(cfg, engine.lookups)
    trainer.monitor = Monitor(t.monitor, t.monitor_mode, t.early_stop_min_delta, t.early_stop_patience,
                              added_by=metric_adding_plugins(trainer.hooks.deepseek_evaluate))
    check_evaluation(trainer, model)
    if trainer.resume_from is not None:  # read (and checked) before anything is written
        restored = restore(trainer, trainer.resume_from)
        trainer.step = trainer._saved_step = trainer._resumed_at = restored.step
        trainer._resumed_config, trainer.best_checkpoint = restored.config, restored.best_checkpoint
        trainer.tokens_seen, trainer.samples_seen = restored.tokens_seen, restored.samples_seen
        trainer.last_metrics = restored.metrics
        trainer._put_back_rng = restored.put_back_rng
        if strategy.is_global_zero:
            read_metrics(trainer.run_dir / "metrics.jsonl")  # the rows truncate_after keeps
    open_run_folder(trainer)
    strategy.barrier()
