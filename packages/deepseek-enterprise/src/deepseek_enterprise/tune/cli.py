"""``deepseek tune``: automated tuning on Optuna (enterprise edition).

Nothing here imports torch or optuna at module level (``deepseek --help`` stays fast).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from deepseek.cli.params import SEED, Ranged
from deepseek.errors import ConfigError, UsageError, shell_quoted, shown
from deepseek.parsing import loads_json
from deepseek_enterprise.cli_params import PATH_ARG
from deepseek_enterprise.tune.limits import TUNE_NUMBERS
from deepseek_enterprise.tune.optuna_parts import PRUNERS, SAMPLERS

if TYPE_CHECKING:
    from deepseek_enterprise.tune.space import SearchSpace

_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # not $: a trailing line break got past it


def pick_tuner(host: Any, name: str | None, objective: str) -> tuple[str, Any, str]:
    """The registered tuner ``name``, or the one that measures ``objective``; and how messages
    name it, ``tuner NAME (DIST VERSION)``. Without ``name`` an edition's tuner that measures it
    wins (``training`` for ``val_*``), so a plugin's tuner never replaces it unnamed; else the
    one plugin tuner that measures it; several are refused: the user names one with --tuner."""
    host.check_kind("tuner")
    if name is not None:
        comp = host.resolve("tuner", name)
        target = comp.load()
        if not target.measures(objective):
            raise UsageError(f"--objective {objective}: tuner {name!r} measures {', '.join(target.objectives)}"
                             f"{_meant(objective, [target])}")
        return name, target, _origin(comp)
    from deepseek.plugins.catalogue import EDITIONS

    offered, takers, loaded = [], [], []
    for comp in host.components("tuner"):
        target = comp.load()
        loaded.append((comp, target))
        if target.measures(objective):
            takers.append((comp, target))
        offered.append(f"{', '.join(target.objectives)} (tuner {comp.name})")
    first_party = [(comp, target) for comp, target in takers if comp.dist in EDITIONS]
    if first_party or len(takers) == 1:
        comp, target = (first_party or takers)[0]
        return comp.name, target, _origin(comp)
    if takers:
        names = [_origin(c) for c, _ in takers]  # each "tuner NAME (DIST VERSION)"
        raise UsageError(f"--objective {objective}: {', '.join(names[:-1])} and {names[-1]} "
                         f"{'both' if len(names) == 2 else 'all'} measure it; name one with --tuner NAME")
    raise UsageError(f"--objective {objective}: no registered tuner measures it"
                     f"{_meant(objective, [t for _, t in loaded])}; give one a tuner measures: {'; '.join(offered)}")


def _meant(objective: str, tuners: list[Any]) -> str:
    """`` (did you mean 'x'?)`` for a mistyped ``objective`` among the names ``tuners`` measure: each
    named objective, and ``val_loss`` (the default) for a tuner that measures it through a prefix
    (``val_*``); ``""`` when none is close."""
    from deepseek.names import did_you_mean

    names = [o for t in tuners for o in t.objectives if not o.endswith("*")]
    names += ["val_loss"] if any(t.measures("val_loss") for t in tuners) else []
    return did_you_mean(objective, names)


def default_objective(host: Any, name: str | None) -> str:
    """``--objective`` when not given: ``val_loss``; with ``--tuner NAME`` of a tuner that does not
    measure it, that tuner's first objective that is a name (not a prefix such as ``val_*``)."""
    if name is None:
        return "val_loss"
    host.check_kind("tuner")
    target = host.resolve("tuner", name).load()
    named = [o for o in target.objectives if not o.endswith("*")]
    return "val_loss" if target.measures("val_loss") or not named else named[0]


def _origin(comp: Any) -> str:
    return f"tuner {comp.name} ({comp.dist} {comp.version})"


@dataclass(frozen=True)
class TuneInputs:
    """What :func:`tune_inputs` checked: the objective, the base config's tables, the search
    space, the tuner (its name, class and ``tuner NAME (DIST VERSION)``) and its options."""

    objective: str
    base: dict[str, Any]
    space: SearchSpace
    name: str
    target: Any
    origin: str
    options: Any


