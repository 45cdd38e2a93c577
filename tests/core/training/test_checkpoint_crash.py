"""Crash consistency of a checkpoint save: the process is SIGKILLed at each point of the
write / commit / ``latest`` / prune sequence, then the folder is inspected and the run resumed.

Each crash happens in a process forked from a fork server that imported the trainer once (no
interpreter start-up per case) and runs the real Trainer; the kill point is found by wrapping ``os.replace`` / ``os.unlink`` /
``checkpoint.commit_checkpoint``, which still do their real work before or after the SIGKILL.
After every crash: each ``step-N`` folder is complete, the run resumes from the newest complete
checkpoint (not from what ``latest`` says), the leftovers are gone once it started, and the
losses after it equal those of an uninterrupted run bit for bit.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import re
import signal
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deepseek.errors import CheckpointError, RunComplete, UsageError
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint_dirs import CheckpointWarning
from deepseek.training.trainer import Trainer

RUN = {
    "model": {"dropout": 0.1},
    "train": {"max_steps": 6, "decay_steps": 6, "warmup_steps": 2},
    "checkpoint": {"interval": 2, "keep_last": 1},
}


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _name(path: Any) -> str:
    return os.path.basename(os.fspath(path))


@dataclass(frozen=True)
class Moved:
    """Which ``os.replace(src, dst)`` calls a kill point watches (by base names; picklable, as
    the child process receives it)."""

    src: str | None = None
    dst: str | None = None
    dst_contains: str | None = None

    def __call__(self, src: str, dst: str) -> bool:
        return ((self.src is None or _name(src) == self.src) and (self.dst is None or _name(dst) == self.dst)
                and (self.dst_contains is None or self.dst_contains in dst))


def _install_on_replace(test: Moved, after: bool, nth: int) -> None:
    real, seen = os.replace, [0]

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        hit = test(os.fspath(src), os.fspath(dst))
        if hit:
            seen[0] += 1
        if hit and seen[0] == nth and not after:
            _kill_self()
        real(src, dst, *args, **kwargs)
        if hit and seen[0] == nth and after:
            _kill_self()

    os.replace = replace  # type: ignore[assignment]


# kill point -> (step of the checkpoint resume must take, installs the kill in the child)
def _on_replace(test: Moved, *, after: bool, nth: int = 1) -> Callable[[], None]:
    return functools.partial(_install_on_replace, test, after, nth)


def _before_commit() -> None:
    real = ckpt.commit_checkpoint

    def commit(tmp: Path, final: Path, **kwargs: Any) -> Path:
        if _name(final) == "step-4":
            _kill_self()
        return real(tmp, final, **kwargs)

    ckpt.commit_checkpoint = commit  # type: ignore[assignment]


def _mid_rmtree() -> None:
    real = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        real(path, *args, **kwargs)
        if _name(path) == "model.safetensors":  # only a prune's rmtree deletes one
            _kill_self()

    os.unlink = unlink  # type: ignore[assignment]


POINTS: dict[str, tuple[int, Callable[[], None]]] = {
    "writing-files": (2, _on_replace(Moved(dst=ckpt.OPTIMIZER_FILE, dst_contains="step-4.tmp-"), after=False)),
    "files-written": (2, _before_commit),
    "before-rename": (2, _on_replace(Moved(dst="step-4"), after=False)),
    "before-latest": (4, _on_replace(Moved(dst="step-4"), after=True)),
    "writing-latest": (4, _on_replace(Moved(dst=ckpt.LATEST_FILE), after=False, nth=2)),
    "prune-renamed": (4, _on_replace(Moved(src="step-2"), after=True)),
    "prune-deleting": (4, _mid_rmtree),
}


def _child(install: Callable[[], None], config: Any, run: Path, resume: Path | None, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # the parent's: a float sum over 2 threads rounds unlike 1's
    install()
    Trainer(config, run_dir=run, resume=resume, quiet=True).fit()
    os._exit(0)  # not reached when the kill point was hit


def _crash(config: Any, run: Path, install: Callable[[], None], resume: Path | None = None) -> None:
    """Train in a child that installs its kill point; it must die by SIGKILL. The child is forked
    from a fork server that imported the trainer and never ran a backward: a fork of this process
    fails its first backward once an earlier test of the session started autograd's device
    threads ("Unable to handle autograd's threading in combination with fork-based
    multiprocessing")."""
    import torch

    proc = _FORKS.Process(target=_child, args=(install, config, run, resume, torch.get_num_threads()))
    proc.start()
    proc.join(timeout=300)
    assert proc.exitcode == -signal.SIGKILL, f"the child did not reach its kill point (exit code {proc.exitcode})"


_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(["torch", "deepseek.training.trainer"])


def _assert_consistent(root: Path) -> None:
    """Every folder under a final name is a complete checkpoint (a moved-aside one may be too)."""
    finals = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and "." not in p.name)
    assert finals == sorted(p.name for _, p in ckpt.list_checkpoints(root) if "." not in p.name), finals


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, config_under: Any) -> list[float]:
    """Losses of the uninterrupted 6-step run."""
    work = tmp_path_factory.mktemp("straight")
    return Trainer(config_under(work, **RUN), run_dir=work / "run", quiet=True).fit().losses


