"""``deepseek tune`` end to end on CPU: a training study (pruner, baseline, best.toml that
``deepseek train`` reproduces), a third-party tuner, journal storage, and bad input refused with
one line. The tests across several processes are in test_tune_processes.py."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _inprocess import deepseek_here
from _tune_common import SPACE, deepseek, trials, write

from deepseek import hookimpl
from deepseek_enterprise.tune.tuner import TrialFailed, TrialRun, Tuner


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("tune")
    write(work, steps=100)
    out = deepseek("tune", "base.toml", "--study", "s", "--space", "space.toml", "--trials", "8", "--out", "st",
                   "--sampler", "random", cwd=work)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return {"dir": work, "out": work / "st", "stdout": out.stdout}


def test_study_runs_its_trials_and_writes_every_artefact(study: dict[str, Any]) -> None:
    rows = trials(study["out"])
    ran = [r for r in rows if r["state"] in ("complete", "pruned", "fail")]
    assert len(ran) == 8 and [r["number"] for r in rows] == list(range(len(rows)))
    assert any(r["state"] == "pruned" for r in rows)  # the median pruner stopped some after 5 complete
    assert rows[0]["baseline"] is True and rows[0]["params"] == {"train.lr": 0.003, "train.warmup_steps": 5}
    for r in rows:
        assert 1e-5 <= r["params"]["train.lr"] <= 2e-2
        if r["state"] == "complete":
            metrics = Path(r["run_dir"]) / "metrics.jsonl"
            vals = [json.loads(x)["val_loss"] for x in metrics.read_text().splitlines() if "val_loss" in x]
            assert vals[-1] == pytest.approx(r["value"])  # the value is the run's last evaluation
        if r["state"] == "pruned":  # stopped early: the run never reached its last step
            assert r["last_step"] < 100 and "stopped by the pruner" in r["note"]
        else:
            assert r["last_step"] == 100 or r.get("skipped")
    for name in ("best.toml", "history.png", "importances.png", "study.db"):
        assert (study["out"] / name).stat().st_size > 0, name
    assert "best trial" in study["stdout"] and "base config, trial 0" in study["stdout"] or \
        "(the base config itself)" in study["stdout"]


def test_another_study_in_the_same_folder_is_refused_and_the_first_kept(study: dict[str, Any]) -> None:
    before = (study["out"] / "trials.json").read_bytes()
    out = deepseek("tune", "base.toml", "--study", "other", "--space", "space.toml", "--trials", "2", "--out", "st",
                   cwd=study["dir"])
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "error: --out st: holds study 's' (its trials.json and trial folders), which study 'other' would overwrite; "
        "give it its own --out, or --study s to continue that one")
    assert (study["out"] / "trials.json").read_bytes() == before


def test_best_toml_trains_as_is_to_the_best_value(study: dict[str, Any]) -> None:
    rows = [r for r in trials(study["out"]) if r["state"] == "complete"]
    best = min(rows, key=lambda r: r["value"])
    out = deepseek("train", str(study["out"] / "best.toml"), "--run-dir", "again", "--quiet", cwd=study["dir"])
    assert out.returncode == 0, out.stderr
    records = [json.loads(x) for x in (study["dir"] / "again" / "metrics.jsonl").read_text().splitlines()]
    final = [r["val_loss"] for r in records if "val_loss" in r][-1]
    assert final == pytest.approx(best["value"], rel=1e-5)


def test_same_seed_same_trials(tmp_path: Path) -> None:
    """A seeded sampler proposes the same sequence for the same results (TPE, past its random start)."""
    import optuna

    from deepseek_enterprise.tune.optuna_parts import create_sampler
    from deepseek_enterprise.tune.space import parse_space

    space = parse_space({"space": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                                   "data.batch_size": {"choices": [8, 16, 32]}}}, "space.toml")

    def sequence(seed: int) -> list[dict[str, Any]]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=create_sampler("tpe", seed))
        out = []
        for _ in range(8):
            trial = study.ask()
            values = space.suggest(trial)
            study.tell(trial, abs(values["train.lr"] - 3e-3) * values["data.batch_size"])
            out.append(values)
        return out

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)


@pytest.mark.parametrize(("space", "message"), [
    ("[space]\n\"train.lr\" = { type = \"float\", low = 1e-2, high = 1e-3 }", "space.'train.lr': low=0.01 must be below high=0.001"),
    # Optuna narrowed the range to one value with a warning only
    ("[space]\n\"train.warmup_steps\" = { type = \"int\", low = 0, high = 10, step = 100 }",
     "space.'train.warmup_steps': step 100 is larger than high - low = 10, so the range holds one value"),
    ("[space]\n\"train.lr\" = { type = \"float\", low = 0.0, high = 1e-3, log = true }", "log = true needs low > 0"),
    ("[space]\n\"train.lr\" = { typ = \"float\", low = 0.1, high = 0.2 }", "unknown key 'typ' (did you mean 'type'?)"),
    ("[space]\n\"train.lr\" = { type = \"flaot\", low = 0.1, high = 0.2 }", "did you mean 'float'"),
    ("[space]\n\"data.batch_size\" = { choices = [] }", "choices must be a non-empty list"),
    ("[space]\n\"train.lrr\" = { type = \"float\", low = 0.1, high = 0.2 }", "space.'train.lrr' = 0.1: train.lrr: unknown"),
    ("[space]\n\"train.lr\" = { type = \"float\", low = -1.0, high = 0.2 }", "space.'train.lr' = -1.0: train.lr"),
    ("[spaces]\n", "unknown table 'spaces' (did you mean 'space'?)"),
    # a path the base config cannot take is named once, with the fix, and no value is blamed
    ("[space]\n\"optimizer.groups.0.lr_scale\" = { type = \"float\", low = 0.1, high = 1.0 }",
     "space.toml: space.'optimizer.groups.0.lr_scale': in base.toml, optimizer.groups has no list "
     "of tables to enter at index 0: the config gives no [[optimizer.groups]] table; add them to the config file, "
     "then set their keys by index (optimizer.groups.0.KEY)"),
    ("[space]\n\"strategy.name\" = { choices = [\"single\", \"zero9\"] }",
     "space.'strategy.name' = 'zero9': strategy.name: unknown strategy 'zero9'; did you mean 'zero3'?"),
    ("[space]\n\"train.lr\" = { type = \"float\", low = 0.1, high = 0.2 }\n[tuner]\nnprocs = 2",
     "tuner.nprocs: unknown"),
    # the nested table replaced the quoted key's range without a word
    ("[space]\n\"train.lr\" = { type = \"float\", low = 1e-3, high = 1e-2 }\n[space.train]\n"
     "lr = { type = \"float\", low = 0.1, high = 0.2 }",
     "space.'train.lr' is given twice (as a quoted key and as a nested table); keep one of them"),
    # an internal error (IndexError); the parameter was never searched
    ("[space]\n\"optimizer.name\" = { choices = [\"adamw\", \"sgd\"] }\n"
     "\"train.lr\" = { type = \"float\", low = 1e-3, high = 1e-2, when = { \"optimizer.name\" = [] } }",
     "space.'train.lr': when optimizer.name = [] lists no value, so this parameter would never be searched"),
    # a sampled float is never exactly 0.005: train.warmup_steps was never searched, without a word
    ("[space]\n\"train.lr\" = { type = \"float\", low = 1e-3, high = 1e-2 }\n"
     "\"train.warmup_steps\" = { type = \"int\", low = 0, high = 3, when = { \"train.lr\" = 0.005 } }",
     "space.'train.warmup_steps': when names train.lr, a continuous float range: a trial's value is never exactly a "
     "given one, so this parameter would never be searched"),
    # Optuna cannot record the baseline's 8 among the choices: an internal error at the first trial,
    # with the folder and its study.db left behind
    ("[space]\n\"data.batch_size\" = { choices = [4, 16] }",
     "space.'data.batch_size': the base config's value 8 is not one of the choices {4, 16}, and the baseline "
     "trial (the base config's own values) can take only a choice; add 8 to the choices, or pass --no-baseline"),
])
def test_bad_space_is_one_line(tmp_path: Path, space: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, space=space)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "base.toml", "--study", "b", "--space", "space.toml",
                                 "--trials", "1", "--out", "st")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "st").exists()  # nothing written


MULTIMODAL_BASE = '[model]\nname = "multimodal.classifier"\n[data]\nname = "multimodal.digits"\n'


@pytest.mark.parametrize(("entry", "message"), [
    ('"model.fusion_options.layers" = { type = "int", low = 0, high = 2 }',
     "space.'model.fusion_options.layers' = 0: model.fusion_options.layers: must be >= 1"),
    ('"model.fusion_options.nope" = { choices = [1, 2] }',
     "space.'model.fusion_options.nope' = 1: model.fusion_options.nope: unknown key"),
    ('"model.vision.depthz" = { choices = [1] }', "space.'model.vision.depthz' = 1: model.vision.depthz: unknown key"),
])
def test_a_components_own_table_in_the_space_is_checked_before_the_study(
        tmp_path: Path, entry: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tables a model's components check as the model is built (fusion, encoders) are
    checked at every end point / choice before any trial, like the config's own keys."""
    write(tmp_path, space=f"[space]\n{entry}\n")
    (tmp_path / "base.toml").write_text(MULTIMODAL_BASE)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "base.toml", "--study", "b", "--space", "space.toml",
                                 "--trials", "1", "--out", "st")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "st").exists()  # nothing written


