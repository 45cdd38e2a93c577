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
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _checkpoint_run import RUN

from deepseek.errors import RunComplete
from deepseek.training import checkpoint as ckpt
from deepseek.training.trainer import Trainer


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

