"""``deepseek tune`` with third-party tuners built on docs/tune.md's contract (a working one, one
whose run() breaks), journal storage, and the objective a tuner alone defaults to."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _tune_common import trials, write

from deepseek import hookimpl
from deepseek_enterprise.tune.tuner import TrialFailed, TrialRun, Tuner


@dataclass(frozen=True)
class QuadraticOptions:
    target: float = -2.5


class Quadratic(Tuner):
    """docs/tune.md's "Writing a tuner", in miniature: no process, a value from the config."""

    Options = QuadraticOptions
    objectives = ("distance",)

    def direction(self, objective: str) -> str:  # type: ignore[override]
        return "minimize"

    def skip_reason(self, config: Any) -> str | None:
        return "too small" if config.train.lr < 2e-4 else None

    def run(self, trial: TrialRun) -> float:
        if trial.config.train.warmup_steps == 7:
            raise TrialFailed("seven")
        assert trial.config_path.is_file() and trial.folder.is_dir()
        trial.attrs["seen_lr"] = trial.config.train.lr
        return (math.log10(trial.config.train.lr) - self.options.target) ** 2


class QuadraticPlugin:
    @hookimpl
    def deepseek_register_tuners(self, register):  # type: ignore[no-untyped-def]
        register("quadratic", Quadratic, description="distance of log10(lr) from a target")


def tune_in_process(tmp_path: Path, *args: str, plugin: object = None, dist: str = "deepseek-quadratic") -> int:
    from _hosts import enterprise_host

    from deepseek.cli.main import main

    host = enterprise_host((plugin or QuadraticPlugin(), dist))
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        main(["tune", "base.toml", "--space", "space.toml", "--objective", "distance", *args], host=host)
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        os.chdir(cwd)
    return 0


QUADRATIC_SPACE = """[space]
"train.lr" = { type = "float", low = 1e-4, high = 1e-1, log = true }
"train.warmup_steps" = { choices = [5, 7] }
[tuner]
target = -2.0
"""


def test_a_third_party_tuner_from_the_docs_contract(tmp_path: Path) -> None:
    """A Tuner subclass with Options and objectives, registered through deepseek_register_tuners,
    picked by its objective; skip_reason, run, TrialFailed and attrs as documented."""
    write(tmp_path, space=QUADRATIC_SPACE)
    assert tune_in_process(tmp_path, "--study", "q", "--trials", "12", "--out", "st", "--seed", "1") == 0
    rows = trials(tmp_path / "st")
    done = [r for r in rows if r["state"] == "complete" and not r.get("skipped")]
    assert len([r for r in rows if r["state"] in ("complete", "fail") and not r.get("skipped")]) == 12
    assert all(r["note"] == "seven" for r in rows if r["state"] == "fail")
    assert all(r["note"] == "too small" and r["params"]["train.lr"] < 2e-4 for r in rows if r.get("skipped") and
               r["state"] == "pruned")
    best = min(done, key=lambda r: r["value"])
    assert best["value"] == pytest.approx((math.log10(best["seen_lr"]) + 2.0) ** 2)  # the [tuner] target
    assert best["value"] < 0.5
    assert f"lr = {best['params']['train.lr']!r}" in (tmp_path / "st" / "best.toml").read_text()


def test_a_study_leaves_optunas_log_level_as_it_found_it(tmp_path: Path) -> None:
    """A study run in the caller's process quiets Optuna's per-trial lines while it runs and puts
    Optuna's log level back after: it was left at ERROR for the rest of the process, so every later
    study of a test run (or a notebook's own Optuna use) lost its log lines."""
    import optuna

    write(tmp_path, space=QUADRATIC_SPACE)
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)  # Optuna's default
    try:
        assert tune_in_process(tmp_path, "--study", "v", "--trials", "2", "--out", "st", "--no-baseline") == 0
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(before)


class Faulty(Tuner):
    """A tuner with bugs: by warmup_steps, run returns NaN (1), a string (2), raises KeyError (3)
    or returns a number (4)."""

    objectives = ("distance",)

    def direction(self, objective: str) -> str:  # type: ignore[override]
        return "minimize"

    def run(self, trial: TrialRun) -> float:
        steps = trial.config.train.warmup_steps
        if steps == 3:
            raise KeyError("boom inside run")
        return {1: math.nan, 2: "fast"}.get(steps, float(steps))  # type: ignore[return-value]


class FaultyPlugin:
    @hookimpl
    def deepseek_register_tuners(self, register):  # type: ignore[no-untyped-def]
        register("faulty", Faulty, description="test only: breaks on some trials")


