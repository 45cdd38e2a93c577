"""The ``--out`` folder of ``deepseek multimodal study``, and how a study continues in it.

``study.json`` records the settings that make a model of the study (steps, batch, learning
rate, device, recipe, held-out size, unimodal runs, config file) and its results lines (the fixed
``--eval-logit-weights``) when the folder is first used. Running the
same command again in that folder (after a kill, a lost machine, or to add seeds, tasks or models)
continues the study: a model whose results line is in ``results.jsonl`` is not trained again; a
run folder left without one is resumed from its newest checkpoint, only tested when its training
finished (killed while it was tested: :func:`take_up`), or trained again from the start when it
has no checkpoint to resume.
Other settings are refused: the folder's results would mix two studies.

One study at a time in a folder: a study holds ``.study.lock`` in it (the run folders' lock,
:mod:`deepseek.training.run_lock`: dropped by the kernel when the process ends, however it ends)
from before it writes there to its end; a second study of the same ``--out`` is refused, naming
the holder, before it writes anything.

``results.jsonl`` is read back like user input (each line checked); a last line cut short by a
kill as it was written (no newline, not JSON) is dropped, and said.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import click

from deepseek.errors import UsageError, shown
from deepseek.parsing import loads_json, read_text

SETTINGS_FILE = "study.json"
RESULTS_FILE = "results.jsonl"
LOCK_FILE = ".study.lock"
"""Held by the study running in the folder (not the run folders' ``.lock``, whose holder is a run)."""
TERMS = {"--run-dir": "--out", "--run-dir NEW": "--out NEW", "--run-dir / logging.name": "--out",
         "--resume": "", "run it again with --resume": "run the same command again (it resumes the run)"}
"""How the study's runs name what ``deepseek train`` would name by its options
(:func:`deepseek.arguments.command_terms`): the study picks each run's folder in ``--out`` and
resumes it itself, so a resumed run is its folder alone, and another folder is another ``--out``."""


class StudyStopped(Exception):
    """A run of the study was stopped by a signal (SIGTERM, SIGUSR1) after saving a checkpoint:
    the study stops too (exit code 75), and the same command continues it."""


def settings_of(steps: int, batch: int, lr: float, device: str, recipe: str, eval_size: int | None,
                unimodal_runs: Path | None, base: dict[str, Any] | None = None,
                eval_logit_weights: dict[str, float] | None = None) -> dict[str, Any]:
    """The settings a study's models and results lines are made with (what ``study.json`` records;
    ``base``: the tables of its config file, :mod:`deepseek_enterprise.study_base`;
    ``eval_logit_weights``: ``--eval-logit-weights``, the fixed weights its fused models are also
    evaluated with)."""
    return {"steps": steps, "batch": batch, "lr": lr, "device": device, "recipe": recipe, "eval_size": eval_size,
            "unimodal_runs": str(unimodal_runs.absolute()) if unimodal_runs is not None else None, "base": base,
            "eval_logit_weights": eval_logit_weights}


_OPTIONS = {"steps": "--steps", "batch": "--batch", "lr": "--lr", "device": "--device", "recipe": "--recipe",
            "eval_size": "--eval-size", "unimodal_runs": "--unimodal-runs", "base": "CONFIG.toml",
            "eval_logit_weights": "--eval-logit-weights"}
NEWER = {"base": None, "eval_logit_weights": None}
"""Settings added after studies were first recorded, with the value a ``study.json`` without them
was made with (no CONFIG.toml, no fixed weights)."""


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _recipe(value: Any) -> bool:
    from deepseek_enterprise.study_recipes import RECIPES

    return value in RECIPES


_RECORDED = {  # each recorded setting: the values its option takes
    "steps": (_count, "a whole number >= 1"), "batch": (_count, "a whole number >= 1"),
    "lr": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
           "a finite number > 0 and <= 1"),
    "device": (lambda v: isinstance(v, str) and bool(v), "a device name"),
    "recipe": (_recipe, "one of the study's recipes"),
    "eval_size": (lambda v: v is None or _count(v), "null or a whole number >= 1"),
    "unimodal_runs": (lambda v: v is None or (isinstance(v, str) and bool(v)), "null or a folder path"),
    "base": (lambda v: v is None or isinstance(v, dict), "null or a config file's tables"),
    "eval_logit_weights": (lambda v: v is None or _weights(v),
                           "null or logit_weights of fused and the modalities, as --eval-logit-weights takes them"),
}


