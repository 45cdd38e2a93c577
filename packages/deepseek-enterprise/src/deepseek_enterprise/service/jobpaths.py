"""A job's arguments, config and files stay inside its tenant's folder.

A job runs in ``<root>/tenants/<tenant>/jobs/<id>/`` (its working directory); paths it names are
read relative to that. Every string that could be a path is checked, wherever it sits: each
command-line argument (``--opt=value`` and ``--set KEY=VALUE`` values too) and every string of the
config TOML, at any depth. A string is path-like when it holds ``/`` or ``\\``, starts with
``~``, or is ``.``/``..``. Refused, with one line naming the value:

- a ``..`` component (anywhere, even one that would stay inside);
- an absolute path outside ``<root>/tenants/<tenant>/`` (inside it is fine: another job's run
  folder of the same tenant, or its ``data/`` folder);
- ``~`` (another user's home);
- a URL (``scheme://...``): jobs read and write files, they are given no servers;
- any of these in a part of a value: after ``=`` (``key=/path``), after ``scheme:``
  (``journal:/path``), after a short option's letter (``-o/path``);
- a symbolic link at any existing component below the tenant folder (checked at submit and again
  just before the job starts);
- in the config, a ``--set`` value or a job file (not a plain argument, which its command's own
  parse checks: :func:`check_path_names`), a name in the path longer than a file system takes
  (:func:`deepseek.paths.name_too_long`, 255 bytes; the rule :func:`check_path_names` holds
  path options to): the job could neither make nor read it.

What this does not do: it checks what the config *names*; it is not a sandbox. Code run by the
job (the installed deepseek editions and plugins) runs as the server's user; see docs/service.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import tomllib

from deepseek.errors import clipped_words
from deepseek.parsing import loads_toml
from deepseek.paths import name_too_long

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # not $: a trailing line break got past it
MAX_FILE_BYTES = 1 << 20
"""Largest config or extra file a job may carry."""


class PathRefused(ValueError):
    """A job names a path outside its tenant's folder (one-line message)."""


def tenant_dir(root: Path, tenant: str) -> Path:
    return root / "tenants" / tenant


def job_dir(root: Path, tenant: str, job_id: int) -> Path:
    return tenant_dir(root, tenant) / "jobs" / str(job_id)


def check_file_name(name: str) -> None:
    """An extra file's name: one plain file name (no folders), not ``config.toml``, ``job.log``,
    ``exit_code`` or ``tmp`` (the job's temporary folder, made before the files are written), and
    no Python code (``.py``, ``.pth``, ``.so``: jobs run installed code)."""
    if not _FILE_NAME.match(name) or name in ("config.toml", "job.log", "exit_code", "tmp") \
            or name.endswith((".py", ".pyc", ".pth", ".so")):
        raise PathRefused(f"files: {name!r} is not allowed: use a plain file name "
                          "(letters, digits, '.', '_', '-'; not .py/.pth/.so), not config.toml, job.log, exit_code or tmp")


AT_START = ("config", "file", "absent", "unknown")
"""What :func:`at_start` (and an executor's ``Executor.at_start``) may answer."""


def at_start(path: PurePath, has_config: bool, files: Mapping[str, str]) -> str:
    """What ``path``, as a job names it, is in its workspace when the job starts, in the layout
    ``LocalExecutor.prepare`` makes (the Slurm executor's too; ``Executor.at_start``'s default):
    the job's ``config.toml``, its files, ``tmp/``, then ``job.log``, nothing else. One of
    :data:`AT_START`: ``"config"`` (its config.toml), ``"file"`` (one of its files), ``"absent"``
    (nothing is there), or ``"unknown"``: an absolute path (in the tenant's folder, whose files may
    change before the job starts), the workspace itself, or a path into or through what is there
    (``tmp/x``, ``job.log``)."""
    if path.is_absolute() or not path.parts:
        return "unknown"
    first = path.parts[0]
    if first not in {*files, *(("config.toml",) if has_config else ()), "tmp", "job.log"}:
        return "absent"
    if len(path.parts) > 1 or first in ("tmp", "job.log"):
        return "unknown"
    return "config" if first == "config.toml" else "file"


