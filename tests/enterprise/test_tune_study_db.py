"""A ``study.db`` that exists but is not a readable SQLite database (empty after a crash or a full
disk, another file, damaged) is refused in one line naming the file and the fix, exit 2, before
anything is written: Optuna would otherwise make a fresh study in it."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from _inprocess import deepseek_here

from deepseek.errors import UsageError
from deepseek_enterprise.tune.storage import check_sqlite_file

CONFIG = '[train]\nmax_steps = 2\n'
SPACE = '[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n'
DAMAGED = b"SQLite format 3\x00" + b"\x07" * 200


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("content", "problem"), [
    (b"", "is empty"),
    (b"not a database at all\n", "is not an SQLite database"),
    (DAMAGED, "is damaged (file is not a database)"),
])
def test_a_bad_study_db_in_the_study_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        content: bytes, problem: str) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "space.toml").write_text(SPACE)
    study = tmp_path / "st"
    study.mkdir()
    (study / "study.db").write_bytes(content)
    (study / "trials.json").write_text("[]")
    before = _snapshot(study)
    code, err, out = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                   "--trials", "1", "--out", "st")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0] == (f"error: --out st: the study database st/study.db {problem}, so the study cannot be read; "
                        "remove the folder st (or that file) or pick another --out"), err
    assert out == ""  # not even the study's first line
    assert _snapshot(study) == before  # nothing written, nothing added


def test_a_bad_sqlite_file_given_as_storage_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "space.toml").write_text(SPACE)
    (tmp_path / "other.db").write_bytes(b"")
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                 "--trials", "1", "--out", "st", "--storage", "sqlite:///other.db")
    assert code == 2, err
    assert err.strip().splitlines() == [
        "error: --storage: the study database other.db is empty, so the study cannot be read; remove the file or "
        "give another --storage"], err
    assert not (tmp_path / "st").exists()
    assert (tmp_path / "other.db").read_bytes() == b""


def test_a_real_database_and_a_new_one_pass(tmp_path: Path) -> None:
    check_sqlite_file(None, tmp_path / "new")  # no file yet: a new study creates it
    with sqlite3.connect(tmp_path / "study.db") as db:  # a database without tables: a new study creates them
        db.execute("PRAGMA user_version = 1")  # writes the header
    check_sqlite_file(None, tmp_path)
    _real_db(tmp_path)
    check_sqlite_file(None, tmp_path)
    check_sqlite_file(f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "elsewhere")
    check_sqlite_file("postgresql://u@h/db", tmp_path)  # not a file: Optuna says what is wrong
    (tmp_path / "bad.db").write_bytes(b"x")
    with pytest.raises(UsageError, match="bad.db is not an SQLite database"):
        check_sqlite_file(f"sqlite:///{tmp_path / 'bad.db'}", tmp_path)


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///:memory:", "sqlite://"])
def test_an_in_memory_storage_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """It ran the study and lost it at exit, leaving trial folders no study.db describes."""
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "space.toml").write_text(SPACE)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                 "--trials", "1", "--out", "st", "--storage", url)
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"error: --storage {url}: an in-memory SQLite database is lost when this process ends (the study with it) "
        "and other workers cannot share it; give a file, sqlite:///PATH"], err
    assert not (tmp_path / "st").exists()


def test_trial_folders_without_their_study_db_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new study in the default study.db would number its trials from 0 again: each failed on the
    run folder of the old trial of that number."""
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "space.toml").write_text(SPACE)
    (tmp_path / "st" / "trials" / "0000").mkdir(parents=True)
    before = _snapshot(tmp_path / "st")
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                 "--trials", "1", "--out", "st")
    assert code == 2, err
    assert err.strip().splitlines() == [
        "error: --out st: holds trials/ but no study.db (their study is in another --storage, or was removed), so a "
        "new study's trials would collide with them; give that study's --storage, or pick a new --out"], err
    assert _snapshot(tmp_path / "st") == before and not (tmp_path / "st" / "study.db").exists()


def test_a_database_another_worker_is_creating_is_waited_for(tmp_path: Path) -> None:
    """Two workers started together on one ``--out``: the second saw the first's study.db while
    SQLite had made it empty and not yet written its header, and refused it as 'empty'."""
    import threading

    path = tmp_path / "study.db"
    path.write_bytes(b"")  # what the first worker's SQLite leaves between creating and writing the file

    def create() -> None:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE studies (x)")

    timer = threading.Timer(0.5, create)
    timer.start()
    try:
        check_sqlite_file(None, tmp_path)
    finally:
        timer.join()


