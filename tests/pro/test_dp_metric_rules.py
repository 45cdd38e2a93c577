"""A metric that only one rank's rows return is recorded by the data-parallel strategies as
``single`` records it (``_dp_metric_rules.py``, 2 gloo processes, ``ddp`` then ``fsdp`` in one
job, against ``single`` on the same global batches): each step and evaluation combines the
ranks by core's ``MetricSums`` (a rank that did not return the metric did not measure it), the
names agreed on by every rank first. Was: the ranks all-reduced vectors of different lengths
(one rank's ``late`` and its measured weight, the other's nothing), which gloo refused or hung
on; the job's timeout fails the test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from _dp_metric_rules import attempt
from _prohelpers import run_torchrun

PROBE = Path(__file__).with_name("_dp_metric_rules.py")
STRATEGIES = ("ddp", "fsdp")


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict[str, Any]]]:
    out = tmp_path_factory.mktemp("dp-metric-rules")
    run_torchrun([str(PROBE), str(out), *STRATEGIES], timeout=240)
    return [json.loads((out / f"seen-{rank}.json").read_text()) for rank in (0, 1)]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    got = attempt(tmp_path_factory.mktemp("dp-metric-single"), "single")
    assert got["type"] is None, got
    return got


def test_single_measures_late_where_a_row_has_a_2(single: dict[str, Any]) -> None:
    steps = single["steps"]
    assert ["late" in r for r in steps] == [False, True, False]
    assert 0.05 < steps[1]["late"] < 0.95  # the one row labelled 2: a halved or a plain mean is caught
    assert 0.05 < single["val"]["val_late"] < 0.95
    assert not any(math.isnan(v) for r in steps for v in r.values())
    assert set(single["val"]) == {"val_loss", "val_late"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_steps_and_evaluations_are_singles(job: list[dict[str, dict[str, Any]]], single: dict[str, Any],
                                           strategy: str) -> None:
    for seen in job:
        got = seen[strategy]
        assert got["type"] is None, got
        assert len(got["steps"]) == len(single["steps"])
        for mine, theirs in zip(got["steps"], single["steps"], strict=True):
            assert set(theirs) <= set(mine)  # and the strategy's own step values (comm_bytes, ...)
            assert ("late" in mine) == ("late" in theirs)
            for key, value in theirs.items():
                assert mine[key] == pytest.approx(value, abs=1e-6), key
        assert set(got["val"]) == set(single["val"])
        for key, value in single["val"].items():
            assert got["val"][key] == pytest.approx(value, abs=1e-6), key
