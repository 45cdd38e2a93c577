"""deepseek.durable: a file or folder is put under its final name whole, its content flushed to
disk before the rename and the folder holding it after (a power loss leaves the old content or the
new, never an empty file under the name); every writer of run, checkpoint, study and job state goes
through it.

What reaches the disk cannot be observed without cutting the power, so the order is checked by
watching the real ``os.fsync`` calls (each still made) against what the target name holds when
each happens."""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest

from deepseek import durable

REPO = Path(__file__).resolve().parents[3]


class FsyncLog:
    """Each ``os.fsync``: the inode it flushed, whether a folder, and what ``target`` held then."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
        self.calls: list[tuple[int, bool, bytes | None]] = []
        real = os.fsync

        def watched(fd: int) -> None:
            st = os.fstat(fd)
            held = target.read_bytes() if target.is_file() else None
            self.calls.append((st.st_ino, stat.S_ISDIR(st.st_mode), held))
            real(fd)

        monkeypatch.setattr(os, "fsync", watched)


def test_write_text_flushes_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    target = tmp_path / "latest"
    target.write_text("old\n")
    log = FsyncLog(monkeypatch, target)
    durable.write_text(target, "step-7\n")
    assert target.read_text() == "step-7\n"
    new_inode = target.stat().st_ino
    folder_inode = tmp_path.stat().st_ino
    files = [c for c in log.calls if not c[1]]
    folders = [c for c in log.calls if c[1]]
    assert files == [(new_inode, False, b"old\n")]  # the new file's data, while the name still held the old
    assert folders == [(folder_inode, True, b"step-7\n")]  # the folder, once the name held the new
    assert log.calls.index(files[0]) < log.calls.index(folders[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]  # no temporary name left


def test_a_staged_folder_has_every_file_and_folder_flushed_before_it_is_renamed(tmp_path, monkeypatch):
    target = tmp_path / "step-3"
    log = FsyncLog(monkeypatch, target / "model.bin")
    with durable.staged(target, folder=True) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "model.bin").write_bytes(b"w" * 10)
        (tmp / "sub" / "rng.bin").write_bytes(b"r")
    inodes = {p.stat().st_ino: p.name for p in [target, target / "sub", target / "model.bin", target / "sub" / "rng.bin"]}
    flushed_before = {inodes[i] for i, _d, held in log.calls if held is None and i in inodes}
    assert flushed_before == {"step-3", "sub", "model.bin", "rng.bin"}
    assert log.calls[-1] == (tmp_path.stat().st_ino, True, b"w" * 10)  # then the parent, after the rename
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~durable_umask()


def durable_umask() -> int:
    from deepseek.paths import umask

    return umask()


def test_a_writer_that_raises_leaves_the_old_content_and_no_temporary_name(tmp_path):
    target = tmp_path / "trainer.json"
    target.write_text("{}")
    with pytest.raises(RuntimeError), durable.staged(target) as tmp:
        tmp.write_text('{"half": ')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["trainer.json"]


def test_a_staged_file_gets_the_mode_a_plain_open_would(tmp_path):
    out = durable.write_bytes(tmp_path / "metrics.jsonl", b"{}\n")
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~durable_umask()


def test_a_checkpoint_commit_flushes_its_files_then_its_folder_then_latest(tmp_path, monkeypatch):
    from deepseek.training.checkpoint_dirs import commit_checkpoint, new_temp_dir

    root = tmp_path / "checkpoints"
    tmp = new_temp_dir(root, 5)
    (tmp / "model.safetensors").write_bytes(b"m" * 64)
    log = FsyncLog(monkeypatch, root / "latest")
    final = commit_checkpoint(tmp, root / "step-5")
    model = (final / "model.safetensors").stat().st_ino
    at = {ino: n for n, (ino, _d, _h) in enumerate(log.calls)}
    latest_ino = (root / "latest").stat().st_ino
    root_fsyncs = [n for n, (ino, _d, _h) in enumerate(log.calls) if ino == root.stat().st_ino]
    assert at[model] < at[final.stat().st_ino] < root_fsyncs[0]  # content, its folder, the rename
    assert log.calls[at[latest_ino]][2] is None  # latest flushed before its name existed
    assert log.calls[root_fsyncs[-1]][2] == b"step-5\n"  # and its rename flushed after


def test_the_metrics_up_to_a_checkpoint_are_flushed_before_its_commit_rename(tiny_config, tmp_path, monkeypatch):
    """``metrics.jsonl`` is appended to in place; a checkpoint committed while its records were
    still in the page cache would, after a power cut, claim steps whose records are gone. Each
    real ``os.fsync`` of the metrics file notes the steps the file holds then; each commit rename
    (``os.replace`` onto ``checkpoints/step-N``) must come after one that held step N's records."""
    from deepseek.training.trainer import Trainer

    run = tmp_path / "run"
    metrics = run / "metrics.jsonl"
    synced: list[list[int]] = []  # the steps of each metrics fsync, in order
    commits: list[tuple[int, list[int] | None]] = []  # (step, the steps of the last metrics fsync before it)
    real_fsync, real_replace = os.fsync, os.replace

    def watched_fsync(fd: int) -> None:
        real_fsync(fd)
        if metrics.is_file() and os.fstat(fd).st_ino == metrics.stat().st_ino:
            synced.append([json.loads(line)["step"] for line in metrics.read_text().splitlines()])

    def watched_replace(src, dst, *args, **kwargs) -> None:
        target = Path(dst)
        if target.parent.name == "checkpoints" and target.name.startswith("step-"):
            commits.append((int(target.name[5:]), synced[-1] if synced else None))
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", watched_fsync)
    monkeypatch.setattr(os, "replace", watched_replace)
    config = tiny_config(train={"max_steps": 4, "eval_interval": 2}, checkpoint={"interval": 2})
    Trainer(config, run_dir=run).fit()
    assert [step for step, _ in commits] == [2, 4]
    for step, steps in commits:
        assert steps is not None and steps.count(step) == 2, (step, steps)  # its step record and its evaluation
        assert max(steps) == step
    assert len(synced) == 2  # once a checkpoint: a step costs no fsync


