"""Portable checkpoints: a run hops zero3@2 -> single@1 -> ddp@2 -> deepspeed@2 (and sharded
fsdp -> ddp / deepspeed / pipeline, export -> core's single), and every hop continues the loss curve of
one uninterrupted ``single`` run, with the weights and AdamW moments equal to that run's at each hop;
a sharded checkpoint missing a piece, and ``deepseek checkpoint info/export``. Core alone on a
sharded checkpoint: test_checkpoint_core_alone.py; damaged checkpoints: test_checkpoint_damaged.py.

Tolerance: each hop is exact up to the float32 summation order of the data-parallel gradient
reduction (see test_ddp): 1e-5 relative on losses, 1e-5 absolute on weights and moments after
up to ten AdamW steps. Resume under the same strategy and world size is bit-identical.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from _checkpoint_state import RTOL, assert_same_state, ref_checkpoint
from _prohelpers import REF_STEPS, losses, run_single, run_train_jobs, tiny_run

from deepseek.errors import CheckpointError
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint import layout_of, read_full_state
from deepseek_pro.checkpoint import export_checkpoint


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
    # the ddp run killed while saving step 3 again: step-3 moved aside, not yet replaced (step-6 not saved)
    killed = work / "ddp_killed_re_save" / "checkpoints"
    killed.mkdir(parents=True)
    shutil.copytree(runs / "ddp" / "checkpoints" / "step-3", killed / "step-3.replaced-ab")
    # DeepSpeed jobs last: DeepSpeed may leave process-wide patches behind for later jobs.
    jobs = [
        {"name": "hop3", "config": tiny_run("ddp", 8), "resume": hop2},
        {"name": "fsdp_from_ddp", "config": tiny_run("fsdp", REF_STEPS), "resume": hop3},
        {"name": "ddp_resume", "config": tiny_run("ddp", 6), "resume": runs / "ddp" / "checkpoints" / "step-3"},
        {"name": "ddp_killed_re_save", "config": tiny_run("ddp", 6), "resume": killed.parent, "late_rank": 1},
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


def _losses_from(records: list[dict], first_step: int) -> list[float]:
    assert records[0]["step"] == first_step, [r["step"] for r in records]
    return losses(records)


def test_chain_zero3_single_ddp_deepspeed(hops: dict, single_reference: dict) -> None:
    ref = losses(single_reference["records"])
    steps = {"hop2": (5, 6), "hop3": (7, 8), "hop4": (9, 10)}
    assert_same_state(hops["hop1"], ref_checkpoint(single_reference, 4))
    assert layout_of(hops["hop1"]) == "full"
    for name, (first, last) in steps.items():
        got = _losses_from(hops["records"][name], first)
        assert got == pytest.approx(ref[first - 1:last], rel=RTOL), name
        assert_same_state(hops["dir"] / name / "checkpoints" / f"step-{last}", ref_checkpoint(single_reference, last))
    assert ckpt.read_trainer_state(hops["dir"] / "hop4" / "checkpoints" / "step-10")["world_size"] == 2


@pytest.mark.parametrize("name", ["ds1_from_ddp", "fsdp_from_ddp"])
def test_side_hops_from_ddp(name: str, hops: dict, single_reference: dict) -> None:
    got = _losses_from(hops["records"][name], 9)
    assert got == pytest.approx(losses(single_reference["records"])[8:10], rel=RTOL)
    assert_same_state(hops["dir"] / name / "checkpoints" / "step-10", ref_checkpoint(single_reference, 10))


def test_ddp_resume_is_bit_identical(pro_runs: dict, hops: dict) -> None:
    straight = pro_runs["records"]["ddp"]
    resumed = hops["records"]["ddp_resume"]
    assert [r["step"] for r in resumed] == [4, 5, 6]
    assert losses(resumed) == losses(straight)[3:6]
    a = ckpt.load_model_state(pro_runs["dir"] / "ddp" / "checkpoints" / "step-6" / ckpt.MODEL_FILE)
    b = ckpt.load_model_state(hops["dir"] / "ddp_resume" / "checkpoints" / "step-6" / ckpt.MODEL_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_rank_reading_a_killed_re_save_under_its_own_job_does_not_wait(pro_runs: dict, hops: dict) -> None:
    """A run killed between a re-save's renames (step-3 moved aside, no step-3), resumed on two ranks:
    rank 0 took the run folder's lock as soon as its own set-up was done, and rank 1, still reading
    the checkpoint, took that lock for another job between the renames and waited RE_SAVE_WAIT_S
    (10 s; rank 0, at the lock's broadcast, with it). Every rank now arrives before rank 0 takes it:
    here rank 1 looks the run's checkpoints up only once rank 0 holds the lock, or after 1 s. The
    resume takes the moved-aside step 3, bit-identical with the run never killed."""
    run = hops["dir"] / "ddp_killed_re_save"
    took = json.loads((run / "lookup-rank1.json").read_text(encoding="utf-8"))
    assert took < 5, took  # 10.0 s
    resumed = hops["records"]["ddp_killed_re_save"]
    assert [r["step"] for r in resumed] == [4, 5, 6]
    assert losses(resumed) == losses(pro_runs["records"]["ddp"])[3:6]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-3", "step-6"]


@pytest.mark.parametrize("name", ["ddp_from_sharded", "ds2_from_sharded", "fsdp_sharded_resume"])
def test_sharded_checkpoint_loads_under_other_strategies(name: str, hops: dict, single_reference: dict) -> None:
    assert layout_of(hops["sharded"]) == "sharded"
    got = _losses_from(hops["records"][name], 5)
    assert got == pytest.approx(losses(single_reference["records"])[4:6], rel=RTOL)
    assert_same_state(hops["dir"] / name / "checkpoints" / "step-6", ref_checkpoint(single_reference, 6))


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
    assert_same_state(out, ref_checkpoint(single_reference, 4))
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


def test_a_sharded_checkpoint_saved_again_survives_a_kill_between_the_renames(
        pro_runs: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sharded checkpoint (model/ and optimizer/ folders of shards) saved again goes through the
    same commit as a full one: killed after its old step-N was moved aside (the rename of the new
    one raising here), lookups take the old one, checked shard by shard, and a run's start renames
    it back. It was lost: the resume took an older checkpoint, or found none."""
    import os
    import shutil

    from deepseek.training.checkpoint_sharded import check_sharded_files

    root = tmp_path / "run" / "checkpoints"
    shutil.copytree(pro_runs["dir"] / "fsdp_sharded" / "checkpoints", root)
    step, final = ckpt.list_checkpoints(root)[-1]
    assert layout_of(final) == "sharded"
    before = {f.relative_to(final): f.read_bytes() for f in final.rglob("*") if f.is_file()}
    tmp = ckpt.new_temp_dir(root, step)  # the same step written again
    shutil.copytree(final, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("commit.json"))
    real = os.replace

    def replace(src: object, dst: object) -> None:
        if os.fspath(dst) == str(final) and os.fspath(src) == str(tmp):  # the old one is aside by now
            raise KeyboardInterrupt("killed")
        real(src, dst)

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", replace)
        with pytest.raises(KeyboardInterrupt):
            ckpt.commit_checkpoint(tmp, final)
    assert not final.exists()
    aside = ckpt.resolve_checkpoint(tmp_path / "run")
    assert aside.name.startswith(f"step-{step}.replaced-") and layout_of(aside) == "sharded"
    check_sharded_files(aside)
    ckpt.remove_stale(root)
    assert ckpt.resolve_checkpoint(tmp_path / "run") == final
    assert {f.relative_to(final): f.read_bytes() for f in final.rglob("*") if f.is_file()} == before  # the old one, whole
