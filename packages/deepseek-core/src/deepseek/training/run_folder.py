"""Which folder a run writes into.

``--run-dir`` when given (``run_dir=`` from Python: messages name it as the caller gave it,
:func:`deepseek.arguments.spelled`); when resuming a checkpoint of ``<run>/checkpoints``, that
run (the checkpoint folder resolved: ``.`` inside one, a link to one); else ``<logging.runs_dir>/<logging.name>``, or a fresh timestamped folder (``-2``, ``-3``,
... when the timestamp is taken). The choice is checked as an output folder (not a file, not
below one) and refused when the folder already holds a run that is not being resumed: a complete
checkpoint (a folder whose job ended before its first checkpoint, killed or preempted, is started
afresh, as a requeued job's same command asks; the trainer drops that job's metrics). Rank 0
decides and every rank gets its answer, so all ranks write into one folder.
:func:`copy_run_files` puts the files a dataset asks to keep (its tokenizer) into the folder.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from deepseek import durable
from deepseek.arguments import given, spelled
from deepseek.errors import CheckpointError, UsageError, shell_quoted, shown
from deepseek.paths import check_output, unwritable, usual_mode
from deepseek.run_files import EDITED_CONFIG, RUN_FILES, edited_config
from deepseek.training.checkpoint_dirs import list_checkpoints
from deepseek.training.checkpoint_lookup import resolve_checkpoint
from deepseek.training.run_lock import LOCK_FILE, is_held

if TYPE_CHECKING:
    from deepseek.config.schema import Config
    from deepseek.plugins.host import PluginHost
    from deepseek.training.strategy import Strategy


def pick_run_folder(config: Config, strategy: Strategy, *, run_dir: Path | None, resume_from: Path | None,
                    host: PluginHost, copies: tuple[str, ...] = ()) -> Path:
    """The run folder (absolute, the same on every rank); :class:`UsageError` when it cannot be.
    ``copies``: the names of the dataset's :meth:`~deepseek.data.dataset.Dataset.run_files`, the
    files the dataset and model declare (:func:`deepseek.run_files.written_by`) and those the
    lifecycle hooks of the plugins on ``host`` declare (:func:`deepseek.run_files.hooks_run_files`:
    a folder's name ends in ``/``), checked with :data:`deepseek.run_files.RUN_FILES`; ``host``
    (the run's) also checks the folder as an output (:func:`deepseek.paths.check_output`)."""
    if run_dir is not None:
        chosen = run_dir
    elif resume_from is not None and resume_from.parent.name == "checkpoints":
        chosen = resume_from.parent.parent
    elif resume_from is not None and resume_from.resolve().parent.name == "checkpoints":  # '.' inside one, a link
        chosen = resume_from.resolve().parent.parent
    else:
        root = Path(config.logging.runs_dir)
        name = config.logging.name or datetime.now().strftime("%Y%m%d-%H%M%S")
        chosen = root / name
        if strategy.is_global_zero and not config.logging.name:
            n = 2
            while chosen.exists():
                chosen, n = root / f"{name}-{n}", n + 1
    if run_dir is None and resume_from is not None and chosen.is_dir():
        problem = unwritable(chosen)
        if problem is not None:  # the run's own folder, not logging.runs_dir, is what cannot be written
            raise UsageError(f"{given('--resume', 'resume', chosen)}: the run folder is not writable ({problem}), "
                             "and a resumed run writes its checkpoints and metrics there; make it writable, or "
                             f"continue in a new folder with {spelled('--run-dir NEW', 'run_dir=NEW')}")
    check_output(chosen, where=spelled("--run-dir", "run_dir") if run_dir is not None else "logging.runs_dir",
                 folder=True, host=host)
    chosen = Path(strategy.broadcast_object(str(chosen.resolve())))
    # A folder holds a run when it holds a complete checkpoint to continue from. One whose job
    # ended before its first checkpoint (killed, preempted) has nothing to continue: a fresh start
    # takes it over, and the trainer drops that job's metrics once it holds the folder's lock.
    if resume_from is None and list_checkpoints(chosen / "checkpoints"):
        try:
            resolve_checkpoint(chosen)
        except CheckpointError as exc:  # every checkpoint damaged: --resume would refuse too
            raise UsageError(f"run folder {chosen} already holds a run, and it cannot be continued ({exc}); "
                             f"pick another {spelled('--run-dir / logging.name', 'run_dir= / logging.name')} for a fresh run") from None
        raise UsageError(
            f"run folder {chosen} already holds a run; continue it with {given('--resume', 'resume', chosen)}, or "
            f"pick another {spelled('--run-dir / logging.name', 'run_dir= / logging.name')}"
        )
    metrics = chosen / "metrics.jsonl"
    if resume_from is None:
        foreign = not_written_by_a_run(chosen)
        if foreign is not None:
            raise UsageError(f"{chosen / foreign}: the run writes its {foreign} there, and this file is not one a "
                             f"run wrote (your own?); move it out of the folder, or pick another "
                             f"{spelled('--run-dir / logging.name', 'run_dir= / logging.name')}")
    if (resume_from is None and strategy.is_global_zero and metrics.is_file() and metrics.stat().st_size > 0
            and not is_held(chosen / LOCK_FILE)):  # a live job's folder: the trainer refuses it next
        print(f"run folder {shown(chosen)} holds a run without a checkpoint (nothing to resume): starting it afresh, "
              "its metrics replaced", file=sys.stderr, flush=True)
    for name in (*RUN_FILES, *copies):  # written by the run: checked before anything is
        path = chosen / name
        if name.endswith("/") and path.exists() and not path.is_dir():  # a plugin's hooks write a folder there
            raise UsageError(f"{path}: is a file where the run writes its folder {name}; move it away or pick "
                             f"another {spelled('--run-dir', 'run_dir=')}")
        if not name.endswith("/") and path.is_dir():
            raise UsageError(f"{path}: is a folder where the run writes its {name}; move it away or pick another "
                             f"{spelled('--run-dir', 'run_dir=')}")
        if not name.endswith("/") and path.exists() and not path.is_file():  # a rename would replace a device/FIFO
            raise UsageError(f"{path}: is not a regular file (a device, FIFO or socket) where the run writes its "
                             f"{name}; move it away or pick another {spelled('--run-dir', 'run_dir=')}")
    return chosen


RESOLVED_SECTIONS = ("model", "data", "train", "precision", "strategy", "checkpoint", "logging")
"""Tables every resolved ``config.toml`` a run writes has (a user's config usually gives a few)."""


def not_written_by_a_run(folder: Path) -> str | None:
    """The name of a file in ``folder`` that a fresh run would replace but no run wrote: a
    ``config.toml`` that is not a resolved config (one with every table of
    :data:`RESOLVED_SECTIONS`), or a ``metrics.jsonl`` whose first line is not a metrics record
    (a JSON object with an integer ``step``); ``None`` when there is none."""
    import json

    from deepseek.parsing import loads_json, loads_toml, open_file, read_text

    config = folder / "config.toml"
    if config.is_file():
        try:
            data = loads_toml(read_text(config))
        except (OSError, UnicodeDecodeError, ValueError):
            return "config.toml"
        if not all(isinstance(data.get(name), dict) for name in RESOLVED_SECTIONS):
            return "config.toml"
    metrics = folder / "metrics.jsonl"
    if metrics.is_file():
        try:
            with open_file(metrics) as fh:  # a regular file: a FIFO put there since the check is not waited on
                first = fh.readline(1 << 20).decode("utf-8").strip()
            record = loads_json(first) if first else {"step": 0}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError):
            return "metrics.jsonl"
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, bool) or not isinstance(step, int):
            return "metrics.jsonl"
    return None


