"""``data.eval_batches = 0`` (no validation) under 2-process strategies: ddp trains on exactly
what a run with validation trains on, writes no ``val_*`` value and resumes bit-exactly; pipeline
(whose evaluation is a strategy of its own) trains without one as well."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _prohelpers import losses, read_metrics, tiny_config

OFF = {"eval_batches": 0}


def test_ddp_and_pipeline_train_and_resume_without_validation(train_jobs: Any, tmp_path: Path) -> None:
    on = tiny_config("ddp", 4, model={"dropout": 0.1}, train={"eval_interval": 2}, checkpoint={"interval": 2})
    off = tiny_config("ddp", 4, model={"dropout": 0.1}, data=OFF, checkpoint={"interval": 2})
    pipeline = tiny_config("pipeline", 2, data=OFF)
    runs = train_jobs([
        {"name": "on", "config": on},
        {"name": "off", "config": off},
        {"name": "resumed", "config": off, "resume": tmp_path / "off" / "checkpoints" / "step-2"},
        {"name": "pipeline", "config": pipeline},
    ], tmp_path)
    assert len(runs["off"]) == 4 and len(runs["pipeline"]) == 2
    assert losses(runs["off"]) == losses(runs["on"])  # the same batches and updates, evaluated or not
    assert losses(runs["resumed"]) == losses(runs["off"])[2:]  # exact float equality
    assert any(k.startswith("val_") for r in read_metrics(tmp_path / "on") for k in r)
    for name in ("off", "resumed", "pipeline"):
        assert not [k for r in read_metrics(tmp_path / name) for k in r if k.startswith("val_")], name
