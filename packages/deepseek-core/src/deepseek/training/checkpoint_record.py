"""What a checkpoint folder's commit record (``commit.json``) says, read back like user input, and
whether the folder's files are still those it lists (:func:`inspect_checkpoint`). The record is
written by :func:`deepseek.training.checkpoint_dirs.commit_checkpoint`; the folder layout and which
folders count as checkpoints are that module's.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from deepseek.errors import CheckpointError
from deepseek.parsing import MAX_FILE_BYTES, loads_json, read_text
from deepseek.training.checkpoint_digest import checksum_problem, is_checksum, size_problem

TRAINER_FILE = "trainer.json"
COMMIT_FILE = "commit.json"


@dataclass(frozen=True)
class Found:
    """A ``step-N`` folder and what its commit record says."""

    step: int
    path: Path
    seq: int
    """Commit sequence number (0: written before commit records existed)."""
    problem: str | None
    """Why the folder is not a complete checkpoint, or ``None``."""
    best: bool = False
    """Its commit record marks it the best checkpoint of its run."""
    checksums: tuple[tuple[str, str], ...] = ()
    """``(file, CRC-32)`` its commit record lists (none in records written before checksums)."""
    sizes: tuple[tuple[str, int], ...] = ()
    """``(file, bytes)`` its commit record lists: a file of another size is refused before it is
    read for its checksum."""

    def damage(self) -> str | None:
        """Which file no longer has the checksum its commit recorded (or its size, checked first),
        or None (reads the files, none past its recorded size)."""
        return checksum_problem(self.path, dict(self.checksums), dict(self.sizes)) if self.checksums else None


def inspect_checkpoint(path: Path, step: int) -> Found:
    """Folder ``path``, named as step ``step``'s checkpoint, and what its commit record says of it."""
    record = path / COMMIT_FILE
    if not os.path.lexists(record):  # written before commit records (or by an export)
        return Found(step, path, 0, _unrecorded_problem(path))
    if not record.is_file():  # a commit writes a file: a folder, FIFO or broken link there is no record
        what = "a folder" if record.is_dir() else "not a regular file (a FIFO, device, socket or broken link)"
        return Found(step, path, 0, f"{COMMIT_FILE} is {what}, not a commit record")
    try:
        body = loads_json(read_text(record))
        if not (isinstance(body, dict) and isinstance(body.get("files"), dict) and isinstance(body.get("crc32", {}), dict)):
            raise ValueError("not a commit record (a JSON object with a files table and a crc32 table)")
        seq, files, best = body.get("seq"), dict(body["files"]), body.get("best") is True
        checksums = dict(body.get("crc32", {}))
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq < 2**53:
            raise ValueError(f"seq {seq!r} is not a commit count")
        if not all(isinstance(n, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                   for n, v in files.items()):
            raise ValueError("files holds something other than names and byte sizes")
        if (outside := next((n for n in files if not _inside(n)), None)) is not None:  # before any is looked at
            raise ValueError(f"files lists {outside!r}, which is no file inside the checkpoint folder")
        if TRAINER_FILE not in files:  # every commit lists it: a record without it lists nothing real
            raise ValueError(f"files does not list {TRAINER_FILE}")
        if not (checksums.keys() <= files.keys() and all(map(is_checksum, checksums.values()))):
            raise ValueError("crc32 holds something other than checksums of the files it lists")
        if "crc32" in body and checksums.keys() != files.keys():  # every commit since checksums gives one per file
            unchecked = sorted(files.keys() - checksums.keys())
            raise ValueError(f"crc32 gives no checksum of {unchecked[0]}, which files lists")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return Found(step, path, 0, f"{COMMIT_FILE} unreadable ({exc})")
    if (oversized := _oversized(files)) is not None:  # before a stat or checksum reads the file
        return Found(step, path, 0, oversized)
    for name, size in files.items():
        try:  # one look per file: a live job may prune the folder meanwhile (then the file is missing)
            if (linked := _linked(path, name)) is not None:  # before anything is read through it
                return Found(step, path, seq, linked)
            st = (path / name).stat()
        except OSError:
            return Found(step, path, seq, _absent(path / name, name))
        if not stat.S_ISREG(st.st_mode):  # a commit writes files: a folder or FIFO there is none of them
            return Found(step, path, seq, _absent(path / name, name))
        if st.st_size != size:
            return Found(step, path, seq, size_problem(name, st.st_size, size))
    return Found(step, path, seq, None, best, tuple(sorted(checksums.items())), tuple(sorted(files.items())))


def _inside(name: str) -> bool:
    """``name`` is a path a commit records: relative, in POSIX form, each part a plain name (no
    ``..``, ``.`` or empty part), so it names a file inside the checkpoint folder. A record
    listing ``../../data.bin`` or ``/srv/big.bin`` (by hand, a forgery) would have any file on
    the machine stat'ed and read whole for its checksum."""
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def _linked(path: Path, name: str) -> str | None:
    """Why the file ``name`` of checkpoint folder ``path`` is not read: it, or a folder of its path
    inside the checkpoint (``model`` of ``model/shard-1.safetensors``), is a symbolic link, else
    ``None``. A commit writes files and folders, never a link (:func:`~deepseek.training.checkpoint_dirs.commit_checkpoint`
    refuses one): a link put there after it (by hand, a copy that kept links, a forgery) had the
    file it points to, anywhere on the machine, checked, hashed and loaded as the checkpoint's. An
    ``OSError`` (a part gone meanwhile) is the caller's to report."""
    parts = name.split("/")
    for depth in range(1, len(parts) + 1):
        part = path.joinpath(*parts[:depth])
        if stat.S_ISLNK(part.lstat().st_mode) and part.exists():  # a broken one: _absent names it
            what = "file" if depth == len(parts) else "folder"
            shown = "/".join(parts[:depth])
            return (f"{shown} is a symbolic link to {os.readlink(part)}, not the {what} its commit wrote; replace the "
                    f"link with a copy of the {what} it points to")
    return None


def _oversized(files: dict[str, int]) -> str | None:
    """Which file ``files`` (a record's sizes) lists larger than a reader of it takes whole
    (:data:`~deepseek.parsing.MAX_FILE_BYTES`: ``trainer.json``, ``sharded.json``), or ``None``. No
    commit writes such a record (the reader refuses the file): a record giving a 2 GiB
    ``trainer.json`` whose file has that size (a sparse one, a copy gone wrong, a forgery) had
    every byte of it read for its checksum before its reader refused it."""
    # imported here: checkpoint_sharded imports checkpoint_dirs, which imports this module
    from deepseek.training.checkpoint_sharded import SHARDED_META

    for name in (TRAINER_FILE, SHARDED_META):
        if files.get(name, 0) > MAX_FILE_BYTES:
            return (f"{COMMIT_FILE} gives {name} {files[name]:,} bytes, more than the {MAX_FILE_BYTES:,} such a "
                    "file has: no record a commit wrote")
    return None


def _unrecorded_problem(path: Path) -> str | None:
    """Why ``path``, a folder without a commit record, is not a complete checkpoint of a version
    from before commit records, or ``None``. Those versions renamed the written folder into place
    whole, and lookups took one with its ``trainer.json``; one without its model weights
    (``model.safetensors`` or ``model/`` shards) is not loadable either."""
    # imported here: checkpoint_sharded imports checkpoint_dirs, which imports this module
    from deepseek.training.checkpoint_sharded import layout_of

    if not (path / TRAINER_FILE).is_file():
        return _absent(path / TRAINER_FILE, TRAINER_FILE)
    try:
        layout_of(path)
    except CheckpointError:
        return "no model weights: neither model.safetensors nor model/ shards"
    return None


def _absent(path: Path, name: str) -> str:
    """Why the checkpoint file ``path`` (``name`` in its folder) is not there as a regular file:
    ``"trainer.json missing"``, or what is in its place (``"trainer.json is a folder"``, ``... is
    not a regular file (a FIFO, device or socket)``, ``... is a symbolic link to X, which does not
    exist``)."""
    from deepseek.paths import not_a_file

    what = not_a_file(path)
    return f"{name} {what}" if what is not None else f"{name} missing"