@pytest.mark.parametrize("point", list(POINTS))
def test_kill_at_every_point_of_a_save(point: str, tiny_config: Any, tmp_path: Path, straight: list[float]) -> None:
    expected, install = POINTS[point]
    run = tmp_path / "run"
    root = run / "checkpoints"
    _crash(tiny_config(**RUN), run, install)

    _assert_consistent(root)
    leftovers = sorted(p.name for p in root.iterdir() if not p.name.startswith("step-") or "." in p.name)
    assert ckpt.resolve_checkpoint(run) == root / f"step-{expected}", leftovers

    result = Trainer(tiny_config(**RUN), resume=run, quiet=True).fit()
    assert result.losses == straight[expected:]  # bit-identical continuation
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-6"]  # leftovers cleaned, pruned


def test_kill_after_committing_a_best_checkpoint_keeps_it_the_best(tiny_config: Any, tmp_path: Path, straight: list[float]) -> None:
    # The best mark is committed with the checkpoint: a kill after the rename of step-4 (an
    # improvement), before the ``best`` pointer was replaced, leaves step-4 the best (it was
    # step-2, and keep_last=1 would have pruned step-4 once a later one was saved).
    config = {**RUN, "train": {**RUN["train"], "eval_interval": 2}, "checkpoint": {**RUN["checkpoint"], "keep_best": True}}
    run = tmp_path / "run"
    root = run / "checkpoints"
    _crash(tiny_config(**config), run, _on_replace(Moved(dst="step-4"), after=True))
    assert (root / ckpt.BEST_FILE).read_text().strip() == "step-2"  # the pointer was not replaced yet
    assert ckpt.best_checkpoint(root) == root / "step-4"
    assert ckpt.resolve_checkpoint(root / ckpt.BEST_FILE) == root / "step-4"
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2, 4]

    result = Trainer(tiny_config(**config), resume=run, quiet=True).fit()
    assert result.losses == straight[4:]
    assert result.monitor["best_step"] == 6 and (root / ckpt.BEST_FILE).read_text().strip() == "step-6"



def test_a_finished_run_killed_before_its_pointers_gets_them_when_resumed(tiny_config: Any, tmp_path: Path) -> None:
    """Killed after its last checkpoint's rename, before ``latest`` and ``best`` were replaced, a
    run has no later commit to replace them: resumed (a requeued job finding it done) it wrote
    nothing and ``latest`` kept naming step 4 for good. Now the resume points both at step 6."""
    config = {**RUN, "train": {**RUN["train"], "eval_interval": 2}, "checkpoint": {**RUN["checkpoint"], "keep_best": True}}
    run = tmp_path / "run"
    root = run / "checkpoints"
    _crash(tiny_config(**config), run, _on_replace(Moved(dst="step-6"), after=True))
    assert (root / ckpt.LATEST_FILE).read_text() == "step-4\n" and (root / ckpt.BEST_FILE).read_text() == "step-4\n"
    assert ckpt.pointer_updates(root) == {"latest": "step-6", "best": "step-6"}
    with pytest.raises(RunComplete, match="the run is complete"):
        Trainer(tiny_config(**config), resume=run, quiet=True).fit()
    assert (root / ckpt.LATEST_FILE).read_text() == "step-6\n" and (root / ckpt.BEST_FILE).read_text() == "step-6\n"
    assert ckpt.pointer_updates(root) == {}