def tune_inputs(host: Any, study_name: str, objective: str | None, tuner_name: str | None, config_file: Path,
                space_file: Path, read: Callable[..., dict[str, Any]] | None = None) -> TuneInputs:
    """``deepseek tune``'s checks of its arguments, in its order, before its output folder and
    its study are looked at: the study's name, the objective (by default the tuner's), the base
    config and the space file read (``read(path, missing_hint=...)``, by default
    :func:`~deepseek.config.load.read_toml`), the tuner that measures the objective and the
    space's ``[tuner]`` options. One UsageError line for the first thing wrong. The job service
    runs these at submit with ``read`` reading the job's workspace as it will be at its start."""
    from deepseek.config.components import build_options
    from deepseek.config.load import read_toml
    from deepseek_enterprise.tune.space import load_space

    if not _STUDY_NAME.match(study_name):
        raise UsageError(f"--study {study_name!r}: use letters, digits, '.', '_' or '-' (it names a folder)")
    if objective is None:
        objective = default_objective(host, tuner_name)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", objective):
        host.check_kind("tuner")
        raise UsageError(f"--objective {objective!r}: a metric name such as val_loss or tokens_per_s"
                         f"{_meant(objective, [comp.load() for comp in host.components('tuner')])}")
    base = (read or read_toml)(config_file)
    space = load_space(space_file, read)
    name, target, origin = pick_tuner(host, tuner_name, objective)
    try:
        options = build_options(target, dict(space.tuner), kind="tuner", name=name, path="tuner",
                                label=host.resolve("tuner", name).label, see="docs/tune.md, 'Writing a tuner'")
    except ConfigError as exc:  # named with the space file that holds [tuner], as its [space] lines are
        raise ConfigError(f"{space.source}: {exc}") from exc
    return TuneInputs(objective, base, space, name, target, origin, options)



def tune_setup(host: Any, study_name: str, objective: str | None, tuner_name: str | None, config_file: Path,
               space_file: Path) -> tuple[TuneInputs, Any]:
    """``deepseek tune``'s checks before it looks at its study folder, in its order: optuna's
    version, its arguments (:func:`tune_inputs`), then the tuner made from its options."""
    from deepseek.extras import check_version

    check_version("optuna", where="deepseek tune", edition="deepseek-enterprise")
    inputs = tune_inputs(host, study_name, objective, tuner_name, config_file, space_file)
    return inputs, inputs.target(inputs.options, host=host)


def check_before_trials(host: Any, inputs: TuneInputs, tuner: Any, config_file: Path,
                        baseline: bool) -> Callable[[dict[str, Any]], Any]:
    """The study's own check before its first trial (:func:`~deepseek_enterprise.tune.study.check_study`:
    the base config and every trial config the space reaches built and validated, components'
    own keys included, the tuner's rules for them and for the objective, a ``model.*`` entry's
    model built on the meta device); returns how the study builds a trial's config. Imports
    torch: the job service runs it in a child process at submit (``service.studycheck``)."""
    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.study import check_study

    def build(data: dict[str, Any]) -> Any:
        return config_from_dict(data, host=host)

    def check_model(config: Any) -> None:  # the tables a model checks as it is built (fusion_options, ...)
        import torch

        from deepseek.training.build import build_model
        from deepseek.training.param_groups import check_model_rules

        with torch.random.fork_rng(devices=[]):
            model = build_model(config, host=host, create_on=torch.device("meta"))
        check_model_rules(config.optimizer.groups, model)  # each rule's match takes a parameter

    def run_values(config: Any) -> Any:  # what a run of it reports: the model's declared metrics, the data's
        from deepseek.training.run_values import config_values

        return config_values(config, host)

    check_study(tuner, inputs.space, inputs.base, build, check_model, inputs.objective, run_values,
                base_source=str(config_file), baseline=baseline)
    return build


@click.command("tune")
@click.argument("config_file", metavar="CONFIG.toml", type=PATH_ARG)
@click.option("--study", "study_name", required=True, metavar="NAME",
              help="Study name; the same name on the same storage resumes or joins the study.")
@click.option("--space", "space_file", required=True, type=PATH_ARG, metavar="FILE",
              help="Search space TOML ([space] ranges/choices by config path, optional [tuner]).")
@click.option("--trials", type=Ranged(TUNE_NUMBERS["trials"], whole=True), required=True,
              help=f"Finished trials the study should hold ({TUNE_NUMBERS['trials']['minimum']} to "
                   f"{TUNE_NUMBERS['trials']['maximum']}).")
