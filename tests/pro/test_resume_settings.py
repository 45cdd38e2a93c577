"""Resume is bit-exact under the settings test_resume_dropout.py does not combine with a
strategy: ZeRO-1, ZeRO with bf16, optimizer offload or accumulation with clipping that bites,
FSDP2 with accumulation in bf16 or CPU offload with Lion, DDP with Adafactor, SGD with Nesterov
and the wsd schedule, bf16 gradient compression or parameter groups, tp and pipeline with
accumulation. 6 steps straight equal 3 steps, a checkpoint and 3 more from it (dropout on), loss,
gradient norm and learning rate for each step; all jobs in one torchrun job (``train_jobs``).
"""
from __future__ import annotations

from typing import Any

import pytest
from _prohelpers import tiny_config

CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "zero1": ("deepspeed", {"stage": 1}, {}),
    "zero2-bf16": ("deepspeed", {"stage": 2}, {"precision": {"dtype": "bf16"}}),
    "zero3-offload-opt": ("deepspeed", {"stage": 3, "offload_optimizer": True}, {}),
    "zero2-accum2-clip": ("deepspeed", {"stage": 2}, {"train": {"grad_accum": 2, "grad_clip": 0.05}}),
    "fsdp-accum2-bf16": ("fsdp", {}, {"train": {"grad_accum": 2}, "precision": {"dtype": "bf16"}}),
    "ddp-adafactor": ("ddp", {}, {"optimizer": {"name": "adafactor"}}),
    "fsdp-lion-offload": ("fsdp", {"cpu_offload": True}, {"optimizer": {"name": "lion"}}),
    "ddp-sgd-nesterov-wsd": ("ddp", {}, {"optimizer": {"name": "sgd", "nesterov": True},
                                         "lr_schedule": {"name": "wsd", "decay_fraction": 0.5}}),
    "ddp-bf16-compress": ("ddp", {"compression": "bf16"}, {}),
    "tp-accum2": ("tp", {}, {"train": {"grad_accum": 2}}),
    "pipeline-accum2": ("pipeline", {}, {"train": {"grad_accum": 2}}),
    "ddp-groups": ("ddp", {}, {"optimizer": {"groups": [{"match": "wte.*", "lr_scale": 0.5, "weight_decay": 0.0}]}}),
}


@pytest.fixture(scope="module")
def runs(train_jobs: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    work = tmp_path_factory.mktemp("resume_matrix")
    jobs = []
    for name, (strategy, options, sections) in sorted(CASES.items(), key=lambda kv: kv[1][0] == "deepspeed"):
        config = tiny_config(strategy, 6, options=options, model={"dropout": 0.1},
                             checkpoint={"interval": 3}, **sections)
        jobs.append({"name": f"{name}/straight", "config": config})
        jobs.append({"name": f"{name}/resumed", "config": config,
                     "resume": work / name / "straight" / "checkpoints" / "step-3"})
    return train_jobs(jobs, work, nproc=2, timeout=1500)


@pytest.mark.parametrize("name", list(CASES))
def test_resume_is_bit_exact(name: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    s, r = runs[f"{name}/straight"], runs[f"{name}/resumed"]
    keys = ("loss", "grad_norm", "lr")
    assert [{k: x.get(k) for k in keys} for x in r] == [{k: x.get(k) for k in keys} for x in s[3:]]
