"""``deepseek_train_epoch_end`` under data-parallel strategies on 2 gloo processes
(``_epoch_fit.py``): every rank gets the same calls as one process, one per pass over the
training data (44 rows in batches of 8: passes end in steps 6 and 11), since every rank draws the
same global batches and shards them after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _prohelpers import run_probe_here, run_torchrun

PROBE = Path(__file__).with_name("_epoch_fit.py")
STRATEGIES = ("ddp", "fsdp", "deepspeed")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("epochs")
    run_torchrun([str(PROBE), str(out), *STRATEGIES], timeout=600)
    run_probe_here(PROBE, out, "single")
    return out


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_rank_sees_each_pass_end_as_one_process(runs: Path, strategy: str) -> None:
    single = json.loads((runs / "single-rank0.json").read_text())
    assert single == [[1, 6, 1], [2, 11, 2]]
    for rank in (0, 1):
        assert json.loads((runs / f"{strategy}-rank{rank}.json").read_text()) == single