@click.option("--objective",
              help="val_loss (the default), val_accuracy or any val_ value a run reports (training tuner; checked "
                   "before the first trial when the model declares its metrics); tokens_per_s or samples_per_s "
                   "(system tuner). With --tuner NAME of a tuner that does not measure val_loss: its first objective.")
@click.option("--tuner", "tuner_name", metavar="NAME", help="Registered tuner (default: the one measuring --objective).")
@click.option("--timeout", type=Ranged(TUNE_NUMBERS["timeout"]), metavar="S",
              help="Start no new trial after S seconds (at most a year).")
@click.option("--storage", metavar="URL", help="Optuna storage: sqlite:///PATH (default: <out>/study.db), "
              "postgresql://..., journal:PATH.")
@click.option("--out", type=PATH_ARG, help="Study folder (default tune/<study>).")
@click.option("--sampler", type=click.Choice(SAMPLERS), default="tpe", show_default=True)
@click.option("--pruner", type=click.Choice(PRUNERS), default="median", show_default=True,
              help="Stops trials early on their intermediate evaluations (training tuner).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Sampler seed (same seed, same trials).")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="A new study's first trial is the base config's own values.")
def tune(config_file: Path, study_name: str, space_file: Path, trials: int, objective: str | None,
         tuner_name: str | None,
         timeout: float | None, storage: str | None, out: Path | None, sampler: str, pruner: str, seed: int,
         baseline: bool) -> int | None:
    """Tune a config with Optuna: every trial in its own process; at the end best.toml (runs
    with deepseek train as is), a table of trials, history.png and importances.png."""
    from deepseek.cli.context import command_host
    from deepseek.config.toml_files import read_config_text
    from deepseek.paths import check_output, created_note, make_folders

    host = command_host()
    inputs, tuner = tune_setup(host, study_name, objective, tuner_name, config_file, space_file)
    objective, base, space, name, origin = inputs.objective, inputs.base, inputs.space, inputs.name, inputs.origin
    config_text = read_config_text(config_file)  # read again: a file swapped since its check is refused in one line
    folder = out if out is not None else Path("tune") / study_name
    missing = check_output(folder, where="--out", folder=True, file_name="tune", host=host, not_a_run=True)
    from deepseek_enterprise.tune.storage import check_sqlite_file

    check_sqlite_file(storage, folder)  # an existing study.db is read back like user input
    _check_layout(folder)  # first: a trials.json that is a FIFO blocked the read of _refuse_another_study
    _refuse_another_study(folder, study_name)
    from deepseek_enterprise.tune.study_open import StudySettings

    settings = StudySettings(name=study_name, trials=trials, objective=objective, out=folder, storage=storage,
                             timeout=timeout, sampler=sampler, pruner=pruner, seed=seed, baseline=baseline)
    build = check_before_trials(host, inputs, tuner, config_file, baseline)  # before any folder is made
    make_folders(missing, where="--out")
    opened = (f"study {study_name}: tuner {name}, {objective}, {len(space.params)} parameter(s), "
              f"folder {shown(folder)}{created_note(missing)}")  # said once the storage opened: else no folder is kept
    from deepseek.training.preemption import EXIT_PREEMPTED
    from deepseek_enterprise.tune.stopping import StudySignals, StudyStopped
    from deepseek_enterprise.tune.study import run_study

    try:
        with StudySignals():
            try:
                study = run_study(settings, tuner, name, space, base, config_text, build, click.echo, origin=origin,
                                  opened=opened)
            except BaseException:
                _remove_if_empty(missing)  # a storage that cannot open left the folders it made empty
                raise
    except StudyStopped as stop:
        click.echo(f"stopped: {stop.signal_name}; the trial in progress is queued to run again and finished trials "
                   "are kept: run the same command to continue the study", err=True)
        sys.exit(EXIT_PREEMPTED)
    return _finish(study, settings, base, str(config_file), lambda data: _train_line(build(data), host, tuner))


