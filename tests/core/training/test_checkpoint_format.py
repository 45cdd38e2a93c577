"""The canonical checkpoint format: round trips, atomic commit, keep-last-N, corruption errors."""

from __future__ import annotations

import json
import os
import random
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deepseek.errors import CheckpointError
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint_dirs import CheckpointWarning
from deepseek.training.trainer import Trainer


def _tied_model() -> torch.nn.Module:
    from deepseek.models import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(d_model=16, n_heads=2, n_layers=1, max_seq_len=8))


def _trained_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    opt = torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": 0.1},
         {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.95),
    )
    x = torch.randint(0, 256, (2, 8))
    for _ in range(2):
        model(x, x).backward()
        opt.step()
        opt.zero_grad()
    return opt


def test_model_round_trip_with_tied_weights(tmp_path: Path) -> None:
    model = _tied_model()
    path = ckpt.save_model_state(tmp_path / "model.safetensors", model.state_dict())
    loaded = ckpt.load_model_state(path)
    assert set(loaded) == set(model.state_dict())  # both names of the tied weight are there
    other = _tied_model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    ckpt.load_into_model(other, path)
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert other.lm_head.weight is other.wte.weight  # loading keeps the tie


def test_optimizer_state_is_keyed_by_parameter_name(tmp_path: Path) -> None:
    model = _tied_model()
    opt = _trained_optimizer(model)
    names = ckpt.optimizer_param_names(opt, model)
    path = ckpt.save_optimizer_state(tmp_path / "optimizer.safetensors", opt, names)

    named = ckpt.load_optimizer_state(path)
    assert set(named["state"]) == set(names)
    assert named["state"]["wte.weight"]["exp_avg"].shape == model.wte.weight.shape
    assert named["param_groups"][0]["betas"] == (0.9, 0.95)
    assert named["param_groups"][0]["params"] == names[: len(opt.param_groups[0]["params"])]

    fresh_model = _tied_model()
    fresh = torch.optim.AdamW(
        [{"params": [p for p in fresh_model.parameters() if p.ndim >= 2]},
         {"params": [p for p in fresh_model.parameters() if p.ndim < 2]}], lr=5.0,
    )
    ckpt.load_optimizer_state(path, fresh, ckpt.optimizer_param_names(fresh, fresh_model))
    assert fresh.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert fresh.param_groups[0]["weight_decay"] == pytest.approx(0.1)
    for p_old, p_new in zip(model.parameters(), fresh_model.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p_old][key], fresh.state[p_new][key])


def test_optimizer_from_other_model_is_refused(tmp_path: Path) -> None:
    model = _tied_model()
    opt = _trained_optimizer(model)
    path = ckpt.save_optimizer_state(tmp_path / "o.safetensors", opt, ckpt.optimizer_param_names(opt, model))
    small = torch.nn.Linear(4, 4)
    other = torch.optim.AdamW([{"params": [small.weight]}, {"params": [small.bias]}])
    with pytest.raises(CheckpointError, match="o.safetensors"):
        ckpt.load_optimizer_state(path, other, ["weight", "bias"])


def test_rng_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    ckpt.save_rng_state(tmp_path)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    ckpt.load_rng_state(tmp_path)
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], got[0]) and expected[1:] == got[1:]


def test_a_rank_the_run_had_must_find_its_own_rng_file(tmp_path: Path) -> None:
    """Rank 1 of a two-rank checkpoint whose rng-1 was removed (and its commit record edited to
    agree) took rank 0's state silently; a rank the run did not have still does."""
    ckpt.save_rng_state(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match=r"rng-1\.safetensors: missing, though the checkpoint's run had 2 "
                                                   r"rank\(s\) and saved one per rank"):
        ckpt.load_rng_state(tmp_path, rank=1, saved_world_size=2)
    ckpt.load_rng_state(tmp_path, rank=1, saved_world_size=1)  # resumed on more ranks than it had: rank 0's


@pytest.mark.parametrize("how", ["truncate", "garbage", "delete"])
@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "trainer.json", "rng-0.safetensors"])
def test_damaged_checkpoint_names_the_file(tiny_config, tmp_path: Path, name: str, how: str) -> None:
    config = tiny_config(train={"max_steps": 2})
    run = Trainer(config, run_dir=tmp_path / "run").fit().run_dir
    target = run / "checkpoints" / "step-2" / name
    data = target.read_bytes()
    if how == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        target.write_bytes(b"\x07" * 64)
    else:
        target.unlink()
    resumed = tiny_config(train={"max_steps": 4})
    with pytest.raises(CheckpointError) as info:
        Trainer(resumed, resume=run / "checkpoints" / "step-2").fit()
    message = str(info.value)
    assert name in message and "\n" not in message
    assert "checkpoint" in message


