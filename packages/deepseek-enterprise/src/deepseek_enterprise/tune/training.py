"""``training`` tuner: each trial is ``deepseek train trial.toml`` in its own process (under
``deepseek launch -n N`` when the strategy needs one process per device); the objective is a
validation metric the model reports (``val_loss``, ``val_acc``, ...).

While the trial trains, the tuner reads the lines its run folder's ``metrics.jsonl`` gained since
the last poll (:class:`~deepseek.training.metrics.MetricsTail`) and reports every evaluation after
step 0 to the study's pruner; when the pruner says stop, the trial gets
SIGTERM (the trainer saves and exits) and is recorded as pruned at that step. The trial's value
is the metric at the run's last evaluation (the trainer always evaluates at its final step). A
``metrics.jsonl`` that cannot be read as a run's (a FIFO, a folder, a line past 1 MiB or not a
record) stops the trial, which fails with the line naming the file.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from deepseek.errors import ConfigError, UsageError, shown
from deepseek.parsing import read_file
from deepseek.training.metrics import MetricsTail
from deepseek_enterprise.tune.limits import field_check
from deepseek_enterprise.tune.process import deepseek_argv, plugin_env, run_child, tail
from deepseek_enterprise.tune.tuner import (
    TrialFailed,
    TrialRun,
    TrialStopped,
    Tuner,
)


@dataclass(frozen=True)
class TrainingTunerOptions:
    """``[tuner]`` keys of the ``training`` tuner."""

    nproc: int = field(default=2, metadata={"check": field_check("nproc")})
    """Processes (devices) for a strategy that needs a launcher (``deepseek launch -n``)."""
    trial_timeout_s: float = field(default=0.0, metadata={"check": field_check("trial_timeout_s")})
    """Stop a trial running longer than this many seconds and record it failed (0: no limit)."""
    poll_s: float = field(default=1.0, metadata={"check": field_check("poll_s")})
    """Seconds between reads of the trial's metrics."""


