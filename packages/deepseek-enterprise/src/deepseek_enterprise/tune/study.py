"""The study loop of ``deepseek tune`` (Optuna's ask-and-tell).

The study is opened by :mod:`.study_open` (which study, refused when it is another run's). For
each trial: recover trials of dead workers (:mod:`.storage`), stop when the study holds
``trials`` finished trials (complete, pruned by the pruner, or failed; trials skipped without
running and interrupted ones are not counted) or the time is up, ask Optuna for values, build
and validate the trial's config, write it as ``trials/NNNN/trial.toml``, let the tuner skip it
(recorded as pruned, with the reason) or run it, and tell Optuna the outcome. Several processes
on one storage share the study: each asks for its own trials.

A tuner's bug fails that trial, never the study: an exception from ``run`` or ``skip_reason``
other than ``TrialFailed``/``TrialStopped``, or a value from ``run`` that is not a finite number,
is recorded as a failed trial whose note names the tuner and its distribution
(``tuner NAME (DIST VERSION): run() raised KeyError: ...``); the study goes on. A
:class:`~deepseek.errors.PluginError` is its own note: it names the plugin component whose bug the
tuner's call met (a plugin strategy's ``device_type`` raising under the system tuner), not the tuner.
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Callable
from typing import Any

from deepseek.errors import PluginError, UsageError
from deepseek.plugins.records import describe_error
from deepseek_enterprise.tune.optuna_parts import quiet_optuna
from deepseek_enterprise.tune.space import (
    SearchSpace,
    check_against,
    check_baseline,
    trial_data,
    values_at,
)
from deepseek_enterprise.tune.storage import (
    HEARTBEAT_S,
    record_heartbeat,
    recover,
    retry_attrs,
    worker_id,
)
from deepseek_enterprise.tune.study_open import StudySettings, open_study, study_identity
from deepseek_enterprise.tune.tuner import TrialFailed, TrialRun, TrialStopped, Tuner, format_value

SKIP_LIMIT = 10
"""Trials skipped without running (advisor, invalid combination) allowed per requested trial."""


def _counts(study: Any) -> tuple[int, int]:
    """(finished trials that ran, trials skipped without running)."""
    from optuna.trial import TrialState

    ran = skipped = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.RUNNING, TrialState.WAITING) or t.user_attrs.get("interrupted"):
            continue
        if t.user_attrs.get("skipped"):
            skipped += 1
        else:
            ran += 1
    return ran, skipped


class _Heartbeat:
    """Records a running trial's heartbeat every HEARTBEAT_S seconds (RDB storages)."""

    def __init__(self, storage: Any, trial: Any) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial), daemon=True)

    def _beat(self, storage: Any, trial: Any) -> None:
        while not self._stop.is_set():
            try:
                record_heartbeat(storage, trial)
            except Exception:  # a busy database: the next beat will do
                pass
            self._stop.wait(HEARTBEAT_S)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def check_study(tuner: Tuner, space: SearchSpace, base: dict[str, Any], build: Callable[[dict[str, Any]], Any],
                check_model: Callable[[Any], None] | None = None, objective: str | None = None,
                run_values: Callable[[Any], Any] | None = None, base_source: str = "the base config",
                baseline: bool = True) -> None:
    """Everything checkable before a study starts: the base config, the tuner's own rule for it,
    with ``baseline`` the base config's values as a trial (:func:`.space.check_baseline`), every
    parameter of the space at its end points / choices, the model built on the meta
    device for a ``model.*`` one (``check_model``; one ConfigError line), and the tuner's rule
    for ``objective`` against the values runs report (``run_values(config)``) of the base config
    or of any of those ``model.*`` end points (a metric a model option turns on counts)."""
    config = build(base)
    tuner.check_config(config)
    if baseline:
        check_baseline(space, baseline_values(space, config, base))
    models: list[Any] = []

    def check_corner(corner: Any) -> None:
        if check_model is not None:
            check_model(corner)
        models.append(corner)

    check_against(space, base, build, check_corner if check_model is not None or run_values is not None else None,
                  base_source, check_config=tuner.check_config)
    if objective is not None and run_values is not None:
        from deepseek.training.run_values import any_run

        tuner.check_objective(objective, config, any_run([run_values(c) for c in (config, *models)]))


