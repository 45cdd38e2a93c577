"""A save of a step saved before (a callback's stop re-saving its step, a best mark) moves the old
``step-N`` aside, then renames the new one in. A kill between the two renames (simulated here in
process: the second rename raises) left no ``step-N``: the resume fell back to an older checkpoint,
or, with that one pruned, found nothing to resume. The moved-aside folder is now step N's until
the next run start renames it back."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from _checkpoint_steps import commit_step, run_with_steps, trained_run, tree

from deepseek import hookimpl
from deepseek.errors import CheckpointError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training import checkpoint_dirs
from deepseek.training.checkpoint_dirs import CheckpointWarning
from deepseek.training.run_lock import LOCK_FILE
from deepseek.training.run_state import tidy_finished
from deepseek.training.trainer import Trainer

RUN = {"train": {"max_steps": 6, "eval_interval": 0}, "checkpoint": {"interval": 4, "keep_last": 1}}


class StopWhenSaved:
    """Stops the run from its step-4 save: the trainer saves step 4 again, recording the stop."""

    @hookimpl
    def deepseek_checkpoint_saved(self, trainer: Any, path: Path, step: int) -> None:
        if step == 4:
            trainer.should_stop = True


class Killed(Exception):
    """Stands for the SIGKILL that ends the process between the two renames."""


def _kill_before_the_new_step_4(monkeypatch: pytest.MonkeyPatch) -> None:
    real, saves = os.replace, [0]

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "step-4" and ".tmp-" in Path(src).name:
            saves[0] += 1
            if saves[0] == 2:  # the second save of step 4: the old step-4 is moved aside by now
                raise Killed
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def _killed_re_saving_step_4(tiny_config_on: Any, run: Path, monkeypatch: pytest.MonkeyPatch,
                             **sections: dict[str, Any]) -> None:
    """:data:`RUN` (its sections replaced by ``sections``) into ``run``, stopped from its step-4 save
    and killed as it saves step 4 again, between the two renames."""
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopWhenSaved(), dist="deepseek-stopper").status == "ok"
    with monkeypatch.context() as patched:
        _kill_before_the_new_step_4(patched)
        with pytest.raises(Killed):
            Trainer(tiny_config_on(host, **{**RUN, **sections}), run_dir=run, quiet=True, host=host).fit()


def test_a_kill_while_a_stop_re_saves_its_step_loses_nothing(tiny_config_on: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    run, root = tmp_path / "run", tmp_path / "run" / "checkpoints"
    _killed_re_saving_step_4(tiny_config_on, run, monkeypatch)
    assert not (root / "step-4").exists()
    # the old step 4, complete: every lookup takes it (step-2 was not saved: interval 4)
    aside = ckpt.resolve_checkpoint(run)
    assert ckpt.read_trainer_state(aside)["step"] == 4 and aside.name.startswith("step-4.replaced-")
    assert ckpt.list_checkpoints(root) == [(4, aside)]

    plain = PluginHost(PluginSettings(autoload=False))
    trainer = Trainer(tiny_config_on(plain, **RUN), resume=run, quiet=True, host=plain)
    assert trainer.resume_from == aside
    capsys.readouterr()
    result = trainer.fit()
    assert result.step == 6 and len(result.losses) == 2  # steps 5 and 6: resumed at step 4
    # named as it is once the run's start renamed it back, not by the name that is gone
    said = capsys.readouterr().err
    assert f"resumed from {root / 'step-4'} at step 4" in said and ".replaced-" not in said
    # the run's start renamed it back; the save of step 6 pruned it (keep_last 1)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-6"]


def test_the_moved_aside_step_is_renamed_back_and_checked_like_any_checkpoint(
        tiny_config_on: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """remove_stale (a run's start) puts it back under ``step-N``; a moved-aside folder that is not a
    complete checkpoint of its step (a file missing, another step's trainer.json, a link) is never
    taken for one; the incomplete one is deleted as a leftover."""
    run, root = tmp_path / "run", tmp_path / "run" / "checkpoints"
    _killed_re_saving_step_4(tiny_config_on, run, monkeypatch, checkpoint={"interval": 2, "keep_last": 5})
    [aside] = root.glob("step-4.replaced-*")
    assert ckpt.resolve_checkpoint(run) == aside
    broken = root / "step-4.replaced-zz"  # a copy without its model: incomplete, not taken
    broken.mkdir()
    for f in aside.iterdir():
        if f.name != ckpt.MODEL_FILE:
            (broken / f.name).write_bytes(f.read_bytes())
    (root / "step-6.replaced-yy").symlink_to(aside, target_is_directory=True)  # a link: never a checkpoint
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2, 4]
    assert ckpt.resolve_checkpoint(run) == aside
    (root / "step-6.replaced-yy").unlink()

    ckpt.remove_stale(root)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-2", "step-4"]
    assert ckpt.resolve_checkpoint(run) == root / "step-4" and ckpt.read_trainer_state(root / "step-4")["step"] == 4
    # renamed back and then moved aside again as another step's: its trainer.json records step 4
    os.replace(root / "step-4", root / "step-6.replaced-xx")
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2]


def _re_save_killed(root: Path, step: int, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Save ``step`` again and stop between the two renames (the on-disk state of a kill there, or
    of a live job in that window): the old ``step-N`` moved aside, the new one still a temp folder."""
    final = root / ckpt.step_dir_name(step)
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst) == final and ".tmp-" in Path(src).name:
            raise Killed
        real(src, dst)

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", replace)
        with pytest.raises(Killed):
            commit_step(root, step)
    [aside] = root.glob(f"{final.name}.replaced-*")
    return aside


def test_a_finished_run_resumed_from_the_moved_aside_step_is_pruned(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill between the renames comes before that save's prune: the requeued job, finding the run
    finished, prunes to keep_last. It compared the moved-aside path it resumed from with the newest
    checkpoint once that was renamed back, found them different, and left step-2."""
    run, root = run_with_steps(tmp_path, 2, 4)
    (run / LOCK_FILE).touch()  # the run's lock file, left by its job (no holder now)
    aside = _re_save_killed(root, 4, monkeypatch)
    assert ckpt.resolve_checkpoint(run) == aside  # what the requeued job resumes from
    tidy_finished(run, aside, keep_last=1)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-4"]
    assert json.loads((root / "step-4" / ckpt.TRAINER_FILE).read_text(encoding="utf-8")) == {"step": 4}


def test_a_lookup_beside_a_live_job_between_its_renames_takes_its_new_step(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The on-disk state of a kill between the two renames is also that of a live job between them,
    which deletes the moved-aside folder the next moment: ``deepseek eval`` or ``checkpoint info``
    beside it took that folder. With the run folder held, a lookup waits for the job's new step-N;
    here the job's second rename and deletion happen at the lookup's first pause."""
    run, root = run_with_steps(tmp_path, 2, 4)
    aside = _re_save_killed(root, 4, monkeypatch)
    [new] = root.glob("step-4.tmp-*")
    pauses: list[float] = []

    def job_goes_on(seconds: float) -> None:  # the live job, meanwhile: its second rename, then the deletion
        pauses.append(seconds)
        if aside.exists():
            os.replace(new, root / "step-4")
            shutil.rmtree(aside)

    # the live job's lock, held as another process holds it: one taken by try_lock is this process's
    # own job's, whose lookups never wait on it
    held = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with monkeypatch.context() as patched:
            patched.setattr(time, "sleep", job_goes_on)
            assert ckpt.resolve_checkpoint(run) == root / "step-4"
            assert len(pauses) == 1 and [p.name for _, p in ckpt.list_checkpoints(root)] == ["step-2", "step-4"]
        # a holder that stays between the renames (a stopped process): after the wait, as after a kill
        aside = _re_save_killed(root, 4, monkeypatch)
        with monkeypatch.context() as patched:
            patched.setattr(checkpoint_dirs, "RE_SAVE_WAIT_S", 0.05)
            assert ckpt.resolve_checkpoint(run) == aside
    finally:
        os.close(held)
    # no live job: a killed save's folder, step 4's at once (no wait)
    with monkeypatch.context() as patched:
        patched.setattr(time, "sleep", job_goes_on)
        pauses.clear()
        assert ckpt.resolve_checkpoint(run) == aside and not pauses


def test_a_leftover_folder_named_directly_is_refused_not_resumed_from(
        tmp_path: Path, deepseek_here: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``deepseek train --resume RUN/checkpoints/step-4.replaced-XX`` while ``step-4`` is there loaded
    the leftover, then the run's start deleted it as one, and said it resumed from ``step-4``, another
    checkpoint. A leftover named directly is now one line (what it is, what to pass), exit 2,
    nothing written; a moved-aside step-N that is its step's checkpoint is still taken."""
    root = trained_run(deepseek_here, tmp_path)
    shutil.copytree(root / "step-4", root / "step-4.replaced-ab")  # what a re-save of step 4 moved aside
    shutil.copytree(root / "step-4", root / "step-4.tmp-cd")  # a save of step 4, not renamed into place
    shutil.copytree(root / "step-2", root / "step-2.trash-ef")  # a prune, not finished
    before = tree(tmp_path)
    for leftover, what in [
            ("step-4.replaced-ab", "an earlier copy of a checkpoint, moved aside by a later save of the same step"),
            ("step-4.tmp-cd", "an unfinished save (the folder a checkpoint is written into before it is renamed "
                              "into place)"),
            ("step-2.trash-ef", "a checkpoint being deleted (pruned) or replaced")]:
        proc = deepseek_here("train", "--resume", f"r/checkpoints/{leftover}", "--max-steps", "6", cwd=tmp_path)
        step = leftover.split(".")[0]
        assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
        assert proc.stderr == (
            f"error: r/checkpoints/{leftover}: is {what}, not a checkpoint, and the run's next start deletes it; "
            f"pass r/checkpoints/{step} (that step's checkpoint) or the run folder r (its newest complete "
            "checkpoint) instead\n"), proc.stderr
        assert tree(tmp_path) == before  # nothing written, nothing deleted
    # judged by what the folder is, not by the name given: '.' inside a leftover, a link to one
    (tmp_path / "link").symlink_to(root / "step-4.tmp-cd")
    with monkeypatch.context() as inside:
        inside.chdir(root / "step-4.tmp-cd")
        for given in (".", tmp_path / "link"):
            with pytest.raises(CheckpointError) as caught:
                ckpt.resolve_checkpoint(given, resuming=True)
            assert str(caught.value) == (
                f"{given} (that is {root / 'step-4.tmp-cd'}): is an unfinished save (the folder a checkpoint is "
                f"written into before it is renamed into place), not a checkpoint, and the run's next start deletes "
                f"it; pass {root / 'step-4'} (that step's checkpoint) or the run folder {root.parent} (its newest "
                "complete checkpoint) instead")
    # another run's checkpoint a save moved aside (step-4.foreign-XX/step-4, recording step 2): the
    # docs say never resumed from; named directly (the folder or the checkpoint in it) it was loaded
    shutil.copytree(root / "step-2", root / "step-4.foreign-gh" / "step-4")
    before = tree(tmp_path)
    for named in ("r/checkpoints/step-4.foreign-gh", "r/checkpoints/step-4.foreign-gh/step-4"):
        proc = deepseek_here("train", "--resume", named, "--run-dir", "r2", "--max-steps", "6", cwd=tmp_path)
        assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
        assert proc.stderr == (
            f"error: {named}: is another run's checkpoint (its trainer.json records another step), moved aside when "
            "this run saved its own step-4: not one of this run's checkpoints, so never resumed from there; to resume "
            "from it, move r/checkpoints/step-4.foreign-gh/step-4 out of the run folder r as a folder named step-2 "
            "and pass its new path, else pass the run folder (its newest complete checkpoint)\n"), proc.stderr
        assert tree(tmp_path) == before and not (tmp_path / "r2").exists()
    # as the line says: moved out under its own step's name, it is a checkpoint like any other
    (root / "step-4.foreign-gh" / "step-4").rename(tmp_path / "step-2")
    assert ckpt.resolve_checkpoint(tmp_path / "step-2", resuming=True) == tmp_path / "step-2"
    # no step-4 beside it: the moved-aside folder is step 4's checkpoint, named directly too
    shutil.rmtree(root / "step-4")
    assert ckpt.resolve_checkpoint(root / "step-4.replaced-ab") == root / "step-4.replaced-ab"
    with pytest.raises(CheckpointError, match=r"step-4\.tmp-cd: is an unfinished save.* pass the run folder "):
        ckpt.resolve_checkpoint(root / "step-4.tmp-cd")


@pytest.mark.parametrize("name", ["exp.tmp-3", "baseline.old-2", "ab.replaced-1"])
def test_a_run_or_checkpoint_folder_named_like_a_leftover_outside_checkpoints_is_taken(tmp_path: Path,
                                                                                       name: str) -> None:
    """The leftover refusal is list_stale's rule, for the folders of a run's ``checkpoints``: a run
    folder the user named ``exp.tmp-3`` (``deepseek eval exp.tmp-3``), or a checkpoint folder copied
    out under such a name, is no save's leftover, and the run's start deletes nothing there."""
    run = tmp_path / name
    (run / "checkpoints").mkdir(parents=True)
    commit_step(run / "checkpoints", 2)
    assert ckpt.resolve_checkpoint(run) == run / "checkpoints" / "step-2"
    copied = tmp_path / "kept" / name
    shutil.copytree(run / "checkpoints" / "step-2", copied)
    assert ckpt.resolve_checkpoint(copied) == copied


def test_a_leftover_its_start_could_not_delete_does_not_make_the_job_wait(
        tiny_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A moved-aside folder without its ``step-N`` that the run's start could not delete (a file in
    it this user may not delete; here its unlink is refused) looks, to a lookup, like a live job
    between a re-save's renames, and the job holding the run folder is live: each of its own saves
    and lookups waited ``RE_SAVE_WAIT_S`` (10 s) on itself. The job never waits on its own lock, and
    its start says which leftover stays."""
    run, root = tmp_path / "run", tmp_path / "run" / "checkpoints"
    settings = {"checkpoint": {"interval": 2, "keep_last": 2}}
    Trainer(tiny_config(train={"max_steps": 4}, **settings), run_dir=run, quiet=True).fit()
    leftover = root / "step-1.replaced-ab"  # no step-1 beside it
    leftover.mkdir()
    (leftover / "pinned").write_bytes(b"kept")
    real = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.path.basename(os.fspath(path)) == "pinned":
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        real(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    started = time.monotonic()
    with pytest.warns(CheckpointWarning) as caught:
        result = Trainer(tiny_config(train={"max_steps": 8}, **settings), resume=run, quiet=True).fit()
    elapsed = time.monotonic() - started
    assert result.step == 8 and elapsed < 5, elapsed  # each of its saves' lookups waited 10 s
    # renamed to a trash name first: what stays is never taken for step 1's checkpoint, nor waited for
    [trash] = root.glob("step-1.trash-*")
    assert [str(w.message) for w in caught] == [
        f"{trash}: a leftover of a save, prune or re-save could not be deleted (Permission denied); delete it by hand"]
    assert sorted(p.name for p in root.iterdir()) == ["latest", trash.name, "step-6", "step-8"]
    assert [p.name for p in trash.iterdir()] == ["pinned"] and not leftover.exists()


def _refused_unlinks(monkeypatch: pytest.MonkeyPatch, name: str | None = None) -> None:
    """``os.unlink`` refused (of files called ``name``; all with ``None``), as for a user who may not
    delete them (the tests run as root, whom a read-only folder does not stop)."""
    real = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if name is None or os.path.basename(os.fspath(path)) == name:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        real(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)


def test_a_leftover_that_is_no_checkpoint_makes_no_lookup_beside_the_live_job_wait(tmp_path: Path) -> None:
    """A moved-aside folder without its ``step-N`` that is not a complete checkpoint (what a failed
    deletion left, the folder renamed back and forth by hand) made every lookup of another process
    (``deepseek eval``, ``checkpoint list`` beside the job, its own ranks other than 0) wait
    ``RE_SAVE_WAIT_S`` (10 s) while the job lived: the job deletes no such folder while it runs. A
    re-save moves aside a committed folder, whole, and an incomplete one is never taken, so only a
    complete one is waited for."""
    run, root = run_with_steps(tmp_path, 2, 4)
    leftover = root / "step-3.replaced-ab"  # no step-3 beside it
    leftover.mkdir()
    (leftover / "pinned").write_bytes(b"kept")
    held = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT)  # the live job's lock, another process's
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        started = time.monotonic()
        assert ckpt.resolve_checkpoint(run) == root / "step-4"
        assert [p.name for _, p in ckpt.list_checkpoints(root)] == ["step-2", "step-4"]
        with pytest.raises(CheckpointError, match="step-3.replaced-ab: is an earlier copy of a checkpoint"):
            ckpt.resolve_checkpoint(leftover)
        elapsed = time.monotonic() - started
    finally:
        os.close(held)
    assert elapsed < 3, elapsed  # 30 s: 10 s a lookup


def test_a_re_save_whose_old_copy_cannot_be_deleted_says_so_at_once_and_never_takes_it_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save of a step saved before deleted the old copy it moved aside with errors ignored: when
    its files could not be deleted the folder stayed, complete, silently until the next start, and
    once the new ``step-N`` was pruned it was taken for step N's checkpoint again (listed, resumed
    from, renamed back by the next start). It is renamed to a trash name first, and the failure is
    one warning at the time, naming what stays and why."""
    run, root = run_with_steps(tmp_path, 2, 4)
    with monkeypatch.context() as patched, pytest.warns(CheckpointWarning) as caught:
        _refused_unlinks(patched)
        commit_step(root, 4)  # step 4 saved again: the old copy moved aside, the new one renamed in
    [trash] = root.glob("step-4.trash-*")
    assert [str(w.message) for w in caught] == [
        f"{trash}: a leftover of a save, prune or re-save could not be deleted (Permission denied); delete it by hand"]
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-2", "step-4", trash.name]
    assert sorted(p.name for p in trash.iterdir()) == [ckpt.COMMIT_FILE, ckpt.TRAINER_FILE]  # whole
    checkpoint_dirs.discard(root / "step-4")  # pruned by a later save
    assert ckpt.list_checkpoints(root) == [(2, root / "step-2")] and ckpt.resolve_checkpoint(run) == root / "step-2"
