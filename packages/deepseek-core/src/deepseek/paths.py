"""Where deepseek writes: the one check of an output path, made before anything is written, and
the one way its missing folders are created.

The rule, the same for every command and for the trainer's run folder: an output's missing
folders are created (``mkdir -p``) and the command's report names them; an output is refused
with one line when a file stands where a folder is needed (the path itself, or one of its
parents) or a folder where a file is needed, or when nothing can be created in the nearest
existing folder (tried: an empty file is made there and removed). Nothing here imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from deepseek.errors import UsageError, shown

if TYPE_CHECKING:
    from deepseek.plugins.host import PluginHost
    from deepseek.run_files import OwnRunFile

NAME_MAX = 255
"""The longest file or folder name, in bytes, the usual file systems take (ext4, XFS, tmpfs)."""


def name_too_long(path: str | os.PathLike[str], where: str) -> str | None:
    """The line refusing ``path`` (given as ``where``) when a file or folder name in it is longer
    than :data:`NAME_MAX` bytes, which no file system here makes or finds, else ``None``: the one
    wording, for an output (:func:`check_output`) and for a path a service job takes
    (:func:`deepseek_enterprise.service.jobpaths.check_path_names`)."""
    target = Path(path)
    too_long = next((part for part in target.parts if len(os.fsencode(part)) > NAME_MAX), None)
    if too_long is None:
        return None
    return (f"{where}: {shown(target)} cannot be used (File name too long: '{shown(too_long[:40])}...' is "
            f"{len(os.fsencode(too_long))} bytes, a name may have {NAME_MAX}); give another path")


def _why_the_runs(run: Path, target: Path) -> str:
    """Why ``target``, a place of ``run``'s own files (:func:`deepseek.run_files.run_owning`), is
    the run's: a name the run writes in its folder, its checkpoints, or a folder declared whole
    (a dataset's or model's ``written_files``, a command's ``run_files``, a plugin's hooks')."""
    from deepseek.run_files import CHECKPOINTS

    where = target.resolve().relative_to(run.resolve()).parts if target.resolve().is_relative_to(run.resolve()) else ()
    if not where or where[0] == CHECKPOINTS:
        return "its training writes them, and deletes a pruned checkpoint's folder"
    if len(where) == 1:
        return "its training or the command that made it writes it there"
    return (f"everything in its folder {where[0]}/ is the run's, declared by its dataset, model, a command "
            "or a plugin's hooks")


def check_output(path: str | os.PathLike[str], *, where: str, folder: bool, file_name: str = "NAME",
                 reads: Sequence[tuple[str, str | os.PathLike[str] | None]] = (),
                 host: PluginHost | None = None, not_a_run: bool = False, replaces: OwnRunFile | None = None) -> list[Path]:
    """Check that ``path`` can be written as a folder (``folder=True``) or a file; return the
    folders that do not exist yet and must be created for it, outermost first (a folder output
    includes itself). ``where`` names the option or config key in the message; ``file_name`` is
    the example a file output's message suggests when ``path`` is a folder. ``reads`` are the
    files the command reads, by option (``("--config", path)``; None: not given): a file output
    that is one of them (the same file, through any link) is refused, as writing it would replace
    what the command reads. An output is refused in the place of a run's own file
    (:func:`deepseek.run_files.run_owning`: a folder output inside a run's ``checkpoints/`` too),
    whose dataset, model and commands are looked up on ``host``: the command's plugin host,
    required for a file output (a folder output without one is checked against core's run files).
    ``not_a_run``: the folder output is one the command fills with files of its own (a study's
    folder), refused when it is an existing run folder (:func:`deepseek.run_files.is_run_folder`).
    ``replaces``: the run file the command declares and writes again as this output
    (``deepseek export``'s ``model.pt2``), as a :class:`deepseek.run_files.OwnRunFile` (the
    command's registration on ``host`` and the name; anything else, a bare name too, is one
    :class:`~deepseek.errors.PluginError`): its own, not refused unless core's or the run's
    dataset or model declares it too (:func:`deepseek.run_files.plugins_run_files`)."""
    if not folder and host is None:
        raise TypeError(f"check_output({where}): a file output needs host=, the plugin host whose datasets and "
                        "models declare the run files it may not replace")
    from deepseek.run_files import is_run_folder, replaced_name, run_owning

    replaced_name(replaces, host)  # a command's own declared file, or refused before anything else
    target = Path(path)
    too_long = name_too_long(target, where)
    if too_long is not None:  # found before a missing parent is created, not after
        raise UsageError(too_long)
    try:
        target.resolve()  # a loop of symbolic links raises here
        exists = target.exists()
        if exists and folder and not target.is_dir():
            raise UsageError(f"{where}: {target} is a file, not a folder; give a folder path")
        if exists and not folder and target.is_dir():
            raise UsageError(
                f"{where}: {target} is a folder; give a file path, e.g. {target / file_name}"
            )
        if exists and not folder and not target.is_file():  # a FIFO or a device: never replaced
            raise UsageError(f"{where}: {target} is not a regular file (a device, FIFO or socket); give a file path")
        run = run_owning(target, host, replaces)
        if run is not None and folder:  # what it writes inside would be the run's: replaced, pruned with a checkpoint
            raise UsageError(f"{where}: {target} is a place of the run folder {run}'s own files "
                             f"({_why_the_runs(run, target)}); give a folder outside the run, e.g. "
                             f"{unused_name(run.parent, f'{run.name}-{target.name}')}")
        if not_a_run and exists and is_run_folder(target):  # its files would mix with the run's
            raise UsageError(f"{where}: {target} is a run folder (its config.toml and checkpoints/ are a run's); give "
                             f"a folder of its own, e.g. {unused_name(target.parent, f'{target.name}-{file_name}')}")
        if run is not None and exists:  # a report written over a run's config or checkpoint would lose the run
            raise UsageError(f"{where}: {target} is a file of the run folder {run} (written by its training or the "
                             f"command that made it); give another path, e.g. {unused_name(run, file_name)}")
        if run is not None and not folder:  # below one of the run's files: that file is the problem
            current = next(p for p in (target.parent, *target.parent.parents) if p.exists())
            if not current.is_dir():
                raise UsageError(_below_a_file(where, current, target))
        if run is not None:  # the run writes it later, or deletes it with a pruned checkpoint
            raise UsageError(f"{where}: {target} is a place of the run folder {run}'s own files "
                             f"({_why_the_runs(run, target)}); give another path, e.g. {unused_name(run, file_name)}")
        read_by = next((option for option, source in reads if exists and not folder and _same_file(target, source)),
                       None)
        if read_by is not None:  # 'bench latency --config c.toml --json c.toml' replaced the config with JSON
            example = target.parent / file_name
            if example.name == target.name:
                example = target.with_name(f"{target.stem}-new{target.suffix}")
            raise UsageError(f"{where}: {target} is the file {read_by} gives, which this command reads (writing "
                             f"there would replace it); give another path, e.g. {example}")
        missing = []
        current = target if folder else target.parent
        while not current.exists():
            if current.name == "..":  # creating it would first create the folder it leaves, left empty after
                raise UsageError(f"{where}: {target} goes through {current.parent}, which does not exist; give the "
                                 f"path without '..', e.g. {os.path.normpath(target)}")
            missing.append(current)
            current = current.parent
    except (OSError, RuntimeError) as exc:  # a name too long, a loop of links: the path is unusable
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"{where}: {target} cannot be used ({reason}); give another path") from exc
    if not current.is_dir():
        raise UsageError(_below_a_file(where, current, target))
    problem = unwritable(current)
    if problem is not None:
        raise UsageError(f"{where}: {current} is not writable ({problem}); give a path in a folder you can write")
    return missing[::-1]


