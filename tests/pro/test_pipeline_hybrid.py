"""``pipeline`` and ``hybrid`` train exactly like ``single``: same losses, gradient norms and
validation loss over N steps from the same seed and global batch, with gradient accumulation,
activation checkpointing, bf16 and fp16 (loss scaling with the overflow check agreed across
stages), and checkpoints that move between the strategies.

All distributed cases of one world size run in ONE torchrun job (this file is also the worker
script: ``python test_pipeline_hybrid.py OUT CASE...``), so process start-up is paid once.

Tolerance: relative 1e-4 on fp32 losses and gradient norms (observed ~1e-6). The runs are not
bit-identical because the reductions happen in a different order: the pipeline cuts the step's
rows into its own micro-batches, FSDP reduce-scatters gradient sums over ranks, and the clipping
norm is a sum of squares across stages instead of torch's norm of per-tensor norms. bf16 and
fp16 runs round differently along the same paths, hence 5e-3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = [
    "model.d_model=64", "model.n_heads=4", "model.n_layers=4", "model.max_seq_len=32",
    "data.seq_len=32", "data.batch_size=8", "data.eval_batches=1", "train.max_steps=4",
    "train.warmup_steps=1", "train.lr=1e-2", "train.eval_interval=0", "logging.progress=false",
    "logging.plot=false", "checkpoint.interval=0", "checkpoint.at_end=false",
]
ACCUM_CKPT = ["train.grad_accum=2", "train.activation_checkpointing=true"]
BF16 = ['precision.dtype="bf16"']
FP16 = ['precision.dtype="fp16"', "precision.init_scale=131072"]  # step 1 overflows: skipped
SAVE_AT_2 = ["checkpoint.interval=2", "checkpoint.keep_last=5"]

# case -> (strategy, strategy options, settings shared with its single reference)
CASES: dict[str, tuple[str, list[str], list[str]]] = {
    "pipeline-1f1b": ("pipeline", ['strategy.schedule="1f1b"'], []),
    "pipeline-gpipe": ("pipeline", ['strategy.schedule="gpipe"'], []),
    "pipeline-1f1b-4-microbatches": ("pipeline", ["strategy.microbatches=4"], []),
    "pipeline-1f1b-accum-ckpt": ("pipeline", [], ACCUM_CKPT),
    "pipeline-gpipe-accum-ckpt": ("pipeline", ['strategy.schedule="gpipe"'], ACCUM_CKPT),
    "pipeline-bf16": ("pipeline", [], BF16),
    "pipeline-fp16": ("pipeline", [], FP16),
    "hybrid-pp2-dp1-fp16": ("hybrid", [], FP16),
    "hybrid-pp2-dp1": ("hybrid", ["strategy.pp_size=2"], []),
    "hybrid-pp1-dp2": ("hybrid", ["strategy.pp_size=1"], []),
    "hybrid-pp2-dp1-accum-ckpt": ("hybrid", ['strategy.schedule="gpipe"'], ACCUM_CKPT),
    "hybrid-pp1-dp2-accum-ckpt": ("hybrid", ["strategy.pp_size=1"], ACCUM_CKPT),
    # checkpoints: written at step 2 under the strategy / resumed from single's step 2
    "pipeline-save": ("pipeline", [], SAVE_AT_2),
    "hybrid-pp1-dp2-save": ("hybrid", ["strategy.pp_size=1"], SAVE_AT_2),
    "pipeline-resume": ("pipeline", [], []),
    "hybrid-pp2-dp1-resume": ("hybrid", [], []),
}
FOUR_PROCS = {"hybrid-pp2-dp2": ("hybrid", ["strategy.pp_size=2"], [])}
RTOL = {"fp32": 1e-4, "half": 5e-3}


def run_case(strategy: str, sets: list[str], run_dir: Path, resume: Path | None = None) -> dict:
    """Train one case in this process; returns losses, grad norms and the final val loss."""
    from deepseek.config.load import load_config
    from deepseek.training.trainer import Trainer

    config = load_config(None, [*TINY, f'strategy.name="{strategy}"', *sets])
    trainer = Trainer(config, run_dir=run_dir, resume=resume, quiet=True)
    result = trainer.fit()
    return {
        "step": [r["step"] for r in trainer.history],
        "loss": [r["loss"] for r in trainer.history],
        "grad_norm": [r["grad_norm"] for r in trainer.history],
        "skipped": [r["skipped"] for r in trainer.history],
        "val_loss": result.metrics["val_loss"],
    }


def worker(out: Path, single_ckpt: Path, names: list[str]) -> None:
    """torchrun worker: run the named cases one after another in one process group."""
    import torch.distributed as dist

    dist.init_process_group("gloo")  # strategies join it instead of creating their own
    cases = {**CASES, **FOUR_PROCS}
    results = {}
    for name in names:
        strategy, options, shared = cases[name]
        resume = single_ckpt if name.endswith("-resume") else None
        results[name] = run_case(strategy, [*options, *shared], out / name, resume)
    if dist.get_rank() == 0:
        (out / "results.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def torchrun(nproc: int, out: Path, single_ckpt: Path, names: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           __file__, str(out), str(single_ckpt), *names]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads((out / "results.json").read_text())


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """References under ``single`` (in this process), keyed by the shared settings."""
    root = tmp_path_factory.mktemp("single")
    refs = {}
    for shared in ([], ACCUM_CKPT, BF16, FP16):
        refs[tuple(shared)] = run_case("single", shared, root / f"ref-{len(refs)}")
    refs["save"] = run_case("single", SAVE_AT_2, root / "save")
    refs["ckpt"] = root / "save" / "checkpoints" / "step-2"
    return refs


@pytest.fixture(scope="module")
def two_procs(single: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("two")
    return torchrun(2, out, single["ckpt"], list(CASES)), out


def reference(single: dict, shared: list[str]) -> dict:
    return single["save"] if shared == SAVE_AT_2 else single[tuple(shared)]


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
    assert loss[-1] < loss[0] - 0.5


def test_fp16_overflow_skips_the_step_on_every_stage(two_procs: tuple[dict, Path]) -> None:
    for case in ("pipeline-fp16", "hybrid-pp2-dp1-fp16"):
        assert two_procs[0][case]["skipped"] == [1, 0, 0, 0]


@pytest.mark.parametrize("case", ["pipeline-resume", "hybrid-pp2-dp1-resume"])
def test_single_checkpoint_resumes_under_pipeline(case: str, two_procs: tuple[dict, Path], single: dict) -> None:
    assert_same(two_procs[0][case], single[()], RTOL["fp32"], slice(2, None))


@pytest.mark.parametrize("case", ["pipeline-save", "hybrid-pp1-dp2-save"])
def test_pipeline_checkpoint_resumes_under_single(case: str, two_procs: tuple[dict, Path], single: dict, tmp_path: Path) -> None:
    ckpt = two_procs[1] / case / "checkpoints" / "step-2"
    assert sorted(p.name for p in ckpt.iterdir() if not p.name.startswith("rng")) == [
        "model.safetensors", "optimizer.safetensors", "trainer.json"
    ]  # canonical files only: the stages' part files were merged and removed
    resumed = run_case("single", [], tmp_path / "resumed", resume=ckpt)
    assert_same(resumed, single[()], RTOL["fp32"], slice(2, None))


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


def test_hybrid_pp2_dp2_on_four_processes(single: dict, tmp_path: Path) -> None:
    """The general pp x dp mesh: 2 stages x 2 FSDP shards (4 gloo processes)."""
    results = torchrun(4, tmp_path, single["ckpt"], list(FOUR_PROCS))
    assert_same(results["hybrid-pp2-dp2"], single[()], RTOL["fp32"])


if __name__ == "__main__":
    worker(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
