"""Checkpoint folders: temp dir + atomic rename, the commit record, ``latest``, keep-last-N,
which folders are complete, the cleanup of an interrupted save's leftovers (paths a person
passes: :mod:`deepseek.training.checkpoint_lookup`).

Layout of ``<run>/checkpoints/``:

- ``step-N/``: a committed checkpoint. Its ``commit.json`` (written last, just before the rename)
  records the commit sequence number and the size of every file, so a folder under a final name
  is complete exactly when every file it lists is there with that size; and every file's
  CRC-32, checked when a command takes the checkpoint (:mod:`deepseek.training.checkpoint_digest`):
  a file changed since, its size kept, makes the checkpoint damaged.
- ``step-N.tmp-XXXX/``: being written; ``step-N.trash-XXXX/``: being deleted (pruned);
  ``.latest.XXXX.tmp``: ``latest`` being replaced. All of them are leftovers once the job that
  made them is gone, and :func:`remove_stale` deletes them.
- ``step-N.replaced-XXXX/``: a committed ``step-N`` moved aside by a save of the same step (a stop
  or best mark, a continued run), deleted once the new ``step-N`` is in place. A kill between the
  two renames leaves no ``step-N``: the moved-aside folder, complete and recording step N, is then
  that step's checkpoint for every lookup, and :func:`remove_stale` renames it back to ``step-N``,
  so the step is never lost. Other processes' lookups wait for a live job (holding the run folder's
  lock) between the renames, and find its new ``step-N`` (:func:`_await_re_save`). A moved-aside
  folder being deleted is first renamed to a ``.trash-`` name (:func:`_delete_leftover`), so what a
  failed deletion leaves is never taken for its step's checkpoint; one that can be neither renamed
  nor deleted keeps its ``step-N`` from being pruned (:func:`discard`), so it never becomes step N's
  checkpoint again. Which name is what: :mod:`deepseek.training.checkpoint_names`.
- ``latest``: the newest checkpoint's name, for people and tools; lookups take the one committed
  last (highest sequence number), so a crash before the pointer's update loses nothing, and a run
  continued from an earlier checkpoint resumes from what it saved, not from a higher step of the
  abandoned continuation. A stale pointer is fixed by the next commit or start (:func:`update_pointers`).
- ``best``: the best checkpoint's name (``checkpoint.keep_best``), as ``latest``. The mark is in
  that checkpoint's commit record (``"best": true``), committed with it (:func:`best_checkpoint`):
  a crash before the pointer's update neither loses the mark nor leaves it to pruning.

Every step of :func:`commit_checkpoint` and :func:`prune_checkpoints` is a rename or happens on
a name nothing reads, so a crash (SIGKILL, power loss) at any point leaves complete checkpoints
and leftovers, never a partial folder under a final name. Ctrl-C is held back while they run
(a fraction of a second). Checkpoints without a ``commit.json`` (older) count as complete with
``trainer.json`` and weights, below every recorded one (``latest`` first, then by step). One job
writes into a run folder at a time (:mod:`deepseek.training.run_lock`), from rank 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from deepseek import durable
from deepseek.parsing import read_text
from deepseek.paths import usual_mode
from deepseek.training.checkpoint_digest import checksums_of
from deepseek.training.checkpoint_names import (
    FOREIGN_TAG,
    REPLACED_TAG,
    as_step,
    checkpoint_step,
    leftover_dir_name,
    moved_aside_copies,
    recorded_step,
    set_aside,
    step_dir_name,
)
from deepseek.training.checkpoint_record import COMMIT_FILE, TRAINER_FILE, Found, inspect_checkpoint
from deepseek.training.run_lock import LOCK_FILE, held_by_another

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
ANOTHER_STEP = "put there by hand"
BEST_FILE = "best"
"""Pointer file naming the best checkpoint (``checkpoint.keep_best``), beside ``latest``."""
LATEST_FILE = "latest"
RE_SAVE_WAIT_S = 10.0
"""Longest a lookup waits for a live job to finish replacing a checkpoint (:func:`_await_re_save`):
two renames and their fsyncs, a fraction of a second."""
_POINTER_TEMPS = (f".{LATEST_FILE}.", f".{BEST_FILE}.")  # atomic_write_text's temp files


class CheckpointWarning(UserWarning):
    """A checkpoint on disk was passed over (incomplete: a file deleted, truncated or changed since
    its commit) or moved aside, or a leftover of a save could not be deleted."""


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` whole and durably (:func:`deepseek.durable.write_text`; to the
    file a symbolic link ``path`` points to: the link stays)."""
    from deepseek.paths import write_target

    target = write_target(path)
    if target.is_dir():  # the rename would fail with IsADirectoryError, an internal error (a plugin's file too)
        from deepseek.errors import UsageError

        raise UsageError(f"{target}: is a folder where {target.name} is written; move it away")
    durable.write_text(target, text)
    return target


