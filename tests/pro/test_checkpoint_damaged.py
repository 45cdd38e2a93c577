"""Damaged checkpoints of the shared pro runs, read back like user input: ``checkpoint export``
refuses optimizer state or groups its optimizer does not keep and weights that do not fit their
config, writing nothing; a resume under ``deepseek launch`` from a truncated shard, NaNs, damaged
AdamW moments or integer weights is one line per rank and exit 2. The portable hops are in
test_checkpoint.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _prohelpers import rerecord

from deepseek.errors import CheckpointError
from deepseek_pro.checkpoint import export_checkpoint


def test_export_refuses_optimizer_state_its_optimizer_does_not_keep(pro_runs: dict, tmp_path: Path) -> None:
    """A negative AdamW second moment was copied into the export (only a resume from it refused it)."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    broken = tmp_path / "broken"
    shutil.copytree(pro_runs["dir"] / "fsdp" / "checkpoints" / "step-4", broken)  # the full layout
    victim = broken / "optimizer.safetensors"
    with safe_open(victim, framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - no mapping
    key = "state/blocks.0.attn.qkv.weight/exp_avg_sq"
    tensors[key] = -tensors[key] - 1
    save_file(tensors, victim, metadata=meta)
    rerecord(broken, "optimizer.safetensors")
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors: optimizer state .*exp_avg_sq holds .* negative "
                                              r"value\(s\).*where optimizer 'adamw' keeps values >= 0"):
        export_checkpoint(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_info_and_export_refuse_full_layout_groups_of_another_type(pro_runs: dict, tmp_path: Path) -> None:
    """A full-layout checkpoint whose optimizer.safetensors groups give AdamW's ``betas`` as a
    string: ``checkpoint info`` did not read the groups and ``export`` took any value that is not
    a number, so both passed it (only a resume, against the live optimizer, refused it). The
    optimizer declares its hyper-parameters' types (``OptimizerBuilder.hyper_parameters``) and
    both now refuse it in one line naming the file, group and key, and what belongs there."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    from deepseek.training.checkpoint_sharded import check_weights_files

    broken = tmp_path / "broken"
    shutil.copytree(pro_runs["dir"] / "fsdp" / "checkpoints" / "step-4", broken)  # the full layout
    victim = broken / "optimizer.safetensors"
    with safe_open(victim, framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - no mapping
    groups = json.loads(meta["param_groups"])
    groups[0]["betas"] = "x"
    save_file(tensors, victim, metadata={**meta, "param_groups": json.dumps(groups)})
    rerecord(broken, "optimizer.safetensors")
    message = r"optimizer\.safetensors: optimizer group 0 betas is 'x', where 2 finite numbers belong; the checkpoint"
    with pytest.raises(CheckpointError, match=message):
        check_weights_files(broken)  # what checkpoint info checks of the files
    with pytest.raises(CheckpointError, match=message):
        export_checkpoint(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.parametrize(("edit", "message"), [
    ({"lr": -0.5}, r"optimizer group 0 lr is -0\.5, below 0; the checkpoint is damaged"),
    ({"eps": float("nan")}, r"optimizer group 0 eps is nan, where a finite number belongs"),
    ({"params": "all"}, r"optimizer group 0 params is not a list of parameter names"),
])
def test_export_refuses_damaged_sharded_optimizer_groups(pro_runs: dict, tmp_path: Path, edit: dict,
                                                          message: str) -> None:
    """``sharded.json``'s parameter groups are read back like user input before ``checkpoint
    export`` writes anything (a bad lr was exported and found only at resume)."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(pro_runs["dir"] / "fsdp_sharded" / "checkpoints" / "step-4", broken)
    meta = json.loads((broken / "sharded.json").read_text(encoding="utf-8"))
    meta["param_groups"][0].update(edit)
    (broken / "sharded.json").write_text(json.dumps(meta), encoding="utf-8")
    rerecord(broken, "sharded.json")
    with pytest.raises(CheckpointError, match=message):
        export_checkpoint(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.parametrize("layout", ["ddp", "fsdp_sharded"])
def test_export_refuses_weights_that_do_not_fit_their_config(pro_runs: dict, tmp_path: Path, layout: str) -> None:
    """A checkpoint whose trainer.json asks for another model than its weights hold was exported
    and said to load ("loads with deepseek-core alone"); eval of the export then refused it."""
    import shutil

    step = sorted((pro_runs["dir"] / layout / "checkpoints").glob("step-*"))[0]
    broken = tmp_path / "broken"
    shutil.copytree(step, broken)
    state = json.loads((broken / "trainer.json").read_text(encoding="utf-8"))
    state["config"]["model"]["d_model"] *= 2
    (broken / "trainer.json").write_text(json.dumps(state), encoding="utf-8")
    rerecord(broken, "trainer.json")
    with pytest.raises(CheckpointError, match=r"weights do not fit this model"):
        export_checkpoint(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_a_damaged_sharded_checkpoint_under_launch_is_one_line_and_exit_2(pro_runs: dict, tmp_path: Path) -> None:
    """Resuming FSDP on two ranks from a sharded checkpoint with a truncated shard (its commit
    record edited to match): each rank says one line naming the folder, not torch's
    CheckpointException (a BaseException carrying every rank's traceback), and the job exits 2
    with nothing written."""
    import shutil

    from _prohelpers import deepseek_cli

    broken = tmp_path / "broken"
    shutil.copytree(pro_runs["dir"] / "fsdp_sharded" / "checkpoints" / "step-4", broken)
    victim = sorted((broken / "optimizer").glob("*.safetensors"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    rerecord(broken, victim.relative_to(broken).as_posix())
    out = deepseek_cli("launch", "-n", "2", "--", "train", "--resume", str(broken), "--max-steps", "6",
                       "--run-dir", str(tmp_path / "run"), "--quiet", timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "CheckpointException" not in out.stderr, out.stderr[-3000:]
    # the shard headers are read before torch's reader runs (check_sharded_files)
    lines = [line for line in out.stderr.splitlines() if "optimizer: sharded checkpoint is corrupt or incomplete" in line]
    assert lines and all(str(broken) in line for line in lines), out.stderr[-3000:]
    assert not (tmp_path / "run" / "checkpoints" / "step-6").exists()


@pytest.mark.parametrize("part", ["model", "optimizer"])
def test_nan_in_a_shard_resumed_under_fsdp_is_one_line_and_exit_2(pro_runs: dict, tmp_path: Path, part: str) -> None:
    """A sharded checkpoint whose second shard holds NaNs (its commit record edited to match),
    resumed by FSDP on two ranks: each rank loads its shards through torch's reader, which took the
    NaNs as they were, and the job ran on to 'training diverged: the loss is nan ... lower
    train.lr', exit 1, having cut metrics.jsonl back; 'single' and 'eval' of the same folder refuse
    it. Now the rank holding the damage says so, every rank raises it, and nothing is written."""
    import shutil

    from _prohelpers import deepseek_cli
    from safetensors import safe_open
    from safetensors.torch import save_file

    broken = tmp_path / "broken"
    shutil.copytree(pro_runs["dir"] / "fsdp_sharded" / "checkpoints" / "step-4", broken)
    victim = sorted((broken / part).glob("*.safetensors"))[1]
    with safe_open(victim, framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - no mapping
    name = next(k for k in sorted(tensors) if tensors[k].is_floating_point() and tensors[k].numel() > 1)
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, victim, metadata=meta)
    rerecord(broken, victim.relative_to(broken).as_posix())
    out = deepseek_cli("launch", "-n", "2", "--", "train", "--resume", str(broken), "--max-steps", "6",
                       "--run-dir", str(tmp_path / "run"), "--quiet", timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "is nan at step" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if "NaN or infinite" in line]
    assert lines and all(f"{broken / part}: tensor {name!r} holds " in line and " (as rank 1 loaded it); the "
                         "checkpoint is damaged" in line for line in lines), out.stderr[-3000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("layout", "edit", "strategy", "words"), [
    ("fsdp_sharded", "integers", [], "/exp_avg_sq holds torch.int32 values where optimizer 'adamw' keeps floating-point "
     "values; the checkpoint is damaged"),
    ("fsdp_sharded", "negative", [], "/exp_avg_sq holds 6144 negative value(s) (the least -1"),
    ("fsdp", "negative", ["--strategy", "ddp"], "/exp_avg_sq holds 12288 negative value(s) (the least -1"),
])
def test_damaged_optimizer_state_resumed_on_two_ranks_is_refused(pro_runs: dict, tmp_path: Path, layout: str,
                                                                 edit: str, strategy: list[str], words: str) -> None:
    """AdamW's second moment of one parameter saved as integers, or negative (its commit record
    edited to match), resumed on two ranks: torch's reader cast the integers into the live float
    state and the run trained on; a negative moment's square root made the second step's loss NaN
    ('training diverged', exit 1). Now every rank refuses it in one line naming the folder, the
    parameter and the key, exit 2, nothing written; sharded: the integers from the shard headers,
    the negative values from the part the second rank read (6,144 of the 192 x 64)."""
    import shutil

    from _prohelpers import deepseek_cli
    from safetensors import safe_open
    from safetensors.torch import save_file

    broken = tmp_path / "broken"
    shutil.copytree(pro_runs["dir"] / layout / "checkpoints" / "step-4", broken)
    key = "state/blocks.0.attn.qkv.weight/exp_avg_sq"
    files = sorted((broken / "optimizer").glob("*.safetensors")) or [broken / "optimizer.safetensors"]
    for victim in files[-1:] if edit == "negative" else files:  # negative: the second rank's shard only
        with safe_open(victim, framework="pt") as fh:
            meta = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - no mapping
        tensors[key] = (tensors[key] * 1e6).to(torch.int32) if edit == "integers" else -tensors[key] - 1
        save_file(tensors, victim, metadata=meta)
        rerecord(broken, victim.relative_to(broken).as_posix())
    out = deepseek_cli("launch", "-n", "2", "--", "train", "--resume", str(broken), "--max-steps", "6",
                       "--run-dir", str(tmp_path / "run"), "--quiet", *strategy, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "is nan at step" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if "blocks.0.attn.qkv.weight/exp_avg_sq" in line]
    assert len(lines) >= 1 and all(str(broken) in line and words in line for line in lines), out.stderr[-3000:]
    assert edit == "integers" or all("where optimizer 'adamw' keeps values >= 0; the checkpoint is damaged" in line
                                     for line in lines)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("layout", "strategy"), [("fsdp", []), ("fsdp_sharded", []),
                                                 ("fsdp_sharded", ["--strategy", "deepspeed"]),
                                                 ("fsdp", ["--strategy", "pipeline"])])
def test_integer_weights_resumed_under_fsdp_are_refused(pro_runs: dict, tmp_path: Path, layout: str,
                                                        strategy: list[str]) -> None:
    """A checkpoint whose float weight was saved as integers (its commit record edited to match),
    resumed by FSDP (DeepSpeed, pipeline stages) on two ranks: the full layout's names and shapes were checked but
    not its dtypes, and torch's reader casts a shard into the float weight, so every one trained on
    the truncated values (exit 0), where 'single' and 'eval' refuse them."""
    import shutil

    from _prohelpers import deepseek_cli
    from safetensors import safe_open
    from safetensors.torch import save_file

    broken = tmp_path / "broken"
    shutil.copytree(pro_runs["dir"] / layout / "checkpoints" / "step-4", broken)
    victims = sorted((broken / "model").glob("*.safetensors")) or [broken / "model.safetensors"]
    name = "blocks.0.attn.qkv.weight"
    for victim in victims:
        with safe_open(victim, framework="pt") as fh:
            meta = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - no mapping
        tensors[name] = (tensors[name] * 100).to(torch.int32)
        save_file(tensors, victim, metadata=meta)
        rerecord(broken, victim.relative_to(broken).as_posix())
    out = deepseek_cli("launch", "-n", "2", "--", "train", "--resume", str(broken), "--max-steps", "6",
                       "--run-dir", str(tmp_path / "run"), "--quiet", *strategy, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if "holds torch.int32 values" in line]
    assert lines and all(f"{name!r} holds torch.int32 values where the model keeps torch.float32; the checkpoint is "
                         "damaged" in line for line in lines), out.stderr[-3000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("name", "what", "damage"), [("model.safetensors", "model weights", "garbage"),
                                                      ("optimizer.safetensors", "optimizer state", "grown")])
def test_checkpoint_info_refuses_weights_that_do_not_parse(pro_runs: dict, tmp_path: Path, name: str, what: str,
                                                           damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A weights file of garbage (or with bytes past its last tensor) whose commit record was
    rewritten to match: ``checkpoint info`` said "CRC-32 of N files, verified" and exit 0, while
    export, generate and eval refuse the file. Now one line naming it, exit 2. (A sharded
    checkpoint's shards were parsed already: check_sharded_files.)"""
    import shutil

    from deepseek.cli.main import main
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.settings import PluginSettings

    broken = tmp_path / "broken"
    shutil.copytree(sorted((pro_runs["dir"] / "ddp" / "checkpoints").glob("step-*"))[0], broken)  # full layout
    victim = broken / name
    raw = victim.read_bytes()
    victim.write_bytes(bytes(i * 7 % 251 for i in range(len(raw))) if damage == "garbage" else raw + bytes(8))
    rerecord(broken, victim.name)
    with pytest.raises(SystemExit) as exited:
        main(["checkpoint", "info", str(broken)], host=PluginHost(PluginSettings(autoload=False,
                                                                                   allow=frozenset({"deepseek-pro"}))))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert exited.value.code == 2 and len(lines) == 1 and not out, (out, err)
    assert f"{victim}: {what} file is corrupt or truncated (" in lines[0], lines[0]
