"""What a path names in a job's workspace at its start is the server's executor's to say
(``Executor.at_start``, default: the local layout): the submit check reads the job's files by it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePath

import pytest
from _servicehelpers import Deploy, two_tenants
from _submitlines import job_line

from deepseek_enterprise.service import jobpaths
from deepseek_enterprise.service.executor import Executor, LocalExecutor
from deepseek_enterprise.service.scheduler import Scheduler


class _VolumeExecutor(LocalExecutor):
    """Jobs start in a workspace whose volume already holds ``preset.toml`` (an operator's file)."""

    def at_start(self, path: PurePath, has_config: bool, files: Mapping[str, str]) -> str:
        return "unknown" if path == PurePath("preset.toml") else super().at_start(path, has_config, files)


class _WrongExecutor(LocalExecutor):
    def at_start(self, path: PurePath, has_config: bool, files: Mapping[str, str]) -> str:
        return "maybe"


def _serving(root: Path, executor: Executor | None) -> Deploy:
    """A server whose jobs run on ``executor`` (None: none runs jobs); its scheduler is not started."""
    d = two_tenants(root)
    if executor is not None:
        d.client.app.state.service.scheduler = Scheduler(d.store, executor, slots=1, gpus=[],
                                                         origin="executor 'volume' (deepseek-acme 1.0)")
    return d


def test_the_default_layout_is_the_local_executors() -> None:
    ex = Executor(Path("/srv"))
    for path, has_config, files, expected in [
        ("config.toml", True, {}, "config"), ("config.toml", False, {}, "absent"), ("s.toml", False, {"s.toml": ""}, "file"),
        ("preset.toml", False, {}, "absent"), ("tmp/x.toml", False, {}, "unknown"), ("/srv/t/x.toml", False, {}, "unknown"),
    ]:
        assert ex.at_start(PurePath(path), has_config, files) == expected == jobpaths.at_start(PurePath(path), has_config, files)


@pytest.mark.parametrize("executor", [None, LocalExecutor], ids=["no-scheduler", "local"])
def test_a_file_the_job_is_not_sent_is_refused_with_the_jobs_line_under_the_default_layout(
        tmp_path: Path, executor: type | None) -> None:
    d = _serving(tmp_path / "srv", executor(tmp_path / "srv") if executor else None)
    try:
        expected = job_line(tmp_path, "train", None, {}, ["preset.toml"])
        r = d.submit("acme", d.tokens["bob"], command="train", args=["preset.toml"])
        assert (r.status_code, r.json()["detail"]) == (422, expected)
        assert expected.startswith("preset.toml: config file not found"), expected
    finally:
        d.close()


def test_an_executor_that_lays_out_more_is_asked_and_its_file_is_left_to_the_job(tmp_path: Path) -> None:
    d = _serving(tmp_path / "srv", _VolumeExecutor(tmp_path / "srv"))
    try:
        r = d.submit("acme", d.tokens["bob"], command="train", args=["preset.toml"])
        assert r.status_code == 201, r.text
        r = d.submit("acme", d.tokens["bob"], command="train", args=["other.toml"])  # still absent there
        assert r.status_code == 422 and r.json()["detail"].startswith("other.toml: config file not found")
    finally:
        d.close()


def test_an_executor_answering_outside_its_contract_is_named_in_one_line(tmp_path: Path) -> None:
    d = _serving(tmp_path / "srv", _WrongExecutor(tmp_path / "srv"))
    try:
        r = d.submit("acme", d.tokens["bob"], command="train", args=["preset.toml"])
        assert (r.status_code, r.json()["detail"]) == (
            422, "executor 'volume' (deepseek-acme 1.0): at_start() returned 'maybe' (str), not one of 'config', "
                 "'file', 'absent', 'unknown' (Executor.at_start)")
    finally:
        d.close()
