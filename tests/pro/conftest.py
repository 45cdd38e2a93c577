"""Fixtures of the pro tests; the functions behind them live in ``_prohelpers.py``.

- ``torchrun``: :func:`_prohelpers.run_torchrun` (a command on N processes under torchrun, with a
  free port and a timeout; fails the test with the output's tail);
- ``train_jobs``: :func:`_prohelpers.run_train_jobs` (several training jobs through core's real
  Trainer in one torchrun job; returns each run's metrics);
- ``pro_runs``: every ddp / fsdp / deepspeed variant trained once for the whole run (shared
  by the xdist workers);
- ``single_reference``: ``single`` in this process, the reference the others must match;
- ``_fused_adam_prebuild`` (autouse): starts building DeepSpeed's CPU ``fused_adam`` op in the
  background when a selected test is marked ``fused_adam`` (:func:`_prohelpers.start_fused_adam_build`).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest
from _prohelpers import (
    PARITY_STEPS,
    REF_STEPS,
    run_single,
    run_torchrun,
    run_train_jobs,
    start_fused_adam_build,
    strategy_jobs,
    tiny_run,
    train_records,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "schedule_first: the file's few tests are long (each a chain of "
                                       "launches): handed out first under --dist loadfile (see "
                                       "pytest_collection_modifyitems)")
    config.addinivalue_line("markers", "fused_adam: the test's workers build DeepSpeed's CPU fused_adam op "
                                       "(started in the background at the session's first test)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The order in which ``--dist loadfile`` hands the files to the two xdist workers (CI runs
    tests-pro with ``--no-loadscope-reorder``, so that this order is the one taken): the files
    marked ``schedule_first`` first, then the others with the most tests first, as xdist orders
    them by itself. xdist's own order took the kill-and-resume files last (one to three tests
    each, 28-45 s a test in CI), where the last of them ran on alone after the other worker had
    finished; taken first, the short files at the end even out the two workers. Each file's tests
    keep their order (the sort is stable)."""
    counts = Counter(item.path for item in items)
    first = {item.path for item in items if item.get_closest_marker("schedule_first")}
    items.sort(key=lambda item: (item.path not in first, -counts[item.path]))


@pytest.fixture(scope="session", autouse=True)
def _fused_adam_prebuild(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """When a selected test is marked ``fused_adam``, the op's build starts at the session's first
    test instead of inside that test's workers, once per run (both xdist workers run this; the
    first to create the marker file starts it): see :func:`start_fused_adam_build`."""
    if not any(item.get_closest_marker("fused_adam") for item in request.session.items):
        return None
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    try:
        os.close(os.open(shared / "fused_adam_build.started", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return None
    return start_fused_adam_build(shared / "fused_adam_build.log")  # held until the session ends


@pytest.fixture(scope="session")
def torchrun() -> Any:
    """:func:`run_torchrun`."""
    return run_torchrun


@pytest.fixture(scope="session")
def train_jobs() -> Any:
    """:func:`run_train_jobs`."""
    return run_train_jobs

@pytest.fixture(scope="session")
def pro_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs every job of :func:`strategy_jobs` in one 2-process torchrun job; returns
    ``{"dir": Path, "records": {name: [step records]}}``. Trained once per pytest run: under
    pytest-xdist (CI's ``-n 2 --dist loadfile``) the seven files that read these runs land on both
    workers, so the first worker to need them trains them in a folder both see, and the other waits
    for it (a file lock) and reads the same runs."""
    from filelock import FileLock

    if os.environ.get("PYTEST_XDIST_WORKER"):  # the run's basetemp, parent of every worker's own
        work = tmp_path_factory.getbasetemp().parent / "pro_runs"
    else:
        work = tmp_path_factory.mktemp("pro_runs")
    ds_json = work / "ds_config.json"
    jobs = strategy_jobs(ds_json)
    with FileLock(f"{work}.lock"):
        if not (work / "trained").is_file():
            work.mkdir(exist_ok=True)
            ds_json.write_text(json.dumps({
                "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
                "zero_optimization": {"stage": 2}, "zero_allow_untested_optimizer": True,
            }), encoding="utf-8")
            run_train_jobs(jobs, work, timeout=900)
            (work / "trained").touch()
    return {"dir": work, "records": {job["name"]: train_records(work / job["name"]) for job in jobs}}


@pytest.fixture(scope="session")
def single_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``single`` in this process for ``REF_STEPS`` steps, a checkpoint every 2 steps; returns
    ``{"dir": Path, "records": [...]}``."""
    run = tmp_path_factory.mktemp("single_ref") / "run"
    records = run_single(tiny_run("single", REF_STEPS, checkpoint={"interval": 2}), run)
    return {"dir": run, "records": records}


@pytest.fixture(scope="session")
def single_mixed_precision(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``single`` in bf16 and in fp16 (``PARITY_STEPS`` steps each): ``{"bf16": [...], "fp16": [...]}``."""
    work = tmp_path_factory.mktemp("single_mixed")
    return {dtype: run_single(tiny_run("single", PARITY_STEPS, precision={"dtype": dtype}), work / dtype)
            for dtype in ("bf16", "fp16")}


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The kill-and-resume launch tests' ``PYTHONPATH`` folder (``_kill_launch.make_injected``)."""
    from _kill_launch import make_injected

    return make_injected(tmp_path_factory)