def test_latest_is_not_trusted_over_a_newer_complete_checkpoint(tiny_config: Any, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _crash(tiny_config(**RUN), run, POINTS["before-latest"][1])
    root = run / "checkpoints"
    assert (root / ckpt.LATEST_FILE).read_text().strip() == "step-2"
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2, 4]  # prune had not run yet
    assert ckpt.resolve_checkpoint(run) == root / "step-4"


def test_kill_while_replacing_a_step_saved_before(tiny_config: Any, tmp_path: Path, straight: list[float]) -> None:
    """A run continued from step 2 in its own folder saves step 4 again; killed between moving
    the old step-4 aside and renaming the new one in, it resumes from the old step 4, as from a
    kill before the save (it resumed from step 2: the commit lost step 4)."""
    keep = {**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}
    run = tmp_path / "run"
    Trainer(tiny_config(**{**keep, "train": {**RUN["train"], "max_steps": 4}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    move_old = _on_replace(Moved(src="step-4", dst_contains=".replaced-"), after=True)
    _crash(tiny_config(**keep), run, move_old, resume=root / "step-2")
    _assert_consistent(root)
    [aside] = root.glob("step-4.replaced-*")
    assert ckpt.resolve_checkpoint(run) == aside
    result = Trainer(tiny_config(**keep), resume=run, quiet=True).fit()
    assert result.losses == straight[4:]
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-2", "step-4", "step-6"]


def test_run_continued_from_an_earlier_checkpoint_resumes_from_what_it_saved(tiny_config: Any, tmp_path: Path) -> None:
    """Newest means committed last, not the highest step: after going back to step 2 in the same
    folder and saving step 3, resuming takes step 3, not step 6 of the abandoned continuation."""
    keep = {**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}
    run = tmp_path / "run"
    Trainer(tiny_config(**keep), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    back = {**keep, "train": {**RUN["train"], "max_steps": 3}, "checkpoint": {"interval": 0, "keep_last": 5}}
    Trainer(tiny_config(**back), resume=root / "step-2", quiet=True).fit()
    assert ckpt.resolve_checkpoint(run) == root / "step-3"
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2, 4, 6, 3]  # commit order


def test_incomplete_checkpoint_folder_is_named_and_skipped(tiny_config: Any, tmp_path: Path) -> None:
    """A folder under a final name with a file missing (e.g. deleted by hand) is never resumed
    from; passed explicitly, the error names the file and the newest complete checkpoint."""
    run = tmp_path / "run"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    (root / "step-6" / ckpt.OPTIMIZER_FILE).unlink()
    with pytest.warns(CheckpointWarning) as caught:  # passed over, and said so
        assert ckpt.resolve_checkpoint(run) == root / "step-4"
    assert [str(w.message) for w in caught] == [
        f"{root / 'step-6'}: the checkpoint is incomplete (optimizer.safetensors missing); using step-4, the "
        "newest complete one"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # nothing newer passed over: nothing to say
        assert ckpt.resolve_checkpoint(root / "step-4") == root / "step-4"
    with pytest.raises(CheckpointError, match=r"step-6: the checkpoint is incomplete \(optimizer.safetensors "
                                                    r"missing\); use .*step-4"):
        ckpt.resolve_checkpoint(root / "step-6")


def test_a_step_folder_that_is_a_link_is_neither_resumed_nor_pruned(tiny_config: Any, tmp_path: Path) -> None:
    """A step-N link to another run's checkpoint was taken for the newest checkpoint, and pruning
    would have deleted what it points to."""
    other = tmp_path / "other"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}), run_dir=other, quiet=True).fit()
    run = tmp_path / "run"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 1}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    (root / "step-99").symlink_to(other / "checkpoints" / "step-2", target_is_directory=True)
    with pytest.warns(CheckpointWarning, match=r"step-99: the checkpoint is incomplete \(a symbolic link, not a "
                                               r"folder the run wrote\)"):
        assert ckpt.resolve_checkpoint(run) == root / "step-6"
    before = sorted(p.name for p in (other / "checkpoints" / "step-2").iterdir())
    ckpt.prune_checkpoints(root, keep_last=1)
    assert (root / "step-99").is_symlink()
    assert sorted(p.name for p in (other / "checkpoints" / "step-2").iterdir()) == before


