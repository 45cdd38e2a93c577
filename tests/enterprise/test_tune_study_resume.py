"""A study read back from its database when it is resumed: what Optuna cannot decode and values
outside the space are one line naming the database and the trial, nothing written; an attribute
named as a trial field does not replace it; a trial whose tuner died (its heartbeat stale) is
interrupted and queued again, not counted, a baseline's re-run staying the baseline. A
``study.db`` that cannot be read at all: test_tune_study_db.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from _inprocess import deepseek_here
from _study_files import CONFIG, SPACE, _snapshot


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study of one trial (the base config's), run to the end."""
    from _tune_common import deepseek

    work = tmp_path_factory.mktemp("finished")
    (work / "c.toml").write_text(CONFIG + "[data]\nbatch_size = 4\neval_batches = 1\n[logging]\nplot = false\n")
    (work / "space.toml").write_text(SPACE)
    done = deepseek("tune", "c.toml", "--study", "s", "--space", "space.toml", "--trials", "1", "--out", "st",
                    cwd=work)
    assert done.returncode == 0, done.stderr
    return work


@pytest.mark.parametrize(("edit", "problem"), [
    # written into best.toml as is ('deepseek train' refused it there), or a parameter the space lacks
    ("UPDATE trial_params SET param_value = -5 WHERE param_name = 'train.lr'",
     ": trial 0 holds train.lr = -5.0, outside the space's [0.0001, 0.01]"),
    ("UPDATE trial_params SET param_name = 'train.bogus'",
     ": trial 0 holds parameter 'train.bogus', which the space does not search"),
    # internal errors: TypeError (abs of a str), JSONDecodeError, AttributeError
    ("UPDATE trial_values SET value = 'x'", ": trial 0 holds the objective value 'x', not a finite number"),
    # taken as the best trial of a minimised study: best.toml written from it, 'val_loss -inf'
    ("UPDATE trial_values SET value = NULL, value_type = 'INF_NEG'",
     ": trial 0 holds the objective value -inf, not a finite number"),
    ("UPDATE trial_params SET distribution_json = 'garbage'",
     " cannot be read (JSONDecodeError: Expecting value: line 1 column 1 (char 0))"),
    ("UPDATE study_user_attributes SET value_json = '[1]'",
     " records [1] where deepseek tune keeps its objective, tuner, space and config"),
    # read as true: any trial so marked became the base config the end compares with
    ("UPDATE trial_user_attributes SET value_json = '\"yes\"' WHERE key = 'baseline'",
     ": trial 0 holds baseline = 'yes', where deepseek tune records true"),
    ("UPDATE trial_user_attributes SET value_json = '[1]' WHERE key = 'worker'",
     ": trial 0 holds worker = [1], where deepseek tune records a string"),
], ids=["outside", "unknown", "value", "minus-infinity", "distribution", "identity", "baseline", "worker"])
def test_a_study_edited_in_its_database_is_refused_when_resumed(finished: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch, edit: str,
                                                                problem: str) -> None:
    """Trials are read back from the storage like user input: what Optuna cannot decode, and values
    outside the space, are one line naming the database and the trial, with nothing written."""
    import shutil

    for name in ("c.toml", "space.toml", "st"):
        (shutil.copytree if name == "st" else shutil.copy)(finished / name, tmp_path / name)
    with sqlite3.connect(tmp_path / "st" / "study.db") as db:
        db.execute(edit)
    db.close()
    before = _snapshot(tmp_path / "st")
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                 "--trials", "1", "--out", "st")
    assert (code, err.strip().splitlines()) == (2, [f"error: st/study.db: study 's'{problem}; restore it, or pick a "
                                                    "new --out"])
    assert _snapshot(tmp_path / "st") == before


