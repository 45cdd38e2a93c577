"""A ``study.db`` that exists but is not a readable SQLite database (empty after a crash or a full
disk, another file, damaged) is refused in one line naming the file and the fix, exit 2, before
anything is written: Optuna would otherwise make a fresh study in it; so is a study folder the
command cannot write as it does. A study read back when it is resumed (edited in its database, a
stale trial's heartbeat): test_tune_study_resume.py."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from _inprocess import deepseek_here
from _study_files import CONFIG, SPACE, _snapshot

from deepseek.errors import UsageError
from deepseek_enterprise.tune.storage import check_sqlite_file

DAMAGED = b"SQLite format 3\x00" + b"\x07" * 200


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
    """The folders the command made for the study were left empty (and said to be created); the line names the URL
    without its password (as the job service's --db lines do: deepseek_enterprise.db_url)."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "space.toml").write_text(SPACE)
    code, err, out = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                   "--trials", "1", "--out", "studies/st", "--storage",
                                   f"postgresql://u:s3cret@127.0.0.1:{port}/db")
    assert code == 2, err
    assert out == "", out  # "study s: ... folder studies/st (created folders studies, studies/st)" was said of them
    assert err.strip().splitlines()[-1].startswith(f"error: --storage: cannot open postgresql://u:***@127.0.0.1:{port}/db: "), err
    assert "s3cret" not in err
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
