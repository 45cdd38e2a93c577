"""Where a study lives, and who is running each of its trials.

Storage: SQLite in the study folder by default; any Optuna RDB URL (``postgresql://``,
``mysql://``, ``sqlite:///``) or ``journal:PATH`` (Optuna's journal file, for a shared file
system) for many processes or machines. An SQLite file that exists is read back like user input
before Optuna opens it (:func:`check_sqlite_file`): an empty or damaged ``study.db`` would
otherwise become a fresh study. RDB storages record a heartbeat per running trial, so a
trial whose machine died is failed as interrupted (and re-run once) by the next process that
asks for a trial.

Every trial records its worker, ``host:pid:start``. A running trial whose worker is on this
machine and no longer alive (SIGKILL, a power cut) is an interrupted trial: :func:`recover`
marks it failed with ``interrupted`` and enqueues its parameters again, so the study re-runs it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek.errors import UsageError, shown
from deepseek_enterprise.db_url import masked_secrets, shown_url
from deepseek_enterprise.sqlite_files import FOREIGN, sqlite_database, sqlite_problem

HEARTBEAT_S = 20
GRACE_S = 120


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), else empty."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def worker_id() -> str:
    """This process as a study worker: ``host:pid:start``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def worker_alive(worker: str) -> bool | None:
    """Whether a worker of this machine still runs (None: another machine's, unknown here)."""
    try:
        host, pid_text, start = worker.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not start or _start_time(pid) in ("", start)


def sqlite_file(url: str | None, folder: Path) -> Path | None:
    """The database file of ``--storage`` when it is SQLite (``None``: the folder's ``study.db``),
    else ``None`` (another database, a journal, an in-memory database, a URL that is not one)."""
    if url is None:
        return folder / "study.db"
    database = sqlite_database(url)
    return Path(database) if database and database != ":memory:" and not database.startswith("file:") else None


def _in_memory(url: str) -> bool:
    """Whether ``url`` is an SQLite URL of an in-memory database (no path, ``:memory:``, a
    ``mode=memory`` URI)."""
    database = sqlite_database(url)
    return database is not None and (database in ("", ":memory:") or "mode=memory" in url)


def check_sqlite_file(url: str | None, folder: Path) -> None:
    """:class:`UsageError` (one line, nothing written) when the SQLite file of ``--storage`` exists
    but is not a readable SQLite database (empty, another kind of file, or damaged), when
    ``--storage`` is an in-memory SQLite database, or when the default ``<folder>/study.db`` is
    missing beside the trial folders of a study (a new study's trial 0 would collide with them)."""
    if url is not None and _in_memory(url):
        raise UsageError(f"--storage {shown_url(url)}: an in-memory SQLite database is lost when this process ends (the "
                         "study with it) and other workers cannot share it; give a file, sqlite:///PATH")
    path = sqlite_file(url, folder)
    if url is None and not (path.exists() or path.is_symlink()) and any((folder / "trials").glob("[0-9]*")):
        raise UsageError(f"--out {folder}: holds trials/ but no study.db (their study is in another --storage, or "
                         "was removed), so a new study's trials would collide with them; give that study's "
                         "--storage, or pick a new --out")
    if path is None or not (path.exists() or path.is_symlink()):
        return  # a new study creates it
    if url is None:
        where, fix = f"--out {folder}", f"remove the folder {folder} (or that file) or pick another --out"
    else:
        where, fix = "--storage", "remove the file or give another --storage"
    problem = sqlite_problem(path, "an Optuna study's", frozenset({"studies", "version_info"}))
    if problem is not None and problem.startswith(FOREIGN):
        raise UsageError(f"{where}: {path} {problem}; give the study a file of its own (--storage sqlite:///PATH "
                         "or another --out)")
    if problem is not None:
        raise UsageError(f"{where}: the study database {path} {problem}, so the study cannot be read; {fix}")


def open_storage(url: str | None, folder: Path) -> Any:
    """An Optuna storage for ``--storage`` (default: ``sqlite:///<folder>/study.db``); an existing
    SQLite file is checked first (:func:`check_sqlite_file`)."""
    from optuna.storages import RDBStorage

    check_sqlite_file(url, folder)
    if url is None:
        url = f"sqlite:///{(folder / 'study.db').absolute()}"
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = url.removeprefix("journal:")
        if not path:
            raise UsageError("--storage: journal: needs a file path, e.g. journal:/shared/study.log")
        try:
            drop_cut_journal_line(path)
            return JournalStorage(JournalFileBackend(path))
        except OSError as exc:
            raise UsageError(f"--storage: cannot open the journal {path} ({exc.strerror}); give a writable path") from None
        except Exception as exc:  # noqa: BLE001 - Optuna replays the file as it opens it: any error is its content
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise UsageError(f"--storage: {path} is not a readable Optuna journal ({type(exc).__name__}: {detail}); "
                             "give this study's journal file, or a new path for a new study") from None
    if "://" not in url:
        raise UsageError(f"--storage: {shown_url(url)!r} is not a storage URL; give sqlite:///PATH, "
                         "postgresql://USER@HOST/DB (any SQLAlchemy URL) or journal:PATH")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    try:
        for attempt in range(6):  # workers starting together race to create the tables
            try:
                return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
            except (ImportError, ModuleNotFoundError):
                raise
            except Exception:
                if attempt == 5:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except (ImportError, ModuleNotFoundError) as exc:
        raise UsageError(f"--storage: {url.split('://')[0]} needs a database driver that is not installed "
                         f"({exc}); install it, or use sqlite:///PATH") from None
    except Exception as exc:  # SQLAlchemy's errors, Optuna's StorageInternalError
        first = masked_secrets(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--storage: cannot open {shown_url(url)}: {first}; give a working storage (--storage) "
                         "or a new study folder (--out)") from None


