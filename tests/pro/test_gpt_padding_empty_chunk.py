"""``pipeline`` on 2 stages with a micro-batch whose rows are all padding: core's GPT on
``_padded_fit.rows_with_empty_parts``, 12-row batches in 2 pipeline micro-batches of 6, step 1's
first micro-batch (rows 0-5) without a target. Its mean loss over no token is NaN;
``pipeline_loss.chunk_weights`` gives it weight 0 and the other micro-batch all of the step's
tokens, so the step losses, the gradient norms and the validation loss are ``single``'s on one
process (a mean over the batch's tokens). A plain mean of the micro-batches' losses would make
step 1's loss and every gradient NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _prohelpers import run_probe_here, run_torchrun

PROBE = Path(__file__).with_name("_padded_fit.py")
TOL = 1e-6


def test_a_pipeline_micro_batch_of_padding_only_adds_nothing(tmp_path: Path) -> None:
    run_probe_here(PROBE, tmp_path, "single+gpt-empty")
    run_torchrun([str(PROBE), str(tmp_path), "pipeline+gpt-empty"], timeout=600)
    single, pipeline = (json.loads((tmp_path / f"{s}+gpt-empty.json").read_text()) for s in ("single", "pipeline"))
    assert len(pipeline["losses"]) == len(single["losses"]) == 4
    assert len(pipeline["grad_norms"]) == len(single["grad_norms"]) == 4
    assert all(math.isfinite(v) for v in (*single["losses"], *single["grad_norms"]))
    assert pipeline["losses"] == pytest.approx(single["losses"], rel=TOL, abs=TOL)
    assert pipeline["grad_norms"] == pytest.approx(single["grad_norms"], rel=TOL, abs=TOL)
    assert pipeline["val_loss"] == pytest.approx(single["val_loss"], rel=TOL, abs=TOL)