def new_temp_dir(root: str | os.PathLike[str], step: int) -> Path:
    """A fresh ``<root>/step-N.tmp-XXXX`` folder to write a checkpoint into."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{step_dir_name(step)}.tmp-", dir=base))
    usual_mode(tmp, folder=True)
    return tmp


def discard(directory: str | os.PathLike[str]) -> bool:
    """Delete a checkpoint or temp folder: first renamed to ``<name>.trash-XXXX`` (one atomic
    step: the folder is gone from its name at once), then removed (:func:`_delete_leftover`: what
    cannot be is said). Missing folders are fine. A ``step-N`` is kept (``False``; said in a
    :class:`CheckpointWarning`) while a moved-aside copy of it that could not be deleted stays
    (:func:`_undeletable_copy`): without it, that copy would be step N's checkpoint again."""
    path = Path(directory)
    if not path.exists():
        return True
    step = checkpoint_step(path.name)
    if step is not None and (copy := _undeletable_copy(path.parent, step)) is not None:
        warnings.warn(CheckpointWarning(
            f"{path}: kept, not pruned: {copy}, an earlier copy of it that could not be deleted, would be taken for "
            f"step {step}'s checkpoint without it; delete that copy by hand (the next prune then deletes {path.name})"),
            stacklevel=3)
        return False
    if not leftover_dir_name(path.name):
        trash = Path(tempfile.mkdtemp(prefix=f"{path.name}.trash-", dir=path.parent))
        durable.move(path, trash / path.name)
        path = trash
    _delete_leftover(path)
    return True


def _undeletable_copy(root: Path, step: int) -> Path | None:
    """Delete each moved-aside copy of ``step`` under ``root`` (``step-N.replaced-XXXX``, superseded
    while ``step-N`` is there); the first that stays, whole, where :func:`~deepseek.training.checkpoint_names.set_aside` would take it
    for step N's checkpoint once ``step-N`` is gone, else ``None``."""
    for copy_step, copy in moved_aside_copies(root):
        if copy_step == step:
            _delete_leftover(copy)
            if as_step(copy, step) is not None:
                return copy
    return None


def _delete_leftover(path: Path) -> None:
    """Delete ``path``, a leftover folder or pointer temp file of a save, prune or re-save, as far
    as it can be. A moved-aside ``step-N.replaced-XXXX`` is first renamed to ``step-N.trash-XXXX``:
    what a failed deletion leaves of it is then never taken for step N's checkpoint once its
    ``step-N`` is pruned (:func:`~deepseek.training.checkpoint_names.set_aside`), nor waited for by lookups (:func:`_await_re_save`).
    A deletion that fails (a file in it this user may not delete) is said at once, in one
    :class:`CheckpointWarning` naming what stays and why; the run's next start tries again."""
    step = checkpoint_step(path.name, REPLACED_TAG)
    if step is not None and path.is_dir() and not path.is_symlink():
        trash = None
        try:  # onto an empty folder mkdtemp made: a unique name, one rename
            trash = Path(tempfile.mkdtemp(prefix=f"{step_dir_name(step)}.trash-", dir=path.parent))
            durable.move(path, trash)
            path = trash
        except OSError:  # deleted where it is
            if trash is not None:
                with contextlib.suppress(OSError):
                    trash.rmdir()
    try:
        if path.is_dir() and not path.is_symlink():
            try:
                shutil.rmtree(path)
            except OSError:
                shutil.rmtree(path, ignore_errors=True)  # what can go goes; the first failure is said
                raise
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        warnings.warn(CheckpointWarning(f"{path}: a leftover of a save, prune or re-save could not be deleted "
                                        f"({exc.strerror or exc}); delete it by hand"), stacklevel=2)


def _files_of(directory: Path) -> dict[str, int]:
    """The files the commit record of ``directory`` lists, with their sizes. A symbolic link there
    (no writer of core or deepseek-pro makes one; a plugin strategy's ``save_checkpoint`` might) is
    refused before anything is committed: a resume refuses a checkpoint holding one."""
    files = {}
    for f in sorted(directory.rglob("*")):
        if f.is_symlink():
            from deepseek.errors import CheckpointError

            raise CheckpointError(f"{f}: is a symbolic link (to {os.readlink(f)}), written into a checkpoint being "
                                  "saved; a checkpoint holds its own files, so whatever saved it must write the file "
                                  "there, not link to it")
        if f.is_file():
            files[f.relative_to(directory).as_posix()] = f.stat().st_size
    return files


