"""What each folder under a run's ``checkpoints`` is, by its name and, for a moved-aside copy, by
what it holds: the one rule every listing, lookup, pointer and cleanup of
:mod:`deepseek.training.checkpoint_dirs` and :mod:`deepseek.training.checkpoint_lookup` goes by.

- ``step-N``: step N's checkpoint (complete or not: :func:`~deepseek.training.checkpoint_record.inspect_checkpoint`).
- ``step-N.replaced-XXXX``: a committed ``step-N`` moved aside by a save of the same step; step N's
  checkpoint only while no ``step-N`` is beside it and it is complete, recording step N
  (:func:`set_aside`), else a leftover to delete.
- ``step-N.tmp-XXXX``, ``step-N.trash-XXXX``, ``step-N.foreign-XXXX``, ``.old-`` (earlier versions):
  never a checkpoint, whatever they hold (the ``step-N`` a failed prune left in its ``.trash-``
  folder too).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from deepseek.parsing import loads_json, read_text
from deepseek.training.checkpoint_record import TRAINER_FILE, Found, inspect_checkpoint

REPLACED_TAG = ".replaced-"
FOREIGN_TAG = ".foreign-"  # step-N.foreign-XXXX/step-N: another run's checkpoint a save moved aside
_LEFTOVER_DIR_TAGS = (".tmp-", ".trash-", REPLACED_TAG, ".old-")  # ``.old-``: written by earlier versions
# a moved-aside copy only under the name mkdtemp gave it; the other tags whatever follows them
# (the whole name: "step-4\n" is not step-4; ASCII digits: "step-\u0664" is not either)
_NAME_RE = re.compile(r"step-([0-9]+)(?:(\.replaced-)[A-Za-z0-9_]+|(\.(?:tmp|trash|foreign|old)-).*)?", re.DOTALL)


def step_dir_name(step: int) -> str:
    """``step-<N>``."""
    return f"step-{step}"


def named_step(name: str) -> tuple[int, str] | None:
    """``(N, "")`` for ``step-N``; ``(N, tag)`` for a folder a save, prune or re-save made for step N
    (``.replaced-``, ``.tmp-``, ``.trash-``, ``.foreign-``, ``.old-``); ``None`` for any other name."""
    m = _NAME_RE.fullmatch(name)
    return (int(m.group(1)), m.group(2) or m.group(3) or "") if m else None


def checkpoint_step(name: str, tag: str = "") -> int | None:
    """N when ``name`` is ``step-N`` (``tag`` ``""``) or a moved-aside copy (``tag`` :data:`REPLACED_TAG`)."""
    named = named_step(name)
    return named[0] if named is not None and named[1] == tag else None


def leftover_dir_name(name: str) -> bool:
    """A folder so named under a run's ``checkpoints`` is a leftover of a save, prune or re-save."""
    return any(tag in name for tag in _LEFTOVER_DIR_TAGS)


def recorded_step(folder: Path) -> int | None:
    """The step ``folder``'s ``trainer.json`` records, or ``None`` (unreadable, missing, no step)."""
    try:
        recorded = loads_json(read_text(folder / TRAINER_FILE)).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return None if isinstance(recorded, bool) or not isinstance(recorded, int) or recorded < 0 else recorded


def moved_aside_copies(root: Path) -> Iterator[tuple[int, Path]]:
    """``(N, folder)`` of each ``step-N.replaced-XXXX`` folder under ``root`` (a real folder)."""
    for child in root.iterdir():
        step = checkpoint_step(child.name, REPLACED_TAG)
        if step is not None and not child.is_symlink() and child.is_dir():
            yield step, child


def moved_aside(root: Path) -> Iterator[tuple[int, Path]]:
    """The moved-aside folders (:func:`moved_aside_copies`) with no ``step-N`` beside them (nothing
    under that name, not even a link): a commit's two renames were cut between, by a kill, or are not
    both done yet. (A prune never deletes a ``step-N`` while a copy of it stays whole:
    :func:`~deepseek.training.checkpoint_dirs.discard`.)"""
    for step, child in moved_aside_copies(root):
        if not os.path.lexists(root / step_dir_name(step)):
            yield step, child


def set_aside(root: Path) -> list[Found]:
    """The moved-aside folders under ``root`` that are step N's checkpoint (:func:`moved_aside`,
    :func:`as_step`); the newest commit of a step when there are several."""
    kept: dict[int, Found] = {}
    for step, child in moved_aside(root):
        found = as_step(child, step)
        if found is not None and found.seq > (kept[step].seq if step in kept else 0):
            kept[step] = found
    return list(kept.values())


def as_step(copy: Path, step: int) -> Found | None:
    """Moved-aside folder ``copy`` as step ``step``'s checkpoint: checked as any checkpoint, complete
    by its commit record, its ``trainer.json`` recording ``step``; else ``None``."""
    found = inspect_checkpoint(copy, step) if copy.is_dir() and not copy.is_symlink() else None
    ok = found is not None and found.problem is None and found.seq > 0 and recorded_step(copy) == step
    return found if ok else None


def committed_path(directory: str | os.PathLike[str]) -> Path:
    """The name checkpoint folder ``directory`` has once
    :func:`~deepseek.training.checkpoint_dirs.remove_stale` has run: ``step-N`` for a moved-aside
    ``step-N.replaced-XXXX`` (step N's checkpoint, renamed back), else itself."""
    path = Path(directory)
    step = checkpoint_step(path.name, REPLACED_TAG)
    return path.parent / step_dir_name(step) if step is not None else path
