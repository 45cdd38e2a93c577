"""``deepseek tune`` end to end on CPU: a training study (pruner, baseline, best.toml that
``deepseek train`` reproduces, its resume with another space refused) and a seeded sampler. Bad
input: test_tune_refusals.py; third-party tuners and journal storage: test_tune_third_party.py;
the search space's conditions and trial configs: test_tune_space.py; the system tuner's bench
arguments and lookups: test_tune_system.py; across several processes: test_tune_processes.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _inprocess import deepseek_here, deepseek_run
from _tune_common import SPACE, trials, tune_here, write


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("tune")
    write(work, steps=100)
    # the tuner in this process; its 8 trials are processes of their own
    out = tune_here("tune", "base.toml", "--study", "s", "--space", "space.toml", "--trials", "8", "--out", "st",
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
    out = deepseek_run("tune", "base.toml", "--study", "other", "--space", "space.toml", "--trials", "2", "--out", "st",
                       cwd=study["dir"])
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "error: --out st: holds study 's' (its trials.json and trial folders), which study 'other' would overwrite; "
        "give it its own --out, or --study s to continue that one")
    assert (study["out"] / "trials.json").read_bytes() == before


def test_best_toml_trains_as_is_to_the_best_value(study: dict[str, Any]) -> None:
    rows = [r for r in trials(study["out"]) if r["state"] == "complete"]
    best = min(rows, key=lambda r: r["value"])
    out = deepseek_run("train", str(study["out"] / "best.toml"), "--run-dir", "again", "--quiet", cwd=study["dir"])
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


def test_resuming_with_another_space_is_refused(study: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    (study["dir"] / "space2.toml").write_text(SPACE.replace("2e-2", "3e-2"))
    code, err, _ = deepseek_here(monkeypatch, study["dir"], "tune", "base.toml", "--study", "s", "--space",
                                 "space2.toml", "--trials", "8", "--out", "st")
    assert code == 2 and "--study s: was created with space" in err, err
    assert len(trials(study["out"])) >= 8  # untouched


def test_a_plot_cut_short_as_it_is_written_leaves_no_half_png_under_its_name(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """history.png and importances.png were saved straight to their names: a kill (here an error)
    while matplotlib wrote one left a truncated PNG that read as the study's plot. Now each is
    written beside its name and renamed whole; the one it replaces stays as it was."""
    import matplotlib.figure
    import optuna

    from deepseek_enterprise.tune.report import write_plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2 + t.suggest_float("y", 0, 1), n_trials=6)
    (tmp_path / "history.png").write_bytes(b"the plot of an earlier run")

    def cut(self: Any, fname: Any, **kwargs: Any) -> None:
        Path(fname).write_bytes(b"\x89PNG\r\n\x1a\n half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", cut)
    notes = write_plots(study, tmp_path)
    assert notes == [f"{n}: not drawn ([Errno 28] No space left on device)" for n in ("history.png", "importances.png")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.png"]
    assert (tmp_path / "history.png").read_bytes() == b"the plot of an earlier run"
    monkeypatch.undo()
    assert write_plots(study, tmp_path) == []
    assert (tmp_path / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
