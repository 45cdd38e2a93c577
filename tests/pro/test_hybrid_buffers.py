"""``hybrid`` with data-parallel replicas of a stage whose training forward updates its persistent
buffers from its own rows (``_hybrid_buffer_fit.py``, 2 processes, one stage x two replicas):
after each step the replicas hold their first replica's buffers, as ``ddp`` and ``fsdp`` hold
rank 0's, so both replicas evaluate with the same buffers, the run's ``val_loss`` is what one
process gets from its checkpoint, and a resumed run continues bit-exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _hybrid_buffer_fit import model, tokens
from _prohelpers import run_torchrun

import deepseek

PROBE = Path(__file__).with_name("_hybrid_buffer_fit.py")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hybrid_buffers")
    run_torchrun([str(PROBE), str(out), "hybrid"], timeout=600)
    return out


def test_the_replicas_hold_the_same_buffers(runs: Path) -> None:
    first, second = (torch.load(runs / f"buffers-{r}.pt", weights_only=True) for r in (0, 1))
    assert len(first) == 2 and all(b.abs().sum() > 0 for b in first)  # the forward did move them
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_validation_is_the_checkpoints_evaluation(runs: Path) -> None:
    result = json.loads((runs / "hybrid.json").read_text())
    values = deepseek.evaluate(model(), tokens(16, 1), names=("input_ids", "targets"), batch_size=8,
                               checkpoint=runs / "hybrid" / "checkpoints" / "step-6")
    assert values["val_loss"] == pytest.approx(result["val_loss"], rel=1e-6)


def test_resume_continues_bit_exactly(runs: Path) -> None:
    result = json.loads((runs / "hybrid.json").read_text())
    assert result["resumed"] == result["losses"][3:]
