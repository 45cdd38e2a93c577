"""``deepseek tune``'s numbers have ranges kept in one table (tune/limits.py TUNE_NUMBERS): an
absurd ``--trials`` or ``--timeout``, a ``StudySettings`` given the same from Python, or a
``[tuner]`` key out of range is one line naming the option, argument or key with the range, exit
code 2, and no study folder or storage is created (docs/tune.md, "Limits")."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inprocess import deepseek_here
from _tune_common import write

from deepseek.errors import UsageError
from deepseek_enterprise.tune.cli import tune
from deepseek_enterprise.tune.limits import TUNE_NUMBERS
from deepseek_enterprise.tune.study_open import StudySettings
from deepseek_enterprise.tune.system import SystemTunerOptions
from deepseek_enterprise.tune.training import TrainingTunerOptions

TRIALS_HINT = ("; the finished trials the study should hold, each a whole training run: 10000 is far past where a "
               "search stops improving (docs/tune.md, 'Limits')")
TIMEOUT_HINT = "; seconds, at most a year: leave --timeout out for no limit"
SPACE = '[space]\n"train.lr" = { type = "float", low = 1e-5, high = 2e-2, log = true }\n'


def refused(monkeypatch: pytest.MonkeyPatch, folder: Path, *extra: str, space: str | None = None) -> str:
    """``deepseek tune`` with ``extra`` options: exit code 2 and one line, which it returns;
    nothing written (no study folder, no study.db, no trials)."""
    write(folder, space=space or SPACE)
    before = sorted(p.name for p in folder.iterdir())
    argv = ["tune", "base.toml", "--study", "s", "--space", "space.toml", "--out", "st", *extra]
    if "--trials" not in extra:
        argv += ["--trials", "2"]
    code, err, out = deepseek_here(monkeypatch, folder, *argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in folder.iterdir()) == before  # no st/, no study.db
    assert not list(folder.rglob("study.db")) and not (folder / "st").exists()
    return err.strip()


@pytest.mark.parametrize(("given", "line"), [
    ("10000000", f"error: --trials: must be >= 1 and <= 10000, got 10000000{TRIALS_HINT}"),
    ("10001", f"error: --trials: must be >= 1 and <= 10000, got 10001{TRIALS_HINT}"),
    ("0", f"error: --trials: must be >= 1 and <= 10000, got 0{TRIALS_HINT}"),
    ("1e9", f"error: --trials: expected a whole number >= 1 and <= 10000, got '1e9'{TRIALS_HINT}"),
])
def test_trials_out_of_range_is_one_line_and_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                given: str, line: str) -> None:
    assert refused(monkeypatch, tmp_path, "--trials", given) == line


@pytest.mark.parametrize(("given", "line"), [
    ("1e12", f"error: --timeout: must be a finite number > 0 and <= 31536000, got 1000000000000.0{TIMEOUT_HINT}"),
    ("31536001", f"error: --timeout: must be a finite number > 0 and <= 31536000, got 31536001.0{TIMEOUT_HINT}"),
    ("0", f"error: --timeout: must be a finite number > 0 and <= 31536000, got 0.0{TIMEOUT_HINT}"),
    ("inf", f"error: --timeout: must be a finite number > 0 and <= 31536000, got inf{TIMEOUT_HINT}"),
])
def test_timeout_out_of_range_is_one_line_and_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 given: str, line: str) -> None:
    assert refused(monkeypatch, tmp_path, "--timeout", given) == line


@pytest.mark.parametrize(("table", "objective", "line"), [
    ("nproc = 100000", "val_loss", "error: space.toml: tuner.nproc: must be >= 1 and <= 256, got 100000 (int)"),
    ("nproc = 0", "val_loss", "error: space.toml: tuner.nproc: must be >= 1 and <= 256, got 0 (int)"),
    ("poll_s = 600", "val_loss", "error: space.toml: tuner.poll_s: must be a finite number > 0 and <= 60, got 600 (int)"),
    ("trial_timeout_s = 1e9", "val_loss",
     "error: space.toml: tuner.trial_timeout_s: must be a finite number >= 0 and <= 31536000, got 1000000000.0 (float)"),
    ("steps = 100000", "tokens_per_s", "error: space.toml: tuner.steps: must be >= 1 and <= 10000, got 100000 (int)"),
    ("warmup = 20000", "tokens_per_s", "error: space.toml: tuner.warmup: must be >= 0 and <= 10000, got 20000 (int)"),
    ("nproc = 300", "tokens_per_s", "error: space.toml: tuner.nproc: must be >= 1 and <= 256, got 300 (int)"),
])
def test_a_tuner_key_out_of_range_is_one_line_and_nothing_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, objective: str, line: str) -> None:
    said = refused(monkeypatch, tmp_path, "--objective", objective, space=f"{SPACE}[tuner]\n{table}\n")
    assert said == line


@pytest.mark.parametrize(("kwargs", "line"), [
    ({"trials": 10_000_000}, f"trials: must be >= 1 and <= 10000, got 10000000{TRIALS_HINT}"),
    ({"trials": 0}, f"trials: must be >= 1 and <= 10000, got 0{TRIALS_HINT}"),
    ({"trials": 2.5}, "trials: expected a whole number >= 1 and <= 10000, got 2.5 (float); pass an int"),
    ({"trials": 2, "timeout": 1e12},
     f"timeout: must be a finite number > 0 and <= 31536000, got 1000000000000.0{TIMEOUT_HINT}"),
])
def test_python_study_settings_take_the_same_ranges_in_the_same_words(tmp_path: Path, kwargs: dict[str, object],
                                                                      line: str) -> None:
    with pytest.raises(UsageError) as info:
        StudySettings(name="s", objective="val_loss", out=tmp_path / "st", **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == line
    assert not (tmp_path / "st").exists()


def test_the_ends_of_each_range_are_taken() -> None:
    assert StudySettings(name="s", trials=10_000, objective="val_loss", out=Path("st"), timeout=31_536_000).trials \
        == 10_000
    assert StudySettings(name="s", trials=1, objective="val_loss", out=Path("st")).timeout is None
    assert TrainingTunerOptions(nproc=256, trial_timeout_s=31_536_000.0, poll_s=60.0).nproc == 256


def test_one_table_holds_each_range() -> None:
    """The option types hold TUNE_NUMBERS' own entries (not copies of the numbers), and the
    [tuner] fields' checks answer from the same entries: moving a bound there moves it for the
    command line, Python and the space file at once."""
    options = {p.name: p for p in tune.params}
    assert options["trials"].type.bounds is TUNE_NUMBERS["trials"]  # type: ignore[attr-defined]
    assert options["timeout"].type.bounds is TUNE_NUMBERS["timeout"]  # type: ignore[attr-defined]
    import dataclasses

    for cls in (TrainingTunerOptions, SystemTunerOptions):
        for f in dataclasses.fields(cls):
            if f.name not in TUNE_NUMBERS:
                continue
            bounds = TUNE_NUMBERS[f.name]
            top = bounds.get("maximum", bounds.get("high"))
            assert f.metadata["check"](top) is None, (cls.__name__, f.name)
            assert f.metadata["check"](top + 1) is not None, (cls.__name__, f.name)
