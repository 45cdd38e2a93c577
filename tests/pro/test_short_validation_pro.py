"""A validation set that ends in a shorter batch, under the pipeline strategies (``_short_val_fit.py``,
2 processes): the pipeline's last stage weighs its loss by its rows' share, ``hybrid`` with two
data-parallel ranks splits the short batch unevenly (21 rows: 8, 8 and 5, the 5 as 3 and 2; 17
rows: the last batch's one row leaves the second rank a stand-in row at weight 0), and the
validation loss equals one process's, the mean over every row. ``ddp``, ``fsdp`` and
``deepspeed`` with whole-set totals: tests/pro/test_whole_set_metrics_pro.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _prohelpers import run_probe_here, run_torchrun

PROBE = Path(__file__).with_name("_short_val_fit.py")
CASES = ("pipeline", "hybrid-dp2", "hybrid-dp2+17", "pipeline+17")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("short_val")
    run_torchrun([str(PROBE), str(out), *CASES], timeout=600)
    run_probe_here(PROBE, out, "single", "single+17")
    return out


@pytest.mark.parametrize("case", CASES)
def test_validation_loss_is_the_mean_over_every_row(runs: Path, case: str) -> None:
    rows = case.partition("+")[2]
    result = json.loads((runs / f"{case}.json").read_text())
    single = json.loads((runs / f"single{'+' + rows if rows else ''}.json").read_text())
    assert result["val"]["val_loss"] == pytest.approx(single["val"]["val_loss"], rel=1e-5)
    assert result["losses"] == pytest.approx(single["losses"], rel=1e-5)