def _below_a_file(where: str, current: Path, target: Path) -> str:
    return f"{where}: {current} is a file, so {target} cannot be created below it; give a path whose parents are folders"


def _same_file(target: Path, source: str | os.PathLike[str] | None) -> bool:
    """Whether ``source`` (None: not given) names the existing file ``target``."""
    try:
        return source is not None and os.path.samefile(target, source)
    except OSError:  # missing or unreadable: the command that reads it says so
        return False


def unused_name(folder: Path, file_name: str) -> Path:
    """``folder / file_name``, or when that exists, the first of ``stem-2.suffix``, ``stem-3.suffix``,
    ... that does not: a path a refusal can suggest without naming a file already there."""
    candidate, n = folder / file_name, 2
    while candidate.exists() or candidate.is_symlink():
        candidate, n = folder / f"{Path(file_name).stem}-{n}{Path(file_name).suffix}", n + 1
    return candidate


def unwritable(folder: Path) -> str | None:
    """Why nothing can be created in ``folder``, or ``None``. Permission bits are not the whole
    answer (``/proc``, a read-only or full file system, root's ``access`` saying yes to all), so
    an empty file is made there and removed at once."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".deepseek-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return None


def broken_link(path: str | os.PathLike[str]) -> str | None:
    """For a ``path`` that does not exist (``Path.exists()`` is false): why, when a symbolic link
    is the cause (``"is a loop of symbolic links"``, ``"is a symbolic link to X, which does not
    exist"``); ``None`` when the path (or a folder on it) is simply missing."""
    p = Path(path)
    try:
        p.resolve(strict=True)
    except RuntimeError:  # Python 3.11 reports a loop this way
        return "is a loop of symbolic links"
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP:
            return "is a loop of symbolic links"
        if p.is_symlink():
            return f"is a symbolic link to {os.readlink(p)}, which does not exist"
        return None
    return None


def not_a_file(path: str | os.PathLike[str]) -> str | None:
    """Why ``path``, where a regular file belongs, is none: ``"is a folder"``, ``"is not a regular
    file (a FIFO, device or socket)"`` or a broken link's :func:`broken_link`; ``None`` when it is a
    regular file (a link to one too) or nothing is there."""
    p = Path(path)
    if p.is_file():
        return None
    if p.is_dir():
        return "is a folder"
    if p.exists():
        return "is not a regular file (a FIFO, device or socket)"
    return broken_link(p)


def write_target(path: str | os.PathLike[str]) -> Path:
    """Where a file written through a temp file and a rename must go for ``path``: the file a
    symbolic link points to (renaming onto the link would replace the link), else ``path``. One
    that is there and neither a regular file nor a folder (a device such as ``/dev/zero``, a FIFO,
    a socket: the rename would replace it) is a UsageError."""
    p = Path(path)
    target = Path(os.path.realpath(p)) if p.is_symlink() else p
    if target.exists() and not (target.is_file() or target.is_dir()):
        through = f" (a link to {target})" if target != p else ""
        raise UsageError(f"{p}{through}: is not a regular file (a device, FIFO or socket), which writing {p.name} "
                         "would replace; move it away")
    return target


def make_folders(folders: Sequence[Path], *, where: str) -> None:
    """Create ``folders`` (as returned by :func:`check_output`); a failure is one UsageError."""
    for folder in folders:
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"{where}: cannot create the folder {folder} ({exc.strerror}); give a path in a "
                "folder you can write"
            ) from exc


