"""Core's GPT declares ``loss_items`` (its targets that are not -100), so rows padded with -100
targets weigh by their tokens wherever the global batch is split: under ``ddp`` on 2 processes
(rank 0's shard holds every short row) and under ``single`` with ``grad_accum = 2``, the step
losses and the validation loss are ``single``'s on one process (a mean over the batch's tokens).
Weighed by rows they were means of each part's token mean (step 1: 3.4600 under ``ddp``, 3.4624
with ``grad_accum = 2``, against 3.4625). So do ``pipeline`` on 2 stages, whose schedule's
micro-batches weigh by their tokens too, and ``hybrid`` on 4 processes (2 stages x 2 replicas;
weighed by rows, 3.4614 at step 1 and a NaN val_loss: a replica's shard of the last validation
batch holds no token). Core's own parity with the items of packed rows
(bit-identical losses) is ``tests/core/training/test_loss_items.py``'s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _prohelpers import run_probe_here, run_torchrun

PROBE = Path(__file__).with_name("_padded_fit.py")
TOL = 1e-6


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("gpt_padded")
    alone = ["single+gpt", "single+gpt-accum2", "single+gpt-packed"]
    run_probe_here(PROBE, out, *alone)
    launched = ["ddp+gpt", "pipeline+gpt-packed", "pipeline+gpt"]
    run_torchrun([str(PROBE), str(out), *launched], timeout=900)
    run_torchrun([str(PROBE), str(out), "hybrid+gpt"], nproc=4, timeout=900)
    launched.append("hybrid+gpt")
    return {name: json.loads((out / f"{name}.json").read_text()) for name in (*alone, *launched)}


@pytest.mark.parametrize("name", ["ddp+gpt", "single+gpt-accum2", "hybrid+gpt"])
def test_padded_gpt_rows_weigh_by_tokens(results: dict[str, dict], name: str) -> None:
    single, other = results["single+gpt"], results[name]
    assert len(other["losses"]) == len(single["losses"]) == 4
    assert other["losses"] == pytest.approx(single["losses"], rel=TOL, abs=TOL)
    assert other["val_loss"] == pytest.approx(single["val_loss"], rel=TOL, abs=TOL)


def test_pipeline_weighs_its_micro_batches_by_tokens(results: dict[str, dict]) -> None:
    """2 stages, 2 pipeline micro-batches of 6 rows (rows 0 and 4 short in the first, row 8 in
    the second); packed rows keep the plain mean of the micro-batches (the floats of before)."""
    for name in ("gpt", "gpt-packed"):
        single, pipeline = results[f"single+{name}"], results[f"pipeline+{name}"]
        assert len(pipeline["losses"]) == len(single["losses"]) == 4
        assert pipeline["losses"] == pytest.approx(single["losses"], rel=TOL, abs=TOL)
        assert pipeline["val_loss"] == pytest.approx(single["val_loss"], rel=TOL, abs=TOL)
