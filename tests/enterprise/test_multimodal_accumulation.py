"""The multimodal classifier on 2 processes under ``ddp``, ``fsdp`` and ``deepspeed`` (stage 2)
with gradient accumulation (``train.grad_accum = 2``) on batches missing a modality
(``data.missing = ["audio"]``: every sample's audio marked absent, its encoder still run and
masked out of the fusion and the auxiliary loss) gives ``single``'s step losses, accuracies and
validation figures: every parameter gets a gradient and no strategy needs ``find_unused_parameters``. Measured: losses
equal to single's, ``val_loss`` within 1.2e-7 (docs/multimodal.md). The three runs share one
torchrun job (``run_train_jobs``: core's Trainer, as ``deepseek train`` runs it on each rank);
``deepseek launch -- train`` itself is tested by tests/pro/test_launch*.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pro"))
from _prohelpers import losses, run_single, run_train_jobs, train_records  # noqa: E402

STEPS = 4
RTOL = 1e-5
STRATEGIES = {"ddp": {"name": "ddp"}, "fsdp": {"name": "fsdp"}, "deepspeed": {"name": "deepspeed", "stage": 2}}


def config() -> dict[str, Any]:
    return {
        "model": {"name": "multimodal.classifier", "fusion": "cross_attention", "aux_loss_weight": 0.5,
                  "vision": {"embed_dim": 16, "depths": [1, 1], "num_heads": [2, 2]},
                  "audio": {"d_model": 32, "n_layers": 1},
                  "text": {"d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 24}},
        "data": {"name": "multimodal.digits", "batch_size": 8, "eval_batches": 2, "eval_size": 16,
                 "missing": ["audio"]},
        "train": {"max_steps": STEPS, "warmup_steps": 1, "eval_interval": 2, "lr": 3e-3, "min_lr": 3e-4, "seed": 3,
                  "grad_accum": 2},
        "precision": {"dtype": "fp32"},
        "checkpoint": {"interval": 0},
        "logging": {"progress": False, "plot": False},
        "strategy": {"name": "single", "device": "cpu"},
    }


def evals(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if "val_loss" in r]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("mm_accum")
    run_single(config(), work / "single")
    run_train_jobs([{"name": name, "config": {**config(), "strategy": strategy}} for name, strategy in STRATEGIES.items()],
                   work, timeout=600)
    return work


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_each_strategy_matches_single(work: Path, name: str) -> None:
    ref, got = train_records(work / "single"), train_records(work / name)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert losses(got) == pytest.approx(losses(ref), rel=RTOL)
    for key in ("accuracy", "accuracy_vision", "accuracy_text"):
        assert [r[key] for r in got] == pytest.approx([r[key] for r in ref], abs=1e-6), key
    # no sample has audio: no micro-batch measured it, so the step records leave it out (step.MetricSums)
    assert not any("accuracy_audio" in r for r in ref + got)
    mine, theirs = evals(work / name), evals(work / "single")
    assert [e["step"] for e in mine] == [0, 2, 4]
    assert [e["val_loss"] for e in mine] == pytest.approx([e["val_loss"] for e in theirs], rel=RTOL)
    for key in ("val_accuracy", "val_accuracy_vision", "val_accuracy_text"):
        assert [e[key] for e in mine] == pytest.approx([e[key] for e in theirs], abs=1e-6), key