def _scan(root: Path) -> list[Found]:
    """Every ``step-N`` folder under ``root``, oldest commit first (complete or not)."""
    if not root.is_dir():
        return []
    _await_re_save(root)
    latest = _read_latest_name(root)
    found = []
    for child in root.iterdir():
        step = checkpoint_step(child.name)
        if step is not None and child.is_symlink():  # not written by the run: never resumed from, never pruned
            found.append(Found(step, child, 0, "a symbolic link, not a folder the run wrote"))
        elif step is not None and child.is_dir():
            found.append(inspect_checkpoint(child, step))
    found += set_aside(root)
    if any(f.seq > 0 for f in found):  # a run that writes commit records: one without its record lost it
        found = [dataclasses.replace(f, problem=f"{COMMIT_FILE} missing") if (f.seq, f.problem) == (0, None) else f for f in found]
    # A folder holding another step was put there by hand: never resumed from, never pruned.
    found = [dataclasses.replace(f, problem=f"{ANOTHER_STEP}: its {TRAINER_FILE} records step {other}")
             if f.problem is None and (other := _other_step(f.path)) is not None else f for f in found]
    return sorted(found, key=lambda f: (f.seq, f.path.name == latest, f.step))


def _read_latest_name(root: Path) -> str | None:
    try:
        return read_text(root / LATEST_FILE).strip()
    except (OSError, UnicodeDecodeError):  # a damaged pointer is no hint; lookups do not need it
        return None


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Hold SIGINT back (main thread, POSIX) until the block is done; it is delivered after."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def commit_checkpoint(tmp: str | os.PathLike[str], final: str | os.PathLike[str], *, best: bool = False) -> Path:
    """Turn the fully written temp folder ``tmp`` into the checkpoint ``final`` and point
    ``latest`` at it (``best``: mark it the best checkpoint and point ``best`` at it too). The
    rename is the commit: before it the checkpoint does not exist, after it it is complete (its
    commit record lists every file, and carries the best mark)."""
    with ctrl_c_deferred():
        return _commit(Path(tmp), Path(final), best)


def _commit(tmp_p: Path, final_p: Path, best: bool) -> Path:
    root = final_p.parent
    seq = max((f.seq for f in _scan(root) if f.problem is None), default=0) + 1
    files = _files_of(tmp_p)
    record: dict[str, object] = {"seq": seq, "files": files, "crc32": checksums_of(tmp_p, files)}
    if best:
        record["best"] = True
    (tmp_p / COMMIT_FILE).write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    old = None
    if final_p.exists() and _other_step(final_p) is not None:  # not this run's: kept, not deleted
        kept = Path(tempfile.mkdtemp(prefix=f"{final_p.name}{FOREIGN_TAG}", dir=root))
        durable.move(final_p, kept / final_p.name)
        warnings.warn(CheckpointWarning(
            f"{final_p}: held a checkpoint of another step (its {TRAINER_FILE}), put there by hand; moved to "
            f"{kept / final_p.name} before this run saved its own step"), stacklevel=2)
    if final_p.exists():  # this step was saved before: until the new one is in, the old one is step N's
        old = Path(tempfile.mkdtemp(prefix=f"{final_p.name}{REPLACED_TAG}", dir=root))
        durable.move(final_p, old)  # onto the empty folder mkdtemp made: a unique name, one rename
    durable.replace(tmp_p, final_p)
    atomic_write_text(root / LATEST_FILE, final_p.name + "\n")
    if best:
        atomic_write_text(root / BEST_FILE, final_p.name + "\n")
    if old is not None:
        _delete_leftover(old)
    return final_p