def test_a_tuner_that_breaks_fails_that_trial_named_and_the_study_goes_on(tmp_path: Path) -> None:
    """NaN, a string or an unexpected exception from a tuner's run: that trial is failed in storage
    (never left running) with a note naming the tuner and its distribution; the study goes on."""
    import optuna

    write(tmp_path, space='[space]\n"train.warmup_steps" = { choices = [1, 2, 3, 4] }\n')
    args = ("--study", "f", "--trials", "8", "--out", "st", "--sampler", "random", "--no-baseline")
    assert tune_in_process(tmp_path, *args, plugin=FaultyPlugin(), dist="deepseek-faulty") == 0
    rows = trials(tmp_path / "st")
    ran = [r for r in rows if not r.get("skipped")]
    assert len(ran) == 8
    origin = "tuner faulty (deepseek-faulty 1.0)"
    notes = {1: f"{origin}: run() returned nan, not a finite number",
             2: f"{origin}: run() returned 'fast' (str), not a number (Tuner.run returns the objective's value)",
             3: f"{origin}: run() raised KeyError: 'boom inside run'"}
    for r in ran:
        steps = r["params"]["train.warmup_steps"]
        assert (r["state"], r.get("note") or None) == (("fail", notes[steps]) if steps in notes else ("complete", None))
    assert {r["params"]["train.warmup_steps"] for r in ran} == {1, 2, 3, 4}
    stored = optuna.load_study(study_name="f", storage=f"sqlite:///{tmp_path / 'st' / 'study.db'}").trials
    assert sorted({t.state.name for t in stored}) == ["COMPLETE", "FAIL"]


def test_a_journal_storage_holds_the_study(tmp_path: Path) -> None:
    write(tmp_path, space=QUADRATIC_SPACE)
    journal = tmp_path / "shared" / "study.log"
    journal.parent.mkdir()
    args = ("--study", "j", "--storage", f"journal:{journal}", "--no-baseline", "--out", "st")
    assert tune_in_process(tmp_path, *args, "--trials", "3") == 0
    assert journal.stat().st_size > 0 and not (tmp_path / "st" / "study.db").exists()
    assert tune_in_process(tmp_path, *args, "--trials", "5") == 0  # the same study, continued
    rows = trials(tmp_path / "st")
    assert len([r for r in rows if r["state"] in ("complete", "fail") and not r.get("skipped")]) == 5


def test_tuner_alone_defaults_the_objective_to_what_it_measures() -> None:
    """docs/tune.md: ``--objective`` picks a tuner, "or ``--tuner latency``": with ``--tuner`` alone
    the default val_loss was refused ("tuner 'latency' measures p50_ms"); a tuner that does not
    measure val_loss now gets its first objective, and the training tuner keeps val_loss."""
    from _hosts import enterprise_host

    from deepseek_enterprise.tune.cli import default_objective

    host = enterprise_host((QuadraticPlugin(), "deepseek-quadratic"))
    assert default_objective(host, "quadratic") == "distance"
    assert default_objective(host, "system") == "tokens_per_s"
    assert default_objective(host, "training") == "val_loss"
    assert default_objective(host, None) == "val_loss"


class ValTuner(Quadratic):
    """A plugin tuner that measures what the training tuner does (``val_*``)."""

    objectives = ("val_*",)


class ValTunerPlugin:
    @hookimpl
    def deepseek_register_tuners(self, register):  # type: ignore[no-untyped-def]
        register("aaa.val", ValTuner, description="val_* in the tuner's process")


class SecondQuadraticPlugin:
    @hookimpl
    def deepseek_register_tuners(self, register):  # type: ignore[no-untyped-def]
        register("quadratic2", Quadratic, description="another tuner measuring distance")


class ThirdQuadraticPlugin:
    @hookimpl
    def deepseek_register_tuners(self, register):  # type: ignore[no-untyped-def]
        register("quadratic3", Quadratic, description="a third tuner measuring distance")


