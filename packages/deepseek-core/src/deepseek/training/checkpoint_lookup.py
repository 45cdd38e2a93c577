"""Checkpoint lookup: which checkpoint folder a path a person passed refers to (a checkpoint
folder, a run folder, a ``checkpoints`` folder, its ``latest`` or ``best`` file), checked before a
command takes it, and what its commit record says of its files' checksums.

The folder layout and the rules of what makes a checkpoint complete are
:mod:`deepseek.training.checkpoint_dirs`'s; this module only reads them.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

from deepseek.errors import CheckpointError
from deepseek.training.checkpoint_dirs import (
    ANOTHER_STEP,
    BEST_FILE,
    COMMIT_FILE,
    LATEST_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    TRAINER_FILE,
    CheckpointWarning,
    _await_re_save,
    _scan,
    best_checkpoint,
    list_checkpoints,
)
from deepseek.training.checkpoint_names import (
    FOREIGN_TAG,
    REPLACED_TAG,
    leftover_dir_name,
    named_step,
    recorded_step,
    set_aside,
    step_dir_name,
)
from deepseek.training.checkpoint_record import inspect_checkpoint


def checksum_note(directory: str | os.PathLike[str]) -> str:
    """What the commit record of the checkpoint folder ``directory`` (as :func:`resolve_checkpoint`
    gave it: already checked) says of its files' checksums, for people: ``"CRC-32 of 5 files,
    verified"``, or why there are none to check."""
    path = Path(directory)
    if not (path / COMMIT_FILE).is_file():
        return "none (no commit record: written by an export or an older version)"
    found = inspect_checkpoint(path, 0)
    if not found.checksums:
        return "none (committed before records carried them; sizes checked)"
    return f"CRC-32 of {len(found.checksums)} files, verified"


def resolve_checkpoint(path: str | os.PathLike[str], *, resuming: bool = False) -> Path:
    """The checkpoint folder that ``path`` refers to: a checkpoint folder itself, a run folder,
    ``checkpoints`` folder or its ``latest`` file (the newest complete checkpoint), or a ``best``
    file (the checkpoint it names). A leftover folder of a save, prune or re-save named directly
    is refused (:func:`leftover_refusal`). ``resuming``: for ``--resume``, whose refusal of a folder
    without a checkpoint says what to do instead (run the command again without ``--resume``)."""
    from deepseek.arguments import given, spelled

    p = Path(path)
    without = spelled("run the same command without --resume", "leave out resume=")
    if not p.exists():
        from deepseek.paths import broken_link

        link = broken_link(p)
        raise CheckpointError(
            f"{p}: {link}; pass the run or checkpoint folder's own path" if link is not None else
            f"{p}: no such checkpoint or run folder, so there is nothing to resume (a run killed or stopped "
            f"before it made its folder leaves none); {without} to start the run, "
            "or pass a run folder (runs/<name>) or a checkpoint folder (runs/<name>/checkpoints/step-N)"
            if resuming else
            f"{p}: no such checkpoint or run folder; pass a run folder (runs/<name>) or a "
            "checkpoint folder (runs/<name>/checkpoints/step-N)"
        )
    if p.is_file():
        if p.name == LATEST_FILE:  # the newest complete one, whatever an interrupted update left in it
            p = p.parent
        elif p.name == BEST_FILE and (best := best_checkpoint(p.parent)) is not None:
            p = best  # checked as a checkpoint folder named directly, below
        else:
            raise CheckpointError(f"{p}: is a file; pass the checkpoint folder that contains it")
    if p.is_dir() and (leftover := leftover_refusal(p)) is not None:
        raise CheckpointError(leftover)
    # a checkpoint folder: any of its files there in any form (a broken link too, whose loading says so)
    if any(os.path.lexists(p / f) for f in (TRAINER_FILE, MODEL_FILE, OPTIMIZER_FILE, COMMIT_FILE)):
        found = inspect_checkpoint(p, 0) if os.path.lexists(p / COMMIT_FILE) else None  # else the loaders check
        kind, problem = ("incomplete", found.problem) if found is not None else ("", None)
        if found is not None and problem is None:
            kind, problem = "damaged", found.damage()
        if problem:
            others = [path for _, path in list_checkpoints(p.parent) if path != p]
            hint = f"use {others[-1]}" if others else "use an earlier checkpoint"
            raise CheckpointError(f"{p}: the checkpoint is {kind} ({problem}); {hint} or start a fresh run")
        return p
    root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    found_all = _scan(root)
    passed = [("not this run's" if f.problem.startswith(ANOTHER_STEP) else "incomplete", f)
              for f in found_all if f.problem is not None]
    for newest in reversed([f for f in found_all if f.problem is None]):
        damage = newest.damage()
        if damage is None:
            skipped = [(kind, f) for kind, f in passed if f.step > newest.step]
            if skipped and os.environ.get("RANK", "0") == "0":  # said once, not by every rank of a job
                kind, last = max(skipped, key=lambda kf: (kf[1].seq, kf[1].step))
                warnings.warn(f"{last.path}: the checkpoint is {kind} ({last.problem}); using {newest.path.name}, "
                              "the newest complete one", CheckpointWarning, stacklevel=1)
            return newest.path
        passed.append(("damaged", dataclasses.replace(newest, problem=damage)))
    if passed:
        kind, last = max(passed, key=lambda kf: (kf[1].seq, kf[1].step))
        others = f", and {len(passed) - 1} earlier one(s) are damaged or incomplete too" if len(passed) > 1 else ""
        raise CheckpointError(
            f"{p}: no complete checkpoint to load: {last.path.name} is {kind} ({last.problem}){others}; "
            "use a copy of the run made before, or " + (
                f"start a fresh run in another folder ({spelled('--run-dir', 'run_dir=')})" if resuming
                else "train the model again")  # eval, export, generate: train has the option
        )
    if resuming:  # a job killed (or stopped) before its first checkpoint was committed
        # without --run-dir a fresh run picks a new folder under logging.runs_dir: name the option
        run = root.parent if root.name == "checkpoints" else root
        raise CheckpointError(
            f"{p}: contains no complete checkpoint (no checkpoints/step-N with {TRAINER_FILE}), so there is "
            "nothing to resume: its run ended (killed or stopped) before its first checkpoint was complete; "
            f"{without} to start the run afresh (in this folder: {given('--run-dir', 'run_dir', run)})"
        )
    raise CheckpointError(
        f"{p}: contains no complete checkpoint (no checkpoints/step-N with {TRAINER_FILE}); "
        "train longer than checkpoint.interval steps or pass a checkpoint folder"
    )


