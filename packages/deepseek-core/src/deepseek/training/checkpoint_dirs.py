"""Checkpoint folders: temp dir + atomic rename, the ``latest`` pointer, keep-last-N, lookup.

Layout of a run: ``<run>/checkpoints/step-N/`` (complete checkpoints), ``step-N.tmp-XXXX``
(being written; ignored and cleaned up after a crash) and ``latest`` (name of the newest).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from deepseek.errors import CheckpointError

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_FILE = "trainer.json"
BEST_FILE = "best"
"""Pointer file naming the best checkpoint (``checkpoint.keep_best``), beside ``latest``."""
LATEST_FILE = "latest"
_STEP_RE = re.compile(r"^step-(\d+)$")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temp file in the same folder, fsync and rename."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def step_dir_name(step: int) -> str:
    """``step-<N>``."""
    return f"step-{step}"


def new_temp_dir(root: str | os.PathLike[str], step: int) -> Path:
    """A fresh ``<root>/step-N.tmp-XXXX`` folder to write a checkpoint into."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{step_dir_name(step)}.tmp-", dir=base))


def _fsync_tree(directory: Path) -> None:
    for file in directory.rglob("*"):
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_checkpoint(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Rename a fully written temp folder to ``final`` and point ``latest`` at it."""
    tmp_p, final_p = Path(tmp), Path(final)
    _fsync_tree(tmp_p)
    old = None
    if final_p.exists():  # re-saving the same step: move the old one aside first
        old = Path(tempfile.mkdtemp(prefix=f"{final_p.name}.old-", dir=final_p.parent))
        os.replace(final_p, old / final_p.name)
    os.replace(tmp_p, final_p)
    _fsync_dir(final_p.parent)
    atomic_write_text(final_p.parent / LATEST_FILE, final_p.name + "\n")
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final_p


def list_checkpoints(root: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints ``(step, path)`` under ``root``, oldest first (temp dirs ignored)."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = []
    for child in base.iterdir():
        m = _STEP_RE.match(child.name)
        if m and child.is_dir() and (child / TRAINER_FILE).exists():
            found.append((int(m.group(1)), child))
    return sorted(found)


def mark_best(root: str | os.PathLike[str], checkpoint: str | os.PathLike[str]) -> None:
    """Name ``checkpoint`` the best one in ``root`` (the ``best`` pointer file, atomically)."""
    atomic_write_text(Path(root) / BEST_FILE, Path(checkpoint).name + "\n")


def prune_checkpoints(root: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (never the ``latest`` or ``best`` one)."""
    base = Path(root)
    kept = {p.name for p in (_read_pointer(base, LATEST_FILE), _read_pointer(base, BEST_FILE)) if p is not None}
    ckpts = list_checkpoints(base)
    removed = []
    for _, path in ckpts[: max(len(ckpts) - keep_last, 0)]:
        if path.name in kept:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def remove_stale(root: str | os.PathLike[str]) -> list[Path]:
    """Delete temp folders left by a crash in the middle of a save."""
    base = Path(root)
    if not base.is_dir():
        return []
    stale = [c for c in base.iterdir() if c.is_dir() and (".tmp-" in c.name or ".old-" in c.name)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _read_latest(root: Path) -> Path | None:
    return _read_pointer(root, LATEST_FILE)


def _read_pointer(root: Path, name: str) -> Path | None:
    """The checkpoint a pointer file (``latest``, ``best``) in ``root`` names, when complete."""
    pointer = root / name
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    candidate = root / name
    return candidate if _STEP_RE.match(name) and (candidate / TRAINER_FILE).exists() else None


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder that ``path`` refers to: a checkpoint folder itself, a run folder
    (its ``checkpoints/latest``), or a ``checkpoints`` folder."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(
            f"{p}: no such checkpoint or run folder; pass a run folder (runs/<name>) or a "
            "checkpoint folder (runs/<name>/checkpoints/step-N)"
        )
    if p.is_file():
        named = _read_pointer(p.parent, p.name) if p.name in (LATEST_FILE, BEST_FILE) else None
        if named is not None:
            return named
        raise CheckpointError(f"{p}: is a file; pass the checkpoint folder that contains it")
    if any((p / f).exists() for f in (TRAINER_FILE, MODEL_FILE, OPTIMIZER_FILE)):
        return p
    root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    latest = _read_latest(root)
    if latest is not None:
        return latest
    ckpts = list_checkpoints(root)
    if ckpts:
        return ckpts[-1][1]
    raise CheckpointError(
        f"{p}: contains no complete checkpoint (no checkpoints/step-N with {TRAINER_FILE}); "
        "train longer than checkpoint.interval steps or pass a checkpoint folder"
    )


