"""Persistent buffers under data parallelism (``_buffer_fit.py``: a running mean the training
forward reads and updates from each rank's rows, and BatchNorm; 2 processes). Every rank holds
rank 0's buffers after each step (``DistributedStrategy.sync_buffers``), so:

- a run resumed from its step-3 checkpoint gives the uninterrupted run's losses bit for bit under
  ``fsdp`` and ``deepspeed`` too (they used to keep each rank's own buffers: the checkpoint held
  rank 0's, every rank resumed with them, and losses differed by up to 5e-3 from step 4 on);
- the run's own last ``val_loss`` is ``deepseek.evaluate`` of its checkpoint (ranks used to
  evaluate with their own buffers: 7.7e-3 off under fsdp and deepspeed, 2.5e-4 under ddp);
- ``fsdp`` and ``deepspeed`` train as ``ddp`` does (whose buffers torch's DDP used to broadcast).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _buffer_fit import RunningMean, rows
from _prohelpers import run_torchrun

import deepseek

PROBE = Path(__file__).with_name("_buffer_fit.py")
STRATEGIES = ("ddp", "fsdp", "deepspeed")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("buffers")
    run_torchrun([str(PROBE), str(out), *STRATEGIES], timeout=600)
    return out


def _result(runs: Path, strategy: str) -> dict:
    return json.loads((runs / f"{strategy}.json").read_text())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_resume_continues_bit_exactly(runs: Path, strategy: str) -> None:
    result = _result(runs, strategy)
    assert len(result["losses"]) == 6 and len(result["resumed"]) == 3
    assert result["resumed"] == result["losses"][3:]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_validation_is_the_checkpoints_evaluation(runs: Path, strategy: str) -> None:
    metrics = deepseek.evaluate(RunningMean(), rows(16, 1), names=("features", "label"), checkpoint=runs / strategy)
    # one process over 8 rows against two ranks' means over 4 rows each: rounding only
    assert _result(runs, strategy)["val_loss"] == pytest.approx(metrics["val_loss"], rel=1e-6, abs=0)


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed"])
def test_sharded_strategies_train_as_ddp(runs: Path, strategy: str) -> None:
    assert _result(runs, strategy)["losses"] == pytest.approx(_result(runs, "ddp")["losses"], rel=1e-6, abs=0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_broadcast_buffers_keep_their_dtype(runs: Path, strategy: str) -> None:
    """BatchNorm's integer step count goes through the float buffers' broadcast as an integer."""
    from deepseek.training import checkpoint as ckpt

    state = ckpt.load_model_state(runs / strategy / "checkpoints" / "step-6" / ckpt.MODEL_FILE)
    count = state["norm.num_batches_tracked"]
    assert count.dtype == torch.int64 and int(count) == 6 and "scale" not in state


def test_persistent_buffers_are_the_state_dicts() -> None:
    """Non-persistent buffers are skipped, a shared one counted once; the GPT has none, so
    nothing is sent for it."""
    from deepseek.models.gpt import GPT, GPTConfig
    from deepseek_pro.strategies.base import persistent_buffers

    model = RunningMean()
    model.twin = model.norm  # the same module under a second name
    found = persistent_buffers(model)
    assert [id(b) for b in found] == [id(b) for b in {id(v): v for v in model.state_dict(keep_vars=True).values()
                                                      if not isinstance(v, torch.nn.Parameter)}.values()]
    assert all(b is not model.scale for b in found)
    gpt = GPT(GPTConfig(vocab_size=256, d_model=32, n_heads=2, n_layers=1, max_seq_len=16))
    assert persistent_buffers(gpt) == []
