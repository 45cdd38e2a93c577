"""Corrupt files read back from disk: ``trainer.json``, ``metrics.jsonl``, safetensors weights,
optimizer and RNG state, exported weights. Every command that reads a run (train --resume,
generate, eval, optimize, export) refuses each with one line naming the file, exit 2, and leaves
the run as it was."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _corrupt_state import (
    MODEL,
    OPTIMIZER,
    READERS,
    STEP,
    TRAINER,
    _agree_commit_record,
    _as_integers,
    _deep_state,
    _drop,
    _drop_first_moment,
    _edit_first,
    _edit_state,
    _edit_tensors,
    _garbage_header,
    _nan_in_first,
    _reshape_first,
    _set,
    _set_data,
    _truncate,
    _write,
)
from hostile_cli import Hostile, snapshot

STATE_CASES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("step not a number", _set(step="three"), ["step is a string"]),
    ("step negative", _set(step=-4), ["step is a number (-4)", "whole number >= 0"]),
    ("step fraction", _set(step=1.5), ["step"]),
    ("step boolean", _set(step=True), ["step is a boolean"]),
    ("step null", _set(step=None), ["step is null"]),
    ("step missing", _drop("step"), ["no 'step' field"]),
    # a step past the run's end would evaluate or resume as what it is not
    ("step past max_steps", _edit_state(lambda state: state["config"]["train"].update(max_steps=0)),
     ["step is 1, more than the run's train.max_steps (0)"]),
    ("tokens negative", _set(tokens_seen=-1), ["tokens_seen"]),
    ("tokens past 64 bits", _set(tokens_seen=10**400), ["tokens_seen is a number", "< 2**63"]),
    ("samples a string", _set(samples_seen="many"), ["samples_seen"]),
    ("data a list", _set(data=[1, 2]), ["data is a list"]),
    ("data missing", _drop("data"), ["no 'data' field"]),
    ("config a string", _set(config="tiny"), ["config is a string"]),
    ("config value of the wrong type", _edit_state(lambda state: state["config"]["model"].update(d_model="big")),
     ["trainer.json (the checkpoint's config", "model.d_model: expected an integer"]),
    ("config missing", _drop("config"), ["no 'config' field"]),
    # a model far larger than its weights: refused from the weights' header before it is built
    ("config asks for a huge model", _edit_state(lambda state: state["config"]["model"].update(d_model=1 << 20)),  # 16 TB of fp32
     ["weights do not fit this model", "shape mismatch"]),
    ("format version a string", _set(format_version="1"), ["format_version"]),
    ("format version newer", _set(format_version=99), ["upgrade deepseek-core"]),
    ("format wrong", _set(format="other"), ["not a deepseek checkpoint (format is 'other', not"]),
    ("metrics not numbers", _set(metrics={"loss": "low"}), ["metrics.loss"]),
    ("scaler not numbers", _set(precision={"name": "fp16", "scaler": {"scale": "big"}}), ["precision.scaler"]),
    ("world size zero", _set(world_size=0), ["world_size"]),
    ("schedule rate a string", _edit_state(lambda state: state["schedule"].update(lr="x")), ["schedule.lr is a string"]),
    # past train.lr's bound (the config's rule): a rate of 1e308 trained into inf
    ("schedule rate past train.lr's bound", _edit_state(lambda state: state["schedule"].update(lr=1e308)),
     ["schedule.lr is a number (1e+308), expected a number from 0 to 100"]),
    ("schedule steps negative", _edit_state(lambda state: state["schedule"].update(warmup_steps=-1)),
     ["schedule.warmup_steps is a number (-1)"]),
    ("not UTF-8", _write(TRAINER, b'{"format": "deepseek-checkpoint", "step": \xff}'), ["trainer.json"]),
    ("truncated", _truncate(TRAINER, 30), ["trainer.json", "corrupt or truncated"]),
    ("a JSON list", _write(TRAINER, b"[1, 2, 3]"), ["not a deepseek checkpoint"]),
    ("empty", _write(TRAINER, b""), ["corrupt or truncated"]),
    # Python's parser recursed once per level: RecursionError, an "internal error"
    ("nested past the stack", _deep_state, ["trainer.json", "nested deeper than 64 levels"]),
    ("weights truncated", _truncate(MODEL, 100), ["model.safetensors", "corrupt or truncated"]),
    ("weights empty", _write(MODEL, b""), ["model.safetensors"]),
    ("weights header garbage", _garbage_header(MODEL), ["model.safetensors"]),
    ("weights NaN", _edit_tensors(MODEL, _nan_in_first), ["model.safetensors", "NaN or infinite"]),
    ("weights integers", _edit_tensors(MODEL, _as_integers), ["step-1", "holds torch.int64 values where the model keeps"]),
]
"""``(what, corrupt(run), words of the message)``; every message also names the file."""

RESUME_ONLY: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("data epoch a string", _set_data(epoch="x"), ["data position: epoch"]),
    ("data cursor past the corpus", _set_data(cursor=10**9), ["data position: cursor"]),
    ("data row negative", _set_data(row=-1), ["data position: row"]),
    ("data done a string", _set_data(done="yes"), ["data position: done"]),
    ("data offset huge", _set_data(offset=10**12), ["data position: offset"]),
    ("data from another corpus", _set_data(fingerprint="0" * 16), ["the corpus changed"]),
    ("data position of another version", _set_data(version=7), ["data position: version is 7"]),
    ("data block index past its range", _set_data(block_index=2**60), ["data position: block_index"]),
    # a NaN best: no evaluation could ever improve on it (was accepted and written on)
    ("monitor best NaN", _edit_state(lambda state: state.setdefault("monitor", {}).update(
        name="val_loss", mode="min", best=float("nan"), best_step=1, stale=0)), ["'monitor' holds invalid values"]),
    # taken: a negative best step was carried on, and true counted as one evaluation without improvement
    *((f"monitor {key} {value}", _edit_state(lambda state, key=key, value=value: state.setdefault("monitor", {}).update(
        {"name": "val_loss", "mode": "min", "best": 1.0, "best_step": 1, "stale": 0, key: value})),
       ["'monitor' holds invalid values"])
      for key, value in (("best_step", -5), ("stale", True))),
    ("optimizer truncated", _truncate(str(STEP / "optimizer.safetensors"), 50), ["optimizer.safetensors"]),
    ("optimizer header garbage", _garbage_header(str(STEP / "optimizer.safetensors")), ["optimizer.safetensors"]),
    ("optimizer state NaN", _edit_tensors(OPTIMIZER, _nan_in_first), ["optimizer.safetensors", "NaN or infinite"]),
    ("optimizer state of another shape", _edit_tensors(OPTIMIZER, _reshape_first),
     ["optimizer.safetensors", "/exp_avg has shape [3, 5] where optimizer 'adamw' keeps [32] for its parameter [32]"]),
    # AdamW's second moment as integers was cast back to floats and trained on; negative, its
    # square root made the next step NaN ("training diverged"): both now refused as read
    ("optimizer second moment integers", _edit_tensors(OPTIMIZER, _edit_first("exp_avg_sq", lambda t: (t * 1e9).long())),
     ["optimizer.safetensors: optimizer state ", "/exp_avg_sq holds torch.int64 values where optimizer 'adamw' keeps "
      "floating-point values"]),
    ("optimizer second moment negative", _edit_tensors(OPTIMIZER, _edit_first("exp_avg_sq", lambda t: -t - 1)),
     ["/exp_avg_sq holds 32 negative value(s) (the least -1", "where optimizer 'adamw' keeps values >= 0"]),
    ("optimizer step negative", _edit_tensors(OPTIMIZER, _edit_first("step", lambda t: -t - 2)),
     ["/step is -3.0, not a whole count of steps"]),
    ("optimizer step a fraction", _edit_tensors(OPTIMIZER, _edit_first("step", lambda t: t + 0.5)),
     ["/step is 1.5, not a whole count of steps"]),
    ("optimizer state another optimizer keeps", _edit_tensors(OPTIMIZER, lambda t: t.update(
        {k.replace("exp_avg_sq", "momentum_buffer"): v.clone() for k, v in t.items() if k.endswith("/exp_avg_sq")})),
     ["holds 'momentum_buffer', which optimizer 'adamw' does not keep (it keeps exp_avg, exp_avg_sq, step)"]),
    ("optimizer state missing a key", _edit_tensors(OPTIMIZER, _drop_first_moment),
     ["optimizer.safetensors", "lacks ['exp_avg']"]),
    ("rng truncated", _truncate(str(STEP / "rng-0.safetensors"), 20), ["rng-0.safetensors"]),
]
"""Files only a resumed run reads."""

METRICS_CASES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("metrics line garbage", _write("metrics.jsonl", b'{"step": 0, "val_loss": 5.0}\n{oops\n{"step": 1, "loss": 5}\n'),
     ["metrics.jsonl:2", "delete or repair"]),
    ("metrics line nested past the stack", _write("metrics.jsonl", b"[" * 5000 + b"]" * 5000 + b'\n{"step": 1}\n'),
     ["metrics.jsonl:1", "not a metrics record"]),
    ("metrics line a list", _write("metrics.jsonl", b'[1]\n{"step": 1, "loss": 5}\n'), ["metrics.jsonl:1"]),
    ("metrics step a string", _write("metrics.jsonl", b'{"step": "one"}\n{"step": 1}\n'), ["metrics.jsonl:1"]),
    ("metrics step negative", _write("metrics.jsonl", b'{"step": -1}\n{"step": 1}\n'), ["metrics.jsonl:1"]),
    ("metrics not UTF-8", _write("metrics.jsonl", b'{"step": 0, "x": "\xff"}\n'), ["metrics.jsonl", "cannot read"]),
    ("metrics a folder", lambda run: ((run / "metrics.jsonl").unlink(), (run / "metrics.jsonl").mkdir()),
     ["metrics.jsonl: is a folder where the run writes its metrics.jsonl"]),
    ("metrics a loop of links", lambda run: ((run / "metrics.jsonl").unlink(), (run / "metrics.jsonl").symlink_to("metrics.jsonl")),
     ["metrics.jsonl: cannot read the run's metrics (Too many levels of symbolic links)"]),
    ("config.toml a folder", lambda run: ((run / "config.toml").unlink(), (run / "config.toml").mkdir()),
     ["config.toml: is a folder where the run writes its config.toml"]),
    # it trained, then failed renaming its pointer onto the folder (internal error)
    ("latest pointer a folder", lambda run: ((run / "checkpoints" / "latest").unlink(),
                                             (run / "checkpoints" / "latest").mkdir()),
     ["checkpoints/latest: is a folder where the run writes its checkpoints/latest"]),
]
"""The run's own files (metrics read back, config and plot written) when a run continues in its
own folder."""


def _cases() -> list[Any]:
    cases = [pytest.param(reader, corrupt, words, id=f"{reader}: {what}")
             for what, corrupt, words in STATE_CASES for reader in READERS]
    cases += [pytest.param(reader, corrupt, words, id=f"{reader}: {what}")
              for what, corrupt, words in RESUME_ONLY for reader in ("resume", "resume elsewhere")]
    return cases + [pytest.param("resume", corrupt, words, id=f"resume: {what}") for what, corrupt, words in METRICS_CASES]


@pytest.mark.parametrize(("reader", "corrupt", "words"), _cases())
def test_corrupt_state_is_refused(hostile: Hostile, trained_run: Path, reader: str,
                                  corrupt: Callable[[Path], None], words: list[str]) -> None:
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    corrupt(run)
    _agree_commit_record(run)  # the content checks are under test, not the commit record's sizes
    hostile.refused(*READERS[reader], expect=words)


@pytest.mark.parametrize("reader", ["resume", "generate", "eval"])
def test_a_checkpoint_folder_recording_another_step_is_refused(hostile: Hostile, trained_run: Path,
                                                               reader: str) -> None:
    """``step-1`` passed by name whose trainer.json records step 0 (a run folder passes over it
    with a warning) was read as step 0."""
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    _set(step=0)(run)
    _agree_commit_record(run)
    argv = [str(run / STEP) if arg == "run" else arg for arg in READERS[reader]]
    hostile.refused(*argv, expect=["trainer.json: step is 0, but the folder is step-1"])


@pytest.mark.parametrize("reader", ["resume", "resume elsewhere"])
def test_resuming_a_run_that_is_done_writes_nothing_and_ends_cleanly(hostile: Hostile, trained_run: Path,
                                                                     reader: str) -> None:
    """The checkpoint is at step 1 = train.max_steps: one line, exit 0 (a requeued job that finds
    its run complete ends as done, not failed), nothing written."""
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    argv = list(READERS[reader])
    argv[argv.index("--max-steps") + 1] = "1"
    before = snapshot(hostile.watched)
    outcome = hostile.run(*argv)
    assert outcome.code == 0, outcome.stderr
    (line,) = outcome.stderr.strip().splitlines()
    assert line == ("--resume run/checkpoints/step-1: the run is complete, its checkpoint is at step 1 and "
                    "train.max_steps is 1; nothing to train (raise --max-steps to train further)"), line
    assert snapshot(hostile.watched) == before

