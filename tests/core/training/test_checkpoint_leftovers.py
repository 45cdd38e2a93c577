"""What a failed deletion of a checkpoint leaves (a file in it this user may not delete; the tests
run as root, whom a read-only folder does not stop, so ``os.unlink`` and the rename are refused
here as the kernel refuses them then) is never taken for a checkpoint: not listed, not resumed
from, not renamed back by a run's start, whatever is pruned after."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _checkpoint_steps import commit_step, run_with_steps, trained_run, tree

from deepseek.errors import CheckpointError
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint_dirs import CheckpointWarning


@contextlib.contextmanager
def _refused(monkeypatch: pytest.MonkeyPatch, *, unlinks: bool = True) -> Iterator[None]:
    """Within it, every ``os.unlink`` refused (``unlinks``), and the rename of a moved-aside
    ``.replaced-`` folder (as for a folder that is a mount point, or on a file system that answers
    EBUSY)."""
    real_replace = os.replace

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if ".replaced-" in Path(src).name:
            raise OSError(errno.EBUSY, "Device or resource busy", os.fspath(src))
        real_replace(src, dst, *args, **kwargs)

    with monkeypatch.context() as patched:
        if unlinks:
            patched.setattr(os, "unlink", unlink)
        patched.setattr(os, "replace", replace)
        yield


def test_an_old_copy_that_can_be_neither_renamed_nor_deleted_never_comes_back_once_its_step_is_pruned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-save of step 4 moved the old ``step-4`` aside and could neither rename it to a trash name
    nor delete it: it stayed as ``step-4.replaced-XX``, complete. Once the new ``step-4`` was pruned it
    was step 4's checkpoint again (listed, resumed from, renamed back by the next start): a pruned
    step came back, with the weights of the copy the re-save replaced. A prune now keeps ``step-N``
    while such a copy of it stays, and says so; it deletes both once the copy can go."""
    run, root = run_with_steps(tmp_path, 2, 4)
    with _refused(monkeypatch), pytest.warns(CheckpointWarning):
        commit_step(root, 4)  # saved again: the old copy moved aside, the new one in, the old one stays
    [copy] = root.glob("step-4.replaced-*")
    commit_step(root, 6)
    with _refused(monkeypatch), pytest.warns(CheckpointWarning) as caught:
        ckpt.prune_checkpoints(root, keep_last=1)
    assert ckpt.list_checkpoints(root) == [(4, root / "step-4"), (6, root / "step-6")]  # not the copy
    assert str(caught[-1].message) == (
        f"{root / 'step-4'}: kept, not pruned: {copy}, an earlier copy of it that could not be deleted, would be taken "
        "for step 4's checkpoint without it; delete that copy by hand (the next prune then deletes step-4)")
    assert json.loads((root / "step-4" / ckpt.COMMIT_FILE).read_text(encoding="utf-8"))["seq"] == 3  # the new one
    ckpt.remove_stale(root)  # the next start: nothing renamed back, the copy still fails to go
    assert ckpt.list_checkpoints(root) == [(4, root / "step-4"), (6, root / "step-6")]
    ckpt.prune_checkpoints(root, keep_last=1)  # the copy can go now: both go
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-6"]
    assert ckpt.list_checkpoints(root) == [(6, root / "step-6")] and ckpt.resolve_checkpoint(run) == root / "step-6"


def test_a_pruned_checkpoint_left_in_its_trash_folder_is_never_taken(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A prune renames ``step-N`` into ``step-N.trash-XX/step-N`` and deletes that; what a failed
    deletion leaves there, named directly (``--resume RUN/checkpoints/step-2.trash-XX/step-2``), was
    loaded as a checkpoint, as it is outside any run's ``checkpoints``; the run's next start deletes it."""
    run, root = run_with_steps(tmp_path, 2, 4)
    with _refused(monkeypatch), pytest.warns(CheckpointWarning):
        ckpt.prune_checkpoints(root, keep_last=1)
    [trash] = root.glob("step-2.trash-*")
    inner = trash / "step-2"
    assert sorted(p.name for p in inner.iterdir()) == [ckpt.COMMIT_FILE, ckpt.TRAINER_FILE]  # whole
    assert ckpt.list_checkpoints(root) == [(4, root / "step-4")] and ckpt.resolve_checkpoint(run) == root / "step-4"
    for named in (trash, inner):
        with pytest.raises(CheckpointError) as caught:
            ckpt.resolve_checkpoint(named, resuming=True)
        assert str(caught.value) == (
            f"{named}: is a checkpoint being deleted (pruned) or replaced, not a checkpoint, and the run's next start "
            f"deletes it; pass the run folder {run} (its newest complete checkpoint) instead")
    # a checkpoint copied out of the trash folder is one like any other
    inner.rename(tmp_path / "step-2")
    assert ckpt.resolve_checkpoint(tmp_path / "step-2", resuming=True) == tmp_path / "step-2"


def test_a_moved_aside_step_that_cannot_be_renamed_back_is_one_line_and_nothing_is_deleted(
        tmp_path: Path, deepseek_here: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's start renames step N's moved-aside checkpoint (a re-save killed between its renames)
    back to ``step-N``; when that rename failed the user got a traceback of ``os.replace``. Now one
    line naming the folder and what to do, exit 2, before anything is deleted."""
    root = trained_run(deepseek_here, tmp_path)
    os.rename(root / "step-4", root / "step-4.replaced-ab")  # a re-save of step 4 killed between its renames
    (root / "step-4.tmp-cd").mkdir()  # and its new copy, not renamed in
    before = tree(tmp_path, but=(".lock",))  # the run's lock file names its last holder
    with _refused(monkeypatch, unlinks=False):
        proc = deepseek_here("train", "--resume", "r", "--max-steps", "6", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert proc.stderr == (
        f"error: {root / 'step-4.replaced-ab'}: is step 4's checkpoint (moved aside by a save of the same step that "
        f"was cut short) and could not be renamed back to step-4 (Device or resource busy); nothing was deleted: "
        f"rename it to {root / 'step-4'} yourself, then run the command again\n"), proc.stderr
    assert tree(tmp_path, but=(".lock",)) == before and (root / "step-4.tmp-cd").is_dir()
    os.rename(root / "step-4.replaced-ab", root / "step-4")  # as the line says: the next start goes on
    assert ckpt.remove_stale(root) == [root / "step-4.tmp-cd"]
    assert ckpt.resolve_checkpoint(tmp_path / "r", resuming=True) == root / "step-4"


@pytest.mark.parametrize("name", ["step-2\n", "step-\u0662"])
def test_a_folder_named_almost_like_a_checkpoint_is_not_one(tmp_path: Path, name: str) -> None:
    """The names are matched whole and in ASCII digits (checkpoint_names): ``step-2`` and a newline,
    or an Arabic-Indic two, holding a copy of step-2, were listed as step 2 (``$`` matches before a
    final newline; ``\\d`` any digit), and pruned or resumed from as if they were it."""
    import shutil

    _, root = run_with_steps(tmp_path, 2, 4)
    (root / "step-2").rename(root / name)
    shutil.copytree(root / name, root / "step-2")
    assert ckpt.list_checkpoints(root) == [(2, root / "step-2"), (4, root / "step-4")]
    assert ckpt.prune_checkpoints(root, keep_last=1) == [root / "step-2"] and (root / name).is_dir()