@pytest.mark.parametrize(("where", "value", "words"), [
    ("group", ("weight_decay", "abc"), "optimizer group 0 weight_decay is 'abc', where a finite number belongs"),
    ("group", ("lr", -1.0), "optimizer group 0 lr is -1.0, below 0"),
    ("group", ("betas", [0.9]), "optimizer group 0 betas is [0.9], where 2 finite numbers belong"),
    ("group", ("amsgrad", 1), "optimizer group 0 amsgrad is 1, where true or false belongs"),
    ("step", -5.0, "step is -5.0, not a whole count of steps"),
    ("step", 2.5, "step is 2.5, not a whole count of steps"),
])
def test_optimizer_values_read_back_are_checked_like_input(tiny_config, tmp_path: Path, where: str, value, words) -> None:
    """Hyper-parameters and step counts in optimizer.safetensors are validated on resume, each
    against the kind of value the live optimizer holds there (an edited or damaged file would
    otherwise train on, or fail inside torch at the first step)."""
    from deepseek.training.checkpoint_io import load_tensors, save_tensors

    run = Trainer(tiny_config(train={"max_steps": 2}), run_dir=tmp_path / "run").fit().run_dir
    target = run / "checkpoints" / "step-2" / "optimizer.safetensors"
    tensors, meta = load_tensors(target, "optimizer state")
    if where == "group":
        groups = json.loads(meta["param_groups"])
        groups[0][value[0]] = value[1]
        meta["param_groups"] = json.dumps(groups)
    else:
        key = next(k for k in tensors if k.endswith("/step"))
        tensors[key] = torch.tensor(value)
    save_tensors(target, tensors, meta)
    record = json.loads((target.parent / "commit.json").read_text())  # the edit, sizes and checksums all
    record["files"][target.name] = target.stat().st_size
    record["crc32"][target.name] = f"{zlib.crc32(target.read_bytes()):08x}"
    (target.parent / "commit.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="optimizer") as info:
        Trainer(tiny_config(train={"max_steps": 4}), resume=run / "checkpoints" / "step-2").fit()
    assert words in str(info.value) and "optimizer.safetensors" in str(info.value)
    assert not (run / "checkpoints" / "step-4").exists()


@pytest.mark.parametrize(("optimizer", "key", "change", "words"), [
    # Adafactor's factored second moment: its declared shape is the matrix's with the last
    # dimension reduced to 1; a negative factor's square root was the next step's NaN
    ("adafactor", "row_var", lambda t: -t - 1, "negative value(s) (the least -1"),
    ("adafactor", "row_var", lambda t: t.reshape(-1), "where optimizer 'adafactor' keeps"),
    # SGD's momentum as integers was cast back into floats by torch and trained on
    ("sgd", "momentum_buffer", lambda t: (t * 1e6).long(), "holds torch.int64 values where optimizer 'sgd' keeps "
     "floating-point values"),
])
def test_optimizer_state_read_back_is_held_to_what_the_optimizer_declares(tiny_config, tmp_path: Path, optimizer: str,
                                                                         key: str, change, words: str) -> None:
    """Each registered optimizer's ``state_spec`` is what a resume holds its saved state to."""
    from deepseek.training.checkpoint_io import load_tensors, save_tensors

    config = tiny_config(train={"max_steps": 2}, optimizer={"name": optimizer})
    run = Trainer(config, run_dir=tmp_path / "run").fit().run_dir
    target = run / "checkpoints" / "step-2" / "optimizer.safetensors"
    tensors, meta = load_tensors(target, "optimizer state")
    name = sorted(k for k in tensors if k.endswith(f"/{key}") and tensors[k].dim() == 2)[0]
    tensors[name] = change(tensors[name]).contiguous()
    save_tensors(target, tensors, meta)
    record = json.loads((target.parent / "commit.json").read_text())  # the edit, sizes and checksums all
    record["files"][target.name] = target.stat().st_size
    record["crc32"][target.name] = f"{zlib.crc32(target.read_bytes()):08x}"
    (target.parent / "commit.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError) as info:
        Trainer(tiny_config(train={"max_steps": 4}, optimizer={"name": optimizer}),
                resume=run / "checkpoints" / "step-2").fit()
    message = str(info.value)
    assert f"optimizer.safetensors: optimizer state {name.removeprefix('state/')} " in message, message
    assert words in message and "\n" not in message
    assert not (run / "checkpoints" / "step-4").exists()


def test_interrupt_mid_save_keeps_previous_checkpoint_and_no_half_folder(tiny_config, tmp_path: Path, monkeypatch) -> None:
    config = tiny_config(train={"max_steps": 4}, checkpoint={"interval": 2})
    original = ckpt.save_optimizer_state
    calls = {"n": 0}

    def crash_on_second_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash while writing step-4")
        return original(*args, **kwargs)

    monkeypatch.setattr(ckpt, "save_optimizer_state", crash_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, run_dir=tmp_path / "run").fit()
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-2"]  # the half-written folder is gone
    assert ckpt.resolve_checkpoint(tmp_path / "run") == root / "step-2"
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2]
    assert (root / "latest").read_text().strip() == "step-2"

    monkeypatch.setattr(ckpt, "save_optimizer_state", original)
    result = Trainer(config, resume=tmp_path / "run").fit()  # resumes from step 2
    assert result.step == 4 and len(result.losses) == 2
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2, 4]


