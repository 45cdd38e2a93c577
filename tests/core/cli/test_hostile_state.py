"""Corrupt files read back from disk: ``trainer.json``, ``metrics.jsonl``, safetensors weights,
optimizer and RNG state, exported weights. Every command that reads a run (train --resume,
generate, eval, optimize, export) refuses each with one line naming the file, exit 2, and leaves
the run as it was."""

from __future__ import annotations

import json
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostile_cli import Hostile, snapshot

STEP = Path("checkpoints") / "step-1"
READERS: dict[str, list[str]] = {
    "resume": ["train", "--resume", "run", "--max-steps", "3", "--quiet"],
    "resume elsewhere": ["train", "--resume", "run", "--max-steps", "3", "--quiet", "--run-dir", "new/run"],
    "generate": ["generate", "--checkpoint", "run", "--max-new-tokens", "2", "--device", "cpu"],
    "eval": ["eval", "--checkpoint", "run", "--device", "cpu"],
    "optimize": ["optimize", "--checkpoint", "run", "--seq", "8"],
    "export": ["export", "--checkpoint", "run", "--out", "m.pt2", "--seq", "8"],
}


def _deep_state(run: Path) -> None:
    """An extra field nested 5,000 levels deep (json.dumps itself cannot write it)."""
    path = run / STEP / "trainer.json"
    text = path.read_text().rstrip()
    path.write_text(text[:-1] + ', "extra": ' + "[" * 5000 + "]" * 5000 + "}")


def _edit_state(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def corrupt(run: Path) -> None:
        path = run / STEP / "trainer.json"
        state = json.loads(path.read_text())
        change(state)
        path.write_text(json.dumps(state))
    return corrupt


def _set(**values: Any) -> Callable[[Path], None]:
    return _edit_state(lambda state: state.update(values))


def _drop(key: str) -> Callable[[Path], None]:
    return _edit_state(lambda state: state.pop(key))


def _set_data(**values: Any) -> Callable[[Path], None]:
    return _edit_state(lambda state: state["data"].update(values))


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    def corrupt(run: Path) -> None:
        (run / name).write_bytes(data)
    return corrupt


def _truncate(name: str, keep: int) -> Callable[[Path], None]:
    def corrupt(run: Path) -> None:
        path = run / name
        path.write_bytes(path.read_bytes()[:keep])
    return corrupt


def _garbage_header(name: str) -> Callable[[Path], None]:
    """A length prefix that fits the file, then bytes that are not the JSON header."""
    def corrupt(run: Path) -> None:
        path = run / name
        size = path.stat().st_size
        path.write_bytes((64).to_bytes(8, "little") + b"{" * 64 + b"\x00" * (size - 72))
    return corrupt


def _edit_tensors(name: str, change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    """Rewrite the safetensors file ``name`` (metadata kept) after ``change(tensors)``."""
    def corrupt(run: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import save_file

        path = run / name
        with safe_open(str(path), framework="pt") as fh:
            meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        change(tensors)
        save_file(tensors, str(path), metadata=meta)
    return corrupt


def _reshape_first(tensors: dict[str, Any]) -> None:
    first = sorted(k for k in tensors if k.endswith("/exp_avg"))[0]
    tensors[first] = tensors[first].new_zeros(3, 5)


def _drop_first_moment(tensors: dict[str, Any]) -> None:
    del tensors[sorted(k for k in tensors if k.endswith("/exp_avg"))[0]]


def _as_integers(tensors: dict[str, Any]) -> None:
    tensors.update({k: v.long() for k, v in tensors.items()})


def _edit_first(key: str, change: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    """Replace the first parameter's optimizer state ``key`` (e.g. ``exp_avg_sq``) by ``change`` of it."""
    def edit(tensors: dict[str, Any]) -> None:
        first = sorted(k for k in tensors if k.endswith(f"/{key}"))[0]
        tensors[first] = change(tensors[first])
    return edit


def _nan_in_first(tensors: dict[str, Any]) -> None:
    first = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[first] = tensors[first].clone().fill_(float("nan"))


TRAINER = str(STEP / "trainer.json")
OPTIMIZER = str(STEP / "optimizer.safetensors")
MODEL = str(STEP / "model.safetensors")
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


def _agree_commit_record(run: Path) -> None:
    """Rewrite the checkpoint's commit record so it lists the files' sizes as they are now: an
    edit made on purpose, which only the checks on the files' content can catch."""
    record = run / STEP / "commit.json"
    body = json.loads(record.read_text())
    body["files"] = {name: (run / STEP / name).stat().st_size for name in body["files"]}
    body["crc32"] = {name: f"{zlib.crc32((run / STEP / name).read_bytes()):08x}" for name in body["files"]}
    record.write_text(json.dumps(body))


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

    adamw = {"lr": 1e-3, "betas": (0.9, 0.95), "eps": 1e-8, "params": ["w"], "fused": None}
    check_groups_fit([adamw], [{**adamw, "decoupled_weight_decay": True, "fused": True}], "opt")
    check_groups_fit([{**adamw, "decoupled_weight_decay": True}], [adamw], "opt")
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

