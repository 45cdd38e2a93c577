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

from deepseek.errors import PluginError
from deepseek.plugins.calls import PLUGIN_BUG, blame_for
from deepseek.training.run_values import RESERVED_METRICS
from deepseek_pro.strategies.pipeline_loss import LossCheck, shape_problem
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
    metrics = StageMetrics(blame_for(None, None))
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


def test_a_pipeline_loss_against_singles_rules_is_the_models_bug() -> None:
    """A reserved metric name, an integer loss or one without grad_fn that ``pipeline_loss``
    returns is the model's broken answer in its block: a plugin model's PluginError with
    ``single``'s wording (was: the user's UsageError, exit code 2)."""
    label = "model 'acme.gpt' (deepseek-acme 0.1, registered by acme.plugin)"
    blamed = blame_for(label, "acme")
    StageMetrics(blamed).check({"accuracy"})
    with pytest.raises(PluginError) as raised:
        StageMetrics(blamed).check({"accuracy", "lr"})
    assert str(raised.value) == (
        f"{label}: pipeline_loss returned metrics ['lr'], names the trainer logs itself; its metrics must take other "
        f"names (any but {', '.join(sorted(RESERVED_METRICS))}) (docs/plugins.md, 'Models'); {PLUGIN_BUG}")
    output = torch.ones(2, requires_grad=True)
    for loss, what in ((torch.tensor(3), "returned a loss of dtype int64; it must be a floating-point tensor"),
                       (torch.tensor(0.5), "returned a loss that does not depend on any trainable parameter")):
        check = LossCheck(blamed)
        zero = check.checked(loss, output)
        assert zero.requires_grad and float(zero) == 0.0  # the step still finishes on every rank
        assert isinstance(check.refusal(), PluginError)
        assert str(check.refusal()).startswith(f"{label}: pipeline_loss {what}")