def test_a_user_attribute_named_as_a_trial_field_does_not_replace_it(finished: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial attribute added in the database under a name the report computes ('seconds') is
    not taken for it: the finished study reports as before (it was an internal error)."""
    import shutil

    for name in ("c.toml", "space.toml", "st"):
        (shutil.copytree if name == "st" else shutil.copy)(finished / name, tmp_path / name)
    with sqlite3.connect(tmp_path / "st" / "study.db") as db:
        trial = db.execute("SELECT trial_id FROM trials").fetchone()[0]
        db.execute("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?, 'seconds', '\"x\"')",
                   (trial,))
    db.close()
    code, err, out = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                   "--trials", "1", "--out", "st")
    assert code == 0, err
    assert "internal error" not in err
    rows = json.loads((tmp_path / "st" / "trials.json").read_text())["trials"]
    assert isinstance(rows[0]["seconds"], float)


@pytest.mark.parametrize("here", [True, False], ids=["this-machine", "another-machine"])
def test_a_trial_whose_heartbeat_went_stale_is_interrupted_not_counted(tmp_path: Path, here: bool) -> None:
    """A tuner killed more than GRACE_S before the study is resumed leaves its trial RUNNING with a
    stale heartbeat. Optuna's stale-trial pass failed it as an ordinary failed trial: counted among
    the finished trials (a 1-trial study then stopped at once, 'no trial completed', exit 1) with
    its re-run left waiting. It is interrupted, not counted, and queued again, like a trial of a
    dead tuner resumed within the grace period."""
    import socket
    import subprocess
    import sys

    import optuna
    from optuna.trial import TrialState

    from deepseek_enterprise.tune.storage import open_storage, record_heartbeat, recover
    from deepseek_enterprise.tune.study import _counts

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    worker = f"{socket.gethostname()}:{dead.stdout.strip()}:1" if here else "elsewhere:1:1"
    storage = open_storage(None, tmp_path)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.suggest_float("train.lr", 1e-4, 1e-2)
    trial.set_user_attr("worker", worker)
    record_heartbeat(storage, trial)
    with sqlite3.connect(tmp_path / "study.db") as db:  # the tuner died ten minutes ago
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-600 seconds')")
    db.close()
    assert recover(study, storage) == [(0, True)]
    first, rerun = study.get_trials(deepcopy=False)
    assert first.state == TrialState.FAIL and first.user_attrs["interrupted"] is True
    assert first.user_attrs["note"] == f"interrupted: its tuner ({worker}) stopped" + ("" if here else
                                                                                       " sending heartbeats")
    assert rerun.state == TrialState.WAITING and rerun.user_attrs == {"retry_of": 0}
    assert rerun.system_attrs["fixed_params"] == first.params
    assert _counts(study) == (0, 0)  # not a finished trial: --trials 1 still runs one
    again = study.ask()  # the re-run, whose tuner dies too: another machine's is re-run once only
    assert again.number == 1 and again.suggest_float("train.lr", 1e-4, 1e-2) == first.params["train.lr"]
    again.set_user_attr("worker", worker)
    record_heartbeat(storage, again)
    with sqlite3.connect(tmp_path / "study.db") as db:
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-600 seconds')")
    db.close()
    assert recover(study, storage) == [(1, here)]


def test_an_interrupted_baseline_is_re_run_as_the_baseline_and_the_end_compares_with_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The re-run of an interrupted baseline trial was an ordinary trial: the study's last line
    compared the best trial with the interrupted one ('base config, trial 0: interrupted: its tuner
    ... stopped') although the base config's value was known from its re-run."""
    import optuna
    from optuna.trial import TrialState

    from deepseek_enterprise.tune.cli import _report
    from deepseek_enterprise.tune.storage import open_storage, record_heartbeat, recover
    from deepseek_enterprise.tune.study_open import StudySettings

    storage = open_storage(None, tmp_path)
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({"train.lr": 1e-3}, user_attrs={"baseline": True})
    base = study.ask()
    base.suggest_float("train.lr", 1e-4, 1e-2)
    base.set_user_attr("worker", "elsewhere:1:1")  # its machine is gone: its heartbeat went stale
    record_heartbeat(storage, base)
    with sqlite3.connect(tmp_path / "study.db") as db:
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-600 seconds')")
    db.close()
    assert recover(study, storage) == [(0, True)]
    rerun = study.ask()
    assert rerun.suggest_float("train.lr", 1e-4, 1e-2) == 1e-3
    assert study.trials[1].user_attrs == {"retry_of": 0, "baseline": True}
    study.tell(rerun, 2.0)
    better = study.ask()
    better.suggest_float("train.lr", 1e-4, 1e-2)
    study.tell(better, 1.0)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    settings = StudySettings(name="s", trials=2, objective="val_loss", out=tmp_path)
    assert _report(study, settings, {"train": {"lr": 1e-3}}, "c.toml", lambda data: "deepseek train") is None
    assert "best trial 2: val_loss 1 (base config, trial 1: 2); wrote" in capsys.readouterr().out