def as_read(text: str) -> str:
    """A job file's text as the job reads it back: the executor writes it as given and Python's
    ``read_text`` reads line ends as ``\\n`` (``\\r\\n`` and a lone ``\\r`` too)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parsed_config(config_text: str) -> dict[str, Any]:
    """A job's config TOML as the job reads its ``config.toml`` (``read_toml``: a leading byte
    order mark read past); :class:`PathRefused` with the line the job would print when it is not TOML."""
    from deepseek.config.toml_files import toml_from_text
    from deepseek.errors import ConfigError

    try:
        return toml_from_text(as_read(config_text), Path("config.toml"))
    except ConfigError as exc:
        raise PathRefused(str(exc)) from None


def config_strings(config_text: str) -> Iterator[tuple[str, str]]:
    """``(field path, value)`` of every string in a config TOML (after parsing)."""
    yield from _strings(parsed_config(config_text), "")


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def arg_strings(args: list[str]) -> Iterator[tuple[str, str, bool]]:
    """``(where, value, in_config)`` of every argument value that could name a path;
    ``in_config``: a ``--set KEY=VALUE`` value, which goes into the job's config."""
    for i, arg in enumerate(args):
        where = f"args[{i}]"
        if arg.startswith("--") and "=" in arg:
            arg = arg.split("=", 1)[1]
        if "=" in arg and i > 0 and args[i - 1] == "--set":
            key, value = arg.split("=", 1)
            where = f"--set {key}"
            try:  # the value is a TOML literal ("x", [..]) or a bare string
                parsed = loads_toml(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                parsed = value
            for at, text in (*_strings(parsed, where), (where, value)):
                yield at, text, True
            continue
        yield where, arg, False


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def candidates(value: str) -> list[str]:
    """``value`` and the parts of it a command could read as a path: after ``=``
    (``key=/path``), after a ``scheme:`` prefix (``journal:/path``) and after a short option's
    letter (``-o/path``)."""
    out = [value]
    if "=" in value:
        out.append(value.split("=", 1)[1])
    m = _SCHEME.match(value)
    if m:
        out.append(value[m.end():])
    if len(value) > 2 and value[0] == "-" and value[1] != "-":
        out.append(value[2:])
    return out


def check_value(value: str, where: str, tenant_root: Path, cwd: Path, *, names: bool = True) -> None:
    """Refuse ``value`` at ``where`` if it, or a part of it (:func:`candidates`), names a path
    outside ``tenant_root`` (module docstring); with ``names``, one holding a name longer than a
    file system takes too (off for a command-line argument: the command's parse checks those of
    its path options, :func:`check_path_names`, with its own wording)."""
    for part in candidates(value):
        _check_one(part, value, where, tenant_root, cwd, names)


def _check_one(part: str, value: str, where: str, tenant_root: Path, cwd: Path, names: bool) -> None:
    if "\x00" in value:
        raise PathRefused(f"{where}: a NUL character is not allowed")
    if _URL.match(value):
        raise PathRefused(f"{where}: {value!r}: URLs are not allowed in a job (jobs use files in their workspace)")
    if not ("/" in part or "\\" in part or part.startswith("~") or part in (".", "..")):
        return
    if "\\" in part:
        raise PathRefused(f"{where}: {value!r}: use '/' in paths")
    if part.startswith("~"):
        raise PathRefused(f"{where}: {value!r}: '~' is not allowed; name a path inside the job's workspace")
    pure = PurePosixPath(part)
    if ".." in pure.parts:
        raise PathRefused(f"{where}: {value!r}: '..' is not allowed; name a path inside the job's workspace")
    if names and (line := name_too_long(pure, where)):
        raise PathRefused(clipped_words(line))
    full = Path(os.path.normpath(pure if pure.is_absolute() else cwd / pure))
    root = Path(os.path.normpath(tenant_root))
    if full != root and root not in full.parents:
        raise PathRefused(f"{where}: {value!r} is outside the tenant's folder {root}")
    check_no_symlink(full, root, where, value)


def check_no_symlink(full: Path, root: Path, where: str, value: str) -> None:
    """Refuse when any existing component of ``full`` below ``root`` is a symbolic link (os.path's
    answers: a name no file system takes, over 255 bytes, is neither a link nor there)."""
    current = root
    for part in full.relative_to(root).parts:
        current = current / part
        if os.path.islink(current):
            raise PathRefused(f"{where}: {value!r}: {current} is a symbolic link; links are not followed in jobs")
        if not os.path.exists(current):
            return


def check_path_names(ctx: Any) -> None:
    """Refuse a path the job's command takes (each value of its options and arguments of deepseek's
    path type as the command parsed them: ``--run-dir``, ``--out``, ``--json``) holding a name
    longer than a file system takes (:func:`deepseek.paths.name_too_long`: 255 bytes), which the
    job could neither make nor read; a bare name has no ``/`` for the checks above to look at.
    ``ctx``: the click context of the command (``None``: nothing parsed)."""
    from deepseek.cli.params import PathText

    for param in ctx.command.params if ctx is not None else ():
        value = ctx.params.get(param.name)
        for path in value if isinstance(value, (list, tuple)) else (value,):
            where = max(param.opts, key=len) if param.param_type_name == "option" else param.human_readable_name
            if isinstance(param.type, PathText) and isinstance(path, (str, PurePath)) and (line := name_too_long(path, where)):
                raise PathRefused(clipped_words(line))  # as the command's error clips it


def check_job(args: list[str], config: str | None, files: dict[str, str], tenant_root: Path, cwd: Path) -> None:
    """Every check above on one job (raises :class:`PathRefused`)."""
    for name, body in files.items():
        check_file_name(name)
        if len(body.encode()) > MAX_FILE_BYTES:
            raise PathRefused(f"files: {name!r} is larger than {MAX_FILE_BYTES} bytes")
    if config is not None:
        if len(config.encode()) > MAX_FILE_BYTES:
            raise PathRefused(f"config: larger than {MAX_FILE_BYTES} bytes")
        for where, value in config_strings(config):
            check_value(value, f"config {where}", tenant_root, cwd)
    for where, value, in_config in arg_strings(args):
        check_value(value, where, tenant_root, cwd, names=in_config)
    for name, body in files.items():  # any name: `train cfg.txt` reads a config whatever it is called
        # one that is neither TOML nor JSON names no path (the command that reads it refuses it)
        for where, value in _strings(_structured(body), ""):
            check_value(value, f"files {name} {where}", tenant_root, cwd)


def names_absolute_path(args: list[str], config: str | None, files: Mapping[str, str],
                        unread: Collection[str] = ()) -> bool:
    """Whether a job (:func:`check_job` passed) names an absolute path, in its tenant's folder,
    anywhere :func:`check_job` looks but in the values of the options ``unread`` (``--out DIR``,
    ``--out=DIR``: options whose paths the caller never reads): what is there may change before
    the job starts."""
    read: list[str] = []
    for i, arg in enumerate(args):
        if arg not in unread and arg.partition("=")[0] not in unread and (i == 0 or args[i - 1] not in unread):
            read.append(arg)
    values = [value for _, value, _ in arg_strings(read)]
    values += [value for _, value in config_strings(config)] if config is not None else []
    for body in files.values():
        values += [value for _, value in _strings(_structured(body), "")]
    return any(PurePosixPath(part).is_absolute() for value in values for part in candidates(value))


def _structured(body: str) -> Any:
    """A job file's content as deepseek would read it: TOML (a config, a search space; a leading
    byte order mark read past, as ``read_toml`` does) or JSON (a DeepSpeed config), else
    ``None`` (no command reads it as either, so it names no path)."""
    from deepseek.parsing import loads_json

    text = body.removeprefix("\ufeff")
    try:
        return loads_toml(text)
    except tomllib.TOMLDecodeError:
        pass
    try:
        return loads_json(text)
    except ValueError:
        return None
