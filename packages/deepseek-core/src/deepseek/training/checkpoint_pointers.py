"""Repairing a run's pointer files (``checkpoints/latest``, ``checkpoints/best``) when a run starts:
a kill between a checkpoint's commit and its pointer update leaves them naming an older checkpoint,
or missing (:mod:`~deepseek.training.checkpoint_dirs` writes them at each commit)."""

from __future__ import annotations

import os
from pathlib import Path

from deepseek.parsing import read_text
from deepseek.training.checkpoint_dirs import BEST_FILE, LATEST_FILE, _scan, atomic_write_text


def pointer_updates(root: str | os.PathLike[str]) -> dict[str, str]:
    """The pointer files (``latest``, ``best``) under ``root`` that do not name what they should:
    ``latest`` the newest complete checkpoint, ``best`` the best one by its commit record; each
    mapped to that checkpoint's folder name. A kill between a commit and its pointer update leaves
    them naming an older one, or missing; the next commit replaces them, but a run whose kill came
    at its last checkpoint has no next commit. A pointer path that is not a regular file (a folder,
    a link) is left to the run folder's checks."""
    base = Path(root)
    found = [f for f in _scan(base) if f.problem is None] if base.is_dir() else []
    if not found:
        return {}
    wanted = {LATEST_FILE: found[-1].path.name}
    marked = [f for f in found if f.best]
    if marked:
        wanted[BEST_FILE] = marked[-1].path.name
    out = {}
    for name, target in wanted.items():
        path = base / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            continue
        try:
            current = read_text(path).strip()
        except (OSError, UnicodeDecodeError):
            current = None
        if current != target:
            out[name] = target
    return out


def update_pointers(root: str | os.PathLike[str]) -> list[Path]:
    """Rewrite the pointer files :func:`pointer_updates` finds out of date (through a temp file and
    a rename, as a commit writes them); returns them. Call it only while holding the run folder's
    lock."""
    base = Path(root)
    return [atomic_write_text(base / name, target + "\n") for name, target in pointer_updates(base).items()]
