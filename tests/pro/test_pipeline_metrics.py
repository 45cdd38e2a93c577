"""A pipeline model's metrics (``_pipeline_metrics_fit.py``): ``pipeline_loss`` returns
``{"loss", "accuracy"}`` as ``forward`` does, and ``pipeline`` (two stages) and ``hybrid`` (one
stage, two data-parallel replicas) log the training accuracy of every step and ``val_accuracy``
as ``single`` does (the validation set ends in a shorter batch: 20 rows at batch 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _prohelpers import run_probe_here, run_torchrun

from deepseek_pro.strategies.pipeline_loss import shape_problem
from deepseek_pro.strategies.pipeline_metrics import StageMetrics

PROBE = Path(__file__).with_name("_pipeline_metrics_fit.py")
CASES = ("pipeline", "hybrid-dp2")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pipeline_metrics")
    run_torchrun([str(PROBE), str(out), *CASES], timeout=600)
    run_probe_here(PROBE, out, "single")
    return out


@pytest.mark.parametrize("case", CASES)
def test_pipeline_metrics_are_singles(runs: Path, case: str) -> None:
    got, single = (json.loads((runs / f"{name}.json").read_text()) for name in (case, "single"))
    assert set(got["val"]) == set(single["val"]) == {"val_loss", "val_accuracy"}
    for key, value in single["val"].items():
        assert got["val"][key] == pytest.approx(value, rel=1e-5), key
    assert len(got["accuracy"]) == len(single["accuracy"]) == 4  # one per training step
    assert got["accuracy"] == pytest.approx(single["accuracy"], abs=1e-6)
    assert got["losses"] == pytest.approx(single["losses"], rel=1e-5)


def test_what_pipeline_loss_returns_is_split_into_loss_and_metrics() -> None:
    metrics = StageMetrics("acme.gpt")
    loss = torch.tensor(2.0)
    assert metrics.split(loss) == (loss, {})
    got, found = metrics.split({"loss": loss, "accuracy": torch.tensor(0.5), "n": 3, "logits": torch.ones(2, 3),
                                "flag": True})
    assert got is loss and set(found) == {"accuracy", "n"} and float(found["n"]) == 3.0
    # a mapping without "loss": the model's broken answer (shape_problem, training and evaluation alike;
    # was StageMetrics.missing_loss, the user's UsageError in an evaluation)
    assert shape_problem({"accuracy": 0.5}) == (
        "pipeline_loss returned a dict without the key 'loss' (its keys: 'accuracy'); it must return the mean loss "
        "of the micro-batch, a 0-dim tensor (loss.mean(), or reduction='mean' in the loss function), or a mapping "
        "with the key 'loss' and the model's metrics")
    assert shape_problem(loss) is None