def _holds(path: Path, data: bytes) -> bool:
    """Whether ``path`` is a regular file of exactly the bytes ``data``, read no further than
    ``len(data)`` bytes (:func:`deepseek.parsing.read_file`): a larger file is not read, a FIFO not
    waited on; neither holds ``data``."""
    from deepseek.parsing import read_file

    try:
        return read_file(path, len(data)) == data
    except OSError:
        return False


def copy_run_files(files: dict[str, Path], run_dir: Path) -> None:
    """Copy the dataset's :meth:`~deepseek.data.dataset.Dataset.run_files` into the run folder
    (temp file + rename; a copy already there with the same bytes is kept). Each source is read as
    a tokenizer is (:data:`~deepseek.data.bpe.MAX_TOKENIZER_BYTES` at most, a regular file: a FIFO
    is refused rather than waited on)."""
    import tempfile

    from deepseek.data.bpe import MAX_TOKENIZER_BYTES
    from deepseek.parsing import read_file

    for name, source in files.items():
        target = run_dir / name
        try:
            data = read_file(source, MAX_TOKENIZER_BYTES)
        except OSError as exc:
            raise UsageError(f"run folder: cannot copy {source} into it ({exc.strerror}); check the file") from None
        if _holds(target, data):
            continue
        if target.exists() and not target.is_file():
            raise UsageError(f"{target}: is a folder or special file where the run keeps its copy of {source}; "
                             "move it away")
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=run_dir)
        try:
            usual_mode(fd)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            durable.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def discard_unfinished(run_dir: Path, found: frozenset[str] | None = None) -> None:
    """Undo what a fresh run that failed before its first step (a batch its model refuses, a
    plugin refusing the folder at ``deepseek_train_start``, an error in step 1) wrote: what it
    wrote (``config.toml``, the step-0 evaluation's metrics, the lock, a plugin's files) describes
    no training, and a later run would find it. ``found``: the entries of a folder that existed
    before the run, which stay (only what the run added goes); ``None``: the run created the folder,
    which goes whole."""
    import shutil

    if found is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for name in set(os.listdir(run_dir)) - found:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _leaves(table: dict[str, object], prefix: str = "") -> dict[str, object]:
    """A config table flattened to ``section.key`` -> its value as JSON reads it back (tuples as
    lists)."""
    import json

    out: dict[str, object] = {}
    for key, value in table.items():
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.loads(json.dumps(value, default=str))
    return out