def test_a_group_rule_choice_matching_no_parameter_is_refused_before_the_study(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, space='[space]\n"optimizer.groups.0.match" = { choices = ["wte.*", "wtee.*"] }\n')
    base = (tmp_path / "base.toml").read_text()
    (tmp_path / "base.toml").write_text(base + '\n[[optimizer.groups]]\nmatch = "wte.*"\nlr_scale = 0.5\n')
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "base.toml", "--study", "b", "--space", "space.toml",
                                 "--trials", "1", "--out", "st")
    assert code == 2, err
    assert err.strip().splitlines() == [
        "error: space.toml: space.'optimizer.groups.0.match' = 'wtee.*': optimizer.groups.0.match: ['wtee.*'] matches "
        "no parameter of the model; its names look like 'wte.weight', 'wpe.weight', 'blocks.0.ln1.weight', ... "
        "(deepseek config params lists them all)"]
    assert not (tmp_path / "st").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--study", "a b"], "--study 'a b': use letters"),
    (["--storage", "nonsense"], "--storage: 'nonsense' is not a storage URL"),
    (["--objective", "tokens_per_s"], "model.name: the system tuner measures GPT models"),
    (["--objective", "accuracy"], "--objective accuracy: no registered tuner measures it"),
    (["--tuner", "systen"], "did you mean 'system'"),
])
def test_bad_options_are_one_line(tmp_path: Path, args: list[str], message: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path)
    base = (tmp_path / "base.toml").read_text().replace('name = "tiny"', 'name = "multimodal.classifier"', 1) \
        if "tokens_per_s" in args else None
    if base is not None:  # the system tuner refuses a model bench train cannot measure
        (tmp_path / "base.toml").write_text("[model]\nname = \"multimodal.classifier\"\n"
                                            "[data]\nname = \"multimodal.digits\"\n")
        (tmp_path / "space.toml").write_text(SPACE.split("[tuner]")[0])
    argv = ["tune", "base.toml", "--study", "b", "--space", "space.toml", "--trials", "1", "--out", "st"]
    for i in range(0, len(args), 2):
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += args[i:i + 2]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_resuming_with_another_space_is_refused(study: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    (study["dir"] / "space2.toml").write_text(SPACE.replace("2e-2", "3e-2"))
    code, err, _ = deepseek_here(monkeypatch, study["dir"], "tune", "base.toml", "--study", "s", "--space",
                                 "space2.toml", "--trials", "8", "--out", "st")
    assert code == 2 and "--study s: was created with space" in err, err
    assert len(trials(study["out"])) >= 8  # untouched


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


def test_a_condition_on_a_stepped_range_takes_its_grid_values() -> None:
    """A stepped range's values are its grid: when = 5 on a step-10 int range, or 10.0 (a float) on
    it, was accepted and never met; when = 0.3 on a step-0.1 float range was never met either,
    Optuna giving 0.30000000000000004. The first two are refused, the third is met."""
    import optuna

    from deepseek.errors import ConfigError
    from deepseek_enterprise.tune.space import parse_space

    def space(when: dict) -> Any:
        return parse_space({"space": {"model.dropout": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1},
                                      "train.warmup_steps": {"type": "int", "low": 0, "high": 100, "step": 10},
                                      "data.batch_size": {"choices": [8, 16], "when": when}}}, "space.toml")

    for when, shown in (({"train.warmup_steps": 5}, "5"), ({"train.warmup_steps": 10.0}, "10.0"),
                        ({"model.dropout": 0.35}, "0.35")):
        with pytest.raises(ConfigError, match=rf"when {next(iter(when))} = {shown}, a value .* never takes"):
            space(when)
    for when in ({"model.dropout": 0.3}, {"train.warmup_steps": 10}):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        met = 0
        for _ in range(100):
            trial = study.ask()
            met += "data.batch_size" in space(when).suggest(trial)
            study.tell(trial, 0.0)
        assert met > 0, when


