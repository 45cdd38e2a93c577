"""A checkpoint folder's commit record (``commit.json``) in odd states. A folder without one is a
checkpoint of a version from before commit records (or an export) only when it holds what those
wrote; a ``commit.json`` that is a folder or a FIFO was taken for such a missing record, so the
checkpoint was loaded without its sizes and checksums checked."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint_dirs import CheckpointWarning
from deepseek.training.trainer import Trainer

RUN = {"train": {"max_steps": 6}, "checkpoint": {"interval": 2, "keep_last": 5}}


def test_a_commit_record_that_is_a_folder_or_a_fifo_is_refused(tiny_config: Any, tmp_path: Path,
                                                                 deepseek_here: Any) -> None:
    """Neither is ever written by a commit: the checkpoint named directly is refused in one line
    naming it (exit 2, nothing written; the FIFO is never opened to wait for a writer), and a run
    folder's lookup passes over it to the newest complete one, saying so."""
    run = tmp_path / "r"
    Trainer(tiny_config(**RUN), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    for step in (4, 6):
        (root / f"step-{step}" / ckpt.COMMIT_FILE).unlink()
    (root / "step-6" / ckpt.COMMIT_FILE).mkdir()
    os.mkfifo(root / "step-4" / ckpt.COMMIT_FILE)
    before = sorted(os.listdir(run))
    for step, what in [(6, "a folder"), (4, "not a regular file (a FIFO, device, socket or broken link)")]:
        for args in (["eval", "--checkpoint", f"r/checkpoints/step-{step}", "--device", "cpu"],
                     ["train", "--resume", f"r/checkpoints/step-{step}", "--max-steps", "8", "--quiet"]):
            started = time.monotonic()
            proc = deepseek_here(*args, cwd=tmp_path)
            assert (proc.returncode, proc.stdout) == (2, ""), (args, proc.stderr)
            assert proc.stderr == (
                f"error: r/checkpoints/step-{step}: the checkpoint is incomplete ({ckpt.COMMIT_FILE} is {what}, not a "
                "commit record); use r/checkpoints/step-2 or start a fresh run\n"), proc.stderr
            assert time.monotonic() - started < 5
    assert sorted(os.listdir(run)) == before
    with pytest.warns(CheckpointWarning) as caught:
        assert ckpt.resolve_checkpoint(run) == root / "step-2"
    assert [str(w.message) for w in caught] == [
        f"{root / 'step-6'}: the checkpoint is incomplete ({ckpt.COMMIT_FILE} is a folder, not a commit record); "
        "using step-2, the newest complete one"]


def test_a_checkpoint_without_a_record_is_taken_only_when_complete(tiny_config: Any, tmp_path: Path) -> None:
    """A run from before commit records (no checkpoint has one) still resumes from its newest
    checkpoint. One of its folders without model weights was taken as complete all the same (its
    trainer.json was all a lookup asked for): the resume then failed on it rather than take the
    previous one."""
    run = tmp_path / "r"
    Trainer(tiny_config(**RUN), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    for step in (2, 4, 6):
        (root / f"step-{step}" / ckpt.COMMIT_FILE).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # nothing passed over
        assert ckpt.resolve_checkpoint(run) == root / "step-6"
        assert [s for s, _ in ckpt.list_checkpoints(root)] == [2, 4, 6]
    (root / "step-6" / ckpt.MODEL_FILE).unlink()
    with pytest.warns(CheckpointWarning) as caught:
        assert ckpt.resolve_checkpoint(run) == root / "step-4"
    assert [str(w.message) for w in caught] == [
        f"{root / 'step-6'}: the checkpoint is incomplete (no model weights: neither model.safetensors nor model/ "
        "shards); using step-4, the newest complete one"]
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2, 4]  # never pruned as a checkpoint either
    state = Trainer(tiny_config(**{**RUN, "train": {"max_steps": 8}}), resume=run, quiet=True).fit()
    assert state.step == 8


def test_a_folder_of_exported_weights_beside_a_checkpoint_file_in_any_form_is_a_checkpoint(
        tiny_config: Any, tmp_path: Path, deepseek_here: Any) -> None:
    """A folder holding exported weights (import-hf's layout) is read as such only without a
    ``commit.json`` or ``trainer.json``: an export writes neither. A broken link by either name was
    not seen (it does not exist to ``Path.exists``), so the folder's weights were loaded as an
    export; it is now the incomplete checkpoint a FIFO or folder by that name already was."""
    from deepseek.training.weights_source import read_source

    run = tmp_path / "r"
    Trainer(tiny_config(train={"max_steps": 1, "warmup_steps": 0}, checkpoint={"interval": 1}), run_dir=run,
            quiet=True).fit()
    folder = tmp_path / "w"
    folder.mkdir()
    ckpt.export_weights(run, folder / ckpt.MODEL_FILE)
    assert read_source(folder).origin.kind == "exported"
    refusals = {
        ckpt.COMMIT_FILE: f"w: the checkpoint is incomplete ({ckpt.COMMIT_FILE} is not a regular file (a FIFO, device, "
                          "socket or broken link), not a commit record); use an earlier checkpoint or start a fresh run",
        ckpt.TRAINER_FILE: f"w/{ckpt.TRAINER_FILE}: is not a regular file; the checkpoint is incomplete, use an earlier "
                           "checkpoint of the run (pass its checkpoints/step-N folder) or start a fresh run"}
    for name, line in refusals.items():
        os.symlink(tmp_path / "gone", folder / name)
        proc = deepseek_here("generate", "--checkpoint", "w", "--max-new-tokens", "1", "--device", "cpu", "ab",
                             cwd=tmp_path)
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"error: {line}\n"), (name, proc.stderr)
        (folder / name).unlink()
    assert sorted(os.listdir(folder)) == [ckpt.MODEL_FILE]