def test_a_database_locked_by_another_worker_is_waited_for(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "study.db"
    holder = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    holder.execute("CREATE TABLE studies (x)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO studies VALUES (1)")
    timer = threading.Timer(0.5, lambda: (holder.execute("COMMIT"), holder.close()))
    timer.start()
    try:
        check_sqlite_file(None, tmp_path)
    finally:
        timer.join()


def test_a_storage_that_cannot_open_leaves_no_folder_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folders the command made for the study were left empty."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "space.toml").write_text(SPACE)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                 "--trials", "1", "--out", "studies/st", "--storage",
                                 f"postgresql://u@127.0.0.1:{port}/db")
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith("error: --storage: cannot open postgresql://"), err
    assert not (tmp_path / "studies").exists()


def _real_db(folder: Path) -> None:
    """An Optuna storage's database (its tables, no study yet)."""
    import optuna

    optuna.storages.RDBStorage(f"sqlite:///{folder / 'study.db'}").engine.dispose()


def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna wrote its tables into it beside the program's own."""
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "space.toml").write_text(SPACE)
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("CREATE TABLE invoices (x)")
    before = (tmp_path / "app.db").read_bytes()
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                 "--trials", "1", "--out", "st", "--storage", "sqlite:///app.db")
    assert code == 2 and err.strip().splitlines() == [
        "error: --storage: app.db is another program's database (its tables: invoices), not an Optuna study's; give "
        "the study a file of its own (--storage sqlite:///PATH or another --out)"], err
    assert (tmp_path / "app.db").read_bytes() == before and not (tmp_path / "st").exists()


def test_a_study_folder_run_with_another_storage_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copied study folder (its trials/ and study.db) run with --storage elsewhere numbered its
    trials from 0 again: each was refused as 'already holds a run', and trials.json and best.toml
    were overwritten."""
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "space.toml").write_text(SPACE)
    study = tmp_path / "st"
    study.mkdir()
    _real_db(study)
    (study / "trials" / "0000").mkdir(parents=True)
    (study / "trials.json").write_text('{"study": "s"}')
    before = _snapshot(study)
    code, err, out = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                   "--trials", "1", "--out", "st", "--storage", "sqlite:///elsewhere.db")
    assert code == 2 and err.strip().splitlines() == [
        "error: --out st: holds trials/0000 but --storage sqlite:///elsewhere.db has no study 's': the folder belongs "
        "to another storage or study; give that study's --storage and --study, or pick a new --out"], err
    assert _snapshot(study) == before


@pytest.mark.parametrize(("damage", "words"), [
    (lambda st: (st / "trials.json").mkdir(), "trials.json is a folder where the study writes its trials.json"),
    (lambda st: (st / "best.toml").mkdir(), "best.toml is a folder where the study writes its best.toml"),
    # reading it (is it another study's?) blocked the command for good
    (lambda st: os.mkfifo(st / "trials.json"),
     "trials.json is not a regular file (a device, FIFO or socket) where the study writes its trials.json"),
    (lambda st: (st / "trials").write_text("x"), "trials is a file where the study keeps its trial folders"),
    (lambda st: (_real_db(st), (st / "trials").mkdir(), (st / "trials" / "0002").write_text("x")),
     "trials/0002 is a file where the study keeps a trial's folder"),
])
def test_a_study_folder_it_cannot_write_as_it_does_is_refused_before_any_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage, words: str) -> None:  # noqa: ANN001
    """Each failed after the trials had run, as an internal error."""
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "space.toml").write_text(SPACE)
    study = tmp_path / "st"
    study.mkdir()
    damage(study)
    before = _snapshot(study)
    code, err, out = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                   "--trials", "1", "--out", "st")
    assert code == 2 and err.strip().splitlines() == [f"error: --out st: {words}; move it away or pick another --out"], err
    assert _snapshot(study) == before


WRITER_KILLED_MID_WRITE = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size=1")  # spill to the file inside the transaction: the journal is hot
db.execute("CREATE TABLE t (x BLOB)")
db.execute("INSERT INTO t VALUES (zeroblob(1000))")
db.execute("BEGIN")
for _ in range(20):
    db.execute("INSERT INTO t VALUES (zeroblob(100000))")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_database_whose_writer_was_killed_mid_write_is_whole(tmp_path: Path) -> None:
    """A tuner SIGKILLed inside a write leaves a hot journal beside study.db; the read-only check
    cannot roll it back ('attempt to write a readonly database') and called the study damaged, so
    it could not be resumed. The storage opens it for writing and rolls the journal back."""
    import subprocess
    import sys

    path = tmp_path / "study.db"
    killed = subprocess.run([sys.executable, "-c", WRITER_KILLED_MID_WRITE, str(path)], check=False)
    assert killed.returncode == -9 and (tmp_path / "study.db-journal").stat().st_size > 0
    check_sqlite_file(None, tmp_path)
    with sqlite3.connect(path) as db:  # what the storage does next: the journal rolled back
        assert db.execute("SELECT count(*) FROM t").fetchone() == (1,)


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