def objective_values(records: list[dict[str, Any]], objective: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every metrics record holding a number for ``objective``."""
    return [(r["step"], float(v)) for r in records
            if isinstance(v := r.get(objective), (int, float)) and not isinstance(v, bool)]


class TrialEvaluations:
    """The objective's values in a trial's ``metrics.jsonl``, read as its training appends them
    and reported to the study's pruner; a file that is no run's metrics fails the trial."""

    def __init__(self, trial: TrialRun, metrics: Path) -> None:
        self.trial = trial
        self.tail = MetricsTail(metrics)
        self.values: list[tuple[int, float]] = []  # of the file as it was at the last poll
        self.seen: list[tuple[int, float]] = []  # those reported
        self.stop: TrialStopped | None = None
        self.failure: TrialFailed | None = None

    def poll(self, final: bool = False) -> bool:
        """Report the evaluations written since the last call; True (while running) when the
        pruner wants the trial stopped, or the file is unreadable (:attr:`failure` says why).
        ``final``: the run is over; every value is reported, none stops it."""
        try:
            self.values = objective_values(self.tail.read(final), self.trial.objective)
        except UsageError as exc:  # a FIFO, a folder, a line past 1 MiB or not a record: the trial's failure
            self.failure = self.failure or TrialFailed(str(exc))
            return True
        for step, value in self.values[len(self.seen):]:
            self.seen.append((step, value))
            if step > 0 and math.isfinite(value) and self.trial.report(step, value) and not final:
                self.stop = TrialStopped(step, value)
                return True
        return False

    def final_value(self) -> float:
        """The objective at the run's last evaluation, once ``poll(final=True)`` read the whole
        file; TrialFailed when the file was unreadable, reports no such value or the run diverged."""
        if self.failure is not None:
            raise self.failure
        objective = self.trial.objective
        if not self.values:
            reported = sorted({k for r in self.tail.read(final=True) for k in r if k.startswith("val_")})
            raise TrialFailed(f"the run reported no {objective!r}; it reports {', '.join(reported) or 'nothing'} "
                              "(choose --objective among them)")
        step, value = self.values[-1]
        if not math.isfinite(value):
            raise TrialFailed(f"{objective} is {value} at step {step} (the run diverged)")
        return value


def train_argv(trial: TrialRun, run_dir: Path, host: Any, nproc: int, resume: bool = False) -> list[str]:
    """The command of one trial: ``deepseek train`` or ``deepseek launch -n N -- train``
    (``resume``: continuing ``run_dir`` from its newest complete checkpoint)."""
    args = ["train", str(trial.config_path), "--run-dir", str(run_dir), "--quiet", *(["--resume", str(run_dir)] * resume)]
    if needs_launcher(trial.config, host):
        args = ["launch", "-n", str(nproc), "--", *args]
    return deepseek_argv(args)


def needs_launcher(config: Any, host: Any) -> bool:
    """Whether the config's strategy runs one process per device (resolved as the run resolves
    it: ``host`` with the config's ``[plugins] prefer``)."""
    from deepseek.training.build import run_host

    return bool(run_host(config, host).resolve("strategy", config.strategy.name).load().needs_launcher)


class TrainingTuner(Tuner):
    """Learning rate, warm-up, weight decay, dropout, batch size, model and fusion options...:
    anything in the config, judged by a validation metric."""

    Options: ClassVar[type] = TrainingTunerOptions
    objectives: ClassVar[tuple[str, ...]] = ("val_*",)

    def check_config(self, config: Any) -> None:
        if config.train.max_steps <= 0:
            raise ConfigError("train.max_steps: a training study needs steps to train; set train.max_steps > 0")
        if config.data.eval_batches == 0:
            raise ConfigError("data.eval_batches: 0 turns validation off, but a training study judges each trial by "
                              "a validation value (--objective); set data.eval_batches >= 1")

    def check_objective(self, objective: str, config: Any, values: Any) -> None:
        """The objective is read from the run's evaluation records: refused when the model
        declares its metrics and the run does not report it (undeclared: accepted), unless a
        plugin other than the editions implements ``deepseek_evaluate``: its ``val_`` scores are
        known only once a run evaluates, as for ``train.monitor``."""
        if values.missing(objective):
            from deepseek.config.validate import did_you_mean
            from deepseek.plugins.host import get_host
            from deepseek.training.monitor import metric_adding_plugins

            if metric_adding_plugins((self.host or get_host()).hook.deepseek_evaluate):
                return

            raise UsageError(
                f"--objective {objective}: not a value a run of model {config.model.name!r} on dataset "
                f"{config.data.name!r} reports{did_you_mean(objective, values.evaluation)}; its evaluations "
                f"report {', '.join(values.evaluation)}"
            )

    def run(self, trial: TrialRun) -> float:
        run_dir = trial.folder / "run"
        with _earlier_run(trial) as earlier:
            taken = self._finished_earlier(trial, earlier)
            if taken is not None:  # the interrupted trial's training finished: its values, not a second run
                finished = TrialEvaluations(trial, taken / "metrics.jsonl")
                finished.poll(final=True)
                trial.attrs["run_dir"] = str(taken.absolute())
                trial.attrs["note"] = f"the finished training of trial {int(trial.earlier.name)} taken up, not run again"
                return finished.final_value()
            resumed = self._resume_earlier(trial, earlier, run_dir)
        evaluations = TrialEvaluations(trial, run_dir / "metrics.jsonl")
        o = self.options
        argv = train_argv(trial, run_dir, self.host, o.nproc, resume=resumed is not None)
        log = trial.folder / "train.log"
        code, stopped = run_child(argv, log, poll=evaluations.poll, interval=o.poll_s, env=plugin_env(self.host),
                                  timeout=o.trial_timeout_s or None)
        trial.attrs["run_dir"] = str(run_dir.absolute())
        if resumed is not None:
            trial.attrs["note"] = f"the training of trial {int(trial.earlier.name)} resumed from its step {resumed}"
        if evaluations.failure is not None:
            raise evaluations.failure
        if evaluations.stop is not None:
            raise evaluations.stop
        if stopped:
            raise TrialFailed(f"ran past tuner.trial_timeout_s = {o.trial_timeout_s:g} s; stopped")
        if code != 0:
            raise TrialFailed(f"deepseek train exited with {code}: {tail(log) or 'no output'} (log: {log})")
        evaluations.poll(final=True)  # the evaluations since the last poll go to the study's record too
        return evaluations.final_value()

    @staticmethod
    def _finished_earlier(trial: TrialRun, run: Path | None) -> Path | None:
        """The run folder of the interrupted trial this one re-runs when it proves its training
        finished with this trial's config (its ``trial.toml`` the same, its newest checkpoint the
        last step's, the objective evaluated there: a tuner killed after the training, before it
        recorded the value), else ``None``."""
        from deepseek_enterprise.finished_runs import unfinished

        if run is None:
            return None
        why = unfinished(run, trial.config.train.max_steps, trial.config.to_dict(), trial.objective)
        return run if why is None else None

    @staticmethod
    def _resume_earlier(trial: TrialRun, run: Path | None, run_dir: Path) -> int | None:
        """When the interrupted trial this one re-runs trained the same config and left a complete
        checkpoint before its last step, move its run folder to ``run_dir`` (one rename: this
        trial's from now on, so a re-run of this one finds it in turn) and return that checkpoint's
        step, to train on from it (``--resume``: the same result as a training never
        interrupted); else ``None`` (trained from the start)."""
        import json

        from deepseek import durable
        from deepseek.training.checkpoint import read_trainer_state, resolve_checkpoint

        if run is None or run_dir.exists():
            return None
        try:
            state = read_trainer_state(resolve_checkpoint(run))
        except UsageError:  # no complete checkpoint (or a damaged one): nothing to resume from
            return None
        step = state.get("step")
        if not isinstance(step, int) or not 0 < step < trial.config.train.max_steps:
            return None
        if state.get("config") != json.loads(json.dumps(trial.config.to_dict())):
            return None
        durable.move(run, run_dir)
        return step


@contextlib.contextmanager
def _earlier_run(trial: TrialRun) -> Iterator[Path | None]:
    """The run folder of the interrupted trial this one re-runs, when that trial's ``trial.toml``
    is this one's (the same training), held under the run folder's lock for the block (what
    ``deepseek train --resume`` takes: :mod:`deepseek.training.run_lock`), so that it is read and
    moved only while no other job uses it; else ``None``. When the holder is the interrupted
    trial's training still saving its checkpoint after its tuner died
    (:mod:`~deepseek_enterprise.tune.run_holder`), the trial says so in one line and waits for it,
    up to ``train.preempt_grace_s`` and a margin. A live job still holding it then (or any other
    holder) keeps it: the trial trains from the start in its own folder, and its note names the
    holder."""
    from deepseek.training.run_lock import LOCK_FILE, describe_holder, try_lock, unlock
    from deepseek_enterprise.tune.left_runs import LEFT_RUN
    from deepseek_enterprise.tune.run_holder import EXIT_MARGIN_S, training_holder, wait_for_release

    run = trial.earlier / "run" if trial.earlier is not None else None
    try:  # read_file: a FIFO put there is not the same training, never a wait
        same = run is not None and read_file(trial.earlier / "trial.toml") == read_file(trial.config_path)
    except OSError:
        same = False
    if run is None or not same or not run.is_dir() or run.is_symlink():
        yield None
        return
    lock = run / LOCK_FILE
    fd = try_lock(lock)
    pid = training_holder(run, lock) if fd is None else None
    if pid is not None:
        seconds = trial.config.train.preempt_grace_s + EXIT_MARGIN_S
        trial.echo(f"trial {trial.number}: waiting up to {seconds:g} s for pid {pid}, the training of interrupted "
                   f"trial {int(trial.earlier.name)} saving its checkpoint in {shown(run)}, to end")
        fd = wait_for_release(run, lock, pid, seconds)
    if fd is None:
        trial.attrs["note"] = (f"the run folder of trial {int(trial.earlier.name)} ({shown(run)}) is in use by another "
                               f"live job ({describe_holder(lock)}); left to it, trained from the start")
        trial.attrs[LEFT_RUN] = str(run.absolute())  # listed by every report of the study (left_runs)
        yield None
        return
    try:
        yield run
    finally:
        unlock(fd)