def test_a_plugin_tuner_never_replaces_the_editions_tuner_unnamed() -> None:
    """A plugin tuner measuring ``val_*`` named before ``training`` took every plain
    ``deepseek tune`` (the first tuner by name that measured the objective); the edition's tuner
    now wins unnamed, the plugin's runs with --tuner, and two plugin tuners measuring one
    objective are refused in one line naming both."""
    from _hosts import enterprise_host

    from deepseek.errors import UsageError
    from deepseek_enterprise.tune.cli import pick_tuner

    host = enterprise_host((ValTunerPlugin(), "deepseek-valtuner"), (QuadraticPlugin(), "deepseek-quadratic"))
    assert pick_tuner(host, None, "val_loss")[0] == "training"
    assert pick_tuner(host, "aaa.val", "val_loss")[0] == "aaa.val"
    assert pick_tuner(host, None, "distance")[0] == "quadratic"
    host = enterprise_host((QuadraticPlugin(), "deepseek-quadratic"), (SecondQuadraticPlugin(), "deepseek-quadratic2"))
    # the line read "the tuners tuner quadratic (...), tuner quadratic2 (...) all measure it"
    two = ("--objective distance: tuner quadratic (deepseek-quadratic 1.0) and tuner quadratic2 (deepseek-quadratic2 "
           "1.0) both measure it; name one with --tuner NAME")
    with pytest.raises(UsageError) as refused:
        pick_tuner(host, None, "distance")
    assert str(refused.value) == two
    host = enterprise_host((QuadraticPlugin(), "deepseek-quadratic"), (SecondQuadraticPlugin(), "deepseek-quadratic2"),
                           (ThirdQuadraticPlugin(), "deepseek-quadratic3"))
    with pytest.raises(UsageError) as refused:
        pick_tuner(host, None, "distance")
    assert str(refused.value) == (
        "--objective distance: tuner quadratic (deepseek-quadratic 1.0), tuner quadratic2 (deepseek-quadratic2 1.0) and "
        "tuner quadratic3 (deepseek-quadratic3 1.0) all measure it; name one with --tuner NAME")
    doc = " ".join((Path(__file__).resolve().parents[2] / "docs" / "tune.md").read_text(encoding="utf-8").split())
    assert "Without `--tuner`, the edition's tuner that measures the objective runs" in doc
    assert f"(`{two}`), exit 2" in doc


def test_check_objective_gets_the_run_values_docs_describe() -> None:
    """docs/tune.md: ``values`` of ``check_objective`` is a RunValues whose ``missing`` is the
    training tuner's test; a plugin's deepseek_evaluate score is in none of its tuples."""
    from deepseek.config.load import config_from_dict
    from deepseek.training.run_values import RunValues, config_values

    values = config_values(config_from_dict({"model": {"name": "tiny"}}))
    assert isinstance(values, RunValues) and values.complete
    assert values.evaluation[0] == "val_loss" and "lr" in values.training
    assert not values.missing("val_loss") and values.missing("val_acme_gap")


class GapScore:
    """A plugin's deepseek_evaluate hook adding a val_ score (docs/plugins.md section 6)."""

    @hookimpl
    def deepseek_evaluate(self, trainer, step, metrics):  # type: ignore[no-untyped-def]
        metrics["val_acme_gap"] = 0.0


def test_the_training_tuner_accepts_a_score_a_plugin_adds() -> None:
    """``--objective val_acme_gap`` was refused before the first trial though a loaded plugin's
    deepseek_evaluate adds it to every evaluation (train.monitor accepts it); now it is accepted
    while such a plugin is loaded, and refused as before without one."""
    from _hosts import enterprise_host

    from deepseek.config.load import config_from_dict
    from deepseek.errors import UsageError
    from deepseek.training.run_values import config_values
    from deepseek_enterprise.tune.training import TrainingTuner

    config = config_from_dict({"model": {"name": "tiny"}})
    values = config_values(config)
    bare = TrainingTuner(TrainingTuner.Options(), host=enterprise_host())
    with pytest.raises(UsageError, match=r"^--objective val_acme_gap: not a value a run of model 'tiny'"):
        bare.check_objective("val_acme_gap", config, values)
    scored = TrainingTuner(TrainingTuner.Options(), host=enterprise_host((GapScore(), "deepseek-gapscore")))
    scored.check_objective("val_acme_gap", config, values)
    doc = " ".join((Path(__file__).resolve().parents[2] / "docs" / "tune.md").read_text(encoding="utf-8").split())
    assert "so the name is accepted, as `train.monitor` accepts it" in doc


@dataclass(frozen=True)
class NoDefaultOptions:
    target: float  # no default: every option needs one


class NoDefault(Quadratic):
    Options = NoDefaultOptions


class NoDefaultPlugin:
    @hookimpl
    def deepseek_register_tuners(self, register):  # type: ignore[no-untyped-def]
        register("nodefault", NoDefault, description="an Options field without a default")


def test_tuner_options_without_a_default_name_the_distribution_and_the_page(tmp_path: Path) -> None:
    """Such a tuner was refused as ``tuner 'nodefault': ... (docs/plugins.md section 10)``, with
    neither its distribution nor the tuner's page; now as its other contract breaks are."""
    from _hosts import enterprise_host

    from deepseek.errors import PluginError
    from deepseek_enterprise.tune.cli import tune_inputs

    write(tmp_path, space='[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n[tuner]\ntarget = 1.0\n')
    host = enterprise_host((NoDefaultPlugin(), "deepseek-nodefault"))
    with pytest.raises(PluginError, match=r"^tuner 'nodefault' \(deepseek-nodefault [^,]+, registered by [^)]+\): its "
                                          r"Options NoDefaultOptions field 'target' has no default; .*"
                                          r"\(docs/tune\.md, 'Writing a tuner'\)$"):
        tune_inputs(host, "st", "distance", "nodefault", tmp_path / "base.toml", tmp_path / "space.toml")