def test_keep_last_n(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(train={"max_steps": 5}, checkpoint={"interval": 1, "keep_last": 2})
    run = Trainer(config, run_dir=tmp_path / "run").fit().run_dir
    root = run / "checkpoints"
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [4, 5]
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-4", "step-5"]
    assert ckpt.resolve_checkpoint(run) == root / "step-5"


def test_trainer_json_records_position_and_config(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(train={"max_steps": 3})
    run = Trainer(config, run_dir=tmp_path / "run").fit().run_dir
    state = json.loads((run / "checkpoints" / "step-3" / "trainer.json").read_text())
    assert state["format"] == "deepseek-checkpoint" and state["step"] == 3
    assert state["config"]["model"]["d_model"] == 32
    assert state["data"]["seq_len"] == 32 and "fingerprint" in state["data"]
    assert state["schedule"]["decay_steps"] == 3
    assert state["metrics"]["loss"] > 0
    # No pickle anywhere in a checkpoint: every file is safetensors or JSON.
    for file in (run / "checkpoints" / "step-3").iterdir():
        assert file.suffix in {".safetensors", ".json"}, file


def test_export_weights_is_self_describing(tiny_config, tmp_path: Path) -> None:
    from deepseek.training.inference import load_trained

    run = Trainer(tiny_config(train={"max_steps": 2}), run_dir=tmp_path / "run").fit().run_dir
    out = ckpt.export_weights(run, tmp_path / "weights.safetensors")
    meta = ckpt.read_weights_metadata(out)
    assert json.loads(meta["model"])["d_model"] == 32 and meta["step"] == "2"
    model, _, _ = load_trained(out)
    ref, _, _ = load_trained(run)
    for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resolve_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ckpt.resolve_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        ckpt.resolve_checkpoint(tmp_path / "empty")


def test_the_finite_check_reads_one_byte_floats_too(tmp_path: Path) -> None:
    """float8 weights (a quantized model's) are checked through fp32: torch has no isfinite kernel
    for them, and a finite float8 tensor must load."""
    from deepseek.errors import CheckpointError
    from deepseek.training.checkpoint_io import check_finite

    weights = torch.tensor([0.5, -1.0, 2.0]).to(torch.float8_e4m3fn)
    check_finite({"w": weights, "ids": torch.tensor([1, 2])}, tmp_path / "model.safetensors")
    damaged = torch.tensor([0.5, float("nan"), 2.0]).to(torch.float8_e4m3fn)
    with pytest.raises(CheckpointError, match=r"tensor 'w' holds 1 NaN or infinite value\(s\) of 3"):
        check_finite({"w": damaged}, tmp_path / "model.safetensors")


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_run_folder_files_take_the_umask_like_a_plain_open(tiny_config, tmp_path: Path, mask: int) -> None:
    """Files written through a temp file and renamed (config.toml, trainer.json, the step
    folders) get the mode a plain open/mkdir gives under the umask, as the rest do, not the 0600
    and 0700 that mkstemp and mkdtemp make."""
    old = os.umask(mask)
    try:
        run = Trainer(tiny_config(train={"max_steps": 2}), run_dir=tmp_path / "run").fit().run_dir
    finally:
        os.umask(old)
    wrong = {str(p.relative_to(run)): oct(p.stat().st_mode & 0o777) for p in [run, *run.rglob("*")]
             if not p.is_symlink() and p.stat().st_mode & 0o777 != (0o777 if p.is_dir() else 0o666) & ~mask}
    assert wrong == {}
    assert (run / "config.toml").stat().st_mode & 0o777 == 0o666 & ~mask


SAVE_ONE = """
import sys, torch
from pathlib import Path
from typing import Any
from deepseek.training.checkpoint_io import save_tensors
meta = {name: f"value of {name}" for name in ("format", "format_version", "model", "step", "zeta", "alpha")}
save_tensors(Path(sys.argv[1]), {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}, meta)
"""


def test_equal_tensors_are_equal_bytes_whatever_process_saves_them(tmp_path: Path) -> None:
    """safetensors writes the metadata in its hash map's order, random per process: a resumed
    run's final checkpoint and an uninterrupted run's held equal tensors in different bytes."""
    import subprocess
    import sys

    from deepseek.training.checkpoint_io import load_tensors

    files = [tmp_path / f"{i}.safetensors" for i in range(3)]
    for path in files:
        subprocess.run([sys.executable, "-c", SAVE_ONE, str(path)], check=True)
    assert len({path.read_bytes() for path in files}) == 1
    _, meta = load_tensors(files[0], "test weights")
    assert meta["zeta"] == "value of zeta" and len(meta) == 6


@pytest.mark.parametrize(("make", "said"), [
    (lambda p: p.mkdir(), "is a folder, not the trainer state file"),
    (lambda p: p.symlink_to(p), "is not a regular file"),  # a loop of links
    (lambda p: None, "trainer state file is missing"),
])
def test_a_trainer_json_that_is_not_a_file_is_named_for_what_it_is(tmp_path: Path, make: Any, said: str) -> None:
    """A folder in trainer.json's place was reported as a missing file."""
    from deepseek.training.checkpoint import TRAINER_FILE, read_trainer_state

    make(tmp_path / TRAINER_FILE)
    with pytest.raises(CheckpointError, match=f"trainer.json: {said}; the checkpoint is incomplete"):
        read_trainer_state(tmp_path)


def test_an_optimizer_declaring_no_state_gets_the_default_rule() -> None:
    """``state_spec`` left at ``None`` (a plugin's optimizer that does not say): every tensor
    floating point, of its parameter's shape, reduced or a scalar, ``step`` a whole count, and
    parameters with as many dimensions holding the same keys."""
    from deepseek.training.optimizer_state import check_state_fit

    shapes = {"w": (4, 3), "b": (3,)}
    good = {"w": {"step": torch.tensor(2.0), "m": torch.zeros(4, 3), "f": torch.zeros(4, 1)},
            "b": {"step": 2, "v": torch.zeros(3)}}
    check_state_fit(good, shapes, "opt.safetensors")  # nothing to say
    for state, words in [
        ({**good, "b": {"step": 2, "v": torch.zeros(3, dtype=torch.int32)}},
         "opt.safetensors: optimizer state b/v holds torch.int32 values where the optimizer keeps floating-point"),
        ({**good, "w": {**good["w"], "m": torch.zeros(3, 4)}}, "optimizer state w/m has shape [3, 4] where the "
         "optimizer keeps [4, 3] for its parameter [4, 3]"),
        ({**good, "b": {"step": -1, "v": torch.zeros(3)}}, "optimizer state b/step is -1, not a whole count"),
        ({"w": good["w"], "x": {"step": 1}, "b": good["b"]} | {"y": {"m": torch.zeros(2, 2)}},
         "optimizer state x lacks ['f', 'm']"),
    ]:
        with pytest.raises(CheckpointError, match="checkpoint") as info:
            check_state_fit(state, {**shapes, "x": (2, 2), "y": (2, 2)}, "opt.safetensors")
        assert words in str(info.value), str(info.value)


def test_a_checkpoint_pruned_while_the_lookup_reads_it_is_passed_over(tiny_config, tmp_path: Path, monkeypatch) -> None:
    """A live job may prune a checkpoint while another process looks it up (a second job on the
    same run folder, refused as busy a moment later). The lookup looked at each listed file twice
    (exists, then its size): a prune between the two raised FileNotFoundError, a traceback
    ("internal error") instead of the busy line. Now each file is looked at once, and a folder
    pruned meanwhile is incomplete: the lookup passes over it to the previous checkpoint."""
    config = tiny_config(train={"max_steps": 4}, checkpoint={"interval": 2})
    root = Trainer(config, run_dir=tmp_path / "run").fit().run_dir / "checkpoints"
    doomed, original = root / "step-4", Path.stat

    def prune_after_the_first_look(self: Path, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if self.parent == doomed and self.suffix == ".safetensors" and doomed.exists():
            import shutil

            shutil.rmtree(doomed)  # the live job's prune, right after this look
        return result

    monkeypatch.setattr(Path, "stat", prune_after_the_first_look)
    with pytest.warns(CheckpointWarning, match="step-4"):
        assert ckpt.resolve_checkpoint(tmp_path / "run", resuming=True) == root / "step-2"
    assert not doomed.exists()
