"""Portable checkpoints: a run hops zero3@2 -> single@1 -> ddp@2 -> deepspeed@2 (and sharded
fsdp -> ddp / deepspeed / core alone, export -> core alone), and every hop continues the loss curve of one
uninterrupted ``single`` run, with the weights and AdamW moments equal to that run's at each hop.

Tolerance: each hop is exact up to the float32 summation order of the data-parallel gradient
reduction (see test_ddp): 1e-5 relative on losses, 1e-5 absolute on weights and moments after
up to ten AdamW steps. Resume under the same strategy and world size is bit-identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _prohelpers import REF_STEPS, losses, rerecord, run_single, run_train_jobs, tiny_run

from deepseek.errors import CheckpointError
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint import layout_of, read_full_state
from deepseek_pro.checkpoint import export_checkpoint

RTOL = 1e-5
ATOL = 1e-5


@pytest.fixture(scope="module")
def hops(pro_runs: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """hop1 = the shared zero3@2 run's step-4 checkpoint; hop2 single@1 to step 6 (here);
    then in one torchrun job: hop3 ddp@2 to 8, hop4 deepspeed ZeRO-3@2 to 10, and side hops."""
    work = tmp_path_factory.mktemp("hops")
    runs = pro_runs["dir"]
    hop1 = runs / "fsdp" / "checkpoints" / "step-4"
    records = {"hop2": run_single(tiny_run("single", 6), work / "hop2", resume=hop1)}
    hop2 = work / "hop2" / "checkpoints" / "step-6"
    hop3 = work / "hop3" / "checkpoints" / "step-8"
    sharded = runs / "fsdp_sharded" / "checkpoints" / "step-4"
    # DeepSpeed jobs last: DeepSpeed may leave process-wide patches behind for later jobs.
    jobs = [
        {"name": "hop3", "config": tiny_run("ddp", 8), "resume": hop2},
        {"name": "fsdp_from_ddp", "config": tiny_run("fsdp", REF_STEPS), "resume": hop3},
        {"name": "ddp_resume", "config": tiny_run("ddp", 6), "resume": runs / "ddp" / "checkpoints" / "step-3"},
        {"name": "ddp_from_sharded", "config": tiny_run("ddp", 6), "resume": sharded},
        {"name": "fsdp_sharded_resume", "config": tiny_run("fsdp", 6, options={"checkpoint": "sharded"}),
         "resume": sharded},
        {"name": "pipeline_from_sharded", "config": tiny_run("pipeline", 6), "resume": sharded},
        {"name": "hop4", "config": tiny_run("deepspeed", REF_STEPS, options={"stage": 3}), "resume": hop3},
        {"name": "ds1_from_ddp", "config": tiny_run("deepspeed", REF_STEPS, options={"stage": 1}), "resume": hop3},
        {"name": "ds2_from_sharded", "config": tiny_run("deepspeed", 6, options={"stage": 2}), "resume": sharded},
    ]
    records.update(run_train_jobs(jobs, work, timeout=600))
    return {"dir": work, "records": records, "hop1": hop1, "sharded": sharded}


def _ref(single_reference: dict, step: int) -> Path:
    return single_reference["dir"] / "checkpoints" / f"step-{step}"


def _assert_same_state(directory: Path, reference: Path) -> None:
    model, optim = read_full_state(directory)
    ref_model, ref_optim = read_full_state(reference)
    assert set(model) == set(ref_model)
    for key, value in ref_model.items():
        torch.testing.assert_close(model[key], value, rtol=0, atol=ATOL, msg=lambda m, k=key: f"{k}: {m}")
    assert set(optim["state"]) == set(ref_optim["state"])
    for name, values in ref_optim["state"].items():
        for key, value in values.items():
            torch.testing.assert_close(optim["state"][name][key].float(), value.float(), rtol=0, atol=ATOL,
                                       msg=lambda m, n=name, k=key: f"{n}/{k}: {m}")


def _losses_from(records: list[dict], first_step: int) -> list[float]:
    assert records[0]["step"] == first_step, [r["step"] for r in records]
    return losses(records)


def test_chain_zero3_single_ddp_deepspeed(hops: dict, single_reference: dict) -> None:
    ref = losses(single_reference["records"])
    steps = {"hop2": (5, 6), "hop3": (7, 8), "hop4": (9, 10)}
    _assert_same_state(hops["hop1"], _ref(single_reference, 4))
    assert layout_of(hops["hop1"]) == "full"
    for name, (first, last) in steps.items():
        got = _losses_from(hops["records"][name], first)
        assert got == pytest.approx(ref[first - 1:last], rel=RTOL), name
        _assert_same_state(hops["dir"] / name / "checkpoints" / f"step-{last}", _ref(single_reference, last))
    assert ckpt.read_trainer_state(hops["dir"] / "hop4" / "checkpoints" / "step-10")["world_size"] == 2


@pytest.mark.parametrize("name", ["ds1_from_ddp", "fsdp_from_ddp"])
def test_side_hops_from_ddp(name: str, hops: dict, single_reference: dict) -> None:
    got = _losses_from(hops["records"][name], 9)
    assert got == pytest.approx(losses(single_reference["records"])[8:10], rel=RTOL)
    _assert_same_state(hops["dir"] / name / "checkpoints" / "step-10", _ref(single_reference, 10))


def test_ddp_resume_is_bit_identical(pro_runs: dict, hops: dict) -> None:
    straight = pro_runs["records"]["ddp"]
    resumed = hops["records"]["ddp_resume"]
    assert [r["step"] for r in resumed] == [4, 5, 6]
    assert losses(resumed) == losses(straight)[3:6]
    a = ckpt.load_model_state(pro_runs["dir"] / "ddp" / "checkpoints" / "step-6" / ckpt.MODEL_FILE)
    b = ckpt.load_model_state(hops["dir"] / "ddp_resume" / "checkpoints" / "step-6" / ckpt.MODEL_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["ddp_from_sharded", "ds2_from_sharded", "fsdp_sharded_resume"])
def test_sharded_checkpoint_loads_under_other_strategies(name: str, hops: dict, single_reference: dict) -> None:
    assert layout_of(hops["sharded"]) == "sharded"
    got = _losses_from(hops["records"][name], 5)
    assert got == pytest.approx(losses(single_reference["records"])[4:6], rel=RTOL)
    _assert_same_state(hops["dir"] / name / "checkpoints" / "step-6", _ref(single_reference, 6))


def test_sharded_checkpoint_resumes_under_pipeline(hops: dict, single_reference: dict) -> None:
    """Each pipeline stage picks its own parameters and optimizer state out of the DCP shards."""
    got = _losses_from(hops["records"]["pipeline_from_sharded"], 5)
    assert got == pytest.approx(losses(single_reference["records"])[4:6], rel=RTOL)


def test_sharded_layout_is_per_rank_safetensors(hops: dict) -> None:
    files = sorted(p.name for p in (hops["sharded"] / "model").glob("*.safetensors"))
    assert len(files) == 2, files  # one shard file per rank, no pickle anywhere
    assert not list(hops["sharded"].rglob("*.distcp")) and not list(hops["sharded"].rglob(".metadata"))
    listed = json.loads((hops["sharded"] / "sharded.json").read_text())["files"]
    assert listed == {sub: sorted(p.name for p in (hops["sharded"] / sub).glob("*.safetensors"))
                      for sub in ("model", "optimizer")}


def _without_record(hops: dict, tmp_path: Path, *, keep_list: bool) -> Path:
    """A copy of the sharded checkpoint with no commit record (as older versions wrote), and,
    unless ``keep_list``, no shard list in sharded.json either."""
    import shutil

    copy = tmp_path / "step-4"
    shutil.copytree(hops["sharded"], copy)
    (copy / "commit.json").unlink()
    if not keep_list:
        meta = json.loads((copy / "sharded.json").read_text())
        del meta["files"]
        (copy / "sharded.json").write_text(json.dumps(meta))
    return copy


def test_missing_shard_file_is_named_without_a_commit_record(hops: dict, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A shard file gone from a checkpoint without a commit record was reported as a shape
    mismatch, and ``checkpoint info`` called the checkpoint fine."""
    from deepseek.cli.main import main
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.settings import PluginSettings
    from deepseek_pro.checkpoint import check_sharded_files

    copy = _without_record(hops, tmp_path, keep_list=True)
    gone = sorted((copy / "model").glob("*.safetensors"))[-1]
    gone.unlink()
    line = rf"model: shard file {gone.name} is missing \(1 of the 2 files sharded.json lists\)"
    with pytest.raises(CheckpointError, match=line):
        read_full_state(copy)
    with pytest.raises(CheckpointError, match=line):
        check_sharded_files(copy)  # what every strategy's resume runs before torch's reader
    with pytest.raises(SystemExit) as exited:
        main(["checkpoint", "info", str(copy)], host=PluginHost(PluginSettings(autoload=False,
                                                                                 allow=frozenset({"deepseek-pro"}))))
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1 and f"shard file {gone.name} is missing" in err[0], err


