"""A run folder's files read back whole (the ``latest`` pointer, ``config.toml``, other
checkpoints' ``trainer.json``) or line by line (``metrics.jsonl``) that are no file the run wrote:
a FIFO (a read blocked the command forever), a file of 2 GiB (read whole: minutes and gigabytes
of memory), or a link to a device (the run renamed its own file over it). Each is read no further
than its limit or refused unread, in one line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hostile_cli import Hostile, assert_refused

RESUME = ["train", "--resume", "run", "--max-steps", "2", "--quiet"]


def _copy(hostile: Hostile, trained_run: Path) -> Path:
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    return run


def _sparse(path: Path, size: int = 2 << 30) -> None:
    """``path`` made ``size`` bytes long: NUL bytes past its content, no disk space taken."""
    with path.open("r+b") as fh:
        fh.truncate(size)


@pytest.mark.parametrize("name", ["checkpoints/latest", "metrics.jsonl", "config.toml"])
def test_a_run_file_that_is_a_fifo_is_refused_unread(hostile: Hostile, trained_run: Path, name: str) -> None:
    """Reading the FIFO blocked the resume for good (no writer ever comes)."""
    run = _copy(hostile, trained_run)
    (run / name).unlink()
    os.mkfifo(run / name)
    hostile.refused(*RESUME, expect=[name, "not a regular file"])


def test_a_link_to_a_fifo_where_the_run_writes_its_pointer_is_refused(hostile: Hostile, trained_run: Path,
                                                                      tmp_path: Path) -> None:
    """The checkpoint's commit wrote ``latest`` through the link: its rename replaced what the link
    names (a device such as /dev/zero, when run as root) with a file of the pointer's text."""
    run = _copy(hostile, trained_run)
    fifo = tmp_path / "elsewhere"
    os.mkfifo(fifo)
    (run / "checkpoints" / "latest").unlink()
    (run / "checkpoints" / "latest").symlink_to(fifo)
    hostile.refused(*RESUME, expect=["checkpoints/latest", "not a regular file"])
    assert fifo.is_fifo()


def test_a_2gib_pointer_or_config_is_read_no_further_than_its_limit(hostile: Hostile, trained_run: Path) -> None:
    """``latest`` of 2 GiB is no hint (the newest complete checkpoint is found without it); a
    config.toml of 2 GiB is no TOML (kept aside, as an edited one is): both read 16 MiB at most."""
    run = _copy(hostile, trained_run)
    _sparse(run / "checkpoints" / "latest")
    _sparse(run / "config.toml")
    outcome = hostile.run(*RESUME)
    assert outcome.code == 0, outcome.stderr
    assert "config.toml is not valid TOML (larger than 16,777,216 bytes, the most such a file has)" in outcome.stderr
    assert (run / "config.edited.toml").stat().st_size == 2 << 30  # set aside, not lost
    assert (run / "checkpoints" / "latest").read_text() == "step-2\n"


def test_a_2gib_metrics_file_is_refused_at_its_first_overlong_line(hostile: Hostile, trained_run: Path) -> None:
    """Read whole, it took minutes and gigabytes of memory (and so would hashing it: the run
    folder is compared by its files' names, sizes and times)."""
    run = _copy(hostile, trained_run)
    _sparse(run / "metrics.jsonl")
    lines = len((trained_run / "metrics.jsonl").read_bytes().splitlines())
    before = [(p, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(run.rglob("*"))]
    assert_refused(hostile.run(*RESUME), [f"metrics.jsonl:{lines + 1}: longer than 1,048,576 bytes, not a metrics record"])
    assert [(p, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(run.rglob("*"))] == before


def test_a_commit_record_giving_a_2gib_trainer_json_is_refused_by_the_size_it_gives(
        hostile: Hostile, trained_run: Path) -> None:
    """A ``commit.json`` whose sizes match a 2 GiB ``trainer.json`` (sparse here) passed the size
    check, and the checksum then read all 2 GiB (seconds of disk, for a file whose reader takes
    16 MiB at most) before the checkpoint was refused as damaged. A record giving a file read
    whole more than that is no record a commit wrote: refused from the sizes it gives, unread."""
    import json

    run = _copy(hostile, trained_run)
    step = run / "checkpoints" / "step-1"
    _sparse(step / "trainer.json")
    record = json.loads((step / "commit.json").read_text())
    record["files"]["trainer.json"] = 2 << 30
    (step / "commit.json").write_text(json.dumps(record))
    said = "commit.json gives trainer.json 2,147,483,648 bytes, more than the 16,777,216 such a file has"
    assert_refused(hostile.run("eval", "--checkpoint", str(step), "--device", "cpu"),
                   [f"{step}: the checkpoint is incomplete ({said}: no record a commit wrote)"])
    assert_refused(hostile.run("eval", "--checkpoint", "run", "--device", "cpu"),
                   [f"run: no complete checkpoint to load: step-1 is incomplete ({said}"])
    assert (step / "trainer.json").stat().st_size == 2 << 30 and (step / "trainer.json").stat().st_blocks < 64