def _weights(value: Any) -> bool:
    from deepseek_enterprise.study_recipes import MODALITY_ORDER
    from deepseek_enterprise.study_report import logit_weights_problem

    return logit_weights_problem(value, MODALITY_ORDER) is None


def _shown(key: str, recorded: Any, given: Any) -> tuple[str, str]:
    """A setting that differs, as the refusal of another study's folder names it: what the
    folder's study was made with, and what this command gives."""
    if key == "eval_logit_weights":
        def weights(v: Any) -> str:
            return "no --eval-logit-weights" if v is None else "--eval-logit-weights " + ",".join(
                f"{k}={w:g}" for k, w in v.items())

        return weights(recorded), weights(given)
    if key != "base":
        return f"{_OPTIONS[key]} {recorded}", str(given)
    if recorded is None:
        return "no CONFIG.toml", "with one"
    return ("a CONFIG.toml of other tables", "this one") if given is not None else ("a CONFIG.toml", "without one")


def check_folder(out: Path, settings: dict[str, Any]) -> None:
    """A one-line :class:`UsageError` when ``out`` holds another study's results (other settings
    in its ``study.json`` while it has made a model, or results without one), or while another
    live study holds it; nothing is written."""
    from deepseek.training.run_lock import held_by_another

    if held_by_another(out / LOCK_FILE):  # its files are being written: nothing else about them holds yet
        raise _busy(out)
    path = out / SETTINGS_FILE
    if not path.exists():
        if (out / RESULTS_FILE).exists() or (out / "runs").exists():
            raise UsageError(f"--out {out}: holds a study's results.jsonl or runs/ but no {SETTINGS_FILE} (a study "
                             "of an older build, or files of something else), so it cannot be continued; pick a new "
                             "--out")
        return
    try:
        recorded = loads_json(read_text(path))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"--out {out}: {path} cannot be read ({exc}); restore it, or pick a new --out") from None
    if isinstance(recorded, dict):
        for key, value in NEWER.items():  # a study.json of a build before that setting
            recorded.setdefault(key, value)
    if not isinstance(recorded, dict) or set(recorded) != set(settings):
        raise UsageError(f"--out {out}: {path} is not the settings file of a study; restore it, or pick a new --out")
    for key, value in recorded.items():  # read back like the options it records: 'continue it with --lr nan'
        rule = _RECORDED[key]
        if not rule[0](value):
            raise UsageError(f"--out {out}: {path} holds {key} = {value!r}, not a value {_OPTIONS[key]} takes "
                             f"({rule[1]}); restore it, or pick a new --out")
    differ = [key for key in settings if recorded[key] != settings[key]]
    if differ and not made_nothing(out):  # a study refused before its first model: its settings made nothing
        pairs = [_shown(k, recorded[k], settings[k]) for k in differ]
        raise UsageError(f"--out {out}: holds a study made with {', '.join(r for r, _ in pairs)} (not "
                         f"{', '.join(g for _, g in pairs)}); continue it with those, or pick a new --out")


def _busy(out: Path) -> UsageError:
    from deepseek.training.run_lock import describe_holder

    return UsageError(f"--out {out}: another study is running in this folder ({describe_holder(out / LOCK_FILE)}); "
                      "wait for it to end or stop it, or pick a new --out")


def made_nothing(out: Path) -> bool:
    """Whether the study in ``out`` has made no model yet (no results file, no run folder): a study
    stopped or refused before its first run, whose ``study.json`` binds nothing and is replaced by
    the next command's settings."""
    runs = out / "runs"
    return not (out / RESULTS_FILE).exists() and not (runs.is_dir() and any(runs.iterdir())) and not (
        runs.exists() and not runs.is_dir())


@contextmanager
def start_folder(out: Path, settings: dict[str, Any],
                 host: Any = None) -> Iterator[dict[tuple[str, str, int], dict[str, Any]]]:
    """Make ``out`` (recording the settings) or take it up again, holding its :data:`LOCK_FILE`
    for the block: the results lines already there, by ``(task, config, seed)`` (``host``: the
    study's, where its fusion methods are looked up). A live study holding the folder is a
    :class:`UsageError`; so is what :func:`check_folder` refuses, checked again under the lock
    (a study may have ended since). A lock file and folders made here are removed again when taking
    the folder up fails in any way (a refusal, an OSError, Ctrl-C), a folder no longer empty kept."""
    from deepseek.training.run_lock import try_lock, unlock, write_holder

    made = [p for p in (out, *out.parents) if not p.exists()][::-1]
    out.mkdir(parents=True, exist_ok=True)
    new_lock = not (out / LOCK_FILE).exists()
    fd = try_lock(out / LOCK_FILE)
    if fd is None:  # taken since check_folder
        raise _busy(out)
    try:
        try:
            write_holder(fd)
            check_folder(out, settings)
            done = _take_up(out, settings, host)
        except BaseException:
            if new_lock:  # nothing of this study is left behind
                _remove_made(out / LOCK_FILE, made)
            raise
        yield done
    finally:
        unlock(fd)


