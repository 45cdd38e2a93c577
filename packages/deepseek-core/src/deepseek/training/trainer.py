"""The training loop. It talks to parallelism only through :class:`Strategy`, so every strategy
(single, DDP, FSDP2, DeepSpeed, pipeline) runs the same loop with no special case here.

Per step: the same global batch is drawn from the dataset on every rank and handed to the
:class:`~deepseek.training.engine.StepEngine`, which takes this rank's rows (``dataset.shard``),
cuts them into ``grad_accum`` micro-batches and runs the strategy's ``train_step``. The trainer
owns the learning-rate schedule, data, evaluation, checkpoint timing and the run folder; plugins
see it through the ``deepseek_train_*`` lifecycle hooks.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from deepseek import api_args
from deepseek.config.schema import Config
from deepseek.data.dataset import dataset_calls
from deepseek.errors import clear_frames
from deepseek.tracking.session import TrackingSession
from deepseek.training import checkpoint as ckpt
from deepseek.training.engine import StepEngine
from deepseek.training.epochs import EpochEnds
from deepseek.training.evaluation import summarize
from deepseek.training.guards import NonfiniteEvaluations, check_steps, refuse_nonfinite_checkpoint
from deepseek.training.metrics import ProgressBar, plot_run, read_interval
from deepseek.training.monitor import CALLBACK_STOP, rank_zero_additions
from deepseek.training.outside_fit import held_strategy, opened_folder, started
from deepseek.training.preemption import StopSignals
from deepseek.training.result import TrainResult
from deepseek.training.run_open import RunFolder
from deepseek.training.run_setup import dataset_closer, set_up
from deepseek.training.run_state import Saved, trainer_state
from deepseek.training.run_validation import no_validation_error
from deepseek.training.schedule import learning_rate
from deepseek.training.step_records import StepWindow
from deepseek.training.strategy import Strategy

if TYPE_CHECKING:
    from collections.abc import Callable

    from deepseek.plugins.host import PluginHost


class Trainer:
    """Runs one training job from a validated :class:`Config`.

    ``run_dir``: the run folder (default ``<logging.runs_dir>/<logging.name or timestamp>``, or the
    run the checkpoint belongs to when resuming). ``resume``: a run folder or checkpoint folder.
    ``host``: the plugin host whose components and hooks the run uses (default: the process's).
    """

    def __init__(self, config: Config, *, run_dir: str | Path | None = None, resume: str | Path | None = None,
                 quiet: bool = False, host: PluginHost | None = None) -> None:
        self.config = api_args.config(config)
        self.host = api_args.host(host)
        self.resume_from = (ckpt.resolve_checkpoint(api_args.path(resume, "resume"), resuming=True)
                            if resume is not None else None)
        self._run_dir_arg = api_args.path(run_dir, "run_dir") if run_dir is not None else None
        self.quiet = api_args.flag(quiet, "quiet")
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.val_losses: list[tuple[int, float]] = []
        self.last_metrics: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self.run_dir: Path = Path()
        self.strategy: Strategy | None = None
        self.last_checkpoint: Path | None = None
        self.samples_seen = 0
        """Training rows seen over the run (a resumed run's include the checkpoint's)."""
        self.generates = False
        self.best_checkpoint: Path | None = None
        self.tokens_seen = 0
        """Training tokens seen over the run (0 for data without tokens)."""
        self._window = StepWindow()
        self._epochs: EpochEnds | None = None
        self._saved = Saved()
        """The newest checkpoint of this run (on disk already when resuming)."""
        self._folder: RunFolder | None = None  # the run folder once it is claimed: its lock, what a failed run removes
        self._resumed_at: int | None = None
        self._put_back_rng: Callable[[], None] | None = None  # a resumed run's generators, set before its first step
        self._stop = StopSignals(config.train.preempt_grace_s)
        self._nonfinite_evals = NonfiniteEvaluations()  # an evaluation of NaN: said once per run
        self._scope = contextlib.ExitStack()  # what the run's set-up opens for it: the attention kernel
        self.stopped_by: str | None = None
        self.should_stop = False
        """Set it from a callback (``deepseek_train_step_end``, ``deepseek_evaluate``) to end the
        run as complete before the next step, as Lightning's ``trainer.should_stop``: every rank
        stops at the same step (one rank setting it is enough), a checkpoint is written as at the
        end (``checkpoint.at_end``). A ``bool``: a hook setting anything else is refused
        (:func:`deepseek.plugins.records.checked_should_stop`)."""
        self.ended_early: str | None = None
        self.tracking = TrackingSession()
        """The experiment trackers of ``logging.trackers`` (started on rank 0 only)."""

    # ------------------------------------------------------------------ views for plugins

    @property
    def is_global_zero(self) -> bool:
        """True on the one process that writes logs, plots and metadata."""
        return self.strategy is None or self.strategy.is_global_zero

    @property
    def epochs_done(self) -> int | None:
        """Complete passes over the training data so far (``Dataset.epochs_done``; ``None`` for
        data without passes), as of the last batch drawn."""
        return self._epochs.done if self._epochs is not None else None

    @property
    def model(self) -> torch.nn.Module | None:
        """The (possibly wrapped) model the strategy trains; after :meth:`fit`, what the strategy's teardown
        leaves (docs/distributed.md, 'After the run': ddp the trained module, the sharded ones None)."""
        return self.strategy.model if self.strategy is not None else None

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The strategy's optimizer."""
        return self.strategy.optimizer if self.strategy is not None else None

    # ------------------------------------------------------------------ set-up

    def _setup(self) -> None:
        """Everything the loop needs, on every rank: the step engine, then what the set-up makes and
        checks before the run folder is written (run_setup.py), then the folder opened for writing
        (run_open.py); ends at a barrier, so every rank starts the loop together. Each part is kept
        as soon as it exists, so a failure after it still tears down the strategy and gives the
        folder back (:meth:`fit`)."""
        self.engine = engine = StepEngine(self.config, host=self.host)
        self.hooks, self.precision, self.strategy = engine.lookups.hook, engine.precision, engine.strategy
        engine.setup_environment()
        self._scope.enter_context(engine.attention_kernel())
        made = set_up(engine, run_dir=self._run_dir_arg, resume_from=self.resume_from)
        self.config, self.dataset, self.schedule, self.monitor = made.config, made.dataset, made.schedule, made.monitor
        self._scope.push(dataset_closer(self.dataset))  # its reader processes end with the loop, also after a failure
        self.val_set, self.val_texts, self.generates, self._batches = made.val_set, made.val_texts, made.generates, made.batches
        self.run_dir = made.run_dir
        if made.restored is not None:
            restored = made.restored
            self.step, self._resumed_at, self._saved = restored.step, restored.step, restored.saved
            self.best_checkpoint = restored.best_checkpoint
            self.tokens_seen, self.samples_seen = restored.tokens_seen, restored.samples_seen
            self.last_metrics = restored.metrics
            self._put_back_rng = restored.put_back_rng
        self._folder = RunFolder(self.run_dir)
        opened = self._folder.open(made, engine, resume_from=self.resume_from, quiet=self.quiet)
        self.metrics_out, self.tracking = opened.metrics_out, opened.tracking
        self.strategy.barrier()

    # ------------------------------------------------------------------ the loop

    def fit(self) -> TrainResult:
        """Train to ``train.max_steps`` (evaluating and checkpointing on the way); returns where."""
        started = time.perf_counter()
        ok = False
        # SIGTERM / SIGUSR1 stop after the current step (preemption.py); one that comes after the
        # last step (the plot, the teardown) is absorbed: the run is complete and ends as done
        failure: BaseException | None = None  # a fresh run that fails before its first step leaves no folder
        with self._stop:
            try:
                with self._scope:
                    self._setup()
                    self._loop()
                if self.stopped_by is None:
                    self._finish()
                ok = True
            except BaseException as exc:
                failure = exc
                raise
            finally:
                status = "stopped" if ok and self.stopped_by else "succeeded" if ok else "failed"
                self.tracking.end(status, run_dir=self.run_dir, checkpoint=self.last_checkpoint, step=self._saved.step)
                if self.strategy is not None:
                    self.engine.items = None  # its loss_items, a bound method, would keep the model past the teardown
                    if ok:  # every rank done (rank 0 plots last) before any leaves its process group
                        self.strategy.barrier()
                        self.strategy.teardown()
                    else:  # keep the original error, not one from tearing down after it
                        if failure is not None and self.strategy.needs_launcher:  # the engine its frames hold goes too
                            clear_frames(failure)
                        with contextlib.suppress(Exception):
                            self.strategy.teardown()
                if self._folder is not None:
                    self._folder.close(discard=failure is not None and self.step == 0)
        assert self.strategy is not None
        return TrainResult(
            self.run_dir, self.step, dict(self.last_metrics), self.last_checkpoint, list(self.val_losses),
            [r["loss"] for r in self.history], time.perf_counter() - started, self.strategy.is_global_zero,
            dict(self.last_eval), self.generates, self.best_checkpoint, self.monitor.state_dict() if self.val_set else {},
            self.stopped_by, resumed_at=self._resumed_at, ended_early=self.ended_early,
        )

    def _loop(self) -> None:
        assert self.strategy is not None
        cfg = self.config
        show = self.strategy.is_global_zero and cfg.logging.progress and not self.quiet
        progress = ProgressBar(cfg.train.max_steps, start=self.step, enabled=show)
        self.progress = progress
        every = self.read_every()
        first = self.step + 1
        self._epochs = EpochEnds(self.dataset)
        try:
            self.hooks.deepseek_train_start(trainer=self)
            if self._put_back_rng is not None:  # the set-up's draws since the checkpoint was read do not count
                self._put_back_rng()
                self._put_back_rng = None
            try:
                if self.step == 0 and self.val_set:
                    self._evaluate(progress)
                while self.step < cfg.train.max_steps:
                    if self._stop_requested(progress):  # a collective: every rank, every step
                        break
                    self._train_step()
                    interval, keep = cfg.train.eval_interval, cfg.checkpoint.interval
                    last = self.step == cfg.train.max_steps
                    evaluate = bool(self.val_set) and (last or bool(interval and self.step % interval == 0))
                    save = (cfg.checkpoint.at_end and last) or bool(keep and self.step % keep == 0)
                    if evaluate or save or last or self.step == first or len(self._window) >= every:
                        self._read_window(progress)
                    best = evaluate and self._evaluate(progress) and cfg.checkpoint.keep_best
                    stop = self.monitor.exhausted
                    if stop:
                        self.ended_early = self.monitor.describe()
                        progress.log(self.ended_early)
                    if save or best or (stop and cfg.checkpoint.at_end):
                        self.save_checkpoint(best=bool(best))
                    if stop:
                        break
                self._record_callback_stop(progress)
            finally:
                if len(self._window):  # an error stopped the loop: keep what the finished steps measured
                    with contextlib.suppress(Exception):
                        for record in self._window.take_records():
                            self.metrics_out.write(record)
                            self.tracking.log_metrics(record)
                progress.close()
                self.hooks.deepseek_train_end(trainer=self, metrics={**self.last_metrics, "step": self.step})
        finally:
            self.metrics_out.close()

    def _stop_requested(self, progress: ProgressBar) -> bool:
        """Whether the loop ends before the next step, after logging what is pending: :attr:`should_stop`
        set on any rank (the run ends complete, evaluated and saved as at its end; a stop signal with
        it is absorbed, as one after the last step is), else a stop signal on any rank (the run stops
        to be resumed, its step saved). One collective per step; a second when one of them is set."""
        assert self.strategy is not None
        if not self.strategy.any_rank(self._stop.received is not None or self.should_stop):
            return False
        signalled = not self.strategy.any_rank(self.should_stop)
        if len(self._window):
            self._read_window(progress)
        best = not signalled and self._evaluate_last(progress)  # a signal stops for a resume: evaluates nothing
        # best: saved (again, when its interval saved it unmarked) so that the best checkpoint is this step's
        if best or (self.step > self._saved.step and (signalled or self.config.checkpoint.at_end)):
            self.save_checkpoint(best=bool(best))
        if signalled:
            self.stopped_by = self._stop.describe()
        else:
            self.should_stop, self.ended_early = True, CALLBACK_STOP
        progress.log(f"step {self.step:>6}  " + (f"stopped on {self.stopped_by}" if signalled else
                                                  f"stopping: {self.ended_early}"))
        return True

    def _evaluate_last(self, progress: ProgressBar) -> bool:
        """A callback ended the run: its last weights are evaluated as at the last step (Lightning too),
        unless this step was, or a resume started from it; ``True``: the best, to be saved as such."""
        if self.val_set and self.step != (self._resumed_at or 0) and (not self.val_losses or self.val_losses[-1][0] != self.step):
            return self._evaluate(progress) and self.config.checkpoint.keep_best
        return False

    def _record_callback_stop(self, progress: ProgressBar) -> None:
        """After the loop, on every rank: a run :attr:`should_stop` ended (any rank, any hook, a save's too) is
        complete, whatever signal came: its step evaluated if not yet, its checkpoint recording that."""
        assert self.strategy is not None
        if not self.strategy.any_rank(self.should_stop):
            return
        self.should_stop, self.ended_early, self.stopped_by = True, self.ended_early or CALLBACK_STOP, None
        best = self._evaluate_last(progress)
        if best or (self.step > 0 and self.step == self._saved.step and not self._saved.stopped):
            self.save_checkpoint(best=best or self._saved.best)  # saved before: written again, a best mark kept

    def read_every(self) -> int:
        """Steps between host syncs that read the loss and gradient norm (``logging.every_n_steps``;
        default 1 on the CPU, 10 on an accelerator, where a sync per step leaves it idle); one line before fit."""
        return read_interval(self.config.logging.every_n_steps, started(self.strategy, "read_every()").device.type)

    def _train_step(self) -> None:
        assert self.strategy is not None and self._epochs is not None
        started = time.perf_counter()
        step = self.step + 1
        lr = learning_rate(self.schedule, step)
        batch = self._batches.draw(step)
        self._epochs.drawn(step)
        result = self.engine.step(batch, lr, step)
        self.step = step
        rows = self.config.data.batch_size
        with dataset_calls(self.dataset, self.dataset.label, "count_tokens"):
            tokens = self.dataset.count_tokens(batch)
        self.samples_seen += rows
        self.tokens_seen += tokens or 0
        extra: dict[str, Any] = {}
        if self.precision.scaler is not None:
            extra["loss_scale"] = self.precision.loss_scale
        extra.update(self.engine.step_metrics(list(result.metrics)))
        self._window.add(step, result, lr=lr, rows=rows, samples=self.samples_seen, tokens=tokens,
                         tokens_seen=self.tokens_seen if tokens is not None else None, extra=extra,
                         started=started)

    def _read_window(self, progress: ProgressBar) -> None:
        """Read the steps since the last read (one host sync), then log them and run their hooks;
        a non-finite step then stops the run under ``train.on_nonfinite = "stop"``."""
        records = self._window.take_records()
        assert self._epochs is not None
        for record in records:
            step = record["step"]
            self.hooks.deepseek_train_step_end(trainer=self, step=step, metrics=record)
            for epoch in self._epochs.completed_by(step):
                self.hooks.deepseek_train_epoch_end(trainer=self, epoch=epoch, step=step)
            self.history.append(record)
            self.last_metrics.update({k: v for k, v in record.items() if isinstance(v, (int, float))})
            self.metrics_out.write(record)
            self.tracking.log_metrics(record)
            progress.update(step, record, self._window.metric_names)
        check_steps(records, self.config, (self._resumed_at or 0) + 1)

    def evaluate(self) -> dict[str, float]:
        """Mean validation loss and model metrics over the fixed validation batches:
        ``{"val_loss": ..., "val_<metric>": ...}``, and ``val_bits_per_byte`` for text data
        (:class:`UsageError` without validation, ``data.eval_batches = 0``, and outside fit: :func:`held_strategy`)."""
        held_strategy(self.strategy, "evaluate()")
        if not self.val_set:
            raise no_validation_error()
        results, whole_set = self.engine.evaluate_all(self.val_set)
        values = summarize(results, self.val_texts, weights=self.engine.batch_weights(self.val_set))
        return {**values, **whole_set}

    def _evaluate(self, progress: ProgressBar) -> bool:
        """Evaluate, log and run the hooks; ``True`` when ``train.monitor`` improved."""
        values = self.evaluate()
        record: dict[str, Any] = {"step": self.step, **values}
        self.hooks.deepseek_evaluate(trainer=self, step=self.step, metrics=record)
        if self.monitor.added_by:  # a plugin's values decide on rank 0's, so every rank keeps the same best and stops together
            record = rank_zero_additions(self.strategy, record, values)
        self.last_metrics.update({k: v for k, v in record.items() if k != "step"})
        self.last_eval = {k: v for k, v in record.items() if k.startswith("val_")}
        self.val_losses.append((self.step, values["val_loss"]))
        self._nonfinite_evals.check(self.step, record, report=self.is_global_zero)
        self.metrics_out.write(record)
        self.tracking.log_metrics(record)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
        progress.log(f"step {self.step:>6}  {shown}")
        return self.monitor.update({k: v for k, v in record.items() if k != "step"}, self.step)

    # ------------------------------------------------------------------ checkpoints

    def trainer_state(self) -> dict[str, Any]:
        """What ``trainer.json`` records besides model and optimizer (:func:`~deepseek.training.run_state.trainer_state`);
        one line before fit (:func:`~deepseek.training.outside_fit.started`), as of the last step after it."""
        started(self.strategy, "trainer_state()")
        return trainer_state(self)

    def save_checkpoint(self, *, best: bool = False) -> Path | None:
        """Write ``checkpoints/step-N`` atomically on every rank (``best``: and mark it the best,
        kept from pruning); prune to ``keep_last``. Weights that are not finite are never written
        (``None``; or the run stops, see ``train.on_nonfinite``). Refused like :meth:`evaluate` outside a run; after
        fit the run folder's lock is taken again for the write (:meth:`RunFolder.claimed`: refused if another job holds it)."""
        strategy, folder = held_strategy(self.strategy, "save_checkpoint()"), opened_folder(self._folder)
        if strategy.any_rank(self.should_stop):  # on every rank; recorded: a resume finds the run complete
            self.should_stop, self.ended_early = True, self.ended_early or CALLBACK_STOP
        if not strategy.weights_finite():
            refuse_nonfinite_checkpoint(self.step, self.config)
            return None
        self.metrics_out.sync()  # the records up to this step on disk before the checkpoint commits
        # a plugin model's state_dict raising is one line naming it; the temp folder is removed, latest unchanged
        with folder.claimed(strategy), self.engine.strategy_calls("save_checkpoint"), self.engine.model_calls("state_dict"):
            final = ckpt.write_checkpoint(strategy, self.run_dir / "checkpoints", self.step,
                                          self.trainer_state(), keep_last=self.config.checkpoint.keep_last, best=best,
                                          label=self.engine.strategy_label)
        if best:
            self.best_checkpoint = final
        self.last_checkpoint, self._saved = final, Saved(self.step, stopped=self.should_stop, best=best)
        self.hooks.deepseek_checkpoint_saved(trainer=self, path=final, step=self.step)
        return final

    # ------------------------------------------------------------------ the end

    def _finish(self) -> None:
        assert self.strategy is not None
        if self.strategy.is_global_zero and self.config.logging.plot:
            plot_run(self.run_dir, self.config.model.name)

