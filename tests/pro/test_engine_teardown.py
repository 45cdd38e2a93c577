"""A distributed strategy drops its engine (the DDP wrapper and its reducer, FSDP's sharded module,
the pipeline's stage, the DeepSpeed engine) and collects it before it destroys the process group it
made, after a run that succeeded and after one that failed: ``deepseek.fit`` runs one after another
in one torchrun job (fsdp, pipeline, deepspeed, ddp, ddp failing in its second step) find no engine
object of any run alive when each run's group is destroyed, though a callback keeps each Trainer.
Left to the garbage collector, a run's DDP reducer went at some later point, past its group's
destruction or inside the next run's collectives (CI hung there in test_loss_items_parity.py's job).
After the run ``trainer.model`` is ddp's module with the trained weights (the last checkpoint's),
and None for fsdp, pipeline and deepspeed (docs/distributed.md, 'After the run')."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _prohelpers import run_torchrun

PROBE = Path(__file__).with_name("_engine_teardown.py")
RUNS = ("fsdp", "pipeline", "deepspeed", "ddp", "ddp+fail")


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    out = tmp_path_factory.mktemp("teardown")
    run_torchrun([str(PROBE), str(out), *RUNS], timeout=300)
    return {name: [json.loads((out / f"{name}-rank{r}.json").read_text()) for r in (0, 1)] for name in RUNS}


def test_no_engine_outlives_its_process_group(reports: dict[str, list[dict]]) -> None:
    assert {name: [r["alive"] for r in ranks] for name, ranks in reports.items()} == {name: [[], []] for name in RUNS}
    assert [r.get("error") for r in reports["ddp+fail"]] == ["RuntimeError", "RuntimeError"]


def test_after_the_run_the_model_is_ddps_trained_module_and_none_for_fsdp(reports: dict[str, list[dict]]) -> None:
    for report in reports["ddp"]:
        assert (report["model"], report["unwrapped"], report["diff"]) == ("GPT", True, 0.0)
    assert [r["model"] for r in reports["ddp+fail"]] == ["Failing", "Failing"]
    for name in ("fsdp", "pipeline", "deepspeed"):
        assert [r["model"] for r in reports[name]] == [None, None], name
