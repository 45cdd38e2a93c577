"""The multimodal classifier (Swin vision, conv-Transformer audio, byte text, cross-attention
fusion, auxiliary losses) trains under pro's data-parallel strategies on 2 processes with the
same losses, accuracies and validation figures as ``single``, and a ``ddp`` checkpoint resumes
under ``fsdp`` on the same curve; ``deepspeed`` with ``precision.dtype = "bf16"`` tracks
``single``'s bf16. Runs in the enterprise session (pro is installed there)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pro"))
from _prohelpers import losses, run_single, run_train_jobs  # noqa: E402

STEPS = 4
RTOL = 1e-5


def config(strategy: str, **options: Any) -> dict[str, Any]:
    return {
        "model": {"name": "multimodal.classifier", "fusion": "cross_attention", "aux_loss_weight": 0.5,
                  "vision": {"embed_dim": 16, "depths": [2, 1], "num_heads": [2, 2]},  # block 2: a shifted window
                  "audio": {"d_model": 32, "n_layers": 1},
                  "text": {"d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 24}},
        "data": {"name": "multimodal.digits", "batch_size": 8, "eval_batches": 2, "eval_size": 16},
        "train": {"max_steps": STEPS, "warmup_steps": 1, "eval_interval": 2, "lr": 3e-3, "min_lr": 3e-4, "seed": 3},
        "precision": {"dtype": "fp32"},
        "checkpoint": {"interval": 2, "keep_last": 5},
        "logging": {"progress": False, "plot": False},
        "strategy": {"name": strategy, **options},
    }


def bf16(tables: dict[str, Any]) -> dict[str, Any]:
    return {**tables, "precision": {"dtype": "bf16"}}


JOBS = {"ddp": config("ddp"), "fsdp": config("fsdp"), "zero2": config("deepspeed", stage=2),
        "zero3": config("deepspeed", stage=3)}


def evals(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if "val_loss" in r]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("mm")
    single = run_single(config("single", device="cpu"), work / "single")
    jobs = [{"name": name, "config": cfg} for name, cfg in JOBS.items()]
    jobs.append({"name": "fsdp_resumed", "config": config("fsdp"), "resume": work / "ddp" / "checkpoints" / "step-2"})
    jobs.append({"name": "zero2_bf16", "config": bf16(config("deepspeed", stage=2))})
    records = run_train_jobs(jobs, work, timeout=600)
    records["single"] = single
    records["single_bf16"] = run_single(bf16(config("single", device="cpu")), work / "single_bf16")
    return {"dir": work, "records": records}


@pytest.mark.parametrize("name", list(JOBS))
def test_each_strategy_matches_single(runs: dict[str, Any], name: str) -> None:
    ref, got = runs["records"]["single"], runs["records"][name]
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert losses(got) == pytest.approx(losses(ref), rel=RTOL)
    for key in ("accuracy", "accuracy_vision", "accuracy_audio", "accuracy_text"):
        assert [r[key] for r in got] == pytest.approx([r[key] for r in ref], abs=1e-6), key
    mine, theirs = evals(runs["dir"] / name), evals(runs["dir"] / "single")
    assert [e["step"] for e in mine] == [0, 2, 4]
    assert [e["val_loss"] for e in mine] == pytest.approx([e["val_loss"] for e in theirs], rel=RTOL)
    # val_accuracy_<modality>: counted over the whole validation set, summed over the ranks
    for key in ("val_accuracy", "val_accuracy_vision", "val_accuracy_audio", "val_accuracy_text"):
        assert [e[key] for e in mine] == pytest.approx([e[key] for e in theirs], abs=1e-6), key


def test_ddp_checkpoint_resumes_under_fsdp(runs: dict[str, Any]) -> None:
    resumed = runs["records"]["fsdp_resumed"]
    assert [r["step"] for r in resumed] == [3, 4]
    assert losses(resumed) == pytest.approx(losses(runs["records"]["single"])[2:], rel=RTOL)
    assert (runs["dir"] / "fsdp_resumed" / "splits.json").is_file()


def test_deepspeed_bf16_feeds_float_inputs_as_its_weights_type(runs: dict[str, Any]) -> None:
    """DeepSpeed holds the weights in bf16 and autocasts nothing: the images and audio features went
    in as fp32 and the first convolution refused them ("Input type (float) and bias type
    (c10::BFloat16) should be the same"). Cast as FSDP's mixed precision casts, the run tracks
    single's bf16 autocast within bf16's rounding (test_fsdp.py's 1e-2; measured 2e-4)."""
    got, ref = runs["records"]["zero2_bf16"], runs["records"]["single_bf16"]
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert losses(got) == pytest.approx(losses(ref), rel=1e-2)
    mine, theirs = evals(runs["dir"] / "zero2_bf16"), evals(runs["dir"] / "single_bf16")
    assert [e["val_loss"] for e in mine] == pytest.approx([e["val_loss"] for e in theirs], rel=1e-2)