def _train_line(config: Any, host: Any, tuner: Any) -> str:
    """The command that trains the best config as its trials trained: under ``deepseek launch``
    when its strategy needs one process per device, on as many processes as a tuner whose
    ``Options`` declare ``nproc`` ran its trials (the built-in ones and ``[tuner] nproc``), else ``-n N``."""
    from dataclasses import fields

    from deepseek_enterprise.tune.training import needs_launcher

    if not needs_launcher(config, host):
        return "deepseek train"
    nproc = tuner.options.nproc if "nproc" in {f.name for f in fields(tuner.options)} else "N"
    return f"deepseek launch -n {nproc} -- train"


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders this command created (outermost first in ``folders``) that are still
    empty, innermost first."""
    for made in reversed(folders):
        try:
            made.rmdir()
        except OSError:
            return  # something is in it: keep it, and the folders around it


def _finish(study: Any, settings: Any, base: dict[str, Any], config_file: str,
            train_line: Callable[[dict[str, Any]], str]) -> int | None:
    from deepseek_enterprise.tune.optuna_parts import quiet_optuna

    with quiet_optuna():
        return _report(study, settings, base, config_file, train_line)


def _report(study: Any, settings: Any, base: dict[str, Any], config_file: str,
            train_line: Callable[[dict[str, Any]], str]) -> int | None:
    from deepseek_enterprise.tune import report
    from deepseek_enterprise.tune.left_runs import left_run_lines

    report.print_table(study, settings.objective)
    counts = report.summary(study)
    click.echo(", ".join(f"{n} {k}" for k, n in counts.items() if n))
    for line in left_run_lines((t.number, t.user_attrs) for t in study.get_trials(deepcopy=False)):
        click.echo(line)
    report.write_trials(study, settings.out / "trials.json")
    for note in report.write_plots(study, settings.out):
        click.echo(note)
    best = report.write_best(study, base, settings.out / "best.toml", settings.objective, config_file)
    if best is None:
        click.echo(f"no trial completed; each trial's note says why (see {shown(settings.out / 'trials.json')})", err=True)
        return 1
    b = report.best_trial(study)
    from optuna.trial import TrialState

    from deepseek_enterprise.tune.space import trial_data

    bases = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("baseline")]  # with its re-runs
    base_trial = next((t for t in bases if t.state == TrialState.COMPLETE), bases[0] if bases else None)
    against = ""
    if base_trial is not None and base_trial.number != b.number:
        outcome = (f"{base_trial.value:.6g}" if base_trial.value is not None
                   else base_trial.user_attrs.get("note") or base_trial.state.name.lower())
        against = f" (base config, trial {base_trial.number}: {outcome})"
    elif base_trial is not None:
        against = " (the base config itself)"
    click.echo(f"best trial {b.number}: {settings.objective} {b.value:.6g}{against}; wrote {shown(best)}, "
               f"run it with: {train_line(trial_data(base, dict(b.params)))} {shell_quoted(str(best))}")
    return None


def _check_layout(folder: Path) -> None:
    """What the study writes in ``folder`` must be writable as it writes it: a folder where it
    writes a file, or a file where it keeps its trial folders, is refused before any trial runs
    (it failed after the trials, as an internal error)."""
    for name in ("trials.json", "best.toml", "history.png", "importances.png"):
        if (folder / name).is_dir():
            raise UsageError(f"--out {folder}: {name} is a folder where the study writes its {name}; move it away "
                             "or pick another --out")
        if (folder / name).exists() and not (folder / name).is_file():  # a FIFO blocked the read of trials.json
            raise UsageError(f"--out {folder}: {name} is not a regular file (a device, FIFO or socket) where the study "
                             f"writes its {name}; move it away or pick another --out")
    trials = folder / "trials"
    if trials.exists() and not trials.is_dir():
        raise UsageError(f"--out {folder}: trials is a file where the study keeps its trial folders; move it away "
                         "or pick another --out")
    for child in sorted(trials.iterdir()) if trials.is_dir() else ():
        if child.name.isdigit() and not child.is_dir():
            raise UsageError(f"--out {folder}: trials/{child.name} is a file where the study keeps a trial's folder; "
                             "move it away or pick another --out")


def _refuse_another_study(folder: Path, study_name: str) -> None:
    """A folder whose ``trials.json`` names another study holds that study's trial folders, which
    this one would overwrite: one line naming both, before anything is written."""
    from deepseek.parsing import read_text

    try:
        recorded = loads_json(read_text(folder / "trials.json")).get("study")
    except (OSError, ValueError, AttributeError):
        return  # no study there yet (or no readable record of one: the storage check decides)
    if isinstance(recorded, str) and recorded != study_name:
        raise UsageError(f"--out {folder}: holds study {recorded!r} (its trials.json and trial folders), which "
                         f"study {study_name!r} would overwrite; give it its own --out, or --study {recorded} "
                         "to continue that one")