def drop_cut_journal_line(path: str) -> int:
    """Remove a last line of the journal ``path`` cut short as it was written (a worker killed
    mid-append, a full disk) and say so; returns the bytes removed. Optuna reads past such a line
    but appends after it, and the op it appends then shares its line: the journal no longer reads
    (JSONDecodeError) and the study is lost. Done under Optuna's own journal lock, which every
    writer holds while it appends, so a line another worker is writing is never taken for one."""
    import warnings

    from optuna.storages.journal import JournalFileSymlinkLock

    if not os.path.isfile(path):
        return 0  # a new journal, or not a file (Optuna's own error names it)
    lock = JournalFileSymlinkLock(path)
    lock.acquire()
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            end = size
            while end > 0:  # back to the last line separator
                start = max(0, end - 65536)
                f.seek(start)
                chunk = f.read(end - start)
                if end == size and chunk.endswith(b"\n"):
                    return 0
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    end = start + cut + 1
                    break
                end = start
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
    if size:
        warnings.warn(f"--storage: {shown(path)}: its last line was cut short as it was written (a worker stopped "
                      f"mid-write): {size - end} byte(s) removed; a trial it left running is recovered as interrupted",
                      stacklevel=2)
    return size - end


def recover(study: Any, storage: Any) -> list[tuple[int, bool]]:
    """Fail the running trials whose tuner is gone, marked ``interrupted`` (not counted among the
    finished trials), and enqueue their parameters again; returns ``(number, queued again)`` of
    each. A tuner is gone when it is this machine's and its process is not alive, or (RDB
    storages) when its trial's heartbeat stopped more than ``GRACE_S`` ago and it is not a live
    process of this machine: another machine's trial is re-run once (a re-run whose tuner dies
    too is not queued again). A tuner of this machine killed longer ago than the grace has a
    stale heartbeat too, and is recovered the same way: Optuna's own stale-trial pass failed it
    as an ordinary failed trial, counted, with its re-run left waiting."""
    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
    from optuna.trial import TrialState

    stale = set(storage._get_stale_trial_ids(study._study_id)) \
        if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage) else set()
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        alive = worker_alive(worker)
        if alive is False:
            note, again = f"interrupted: its tuner ({worker}) stopped", True
        elif alive is None and t._trial_id in stale:
            note, again = f"interrupted: its tuner ({worker}) stopped sending heartbeats", "retry_of" not in t.user_attrs
        else:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_user_attr(t._trial_id, "note", note)
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker recovered it first
        again = again and bool(t.params)
        if again:
            study.enqueue_trial(t.params, user_attrs=retry_attrs(t))
        recovered.append((t.number, again))
    return recovered


def retry_attrs(trial: Any) -> dict[str, Any]:
    """The user attributes of an interrupted trial's re-run: which trial it re-runs, and, for the
    baseline trial's, that it is the baseline (the end of the study compares the best trial with
    it, which was otherwise the interrupted one: 'base config, trial 0: interrupted ...')."""
    return {"retry_of": trial.number, **({"baseline": True} if trial.user_attrs.get("baseline") else {})}


def record_heartbeat(storage: Any, trial: Any) -> None:
    """One heartbeat of a running trial (RDB storages; others keep none)."""
    from optuna.storages._heartbeat import BaseHeartbeat

    if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None:
        storage.record_heartbeat(trial._trial_id)


def _trial_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_OWN_ATTRS: dict[str, tuple[Callable[[Any], bool], str]] = {
    # the trial attributes deepseek tune sets and reads back, with what it writes ('baseline': "yes"
    # made another trial the base config the end compares with)
    "baseline": (lambda v: v is True, "true"), "interrupted": (lambda v: v is True, "true"),
    "retry_of": (_trial_number, "a trial number"), "copied_from": (_trial_number, "a trial number"),
    "worker": (lambda v: isinstance(v, str), "a string"), "skipped": (lambda v: isinstance(v, str), "a string"),
}  # (not 'note': a tuner's TrialRun.attrs may set it too)


def check_trials(study: Any, space: Any, baseline: dict[str, Any], where: str, fix: str) -> None:
    """Every trial of ``study`` read back like user input: the attributes deepseek tune sets hold
    what it writes (:data:`_OWN_ATTRS`), its parameters are parameters of
    ``space`` with values it can take (or the base config's value, ``baseline``, which the
    baseline trial and its re-runs take even outside the space), and its objective values numbers;
    best.toml is made of them (a value edited into the storage was written there, and
    ``deepseek train`` refused it). A :class:`UsageError` naming ``where``, the trial and the
    value, ending in ``fix``."""
    import math

    searched = {p.path: p for p in space.params}
    for t in study.get_trials(deepcopy=False):
        for name, value in t.params.items():
            p = searched.get(name)
            if p is None:
                raise UsageError(f"{where}: trial {t.number} holds parameter {name!r}, which the space does not "
                                 f"search; {fix}")
            if not p.contains(value) and not (name in baseline and value == baseline[name]):
                raise UsageError(f"{where}: trial {t.number} holds {name} = {value!r}, outside the space's "
                                 f"{p.describe()}; {fix}")
        for key, (fits, kind) in _OWN_ATTRS.items():
            if key in t.user_attrs and not fits(t.user_attrs[key]):
                raise UsageError(f"{where}: trial {t.number} holds {key} = {t.user_attrs[key]!r}, where deepseek tune "
                                 f"records {kind}; {fix}")
        for value in t.values or ():  # a run's value is finite (study._checked_value): -inf would be "best"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UsageError(f"{where}: trial {t.number} holds the objective value {value!r}, not a finite "
                                 f"number; {fix}")