def test_shard_file_copied_in_is_refused(hops: dict, tmp_path: Path) -> None:
    import shutil

    copy = _without_record(hops, tmp_path, keep_list=True)
    first = sorted((copy / "optimizer").glob("*.safetensors"))[0]
    shutil.copy(first, copy / "optimizer" / "shard-00009-model-00001-of-00001.safetensors")
    with pytest.raises(CheckpointError, match=r"shard-00009-model-00001-of-00001.safetensors is not one of the shard "
                                              r"files sharded.json lists.*move it out of the folder"):
        read_full_state(copy)


def test_older_sharded_checkpoint_missing_a_piece_is_refused(hops: dict, tmp_path: Path) -> None:
    """With neither a commit record nor a shard list, torch's reader sized each tensor by the
    pieces it found and left the missing rank-0 rows as they were; the pieces are counted now."""
    from deepseek_pro.checkpoint import check_sharded_files

    copy = _without_record(hops, tmp_path, keep_list=False)
    sorted((copy / "model").glob("*.safetensors"))[0].unlink()  # rank 0's rows of every fsdp-sharded tensor
    with pytest.raises(CheckpointError, match=r"tensor '.+' is only partly stored \(\d+ of \d+ values\): a shard "
                                              r"file is missing"):
        read_full_state(copy)
    with pytest.raises(CheckpointError, match=r"is only partly stored"):
        check_sharded_files(copy)