@contextmanager
def folders_made(folders: Sequence[Path], *, where: str) -> Iterator[None]:
    """:func:`make_folders` for a block that writes into them: when the block raises (a refused
    export), the folders it made are removed again, deepest first, so nothing is left behind."""
    make_folders(folders, where=where)
    try:
        yield
    except BaseException:
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            try:
                folder.rmdir()  # only if still empty: a file someone else put there stays
            except OSError:
                pass
        raise


def prepare_output(path: str | os.PathLike[str], *, where: str, folder: bool, file_name: str = "NAME",
                   host: PluginHost | None = None) -> list[Path]:
    """:func:`check_output`, then the missing folders created; returns those folders (for
    :func:`created_note`). The folder itself is created too when ``folder`` is true."""
    missing = check_output(path, where=where, folder=folder, file_name=file_name, host=host)
    make_folders(missing, where=where)
    return missing


def created_note(folders: Sequence[Path]) -> str:
    """`` (created folder a/b)`` for a command's report, or ``""`` when none was created."""
    if not folders:
        return ""
    plural = "s" if len(folders) > 1 else ""
    return f" (created folder{plural} {', '.join(shown(f) for f in folders)})"


def umask() -> int:
    """This process's umask: read from ``/proc/self/status`` where the kernel says it (nothing
    changes), else set to 0 and put back at once."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def usual_mode(path: str | os.PathLike[str] | int, *, folder: bool = False) -> None:
    """Give ``path`` (or an open file descriptor) the mode a plain ``open``/``mkdir`` would under
    the umask (0644/0755 under the usual 022): ``tempfile.mkstemp`` makes 0600 and ``mkdtemp``
    0700, which a file or folder written through them and renamed into place would keep."""
    mode = (0o777 if folder else 0o666) & ~umask()
    if isinstance(path, int):
        os.fchmod(path, mode)
    else:
        os.chmod(path, mode)


_FULL = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or a quota is full: an
    ``OSError`` with ``ENOSPC`` / ``EDQUOT``, or a writer's own error carrying the system's text
    (safetensors raises ``SafetensorError: ... No space left on device (os error 28)``)."""
    import errno

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(seen) for text in _FULL):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


PARTIAL_TAG = ".partial-"
"""What marks an output being written beside its final name: ``.<name>.partial-<pid><suffix>``."""


def partial_path(out: Path, suffix: str = "") -> Path:
    """Where this process writes output ``out`` before renaming it onto ``out`` whole (a file or a
    folder): beside it, hidden, named by this process's id (and ``suffix``: an extension a writer
    goes by), so that a later write finds what a killed one left (:func:`remove_dead_partials`)."""
    return out.parent / f".{out.name}{PARTIAL_TAG}{os.getpid()}{suffix}"


def remove_dead_partials(out: Path) -> list[Path]:
    """Delete what writers of ``out`` killed mid-write left beside it (:func:`partial_path` of a
    process no longer alive; a live one's is left to it); returns them."""
    import shutil

    prefix = f".{out.name}{PARTIAL_TAG}"
    removed = []
    try:
        found = [p for p in out.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for old in found:
        pid = "".join(c for c in old.name.removeprefix(prefix).split(".")[0] if c.isdigit())
        if not pid or _alive(int(pid)) or old.is_symlink():
            continue
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
        removed.append(old)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