def baseline_values(space: SearchSpace, base_config: Any, base: dict[str, Any]) -> dict[str, Any]:
    """The base config's own value at every searched path (defaults filled in): the built config's
    (``base_config``), but for a categorical entry the value as the base config's data (``base``)
    writes it where that is one of the choices. A component records some values otherwise than
    written (a path as an absolute path: ``data.path``, ``strategy.config_path``), and a trial given
    the written value builds the same config as the base; the choices name it as written."""
    values = values_at(space, base_config.to_dict())
    written = values_at(space, base)
    for p in space.params:
        if p.kind == "categorical" and p.path in written and p.contains(written[p.path]):
            values[p.path] = written[p.path]
    return values


def run_study(
    settings: StudySettings, tuner: Tuner, tuner_name: str, space: SearchSpace, base: dict[str, Any],
    config_text: str, build: Callable[[dict[str, Any]], Any], echo: Callable[[str], None], origin: str = "",
    opened: str = "",
) -> Any:
    """Run trials until the study holds ``settings.trials`` finished ones (or the time is up);
    returns the study. ``build`` validates a config dict into a Config. A new study's first
    trial is the base config itself (``baseline``), the point every other trial is judged against.
    ``origin`` names the tuner in a failed trial's note (``tuner NAME (DIST VERSION)``); ``opened``
    is echoed once the storage is open (a storage that cannot open is refused without it)."""
    with quiet_optuna():
        return _run_study(settings, tuner, tuner_name, space, base, config_text, build, echo,
                          origin or f"tuner {tuner_name}", opened)


def _run_study(
    settings: StudySettings, tuner: Tuner, tuner_name: str, space: SearchSpace, base: dict[str, Any],
    config_text: str, build: Callable[[dict[str, Any]], Any], echo: Callable[[str], None], origin: str,
    opened: str,
) -> Any:
    base_config = build(base)
    direction = tuner.direction(settings.objective)
    values = baseline_values(space, base_config, base)
    study, storage = open_study(settings, direction, study_identity(settings, tuner_name, space, config_text), space,
                                values)
    if opened:
        echo(opened)
    if settings.baseline and not study.get_trials(deepcopy=False):
        for param in space.params:
            if param.path in values and not param.contains(values[param.path]):
                echo(f"base config: {param.path} = {values[param.path]!r} lies outside the space "
                     f"{param.describe()}; the baseline trial runs it as it is")
        study.enqueue_trial(values, user_attrs={"baseline": True})
    worker = worker_id()
    start = time.monotonic()
    skipped_here = 0
    while True:
        for number, again in recover(study, storage):
            echo(f"trial {number}: interrupted (its tuner stopped); failed"
                 + (", and queued to run again" if again else "; a re-run already, not queued again"))
        ran, _ = _counts(study)
        if ran >= settings.trials:
            break
        if settings.timeout is not None and time.monotonic() - start >= settings.timeout:
            echo(f"--timeout {settings.timeout:g} s reached: no new trials ({ran} of {settings.trials} finished)")
            break
        if skipped_here >= SKIP_LIMIT * settings.trials:
            echo(f"{skipped_here} trials skipped without running (infeasible, invalid or measured already): "
                 "the space is exhausted or mostly infeasible; stopping")
            break
        trial = study.ask()
        trial.set_user_attr("worker", worker)
        skipped = _one_trial(study, storage, trial, settings, tuner, space, base, build, echo, ran, origin)
        skipped_here += skipped
    return study