def _show(value: object) -> str:
    import json

    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else repr(value)


def config_changes(saved: object, now: dict[str, object]) -> list[str]:
    """``"train.lr 0.002 -> 0.001"`` for every setting a resumed run changes from the config its
    checkpoint recorded (``saved``, trainer.json's ``config``), keys both sides have; the run's
    stderr and its new config.toml say them, so a changed run is never a silent one."""
    if not isinstance(saved, dict):
        return []
    old, new = _leaves(saved), _leaves(now)
    # data.tokenizer: a resume reads the run's own copy, whose content the data position checks
    return [f"{key} {_show(old[key])} -> {_show(new[key])}"
            for key in sorted(old.keys() & new.keys() - {"data.tokenizer"}) if old[key] != new[key]]


class EditedConfigWarning(UserWarning):
    """A resumed run's ``config.toml`` said something other than the config the resume runs."""


def keep_edited_config(run_dir: Path, now: dict[str, object], recorded: object, *, resume: Path) -> str | None:
    """A resume rewrites ``run_dir/config.toml`` with the config it runs (``now``). When the file
    there was changed from the config the checkpoint recorded (``recorded``, trainer.json's
    ``config``: edited by hand to change ``train.lr``, say, which ``--resume RUN`` alone does not
    read: it runs the checkpoint's config) and this run does not apply the change, the file is
    moved to :data:`~deepseek.run_files.EDITED_CONFIG` (``config.edited-2.toml``, ... when taken:
    :func:`~deepseek.run_files.edited_config`, a run's own files) rather than lost,
    and the one line returned names what runs instead of each edit, and the command that applies
    the edit in place of this run: the file as the config, with a ``--set`` for each change this
    command made that the file does not (else the file would undo it). ``None`` when
    every value of the file is the recorded one or the one that runs (a config changed by this
    command's own options, or the edited file passed as the config: ``deepseek train
    RUN/config.toml --resume RUN``), or there is no file."""
    from deepseek.parsing import loads_json, loads_toml, read_file, read_text

    path = run_dir / "config.toml"
    if not path.is_file():
        return None
    raw: bytes | None = None  # the file's bytes, when it is no larger than a config read back
    try:
        raw = read_file(path)
        data = loads_toml(raw.decode("utf-8"))
        problem = None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        data, problem = None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def leaves(table: dict[str, object]) -> dict[str, object]:  # TOML has no None: a key the file leaves out
        return {k: v for k, v in _leaves(table).items() if v is not None}

    recorded_leaves = leaves(recorded) if isinstance(recorded, dict) else {}
    runs = leaves(now)
    edits: list[str] = []  # what runs instead of each edit
    edited: set[str] = set()
    mine: dict[str, object] = {}
    if data is not None:
        mine = leaves(data)
        # what a session of the run wrote: the config its checkpoints recorded (the one resumed, and
        # later ones: a resume from an older checkpoint finds the file a later session wrote)
        tables = [recorded] if isinstance(recorded, dict) else []
        for state in sorted((run_dir / "checkpoints").glob("step-*/trainer.json")):
            try:
                table = loads_json(read_text(state)).get("config")
            except (OSError, UnicodeDecodeError, ValueError, AttributeError):
                continue
            if isinstance(table, dict):
                tables.append(table)
        saved = [leaves(t) for t in tables]
        for key in sorted(mine.keys() | runs.keys()):
            if mine.get(key) == runs.get(key) or any(mine.get(key) == t.get(key) for t in saved):
                continue  # applied by this command, or what the run wrote
            edited.add(key)
            if key not in mine:
                edits.append(f"{key} = {_show(runs[key])} (the file leaves it out)")
            elif key not in runs:
                edits.append(f"not {key} = {_show(mine[key])} (no setting of the config that runs)")
            else:
                edits.append(f"{key} = {_show(runs[key])} (the file says {_show(mine[key])})")
        if not edits:
            return None
    kept = run_dir / EDITED_CONFIG
    n = 2
    while kept.exists() or kept.is_symlink():
        if raw is not None and _holds(kept, raw):
            break  # the same edit kept already (a resume that failed after keeping it)
        kept, n = run_dir / edited_config(n), n + 1
    durable.move(path, kept)  # the edited file set aside, the folder fsynced
    # what this command changed from the checkpoint's config and the file does not edit: the file as
    # the config would undo it (a --max-steps of this command, back to the file's recorded value)
    carried = [key for key in sorted(runs) if key not in edited and key in recorded_leaves
               and runs[key] != recorded_leaves[key] and mine.get(key) != runs[key]]
    inside = resume.resolve().parent == run_dir / "checkpoints"
    # the call that applies the edit: a command under deepseek train, a Python call's arguments
    # under deepseek.fit / Trainer (a --set there is a value the file itself must set)
    command = (f"deepseek train {shell_quoted(str(kept))} --resume "
               + (shell_quoted(str(run_dir)) if inside
                  else f"{shell_quoted(str(resume))} --run-dir {shell_quoted(str(run_dir))}")
               + "".join(f" --set {shell_quoted(f'{key}={_set_value(runs[key])}')}" for key in carried))
    call = (f"config={str(kept)!r}, resume={str(run_dir if inside else resume)!r}"
            + ("" if inside else f", run_dir={str(run_dir)!r}")
            + (f", the file also setting {' and '.join(f'{k} = {_show(runs[k])}' for k in carried)}" if carried else ""))
    source = (f"this run trains from {resume} with the checkpoint's config and "
              + spelled("this command's options", "this call's arguments"))
    what = (f"is not valid TOML ({problem}), and a resume does not read it: {source}" if problem is not None
            else f"was edited since the run wrote it, and a resume does not read it: {source}, so it uses "
                 f"{'; '.join(edits)}")
    fix = ", fix the file" if problem is not None else ""
    start = "the run's newest checkpoint" if inside else str(resume)
    return (f"{path} {what}; the file is kept as {kept} and config.toml now records what runs; to train with "
            f"the edit instead, stop this run (Ctrl-C){fix} and resume from {start} with the file as the "
            f"config: {spelled(command, call)}")