# The heartbeat is rewritten every step and means nothing after a restart: it is not made durable
# (an fsync a step would slow training), and is the one rename outside deepseek.durable.
_NOT_DURABLE = {"packages/deepseek-pro/src/deepseek_pro/launch/heartbeat.py"}


def _is_rename(node: ast.AST) -> bool:
    """``os.replace(a, b)``, any ``.rename(...)``, or pathlib's ``tmp.replace(target)`` (one
    positional argument: ``str.replace`` takes two, ``dataclasses.replace`` keywords)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    if node.func.attr == "rename":
        return True
    if node.func.attr != "replace":
        return False
    if isinstance(node.func.value, ast.Name) and node.func.value.id == "os":
        return True
    return len(node.args) == 1 and not node.keywords


def test_every_rename_in_the_packages_benchmarks_and_examples_goes_through_deepseek_durable():
    found = []
    sources = [p for pattern in ("packages/*/src/**/*.py", "benchmarks/**/*.py", "examples/*/src/**/*.py")
               for p in REPO.glob(pattern)]
    assert any(p.parts[-2] == "benchmarks" for p in sources) and any("examples" in p.parts for p in sources)
    for source in sorted(sources):
        rel = source.relative_to(REPO).as_posix()
        if rel.endswith("deepseek/durable.py") or rel in _NOT_DURABLE:
            continue
        found += [f"{rel}:{node.lineno}" for node in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
                  if _is_rename(node)]
    assert found == []
    assert (REPO / next(iter(_NOT_DURABLE))).read_text().count("os.replace(") == 1