def list_checkpoints(root: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints ``(step, path)`` under ``root``, in commit order: oldest first, the
    newest (what ``--resume <run>`` takes) last. Temp, trash and incomplete folders are left out."""
    return [(f.step, f.path) for f in _scan(Path(root)) if f.problem is None]


def best_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    """The best checkpoint under ``root``: the newest complete one whose commit record marks it
    best, else (checkpoints committed before records carried the mark) the one the ``best``
    pointer names; ``None`` when there is none."""
    marked = [f.path for f in _scan(Path(root)) if f.problem is None and f.best]
    return marked[-1] if marked else _read_pointer(Path(root), BEST_FILE)


def prunable(root: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """The complete checkpoints under ``root`` that :func:`prune_checkpoints` deletes: all but the
    ``keep_last`` newest by commit order and the ``best`` one (none left by a prune that ran whole;
    one killed before or during its deletions leaves them)."""
    ckpts = list_checkpoints(root)
    best = best_checkpoint(root)
    return [path for _, path in ckpts[: max(len(ckpts) - max(keep_last, 1), 0)] if path != best]


def prune_checkpoints(root: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest complete checkpoints (by commit order, so the one
    just committed always stays) and the ``best`` one; each is renamed away before it is deleted
    (:func:`discard`, which keeps one whose earlier copy it cannot delete). The deleted ones."""
    doomed = prunable(root, keep_last)
    with ctrl_c_deferred():
        return [path for path in doomed if discard(path)]


def _other_step(folder: Path) -> int | None:
    """The step that checkpoint folder ``step-N``'s ``trainer.json`` records when it is not N (a
    folder of another run copied there by hand), else ``None`` (also when unreadable or missing:
    an interrupted save of this run)."""
    step = checkpoint_step(folder.name)
    recorded = recorded_step(folder)  # no step at all is damage, which reading trainer.json names
    return None if step is None or recorded is None or recorded == step else recorded


def _await_re_save(root: Path) -> None:
    """A moved-aside folder that is step N's checkpoint (:func:`~deepseek.training.checkpoint_names.set_aside`: no ``step-N`` beside it,
    complete, recording step N) while a live job holds the run folder (``root``'s parent,
    :mod:`~deepseek.training.run_lock`) is that job between a re-save's two renames: its new
    ``step-N`` is renamed in next and the moved-aside folder deleted. A lookup (a command that reads
    the run beside its live job) waits for that, up to :data:`RE_SAVE_WAIT_S`, rather than take a
    folder about to go. With no live holder the folder is a killed save's, step N's checkpoint; so it
    is too if the holder is still between the renames when the wait ends (a stopped process).
    Nothing else is waited for, since waiting cannot help: a moved-aside folder that is not complete
    is never taken (a re-save moves aside a committed folder, whole), whoever holds the run folder,
    and the job holding the folder (this process) never waits, its saves and lookups coming in turn."""
    deadline = time.monotonic() + RE_SAVE_WAIT_S
    while set_aside(root) and held_by_another(root.parent / LOCK_FILE) and time.monotonic() < deadline:
        time.sleep(0.01)


def list_stale(root: str | os.PathLike[str]) -> list[Path]:
    """What an interrupted save, prune or pointer update left under ``root``: temp, trash and
    moved-aside folders, ``.latest.*.tmp`` and ``.best.*.tmp`` files."""
    base = Path(root)
    if not base.is_dir():
        return []
    return [child for child in base.iterdir()
            if (child.is_dir() and leftover_dir_name(child.name))
            or (child.is_file() and child.name.startswith(_POINTER_TEMPS) and child.name.endswith(".tmp"))]


def remove_stale(root: str | os.PathLike[str]) -> list[Path]:
    """Rename each moved-aside checkpoint that is its step's (:func:`~deepseek.training.checkpoint_names.set_aside`) back to ``step-N``,
    then delete what :func:`list_stale` finds under ``root`` (one it cannot stays, said in a
    :class:`CheckpointWarning`). Call it only while holding the run folder's lock. A rename back that
    fails is a :class:`~deepseek.errors.CheckpointError` (one line, exit 2), before anything is deleted."""
    base = Path(root)
    for found in set_aside(base) if base.is_dir() else []:
        final = base / step_dir_name(found.step)
        try:
            durable.move(found.path, final)
        except OSError as exc:
            from deepseek.errors import CheckpointError

            raise CheckpointError(
                f"{found.path}: is step {found.step}'s checkpoint (moved aside by a save of the same step that was cut "
                f"short) and could not be renamed back to {final.name} ({exc.strerror or exc}); nothing was deleted: "
                f"rename it to {final} yourself, then run the command again") from None
    stale = list_stale(root)
    for child in stale:
        _delete_leftover(child)
    return stale


def _read_pointer(root: Path, name: str) -> Path | None:
    """The checkpoint a pointer file (``latest``, ``best``) in ``root`` names, when complete."""
    try:
        target = read_text(root / name).strip()
    except (OSError, UnicodeDecodeError):
        return None
    step = checkpoint_step(target)
    if step is None or not (root / target).is_dir():
        return None
    return root / target if inspect_checkpoint(root / target, step).problem is None else None


def __getattr__(name: str) -> object:
    """``resolve_checkpoint`` and ``checksum_note`` live in :mod:`~deepseek.training.checkpoint_lookup`
    (which imports this module, so they are re-exported on first use, not at import)."""
    if name in ("resolve_checkpoint", "checksum_note"):
        from deepseek.training import checkpoint_lookup

        return getattr(checkpoint_lookup, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