def test_export_to_canonical_loads_with_core_alone(hops: dict, single_reference: dict, tmp_path: Path) -> None:
    import deepseek

    out = export_checkpoint(hops["sharded"], tmp_path / "exported")
    assert layout_of(out) == "full"
    _assert_same_state(out, _ref(single_reference, 4))
    # What core's single strategy does on --resume: strict canonical loads.
    model = deepseek.create_model("tiny", d_model=64, n_heads=4, n_layers=2, max_seq_len=32)
    ckpt.load_into_model(model, out / ckpt.MODEL_FILE)
    named = ckpt.load_optimizer_state(out / ckpt.OPTIMIZER_FILE)
    assert set(named["state"]) == {n for n, _ in model.named_parameters()}
    # and training resumes from it under single, on the reference curve
    records = run_single(tiny_run("single", 5), tmp_path / "resumed", resume=out)
    assert losses(records) == pytest.approx(losses(single_reference["records"])[4:5], rel=RTOL)


def test_export_errors(hops: dict, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(CheckpointError, match="already exists"):
        export_checkpoint(hops["sharded"], tmp_path / "taken")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        export_checkpoint(tmp_path / "missing", tmp_path / "out")


def test_damaged_sharded_checkpoint_is_a_clear_error(hops: dict, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(hops["sharded"], broken)
    victim = sorted((broken / "model").glob("*.safetensors"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"sharded checkpoint is corrupt or incomplete"):
        read_full_state(broken)
    (broken / "sharded.json").write_text("{", encoding="utf-8")
    shutil.rmtree(broken / "model")
    with pytest.raises(CheckpointError, match=r"no model weights"):
        read_full_state(broken)


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
    assert "diverged" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-3000:]
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
    assert "diverged" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-3000:]
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


def test_checkpoint_cli_info_and_export(hops: dict, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from deepseek.cli.main import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["checkpoint", "info", "--json", str(hops["sharded"])])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert (row["layout"], row["step"], row["strategy"], row["world_size"]) == ("sharded", 4, "fsdp", 2)
    files = json.loads((hops["sharded"] / "commit.json").read_text())["crc32"]  # every shard, listed
    assert row["checksums"] == f"CRC-32 of {len(files)} files, verified" and len(files) > 4
    result = runner.invoke(cli, ["checkpoint", "export", str(hops["sharded"]), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert layout_of(tmp_path / "out") == "full"
    row = json.loads(runner.invoke(cli, ["checkpoint", "info", "--json", str(tmp_path / "out")]).output)
    assert row["checksums"].startswith("none (no commit record")


@pytest.mark.parametrize(("name", "step"), [("ddp", 6), ("fsdp", 5), ("ds3", 5)])
def test_unwrapped_model_is_the_whole_trained_model(name: str, step: int, pro_runs: dict) -> None:
    # fsdp / ZeRO-3 gather every shard into a plain CPU model equal to the last checkpoint.
    run = pro_runs["dir"] / name
    plain = ckpt.load_model_state(run / "unwrapped.safetensors")
    saved = ckpt.load_model_state(run / "checkpoints" / f"step-{step}" / ckpt.MODEL_FILE)
    assert set(plain) == set(saved)
    for key, value in saved.items():
        assert torch.equal(plain[key], value), key


# deepseek-core alone (deepseek_pro made unimportable) on a sharded checkpoint written by fsdp@2:
# every command in ONE process (each process pays seconds of torch imports), its stdout captured per
# command. A CLI command runs as `deepseek ARGS` does (a non-zero exit fails); ["train", config,
# run_dir, resume] runs core's Trainer.
_CORE_ONLY = """
import contextlib, io, json, sys
sys.modules["deepseek_pro"] = None
import torch
torch.set_num_threads(1)
from deepseek.cli.main import main
from deepseek.config.load import config_from_dict
from deepseek.training.trainer import Trainer
outputs = []
for command in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if command[0] == "train":
            config, run_dir, resume = command[1:]
            Trainer(config_from_dict(config), run_dir=run_dir, resume=resume, quiet=True).fit()
        else:
            try:
                main(command)
            except SystemExit as stop:
                if stop.code:
                    sys.exit(f"{command}: exit code {stop.code}")
    outputs.append(out.getvalue())
print(json.dumps(outputs))
"""


def _core_only(*commands: list[str]) -> list[str]:
    """Each command's stdout, all run in one core-only process (see ``_CORE_ONLY``)."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    env.update(DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _CORE_ONLY, json.dumps(commands)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_core_alone_resumes_and_samples_from_sharded(pro_runs: dict, single_reference: dict, tmp_path: Path) -> None:
    import json

    from _prohelpers import train_records

    sharded = pro_runs["dir"] / "fsdp_sharded" / "checkpoints" / "step-4"
    assert layout_of(sharded) == "sharded" and len(list((sharded / "model").glob("*.safetensors"))) == 2
    assert sorted(p.name for p in sharded.glob("rng-*")) == ["rng-0.safetensors", "rng-1.safetensors"]
    exported = export_checkpoint(sharded, tmp_path / "exported")
    evaluate = ["eval", "--device", "cpu", "--json", "--checkpoint"]
    generate = ["generate", "ab", "--max-new-tokens", "8", "--device", "cpu", "--checkpoint"]
    row, ref, text, text_ref, _ = _core_only(
        [*evaluate, str(sharded)], [*evaluate, str(exported)], [*generate, str(sharded)], [*generate, str(exported)],
        ["train", tiny_run("single", 6), str(tmp_path / "core"), str(sharded)])
    got = train_records(tmp_path / "core")
    assert [r["step"] for r in got] == [5, 6]
    assert losses(got) == pytest.approx(losses(single_reference["records"])[4:6], rel=RTOL)
    _assert_same_state(tmp_path / "core" / "checkpoints" / "step-6", _ref(single_reference, 6))
    # bit-identical to resuming from the same checkpoint exported to the full layout
    via_export = run_single(tiny_run("single", 6), tmp_path / "via_export", resume=exported)
    assert losses(got) == losses(via_export)

    row, ref = json.loads(row), json.loads(ref)
    assert row["step"] == 4 and row["val_loss"] == ref["val_loss"]
    assert text.startswith("ab") and len(text) > 3 and text == text_ref
