"""``pipeline`` and ``hybrid`` (pp x dp x tp meshes) train exactly like ``single``: same losses,
gradient norms and validation loss over N steps from the same seed and global batch, with gradient accumulation,
activation checkpointing, bf16 and fp16 (loss scaling with the overflow check agreed across
stages), and checkpoints that move between the strategies.

All distributed cases of one world size run in ONE torchrun job (``train_jobs`` from
conftest.py), so process start-up is paid once; the ``single`` references train in this process.

Tolerance: relative 1e-4 on fp32 losses and gradient norms (observed ~1e-6). The runs are not
bit-identical because the reductions happen in a different order: the pipeline cuts the step's
rows into its own micro-batches, FSDP reduce-scatters gradient sums over ranks, and the clipping
norm is a sum of squares across stages instead of torch's norm of per-tensor norms. bf16 and
fp16 runs round differently along the same paths, hence 5e-3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _prohelpers import read_metrics, run_single, tiny_config

STEPS = 4
ACCUM_CKPT = {"train": {"grad_accum": 2, "activation_checkpointing": True}}
BF16 = {"precision": {"dtype": "bf16"}}
FP16 = {"precision": {"dtype": "fp16", "init_scale": 131072}}  # step 1 overflows: skipped
SAVE_AT_2 = {"checkpoint": {"interval": 2}}
NONE: dict[str, Any] = {}

# case -> (strategy, strategy options, sections shared with its single reference)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "pipeline-1f1b": ("pipeline", {"schedule": "1f1b"}, NONE),
    "pipeline-gpipe": ("pipeline", {"schedule": "gpipe"}, NONE),
    "pipeline-1f1b-4-microbatches": ("pipeline", {"microbatches": 4}, NONE),
    "pipeline-1f1b-accum-ckpt": ("pipeline", {}, ACCUM_CKPT),
    "pipeline-gpipe-accum-ckpt": ("pipeline", {"schedule": "gpipe"}, ACCUM_CKPT),
    "pipeline-bf16": ("pipeline", {}, BF16),
    "pipeline-fp16": ("pipeline", {}, FP16),
    "hybrid-pp2-dp1": ("hybrid", {"pp_size": 2}, NONE),
    "hybrid-pp1-dp2": ("hybrid", {"pp_size": 1}, NONE),
    "hybrid-pp2-dp1-accum-ckpt": ("hybrid", {"schedule": "gpipe"}, ACCUM_CKPT),
    "hybrid-pp1-dp2-accum-ckpt": ("hybrid", {"pp_size": 1}, ACCUM_CKPT),
    "hybrid-pp2-dp1-fp16": ("hybrid", {}, FP16),
    "hybrid-pp1-dp1-tp2": ("hybrid", {"pp_size": 1, "tp_size": 2}, NONE),
    "hybrid-pp1-dp1-tp2-accum-ckpt": ("hybrid", {"pp_size": 1, "tp_size": 2}, ACCUM_CKPT),
    "hybrid-pp1-dp1-tp2-sp": ("hybrid", {"pp_size": 1, "tp_size": 2, "sequence_parallel": True}, NONE),
    # checkpoints: written at step 2 under the strategy / resumed from single's step 2
    "pipeline-save": ("pipeline", {}, SAVE_AT_2),
    "hybrid-pp1-dp2-save": ("hybrid", {"pp_size": 1}, SAVE_AT_2),
    "hybrid-pp1-tp2-save": ("hybrid", {"pp_size": 1, "tp_size": 2}, SAVE_AT_2),
    "pipeline-resume": ("pipeline", {}, NONE),
    "hybrid-pp2-dp1-resume": ("hybrid", {}, NONE),
    "hybrid-pp1-tp2-resume": ("hybrid", {"pp_size": 1, "tp_size": 2}, NONE),
}
UNWRAPPED = {"pipeline-unwrapped": ("pipeline", {}), "hybrid-unwrapped": ("hybrid", {"pp_size": 1})}
"""2-step runs after which every rank reports on the model ``unwrapped_model()`` gives it."""
REFERENCES = {"plain": NONE, "accum-ckpt": ACCUM_CKPT, "bf16": BF16, "fp16": FP16, "save": SAVE_AT_2}
RTOL = {"fp32": 1e-4, "half": 5e-3}


def config(strategy: str, options: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    """The tiny run of conftest with 4 layers (2 blocks per stage) and ``shared`` sections."""
    sections = {**shared, "model": {"n_layers": 4}}
    return tiny_config(strategy, STEPS, options=options, **sections)


def summary(run_dir: Path) -> dict[str, Any]:
    """Losses, gradient norms, skipped flags and the final validation loss of a run."""
    records = read_metrics(run_dir)
    steps = sorted((r for r in records if "loss" in r), key=lambda r: r["step"])
    return {
        "step": [r["step"] for r in steps],
        "loss": [r["loss"] for r in steps],
        "grad_norm": [r["grad_norm"] for r in steps],
        "skipped": [r["skipped"] for r in steps],
        "val_loss": [r["val_loss"] for r in records if "val_loss" in r][-1],
    }


def jobs(cases: dict[str, tuple[str, dict[str, Any], dict[str, Any]]], single_ckpt: Path) -> list[dict[str, Any]]:
    return [
        {"name": name, "config": config(strategy, options, shared),
         "resume": single_ckpt if name.endswith("-resume") else None}
        for name, (strategy, options, shared) in cases.items()
    ]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """References under ``single`` (in this process), keyed like :data:`REFERENCES`."""
    root = tmp_path_factory.mktemp("single")
    refs: dict[str, Any] = {}
    for key, shared in REFERENCES.items():
        run_single(config("single", {}, shared), root / key)
        refs[key] = summary(root / key)
    refs["ckpt"] = root / "save" / "checkpoints" / "step-2"
    return refs


@pytest.fixture(scope="module")
def two_procs(single: dict[str, Any], train_jobs: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("two")
    unwrapped = [{"name": name, "config": config(strategy, options, {"train": {"max_steps": 2}}), "unwrap_report": True}
                 for name, (strategy, options) in UNWRAPPED.items()]
    train_jobs([*jobs(CASES, single["ckpt"]), *unwrapped], out, nproc=2, timeout=900)
    return {name: summary(out / name) for name in CASES}, out


def assert_no_sequential_gather_warning(workdir: Path) -> None:
    """The torchrun jobs run in ``workdir`` logged no warning of torch's that gathering a weight
    sharded over ``dp`` and ``tp`` takes sequential all-gathers (hybrid's checkpoints gather them:
    ``pipeline_state.stage_state`` holds it back; it was rank 0's last log lines)."""
    logs = sorted(workdir.glob("jobs-*.log"))
    assert logs
    for log in logs:
        text = log.read_text(encoding="utf-8")
        assert "sequential all_gather operations" not in text, text[-3000:]


def reference(single: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    return single[next(k for k, v in REFERENCES.items() if v == shared)]


def assert_same(got: dict, want: dict, rtol: float, steps: slice = slice(None)) -> None:
    assert got["step"] == want["step"][steps]
    assert got["skipped"] == want["skipped"][steps]
    for key in ("loss", "grad_norm"):
        assert got[key] == pytest.approx(want[key][steps], rel=rtol), key
    assert got["val_loss"] == pytest.approx(want["val_loss"], rel=rtol)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", [c for c in CASES if not c.endswith("-resume")])
def test_same_losses_as_single(case: str, two_procs: tuple[dict, Path], single: dict) -> None:
    results, _ = two_procs
    _, _, shared = CASES[case]
    rtol = RTOL["half" if shared in (BF16, FP16) else "fp32"]
    assert_same(results[case], reference(single, shared), rtol)


def test_losses_fall(two_procs: tuple[dict, Path]) -> None:
    loss = two_procs[0]["pipeline-1f1b"]["loss"]
    assert loss[-1] < loss[0] - 0.1


def test_fp16_overflow_skips_the_step_on_every_stage(two_procs: tuple[dict, Path]) -> None:
    for case in ("pipeline-fp16", "hybrid-pp2-dp1-fp16"):
        assert two_procs[0][case]["skipped"] == [1, 0, 0, 0]


@pytest.mark.parametrize("case", ["pipeline-resume", "hybrid-pp2-dp1-resume", "hybrid-pp1-tp2-resume"])
def test_single_checkpoint_resumes_under_pipeline(case: str, two_procs: tuple[dict, Path], single: dict) -> None:
    assert_same(two_procs[0][case], single["plain"], RTOL["fp32"], slice(2, None))


@pytest.mark.parametrize("case", ["pipeline-save", "hybrid-pp1-dp2-save", "hybrid-pp1-tp2-save"])
def test_pipeline_checkpoint_resumes_under_single(case: str, two_procs: tuple[dict, Path], single: dict, tmp_path: Path) -> None:
    ckpt = two_procs[1] / case / "checkpoints" / "step-2"
    assert sorted(p.name for p in ckpt.iterdir() if not p.name.startswith("rng")) == [
        "commit.json", "model.safetensors", "optimizer.safetensors", "trainer.json"
    ]  # canonical files only: the stages' part files were merged and removed
    run_single(config("single", {}, NONE), tmp_path / "resumed", resume=ckpt)
    assert_same(summary(tmp_path / "resumed"), single["plain"], RTOL["fp32"], slice(2, None))


def test_tensor_parallel_checkpoints_log_no_sequential_gather_warning(two_procs: tuple[dict, Path]) -> None:
    """The tp=2 runs' checkpoints (each run saves at its end; ``hybrid-pp1-tp2-save`` at step 2
    too) gather weights split over ``dp`` x ``tp`` without torch's warning about it."""
    assert (two_procs[1] / "hybrid-pp1-tp2-save" / "checkpoints" / "step-2" / "model.safetensors").is_file()
    assert_no_sequential_gather_warning(two_procs[1])


def test_pipeline_checkpoint_equals_single_weights(two_procs: tuple[dict, Path], single: dict) -> None:
    """Same names and shapes as single's file (tied lm_head included), values within tolerance."""
    from deepseek.training.checkpoint import load_model_state, load_optimizer_state

    ours = two_procs[1] / "pipeline-save" / "checkpoints" / "step-2"
    ref = single["ckpt"]
    a, b = load_model_state(ours / "model.safetensors"), load_model_state(ref / "model.safetensors")
    assert sorted(a) == sorted(b)
    for k in a:
        assert (a[k] - b[k]).abs().max().item() < 1e-4, k
    oa, ob = load_optimizer_state(ours / "optimizer.safetensors"), load_optimizer_state(ref / "optimizer.safetensors")
    assert sorted(oa["state"]) == sorted(ob["state"])
    assert [sorted(g["params"]) for g in oa["param_groups"]] == [sorted(g["params"]) for g in ob["param_groups"]]


def test_hybrid_meshes_on_four_processes(single: dict[str, Any], train_jobs: Any, tmp_path: Path) -> None:
    """The general meshes: 2 stages x 2 FSDP shards, 2 stages x 2 tensor-parallel ranks (also with
    sequence parallelism: each stage sends its positions' shard to the next), 2 FSDP shards x 2
    tensor-parallel ranks (4 gloo processes, one torchrun job)."""
    cases = {"hybrid-pp2-dp2": ("hybrid", {"pp_size": 2}, NONE),
             "hybrid-pp2-dp1-tp2": ("hybrid", {"pp_size": 2, "tp_size": 2}, NONE),
             "hybrid-pp1-dp2-tp2": ("hybrid", {"pp_size": 1, "tp_size": 2}, NONE),
             "hybrid-pp2-dp1-tp2-sp": ("hybrid", {"pp_size": 2, "tp_size": 2, "sequence_parallel": True}, NONE)}
    train_jobs(jobs(cases, single["ckpt"]), tmp_path, nproc=4, timeout=900)
    for case in cases:
        assert_same(summary(tmp_path / case), single["plain"], RTOL["fp32"])
    assert_no_sequential_gather_warning(tmp_path)


def test_unwrapped_model_is_the_whole_trained_model(two_procs: tuple[dict, Path]) -> None:
    """``unwrapped_model()`` gathers every stage into a plain, tied GPT equal to the checkpoint, on
    every rank: the last stage's (rank 1) too (reports of ``_train_jobs.py``'s ``unwrap_report``)."""
    for name in UNWRAPPED:
        for rank in (0, 1):
            report = json.loads((two_procs[1] / name / f"unwrapped-rank{rank}.json").read_text())
            assert report == {"diff": 0.0, "tied": True, "logits": [1, 4, 256]}, (name, rank)