def test_the_baseline_must_be_one_of_a_categoricals_choices_where_it_applies() -> None:
    from deepseek.errors import ConfigError
    from deepseek_enterprise.tune.space import check_baseline, parse_space

    space = parse_space({"space": {
        "strategy.name": {"choices": ["single", "deepspeed"]},
        "strategy.stage": {"choices": [1, 2], "when": {"strategy.name": "deepspeed"}},
    }}, "space.toml")
    check_baseline(space, {"strategy.name": "single", "strategy.stage": 3})  # stage is not searched for single
    with pytest.raises(ConfigError, match=r"space.toml: space.'strategy.stage': the base config's value 3 is not one"):
        check_baseline(space, {"strategy.name": "deepspeed", "strategy.stage": 3})
    with pytest.raises(ConfigError, match=r"space.'strategy.name': the base config's value 'ddp' is not one"):
        check_baseline(space, {"strategy.name": "ddp"})


def test_conditional_parameters_are_searched_only_when_their_condition_holds() -> None:
    import optuna

    from deepseek.errors import ConfigError
    from deepseek_enterprise.tune.space import parse_space, trial_data

    space = parse_space({"space": {
        "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2},
        "strategy.name": {"choices": ["single", "deepspeed"]},
        "strategy.stage": {"choices": [1, 2], "when": {"strategy.name": "deepspeed"}},
    }}, "space.toml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        values = space.suggest(trial)
        study.tell(trial, 0.0)
        assert ("strategy.stage" in values) == (values["strategy.name"] == "deepspeed")
        table = trial_data({"strategy": {"name": "single", "device": "cpu"}}, values)["strategy"]
        assert table == ({"name": "single", "device": "cpu"} if values["strategy.name"] == "single"
                         else {"name": "deepspeed", "stage": values["strategy.stage"]})
        seen.add(values["strategy.name"])
    assert seen == {"single", "deepspeed"}
    for when, message in (({"strategy.nam": "deepspeed"}, "not a parameter listed before this one (did you mean"),
                          ({"strategy.name": "ddp"}, "a value strategy.name never takes"),
                          ("deepspeed", "when must be a table")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            parse_space({"space": {"strategy.name": {"choices": ["single", "deepspeed"]},
                                   "strategy.stage": {"choices": [1, 2], "when": when}}}, "space.toml")


@pytest.mark.parametrize("master", [True, False])
def test_a_system_trial_measures_the_precision_it_was_given(master: bool) -> None:
    """Every setting of the trial's config reaches `bench train`, master weights included."""
    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    config = config_from_dict({"model": {"name": "tiny"}, "data": {"seq_len": 32, "batch_size": 8},
                               "precision": {"dtype": "bf16", "master_weights": master, "fp32_residual": False},
                               "strategy": {"name": "single", "device": "cpu"}})
    args = SystemTuner(SystemTunerOptions()).bench_args(config, "bench.json")
    assert ("--master-weights" if master else "--no-master-weights") in args
    assert "--no-fp32-residual" in args and args[args.index("--precision") + 1] == "bf16"


def test_a_system_trials_memory_estimate_counts_master_weights_and_accumulation() -> None:
    """The tuner's fit check asks the advisor about the config as given: master weights hold
    16 B per parameter, 20 with an fp32 gradient sum under accumulation (docs/advise.md)."""
    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.system import SystemTuner, SystemTunerOptions

    def total(master: bool, accum: int, optimizer: str = "adamw") -> int:
        config = config_from_dict({"model": {"name": "small"}, "data": {"seq_len": 64, "batch_size": 8},
                                   "train": {"grad_accum": accum}, "optimizer": {"name": optimizer},
                                   "precision": {"dtype": "bf16", "master_weights": master, "fp32_residual": False},
                                   "strategy": {"name": "single", "device": "cpu"}})
        return SystemTuner(SystemTunerOptions(device_memory="80GB")).fit(config).total

    params = 86_039_040  # small's parameters (deepseek.advise.shapes.shape_from_config)
    # + the fp32 gradient sum (4 B/param; the halved micro-batch's activations are ~1% of it at seq 64)
    assert total(True, 2) - total(True, 1) == pytest.approx(4 * params, rel=0.02)
    assert total(False, 1) - total(True, 1) == pytest.approx(2 * params, rel=0.02)  # autocast's fp32 gradients
    # the run's optimizer: sgd keeps one fp32 buffer per parameter where adamw keeps two
    assert total(False, 1) - total(False, 1, "sgd") == pytest.approx(4 * params, rel=0.02)


def test_a_trial_choosing_another_optimizer_keeps_the_shared_keys_only() -> None:
    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.space import trial_data

    base = {"optimizer": {"name": "sgd", "nesterov": True, "momentum": 0.8, "weight_decay": 0.0},
            "lr_schedule": {"name": "wsd", "decay_fraction": 0.3}}
    data = trial_data(base, {"optimizer.name": "adamw", "lr_schedule.name": "cosine", "optimizer.eps": 1e-6})
    assert data["optimizer"] == {"name": "adamw", "momentum": 0.8, "weight_decay": 0.0, "eps": 1e-6}
    assert data["lr_schedule"] == {"name": "cosine"}
    config_from_dict(data)  # adamw takes no nesterov, cosine no decay_fraction: both dropped
    assert trial_data(base, {"optimizer.name": "sgd"})["optimizer"] == base["optimizer"]


def test_a_rule_of_optimizer_groups_is_searched_by_index() -> None:
    from deepseek.config.load import config_from_dict
    from deepseek.errors import ConfigError
    from deepseek_enterprise.tune.space import parse_space, trial_data

    base = {"model": {"name": "tiny"}, "optimizer": {"groups": [{"match": "wte.*"}, {"match": "*.bias"}]}}
    space = parse_space({"space": {"optimizer": {"groups": {"1": {"lr_scale": {"type": "float", "low": 0.1,
                                                                               "high": 1.0}}}}}}, "space.toml")
    assert [p.path for p in space.params] == ["optimizer.groups.1.lr_scale"]
    data = trial_data(base, {"optimizer.groups.1.lr_scale": 0.3})
    assert [g.lr_scale for g in config_from_dict(data).optimizer.groups] == [1.0, 0.3]
    assert base["optimizer"]["groups"][1] == {"match": "*.bias"}  # the base is not changed
    with pytest.raises(ConfigError, match=r"^space.'optimizer.groups.2.lr_scale': in the base config, "
                                          r"optimizer.groups is a list of 2 table\(s\), so the part after it is an "
                                          r"index from 0 to 1 \(got '2'\)$"):
        trial_data(base, {"optimizer.groups.2.lr_scale": 0.3})


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