def leftover_refusal(directory: Path) -> str | None:
    """Why folder ``directory``, named directly as a checkpoint, is not one: a leftover of a save,
    prune or re-save (:func:`~deepseek.training.checkpoint_dirs.list_stale`'s), which the run's next
    start deletes (so a resume from it would load one checkpoint and name another), else ``None``. A
    moved-aside ``step-N`` that is step N's checkpoint (:func:`~deepseek.training.checkpoint_names.set_aside`)
    is not refused: the run's start renames it back, and
    :func:`~deepseek.training.checkpoint_names.committed_path` names it so. A folder in a leftover (the
    ``step-N`` a failed prune left in ``step-N.trash-XXXX``) is refused as the leftover is. Another run's
    checkpoint a save moved aside (``step-N.foreign-XXXX``, or its ``step-N``) is refused too. Paths are
    resolved first (``.``, links); only folders in a run's ``checkpoints`` count (``exp.tmp-3`` elsewhere
    is not one); the names are :func:`~deepseek.training.checkpoint_dirs.named_step`'s."""
    real = directory.resolve()
    as_named = (directory.name, directory.parent.name) == (real.name, real.parent.name)
    named, directory = (directory, directory) if as_named else (f"{directory} (that is {real})", real)
    in_checkpoints = [(f, named_step(f.name)) for f in (directory, directory.parent) if f.parent.name == "checkpoints"]
    foreign, its = next(((f, n) for f, n in in_checkpoints if n is not None and n[1] == FOREIGN_TAG), (None, None))
    if foreign is not None and its is not None:
        run = foreign.parent.parent
        step = step_dir_name(its[0])
        recorded = recorded_step(foreign / step)  # the name it takes out of the run: its own step's
        rename = f" as a folder named {step_dir_name(recorded)}" if recorded is not None else ""
        return (f"{named}: is another run's checkpoint (its {TRAINER_FILE} records another step), moved aside when "
                f"this run saved its own {step}: not one of this run's checkpoints, so never resumed from there; to "
                f"resume from it, move {foreign / step} out of the run folder {run}{rename} and pass its new path, "
                "else pass the run folder (its newest complete checkpoint)")
    leftover = next((f for f, _ in in_checkpoints if leftover_dir_name(f.name)), None)
    if leftover is None:
        return None
    root = leftover.parent
    _await_re_save(root)  # a live job between a re-save's renames: its new step-N, not the folder it deletes
    if leftover == directory and any(found.path == directory for found in set_aside(root)):
        return None
    its = named_step(leftover.name)
    if REPLACED_TAG in leftover.name:
        what = "an earlier copy of a checkpoint, moved aside by a later save of the same step"
    elif ".tmp-" in leftover.name:
        what = "an unfinished save (the folder a checkpoint is written into before it is renamed into place)"
    else:
        what = "a checkpoint being deleted (pruned) or replaced"
    final = root / step_dir_name(its[0]) if its is not None else None
    instead = f"the run folder {root.parent} (its newest complete checkpoint)"
    if final is not None and final.is_dir():
        instead = f"{final} (that step's checkpoint) or {instead}"
    return f"{named}: is {what}, not a checkpoint, and the run's next start deletes it; pass {instead} instead"