def _set_value(value: object) -> str:
    """``value`` (a config leaf as JSON reads it back) as a ``--set`` value: a TOML literal."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # a number, a string (a TOML basic string), a list of them: TOML too


def edited_length_note(run_dir: Path, runs: dict[str, object], *, resume: Path, named_run_dir: bool = False) -> str:
    """For a resume that found its run complete (``runs``: the config it would run: the
    checkpoint's under ``deepseek train --resume``, the call's from Python): when
    ``run_dir/config.toml`` was edited to set another ``train.max_steps`` or
    ``train.early_stop_patience``, which a resume does not read, a note (starting ``"; "``) naming
    the edit and how to apply it, in the reader's words (:func:`deepseek.arguments.spelled`): the
    command (with ``--run-dir`` where the command named it: ``named_run_dir``), or, from Python
    (``deepseek.fit(resume=...)``), the value to set in the call's config; else ``""``."""
    from deepseek.parsing import loads_toml, read_text

    try:
        train = loads_toml(read_text(run_dir / "config.toml")).get("train")
    except (OSError, UnicodeDecodeError, ValueError):
        return ""
    ran = runs.get("train")
    if not isinstance(train, dict) or not isinstance(ran, dict):
        return ""
    edits = [f"train.{key} = {_show(train[key])}" for key in ("max_steps", "early_stop_patience")
             if key in train and train[key] != ran.get(key)]
    if not edits:
        return ""
    path = run_dir / "config.toml"
    again = f" --run-dir {shell_quoted(str(run_dir))}" if named_run_dir else ""  # else it resumes in the checkpoint's
    command = f"deepseek train {shell_quoted(str(path))} --resume {shell_quoted(str(resume))}{again}"
    runs_config = spelled("the checkpoint's config", "this call's config")
    return (f"; {path} sets {' and '.join(edits)}, which a resume does not read (it runs {runs_config}): to apply "
            f"it, {spelled(command, 'set ' + ' and '.join(edits) + ' in the config of the call (config=)')}")
