"""A model weighed by the items its loss averages over (``TrainableModel.loss_items``: tokens of
padded rows) gives ``single``'s step losses and validation loss under ``ddp``, ``fsdp`` and
``deepspeed`` (stage 2) on 2 processes with ``grad_accum = 2``, although its ranks' shards and
micro-batches hold different numbers of tokens (the validation set ends in a short batch whose
second rank's shard holds no token at all), and so do data where a micro-batch, or a rank's whole
step, holds no item (``+empty``); ``pipeline`` and ``hybrid`` weigh padded GPT rows the same way
(``test_gpt_padding_parity.py``, ``test_gpt_padding_empty_chunk.py``). The runs are
``deepseek.fit`` calls in one torchrun job, each making its own process group
(the second used to hang in torchrun's store, one time in two)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _prohelpers import run_probe_here, run_torchrun

PROBE = Path(__file__).with_name("_padded_fit.py")
RTOL = 1e-5


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("padded")
    run_probe_here(PROBE, out, "single", "single+empty")
    names = [f"{s}{variant}" for variant in ("", "+empty") for s in ("ddp", "fsdp", "deepspeed")]
    run_torchrun([str(PROBE), str(out), *names], timeout=900)
    return {name: json.loads((out / f"{name}.json").read_text()) for name in ("single", "single+empty", *names)}


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "deepspeed"])
def test_losses_per_item_match_single(results: dict[str, dict], strategy: str) -> None:
    single, other = results["single"], results[strategy]
    assert len(other["losses"]) == len(single["losses"]) == 4
    assert other["losses"] == pytest.approx(single["losses"], rel=RTOL)
    assert other["val_loss"] == pytest.approx(single["val_loss"], rel=RTOL)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "deepspeed"])
def test_a_part_without_items_adds_nothing_and_no_nan(results: dict[str, dict], strategy: str) -> None:
    """Step 1's first micro-batch holds no item, and step 2's second rank holds none: such a part
    weighs 0, and its loss (a mean over no token: NaN) counts as 0, under single as under the
    data-parallel strategies (single's run stopped at step 1 with 'the loss is nan')."""
    single, other = results["single+empty"], results[f"{strategy}+empty"]
    assert len(other["losses"]) == len(single["losses"]) == 4
    assert all(math.isfinite(v) for v in single["losses"] + other["losses"])
    assert other["losses"] == pytest.approx(single["losses"], rel=RTOL)
    assert other["val_loss"] == pytest.approx(single["val_loss"], rel=RTOL)