def _one_trial(study: Any, storage: Any, trial: Any, settings: StudySettings, tuner: Tuner, space: SearchSpace,
               base: dict[str, Any], build: Callable[[dict[str, Any]], Any], echo: Callable[[str], None],
               ran: int, origin: str) -> bool:
    """Run one asked trial to its end in the study; True when it was skipped without running."""
    from optuna.trial import TrialState

    from deepseek.config.load import dump_config

    values = space.suggest(trial)
    shown = "  ".join(f"{k}={_short(v)}" for k, v in values.items())
    folder = settings.out / "trials" / f"{trial.number:04d}"
    same = _finished_with(study, trial.params)
    if same is not None:  # a run is deterministic in its config: take the value, do not run it again
        trial.set_user_attr("skipped", f"same values as trial {same.number}")
        trial.set_user_attr("copied_from", same.number)
        trial.set_user_attr("note", f"same values as trial {same.number}: its value, not run again")
        study.tell(trial, same.value)
        echo(f"trial {trial.number}: same values as trial {same.number}, its value {format_value(same.value)} "
             "taken without running")
        return True
    try:
        config = build(trial_data(base, values))
    except UsageError as exc:
        return _skip(study, trial, f"invalid combination: {exc}", echo, shown)
    try:
        reason = tuner.skip_reason(config)
    except Exception as exc:  # noqa: BLE001 - a tuner's bug fails the trial, named (module docstring)
        note = _failure_note(exc, origin, "skip_reason")
        trial.set_user_attr("note", note)
        study.tell(trial, state=TrialState.FAIL)
        echo(f"trial {trial.number} [{ran + 1}/{settings.trials}] fail: {note}\n    {shown}")
        return False
    if reason is not None:
        return _skip(study, trial, reason, echo, shown)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "trial.toml"
    from deepseek.training.checkpoint import atomic_write_text

    atomic_write_text(config_path, dump_config(config))
    began = time.monotonic()

    def should_stop(step: int, value: float) -> bool:
        trial.report(value, step)
        return trial.should_prune()

    retry_of = trial.user_attrs.get("retry_of")
    earlier = settings.out / "trials" / f"{retry_of:04d}" if isinstance(retry_of, int) else None
    run = TrialRun(number=trial.number, config=config, config_path=config_path, folder=folder,
                   objective=settings.objective, should_stop=should_stop, earlier=earlier, echo=echo)
    state, value, note = TrialState.COMPLETE, None, ""
    try:
        with _Heartbeat(storage, trial):
            value = _checked_value(tuner.run(run), origin)
    except TrialStopped as exc:
        state, note = TrialState.PRUNED, str(exc)
    except TrialFailed as exc:
        state, note = TrialState.FAIL, str(exc)
    except KeyboardInterrupt as exc:  # Ctrl-C, or a stop signal (:class:`~.stopping.StudyStopped`)
        trial.set_user_attr("interrupted", True)
        trial.set_user_attr("note", f"interrupted ({getattr(exc, 'signal_name', 'Ctrl-C')})")
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs=retry_attrs(trial))
        raise
    except Exception as exc:  # noqa: BLE001 - a tuner's bug fails the trial, named (module docstring)
        state, value, note = TrialState.FAIL, None, _failure_note(exc, origin, "run")
    for key, attr in run.attrs.items():
        trial.set_user_attr(key, attr)
    if note:
        trial.set_user_attr("note", note)
    study.tell(trial, value, state=state) if state == TrialState.COMPLETE else study.tell(trial, state=state)
    seconds = time.monotonic() - began
    outcome = f"{settings.objective} {format_value(value)}" if value is not None else note
    best = _best_text(study, settings.objective)
    echo(f"trial {trial.number} [{ran + 1}/{settings.trials}] {state.name.lower()} in {seconds:.0f} s: {outcome}{best}"
         f"\n    {shown}")
    return False


def _failure_note(exc: Exception, origin: str, call: str) -> str:
    """A failed trial's note: the tuner's bug named by ``origin`` (the tuner and its distribution),
    or a :class:`~deepseek.errors.PluginError` as it is, naming the plugin component at fault."""
    return str(exc) if isinstance(exc, PluginError) else f"{origin}: {call}() raised {describe_error(exc)}"


def _checked_value(value: object, origin: str) -> float:
    """``run``'s answer as a float; TrialFailed naming the tuner when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TrialFailed(f"{origin}: run() returned {str(value)[:80]!r} ({type(value).__name__}), not a number "
                          "(Tuner.run returns the objective's value)")
    if not math.isfinite(value):
        raise TrialFailed(f"{origin}: run() returned {float(value)}, not a finite number")
    return float(value)


def _finished_with(study: Any, params: dict[str, Any]) -> Any | None:
    """A complete trial that ran with exactly these values, if any."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.params == params and not t.user_attrs.get("copied_from") and t.value is not None:
            return t
    return None


def _skip(study: Any, trial: Any, reason: str, echo: Callable[[str], None], shown: str) -> bool:
    from optuna.trial import TrialState

    trial.set_user_attr("skipped", reason)
    trial.set_user_attr("note", reason)
    study.tell(trial, state=TrialState.PRUNED)
    echo(f"trial {trial.number} skipped: {reason}\n    {shown}")
    return True


def _best_text(study: Any, objective: str) -> str:
    try:
        best = study.best_trial
    except ValueError:
        return ""
    return f" (best {format_value(best.value)}, trial {best.number})"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
