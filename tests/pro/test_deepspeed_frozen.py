"""DeepSpeed checkpoints of a model with a frozen layer and BatchNorm (``_frozen_fit.py``, ZeRO-2
and ZeRO-3 on 2 processes): the first checkpoint used to fail (a frozen parameter has no fp32
master, ``safe_get_full_fp32_param`` gave None), and integer buffers were written as float32, so
that deepseek-core alone refused the checkpoint as damaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _frozen_fit import FrozenInput
from _prohelpers import run_torchrun

import deepseek
from deepseek.training import checkpoint as ckpt

PROBE = Path(__file__).with_name("_frozen_fit.py")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("frozen")
    run_torchrun([str(PROBE), str(out), "2", "3"], timeout=600)
    return out


@pytest.mark.parametrize("stage", [2, 3])
def test_frozen_layer_and_integer_buffer_are_checkpointed_as_they_are(runs: Path, stage: int) -> None:
    state = ckpt.load_model_state(runs / f"ds{stage}" / "checkpoints" / "step-4" / ckpt.MODEL_FILE)
    initial = FrozenInput().state_dict()
    assert torch.equal(state["inp.weight"], initial["inp.weight"]) and torch.equal(state["inp.bias"], initial["inp.bias"])
    assert state["norm.num_batches_tracked"].dtype == torch.int64 and int(state["norm.num_batches_tracked"]) == 4
    assert not torch.equal(state["head.weight"], initial["head.weight"])  # the trained part moved
    optimizer = ckpt.load_optimizer_state(runs / f"ds{stage}" / "checkpoints" / "step-4" / ckpt.OPTIMIZER_FILE)
    assert "inp.weight" not in optimizer["state"] and "head.weight" in optimizer["state"]


@pytest.mark.parametrize("stage", [2, 3])
def test_core_alone_evaluates_the_checkpoint(runs: Path, stage: int) -> None:
    from _frozen_fit import rows

    metrics = deepseek.evaluate(FrozenInput(), rows(32, 1), names=("features", "label"), batch_size=8,
                                checkpoint=runs / f"ds{stage}")
    assert torch.isfinite(torch.tensor(metrics["val_loss"]))


@pytest.mark.parametrize("stage", [2, 3])
def test_resume_sets_the_frozen_layer_and_continues(runs: Path, stage: int) -> None:
    result = json.loads((runs / f"ds{stage}.json").read_text())
    assert len(result["resumed"]) == 2
    assert result["resumed"] == pytest.approx(result["losses"][2:], rel=1e-6)  # batch statistics in training
    resumed = ckpt.load_model_state(runs / f"ds{stage}-resumed" / "checkpoints" / "step-4" / ckpt.MODEL_FILE)
    assert torch.equal(resumed["inp.weight"], FrozenInput().state_dict()["inp.weight"])