def test_remove_stale_deletes_every_kind_of_leftover(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for name in ("step-4.tmp-abc", "step-2.trash-x", "step-3.old-y", "step-5"):
        (root / name).mkdir(parents=True)
    (root / ".latest.k2j3.tmp").write_text("step-4\n")
    (root / "step-5" / ckpt.TRAINER_FILE).write_text("{}")
    removed = sorted(p.name for p in ckpt.remove_stale(root))
    assert removed == [".latest.k2j3.tmp", "step-2.trash-x", "step-3.old-y", "step-4.tmp-abc"]
    assert sorted(p.name for p in root.iterdir()) == ["step-5"]


def test_a_checkpoint_that_lost_its_commit_record_is_passed_over_and_named(tiny_config: Any, tmp_path: Path) -> None:
    """Beside checkpoints with commit records, one without is incomplete: it was taken for a
    checkpoint of a run from before commit records, ordered first, passed over silently and then
    replaced."""
    run = tmp_path / "run"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    (root / "step-6" / "commit.json").unlink()
    with pytest.warns(CheckpointWarning, match=r"step-6: the checkpoint is incomplete \(commit\.json missing\); "
                                               r"using step-4"):
        assert ckpt.resolve_checkpoint(run) == root / "step-4"


def _flip_byte(path: Path) -> None:
    """One bit of ``path`` flipped in the middle, its size kept (what a failing disk does)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_file_changed_after_its_commit_is_found_by_its_checksum(tiny_config: Any, tmp_path: Path) -> None:
    """A flipped bit in a committed file (its size kept) was taken as it was: weights off by a
    bit trained on. The commit record's CRC-32 of each file finds it when the checkpoint is
    taken: a run folder passes over it to the newest undamaged one, with a warning; a checkpoint
    named directly is refused naming the file."""
    run = tmp_path / "run"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    record = json.loads((root / "step-6" / "commit.json").read_text())
    assert sorted(record["crc32"]) == sorted(record["files"]) and "model.safetensors" in record["crc32"]
    assert ckpt.resolve_checkpoint(run) == root / "step-6"
    _flip_byte(root / "step-6" / "model.safetensors")
    with pytest.warns(CheckpointWarning, match=r"step-6: the checkpoint is damaged \(model\.safetensors changed after "
                                               r"it was committed: its CRC-32 is [0-9a-f]{8}, the commit recorded "
                                               r"[0-9a-f]{8}\); using step-4"):
        assert ckpt.resolve_checkpoint(run) == root / "step-4"
    with pytest.raises(CheckpointError, match=r"step-6: the checkpoint is damaged \(model\.safetensors changed after "
                                              r"it was committed.*\); use .*step-4 or start a fresh run"):
        ckpt.resolve_checkpoint(root / "step-6")
    for step in (2, 4):
        _flip_byte(root / f"step-{step}" / "optimizer.safetensors")
    with pytest.raises(CheckpointError, match=r"no complete checkpoint to load: step-6 is damaged \(.*\), and 2 "
                                              r"earlier one\(s\) are damaged or incomplete too; use a copy of the "
                                              r"run made before, or train the model again$"):
        ckpt.resolve_checkpoint(run)  # for reading (eval, export): no option of train's to name
    with pytest.raises(CheckpointError, match=r"too; use a copy of the run made before, or start a fresh run in "
                                              r"another folder \(run_dir=\)$"):
        ckpt.resolve_checkpoint(run, resuming=True)
    # A fresh run in the folder is refused without sending the user back to resume (from Python: run_dir=)
    with pytest.raises(UsageError, match=r"already holds a run, and it cannot be continued \(.*\); pick another "
                                         r"run_dir= / logging\.name for a fresh run"):
        Trainer(tiny_config(**RUN), run_dir=run, quiet=True).fit()


@pytest.mark.parametrize(("record", "why"), [
    # Python's own words were the reason: "cannot convert dictionary update sequence element #0 to
    # a sequence", "list indices must be integers or slices, not str", "'seq'"
    ({"seq": 2, "files": [1]}, "not a commit record (a JSON object with a files table and a crc32 table)"),
    ([1], "not a commit record (a JSON object with a files table and a crc32 table)"),
    ({"files": {"trainer.json": 5}}, "seq None is not a commit count"),
    ({"seq": 2, "files": {"trainer.json": 5}, "crc32": "x"},
     "not a commit record (a JSON object with a files table and a crc32 table)"),
    # a listed file without its checksum went unchecked (a record without crc32 at all is an older run's)
    ({"seq": 2, "files": {"trainer.json": 5, "model.safetensors": 9}, "crc32": {"trainer.json": "0000abcd"}},
     "crc32 gives no checksum of model.safetensors, which files lists"),
])
def test_a_commit_record_of_another_shape_is_named_in_words(tiny_config: Any, tmp_path: Path, record: Any,
                                                             why: str) -> None:
    run = tmp_path / "run"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    (root / "step-6" / "commit.json").write_text(json.dumps(record))
    with pytest.warns(CheckpointWarning, match=re.escape(f"step-6: the checkpoint is incomplete (commit.json unreadable "
                                                         f"({why})); using step-4")):
        assert ckpt.resolve_checkpoint(run) == root / "step-4"


def test_a_checkpoint_of_another_step_put_there_by_hand_is_kept_not_replaced(tiny_config: Any, tmp_path: Path) -> None:
    """A copy of step 2 placed as step-6 was passed over on resume and deleted when the run saved
    its own step 6, without a word; with a commit record newer than the run's it was even resumed
    from (the run went back to step 2)."""
    import shutil

    keep = {**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}
    run = tmp_path / "run"
    Trainer(tiny_config(**{**keep, "train": {**RUN["train"], "max_steps": 4}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    shutil.copytree(root / "step-2", root / "step-6")
    record = json.loads((root / "step-6" / "commit.json").read_text())
    (root / "step-6" / "commit.json").write_text(json.dumps({**record, "seq": 99}))
    placed = {p.name: p.read_bytes() for p in (root / "step-6").iterdir()}
    assert [step for step, _ in ckpt.list_checkpoints(root)] == [2, 4]  # neither resumed from nor pruned
    with pytest.warns(CheckpointWarning) as said:
        Trainer(tiny_config(**keep), resume=run, quiet=True).fit()
    lines = [str(w.message) for w in said]
    assert any(re.search(r"step-6: the checkpoint is not this run's \(put there by hand: its trainer.json records "
                         r"step 2\); using step-4, the newest complete one", line) for line in lines), lines
    assert any(re.search(r"step-6: held a checkpoint of another step .* moved to ", line) for line in lines), lines
    (kept,) = root.glob("step-6.foreign-*/step-6")
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == placed
    assert json.loads((root / "step-6" / ckpt.TRAINER_FILE).read_text())["step"] == 6


def test_a_finished_run_killed_before_its_last_prune_is_pruned_when_resumed(tiny_config: Any, tmp_path: Path) -> None:
    """Killed after its last checkpoint's commit (``latest`` written), before the prune that follows
    it, a run keeps one checkpoint beyond ``checkpoint.keep_last``; resumed (a requeued job finding
    it done) it has no later save to prune, so step-4 stayed for good. Now the resume prunes it."""
    run = tmp_path / "run"
    root = run / "checkpoints"
    _crash(tiny_config(**RUN), run, _on_replace(Moved(dst=ckpt.LATEST_FILE), after=True, nth=3))
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [4, 6]  # keep_last = 1: step-4 was still to go
    with pytest.raises(RunComplete, match="the run is complete"):
        Trainer(tiny_config(**RUN), resume=run, quiet=True).fit()
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-6"]


def test_a_finished_run_resumed_from_an_older_checkpoint_prunes_nothing(tiny_config: Any, tmp_path: Path) -> None:
    """Only a resume of the run's newest checkpoint prunes: the one resumed from stays whatever
    its place in the commit order (here it would be the first to go)."""
    keep = {**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}
    run = tmp_path / "run"
    root = run / "checkpoints"
    Trainer(tiny_config(**keep), run_dir=run, quiet=True).fit()
    with pytest.raises(RunComplete, match="the run is complete"):
        Trainer(tiny_config(**{**RUN, "train": {**RUN["train"], "max_steps": 4}}), resume=root / "step-4",
                quiet=True).fit()
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2, 4, 6]
