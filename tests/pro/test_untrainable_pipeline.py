"""A pipeline model whose ``pipeline_loss`` cannot train (detached, a constant, an integer or a
complex tensor) gets, on 2 gloo processes under ``strategy.name = "pipeline"``, the one line
``single`` gives the same model (whose ``forward`` computes the same loss), on BOTH ranks, and
leaves no run folder: only the last stage computes the loss, and a refusal there alone would
leave stage 0 waiting for gradients (deepseek_pro.strategies.pipeline_loss). The models run one
after another in one job, so a rank left waiting by the one before hangs the next: the job's
timeout fails the test. Such a loss is the model's broken answer (a script's model: the script's
UsageError, calls.scripts_own), whose line names the method that returned it: ``forward`` under
``single``, ``pipeline_loss`` under ``pipeline``, the rest of the line alike. A model with every
weight frozen gets the engine's line (the user's); a model with one stage frozen trains, with
single's losses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _prohelpers import run_torchrun
from _untrainable_pipeline import MODELS, attempt

PROBE = Path(__file__).with_name("_untrainable_pipeline.py")
REFUSED = ("Detached", "Constant", "IntegerLoss", "ComplexLoss", "Frozen")
TRAINS = ("LastStageFrozen", "FirstStageFrozen")
DIVERGES = ("LaterNaN",)
LATER = ("LaterDetached",)


def pipelined(single: dict[str, Any]) -> dict[str, Any]:
    """``single``'s result as ``pipeline`` gives it: a loss refused as the model's broken answer
    is the one ``pipeline_loss`` returned there (single's ``forward``); any other line alike."""
    message = single["message"].replace("the model given to deepseek.fit: forward returned ",
                                        "the model given to deepseek.fit: pipeline_loss returned ", 1)
    return {**single, "message": message}


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, dict[str, Any]]]]:
    out = tmp_path_factory.mktemp("untrainable-pipeline")
    run_torchrun([str(PROBE), str(out), *REFUSED, *TRAINS, *DIVERGES, *LATER], timeout=300)
    return out, [json.loads((out / f"messages-{rank}.json").read_text()) for rank in (0, 1)]


def test_every_model_ran_in_the_job(job: tuple[Path, list[dict[str, dict[str, Any]]]]) -> None:
    _, ranks = job
    assert sorted(MODELS) == sorted((*REFUSED, *TRAINS, *DIVERGES, *LATER))
    for seen in ranks:
        assert list(seen) == [*REFUSED, *TRAINS, *DIVERGES, *LATER]


@pytest.mark.parametrize("model", REFUSED)
def test_a_loss_that_cannot_train_is_the_single_device_line_on_every_rank(
        job: tuple[Path, list[dict[str, dict[str, Any]]]], model: str, tmp_path: Path) -> None:
    out, ranks = job
    single = attempt(tmp_path, "single", model)
    assert single["type"] == "UsageError" and "\n" not in single["message"], single
    assert single["message"].startswith("model 'script': " if model == "Frozen" else  # the user's: nothing trains
                                        "the model given to deepseek.fit: forward returned ")  # the model's answer
    for seen in ranks:
        assert seen[model] == pipelined(single)
    assert not (out / f"pipeline-{model}").exists()  # nothing half-written
    assert not (tmp_path / f"single-{model}").exists()


@pytest.mark.parametrize("model", TRAINS)
def test_a_frozen_stage_trains_as_under_single(job: tuple[Path, list[dict[str, dict[str, Any]]]], model: str,
                                               tmp_path: Path) -> None:
    out, ranks = job
    single = attempt(tmp_path, "single", model)
    assert single["type"] is None and len(single["losses"]) == 2, single
    for seen in ranks:
        assert seen[model]["type"] is None, seen[model]
        assert seen[model]["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert (out / f"pipeline-{model}" / "metrics.jsonl").is_file()


def test_a_loss_that_turns_nan_after_the_first_step_stops_every_rank_as_single(
        job: tuple[Path, list[dict[str, dict[str, Any]]]], tmp_path: Path) -> None:
    """Only the first step gathers the loss checks; a NaN loss later (from a NaN the first stage
    passes on) reaches every rank through the step's all-reduce of the loss, so both stages stop
    at the same step with single's line (train.on_nonfinite = "stop")."""
    _, ranks = job
    single = attempt(tmp_path, "single", "LaterNaN")
    assert single["type"] == "TrainingDivergedError" and "the loss is nan at step 2" in single["message"], single
    for seen in ranks:
        assert seen["LaterNaN"] == single


def test_a_loss_refused_after_the_first_step_is_the_same_line_on_every_rank(
        job: tuple[Path, list[dict[str, dict[str, Any]]]], tmp_path: Path) -> None:
    """Step 1 passes the checks; step 2's loss is detached on the last stage. Every rank raises
    single's line (was: the last stage alone, stage 0 'Connection closed by peer')."""
    _, ranks = job
    single = attempt(tmp_path, "single", "LaterDetached")
    assert single["type"] == "UsageError" and "no grad_fn" in single["message"], single
    for seen in ranks:
        assert seen["LaterDetached"] == pipelined(single) != single

