"""Run-folder files opened after a check (a commit record's stat of a checkpoint file, the is_file
of a run folder's metrics.jsonl) are opened through ``deepseek.parsing.open_file``: a FIFO put
there since the check is refused in the reader's own terms, never waited on."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.parsing import UnreadableFile
from deepseek.training.checkpoint_digest import checksum_problem, checksums_of
from deepseek.training.run_folder import not_written_by_a_run


def test_a_checkpoint_file_that_is_a_fifo_has_no_checksum(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    want = checksums_of(tmp_path, ["model.safetensors"])
    assert checksum_problem(tmp_path, want) is None
    (tmp_path / "model.safetensors").unlink()
    os.mkfifo(tmp_path / "model.safetensors")  # its stat passes; its read waited for a writer
    assert past_fifo(tmp_path / "model.safetensors", lambda: checksum_problem(tmp_path, want)) == (
        "cannot read model.safetensors: not a regular file (a FIFO, device or socket)")
    with pytest.raises(UnreadableFile):
        past_fifo(tmp_path / "model.safetensors", lambda: checksums_of(tmp_path, ["model.safetensors"]))


def test_a_run_folders_metrics_swapped_for_a_fifo_is_not_a_runs(
        tmp_path: Path, fifo_after_is_file: Callable[[Path], None], past_fifo: Callable[..., Any]) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    assert not_written_by_a_run(tmp_path) is None
    fifo_after_is_file(metrics)
    assert past_fifo(metrics, lambda: not_written_by_a_run(tmp_path)) == "metrics.jsonl"