def _remove_made(lock: Path, made: list[Path]) -> None:
    """Remove the lock file and the folders (outermost last) a study that failed to start made;
    what cannot be removed (a folder something else has written into since) stays, quietly: the
    study's own error is the one to report."""
    with suppress(OSError):
        os.unlink(lock)
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            return


def _take_up(out: Path, settings: dict[str, Any], host: Any) -> dict[tuple[str, str, int], dict[str, Any]]:
    from deepseek.training.checkpoint import atomic_write_text
    from deepseek_enterprise.study_recipes import recipe_keys, recipe_label, train_sources
    from deepseek_enterprise.study_report import MAX_RESULTS_BYTES, read_results, row_key

    fix = "restore the file, or pick a new --out"
    path = out / RESULTS_FILE
    read = read_results(path, fix, last_may_be_cut=True) if path.exists() else ([], None)
    recipe = settings["recipe"]
    for n, row in read[0]:  # a line of another study (pasted in) would stand for a model this one trains
        task, label, seed = row_key(row)
        mine = recipe_label(row["config"], recipe if recipe_keys(row["config"], recipe, task, host=host) else None,
                            train_sources(row["config"], recipe, task))
        if label != mine:
            raise UsageError(f"{path}:{n}: holds the results of {label} on the {task} task, seed {seed}, where this "
                             f"study (--recipe {recipe}) trains {mine}; {fix}")
    if not (out / SETTINGS_FILE).exists() or made_nothing(out):  # (check_folder read any there as a study's)
        atomic_write_text(out / SETTINGS_FILE, json.dumps(settings, indent=1))
    if read[1] is not None:  # the last line, cut short as it was written
        try:  # read again to drop the cut line: bounded, a regular file (it may have been swapped since)
            lines = read_text(path, MAX_RESULTS_BYTES).split("\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot be read again ({exc}); {fix}") from None
        atomic_write_text(path, "\n".join(lines[:-1]) + ("\n" if len(lines) > 1 else ""))
        click.echo(f"{shown(path)}:{read[1]}: a results line cut short (the study was stopped as it wrote it) was dropped; "
                   "that model gets its results again", err=True)
    done = {(row["task"], row["config"], row["seed"]): row for _, row in read[0]}
    if done:
        click.echo(f"continuing the study in {shown(out)}: {len(done)} model(s) already have results", err=True)
    return done


def take_up(run_dir: Path, steps: int, config: dict[str, Any]) -> str:
    """What the study does with run folder ``run_dir`` of a model without results (``config``: the
    ``deepseek train`` config the study makes it with, as ``Config.to_dict`` gives it):

    - ``"train"``: train it from the start (no folder; or removed: no checkpoint left to resume,
      or a last step's checkpoint that does not prove the training finished);
    - ``"resume"``: resume it from its newest checkpoint, before its last step;
    - ``"test"``: its training finished and only its test is missing (the study was killed while
      it tested the model): its newest checkpoint is the last step's (or the step early stopping
      ended it at: :func:`~deepseek_enterprise.finished_runs.ended_early`), of this config, and its
      ``metrics.jsonl`` holds the evaluation the trainer makes at that step before saving it."""
    from deepseek.training.checkpoint import read_trainer_state, resolve_checkpoint
    from deepseek_enterprise.finished_runs import ended_early, unfinished

    if not run_dir.exists():
        return "train"
    try:
        state = read_trainer_state(resolve_checkpoint(run_dir))
        step = int(state.get("step", 0))
    except UsageError:
        state, step = {}, -1
    if 0 <= step < steps and not ended_early(state, config):  # stopped early: its training finished too
        click.echo(f"resuming {shown(run_dir)} from step {step}", err=True)
        return "resume"
    why = "no checkpoint to resume" if step < 0 else unfinished(run_dir, steps, config, "val_accuracy")
    if why is None:
        click.echo(f"testing {shown(run_dir)} again: its training finished (step {step}), its results were not written",
                   err=True)
        return "test"
    click.echo(f"training {shown(run_dir)} again from the start ({why})", err=True)
    shutil.rmtree(run_dir)
    return "train"
