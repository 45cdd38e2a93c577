"""Damage a command finds in a run read back from disk beyond the corrupt fields of
test_hostile_state.py: files changed after their commit, commit records, exported weights,
torn or damaged metrics lines, the ``latest`` pointer, another optimizer's state. Each is
refused in one line naming the file (exit 2) or passed over as the docs say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _corrupt_state import MODEL, READERS, STEP, _set
from hostile_cli import Hostile


@pytest.mark.parametrize("reader", ["resume", "resume elsewhere"])
def test_a_file_changed_after_its_commit_is_refused(hostile: Hostile, trained_run: Path, reader: str) -> None:
    """A checkpoint whose trainer.json no longer has the size its commit record lists is incomplete."""
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    _set(step=1)(run)  # same value, different layout: a size the commit record does not list
    hostile.refused(*READERS[reader], expect=["no complete checkpoint", "step-1 is incomplete", "trainer.json"])


@pytest.mark.parametrize("reader", list(READERS))
def test_a_bit_flipped_after_its_commit_is_refused_by_every_reader(hostile: Hostile, trained_run: Path,
                                                                   reader: str) -> None:
    """A weight off by one bit, the file's size kept: the commit record's CRC-32 refuses it
    before any command uses its values (was read, and trained on or sampled from, as it was)."""
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    weights = run / MODEL
    data = bytearray(weights.read_bytes())
    data[len(data) - 100] ^= 0x01  # the last weights' bytes: the header is not where this damage lies
    weights.write_bytes(bytes(data))
    hostile.refused(*READERS[reader], expect=["model.safetensors changed after it was committed", "CRC-32"])


@pytest.mark.parametrize("body", [{"seq": 1e308}, {"seq": True}, {"seq": -1}, {"files": {"trainer.json": "big"}},
                                  {"files": {}}])
def test_a_commit_record_read_back_is_checked_like_input(hostile: Hostile, trained_run: Path, body: dict) -> None:
    """A commit record whose sequence is no commit count, or whose sizes are no byte counts, makes
    its checkpoint incomplete (a float seq of 1e308 once ordered it after every later commit)."""
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    record = run / STEP / "commit.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), **body}))
    hostile.refused(*READERS["resume"], expect=["no complete checkpoint", "step-1 is incomplete", "commit.json unreadable"])


def _exported(trained_run: Path, path: Path, model_meta: str | None) -> None:
    from safetensors.torch import save_file

    from deepseek.training.checkpoint import load_model_state

    meta = {"format": "deepseek-weights"} | ({"model": model_meta} if model_meta is not None else {})
    save_file(load_model_state(trained_run / STEP), str(path), metadata=meta)


@pytest.mark.parametrize(("what", "meta", "words"), [
    ("no model config", None, ["has no [model] config"]),
    ("model config not JSON", "{tiny", ["[model] config in its metadata is not"]),
    ("model config a string", '"tiny"', ["model: expected a [model] table"]),
    ("model config of another model", '{"name": "tiny", "d_model": 64}', ["weights do not fit"]),
])
def test_corrupt_exported_weights_are_refused(hostile: Hostile, trained_run: Path, what: str, meta: str | None,
                                              words: list[str]) -> None:
    weights = hostile.work / "w.safetensors"
    _exported(trained_run, weights, meta)
    for argv in (["generate", "--checkpoint", str(weights), "--device", "cpu"], ["export", "--checkpoint", str(weights)]):
        hostile.refused(*argv, expect=words)


def test_a_torn_last_metrics_line_is_dropped_on_resume(hostile: Hostile, trained_run: Path) -> None:
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    metrics = run / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 2, "lo')
    done = hostile.run("train", "--resume", "run", "--max-steps", "2", "--quiet")
    assert done.code == 0, done.stderr
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 2
    # said once, naming the file and the line (it used to be dropped without a word)
    said = [line for line in done.stderr.splitlines() if "half-written last line" in line]
    assert len(said) == 1 and "metrics.jsonl:" in said[0], done.stderr


def test_a_complete_last_metrics_line_that_is_not_a_record_is_refused(hostile: Hostile, trained_run: Path) -> None:
    """A last line with its newline was written whole: not JSON is damage, not a torn write (a file
    of that one line used to be dropped on resume, the run's history with it)."""
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    metrics = run / "metrics.jsonl"
    metrics.write_text("garbage{{\n")
    hostile.refused("train", "--resume", "run", "--max-steps", "2",
                    expect=["metrics.jsonl:1: not a metrics record", "delete or repair that line"])
    assert metrics.read_text() == "garbage{{\n"  # nothing rewritten


def test_a_metrics_file_of_one_torn_line_is_refused(hostile: Hostile, trained_run: Path) -> None:
    """A run with a checkpoint wrote records before it: a file whose only line is not JSON (no
    newline) is not a torn write but a lost history (it was dropped with a warning and the
    run went on without its earlier records)."""
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    metrics = run / "metrics.jsonl"
    metrics.write_text("garbage")
    hostile.refused("train", "--resume", "run", "--max-steps", "2",
                    expect=["metrics.jsonl:1: not a metrics record", "delete or repair that line"])
    assert metrics.read_text() == "garbage"  # nothing rewritten


def test_a_latest_pointer_that_is_not_text_is_no_hint(hostile: Hostile, trained_run: Path) -> None:
    """``checkpoints/latest`` is a hint for people and tools: bytes that are not UTF-8 in it
    are skipped like a missing file, and the run resumes from its newest complete checkpoint."""
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    (run / "checkpoints" / "latest").write_bytes(b"\xff\xfe")
    done = hostile.run("train", "--resume", "run", "--max-steps", "2", "--quiet")
    assert done.code == 0, done.stderr
    assert (run / "checkpoints" / "latest").read_text() == "step-2\n"


@pytest.mark.parametrize("reader", ["resume", "resume elsewhere"])
def test_resuming_with_another_optimizer_is_refused(hostile: Hostile, trained_run: Path, reader: str) -> None:
    """AdamW's saved state under ``--set optimizer.name=sgd``: refused while the checkpoint is
    read, naming the file and optimizer.name (was a KeyError at the first step, after the run's
    config.toml had been rewritten)."""
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    # without adamw's own key (master_update), which sgd would refuse before the checkpoint is read
    hostile.refused(*READERS[reader], "--set", "optimizer.name=\"sgd\"", "--set", "~optimizer.master_update",
                    expect=[str(STEP / "optimizer.safetensors"), "another optimizer", "'momentum'", "optimizer.name"])


def test_a_hyper_parameter_only_one_side_has_is_no_other_optimizer() -> None:
    """A torch release that added (or dropped) a hyper-parameter resumes; both kinds of difference
    at once is another optimizer."""
    from deepseek.errors import CheckpointError
    from deepseek.training.checkpoint import check_groups_fit
    from deepseek.training.optimizers import AdamW

    adamw = {"lr": 1e-3, "betas": (0.9, 0.95), "eps": 1e-8, "params": ["w"], "fused": None}
    check_groups_fit([adamw], [{**adamw, "decoupled_weight_decay": True, "fused": True}], "opt")
    # a key the live torch dropped: taken where the optimizer declares it (adamw does)
    check_groups_fit([{**adamw, "decoupled_weight_decay": True}], [adamw], "opt", AdamW.hyper_parameters)
    # one it neither holds nor declares was carried into the optimizer and saved again
    with pytest.raises(CheckpointError, match=r"^opt: optimizer group 0 holds 'foo', which this run's optimizer "
                                              r"neither has nor declares; the checkpoint is damaged"):
        check_groups_fit([{**adamw, "foo": 1}], [adamw], "opt", AdamW.hyper_parameters)
    with pytest.raises(CheckpointError, match=r"opt: .*another optimizer .*\['betas', 'eps'\].*\['momentum'\]"):
        check_groups_fit([adamw], [{"lr": 1e-3, "momentum": 0.0, "params": ["w"]}], "opt")



def test_a_damaged_newest_checkpoint_is_passed_over_in_one_warning_line(hostile: Hostile, trained_run: Path) -> None:
    """A checkpoint under its final name whose file changed after its commit is not resumed from;
    the run resumes from the newest complete one and says which it passed over, once."""
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    more = ("--quiet", "--set", "checkpoint.interval=1")
    assert hostile.run("train", "--resume", "run", "--max-steps", "2", *more).code == 0
    model = run / "checkpoints" / "step-2" / "model.safetensors"
    size = model.stat().st_size
    model.write_bytes(model.read_bytes()[:100])
    again = hostile.run("train", "--resume", "run", "--max-steps", "3", *more)
    assert again.code == 0, again.stderr
    assert [line for line in again.stderr.splitlines() if line.startswith("warning:")] == [
        f"warning: {Path('run', 'checkpoints', 'step-2')}: the checkpoint is incomplete (model.safetensors is corrupt "
        f"or truncated: 100 bytes, {size} were written); using step-1, the newest complete one"], again.stderr
    assert f"resumed from {Path('run', 'checkpoints', 'step-1')} at step 1" in again.stderr
    assert json.loads((run / "checkpoints" / "step-3" / "trainer.json").read_text())["step"] == 3

