"""Every strategy resumes bit-exactly with dropout on: 4 steps straight equal 2 steps, a
checkpoint, and 2 more from it (same strategy, same 2 processes), loss for loss.

Dropout makes the random generators part of the state: a resumed run must draw the same masks
as the straight one. The pipeline stages' shape inference (an extra forward on the first
schedule step) used to draw masks after the restored state; see ``pipeline_stage.neutral_stage_class``.
All jobs run in ONE torchrun job (``train_jobs``), so process start-up is paid once.
"""

from __future__ import annotations

from typing import Any

import pytest
from _prohelpers import losses, tiny_config

STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "ddp": ("ddp", {}),
    "fsdp": ("fsdp", {}),
    "zero2": ("deepspeed", {"stage": 2}),
    "zero3": ("deepspeed", {"stage": 3}),
    "pipeline-1f1b": ("pipeline", {}),
    "pipeline-gpipe": ("pipeline", {"schedule": "gpipe"}),
    "hybrid-pp2-dp1": ("hybrid", {"pp_size": 2}),
    "hybrid-pp1-dp2": ("hybrid", {"pp_size": 1}),
    "tp": ("tp", {}),
    "tp-sp": ("tp", {"sequence_parallel": True}),
}


def _config(strategy: str, options: dict[str, Any]) -> dict[str, Any]:
    return tiny_config(strategy, 4, options=options, model={"dropout": 0.1},
                       train={"decay_steps": 4}, checkpoint={"interval": 2})


@pytest.fixture(scope="module")
def runs(train_jobs: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    work = tmp_path_factory.mktemp("resume_dropout")
    jobs = []
    # DeepSpeed last: it may leave process-wide patches behind for later jobs.
    for name, (strategy, options) in sorted(STRATEGIES.items(), key=lambda kv: kv[1][0] == "deepspeed"):
        config = _config(strategy, options)
        jobs.append({"name": f"{name}/straight", "config": config})
        jobs.append({"name": f"{name}/resumed", "config": config,
                     "resume": work / name / "straight" / "checkpoints" / "step-2"})
    return train_jobs(jobs, work, nproc=2, timeout=900)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_resume_with_dropout_is_bit_exact(name: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    straight, resumed = runs[f"{name}/straight"], runs[f"{name}/resumed"]
    assert [r["step"] for r in resumed] == [3, 4]
    assert losses(resumed) == losses(straight)[2:]  # exact float equality
