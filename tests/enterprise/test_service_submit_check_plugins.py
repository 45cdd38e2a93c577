"""Plugins are the server's: a job runs with its server's plugin settings, and a job whose config
names a component of a plugin the server disabled (or of none) is refused at submit with the line
the job would print (service.jobcheck, deepseek.config.load.check_component_names)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _servicehelpers import CLI_HOST, two_tenants
from _submitlines import cli_line, workspace

from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek_enterprise.service.jobcheck import job_argv

NO_PRO = PluginHost(PluginSettings(deny=frozenset({"deepseek-pro"})))
"""deepseek --disable-plugins deepseek-pro server: enterprise's commands, none of pro's strategies."""

DDP = '[strategy]\nname = "ddp"\n[train]\nmax_steps = 1\n'
SPACE = '[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n'
TUNE = ["--study", "s", "--space", "space.toml", "--trials", "2"]


def _job_line(folder: Path, host: PluginHost, command: str, config: str | None, files: dict[str, str],
              args: list[str]) -> str:
    """The line the job prints, run as its server runs it: with the server's plugin settings."""
    return cli_line(workspace(folder, config, files), job_argv(command, config is not None, args), host)


@pytest.mark.parametrize(("host", "command", "config", "files", "args", "says"), [
    (NO_PRO, "train", DDP, {}, [], "is installed but disabled"),
    (NO_PRO, "train", None, {}, ["--strategy", "ddp"], "is installed but disabled"),
    (NO_PRO, "train", None, {}, ["--set", "strategy.name=\"deepseek-pro:ddp\""], "no distribution 'deepseek-pro'"),
    (NO_PRO, "bench", None, {"cfg.toml": DDP}, ["latency", "--config", "cfg.toml"], "is installed but disabled"),
    (NO_PRO, "tune", DDP, {"space.toml": SPACE}, TUNE, "is installed but disabled"),
    # a name no plugin provides, each component section
    (CLI_HOST, "train", None, {}, ["--set", "model.name=\"tny\""], "did you mean 'tiny'"),
    (CLI_HOST, "train", None, {}, ["--set", "data.name=\"txt\""], "did you mean 'text'"),
    (CLI_HOST, "train", None, {}, ["--set", "optimizer.name=\"adamm\""], "did you mean 'adam"),
    (CLI_HOST, "train", None, {}, ["--set", "lr_schedule.name=\"cosin\""], "did you mean 'cosine'"),
    (CLI_HOST, "tune", DDP.replace("ddp", "dpp"), {"space.toml": SPACE}, TUNE, "did you mean 'ddp'"),
])
def test_a_component_the_servers_plugins_do_not_provide_is_refused_at_submit_with_the_jobs_line(
        tmp_path: Path, host: PluginHost, command: str, config: str | None, files: dict[str, str],
        args: list[str], says: str) -> None:
    expected = _job_line(tmp_path, host, command, config, files, args)
    assert ".name: " in expected and says in expected, expected
    d = two_tenants(tmp_path / "srv", host)
    try:
        job = {"command": command, "args": args, "files": files, **({"config": config} if config is not None else {})}
        r = d.submit("acme", d.tokens["bob"], **job)
        assert (r.status_code, r.json()["detail"]) == (422, expected)
    finally:
        d.close()


def test_the_same_job_is_accepted_by_a_server_that_loads_the_plugin(tmp_path: Path) -> None:
    d = two_tenants(tmp_path / "srv", CLI_HOST)
    try:
        for job in ({"command": "train", "config": DDP},
                    {"command": "bench", "files": {"cfg.toml": DDP}, "args": ["latency", "--config", "cfg.toml"]},
                    {"command": "tune", "config": DDP, "files": {"space.toml": SPACE}, "args": TUNE}):
            r = d.submit("acme", d.tokens["bob"], **job)
            assert r.status_code == 201, r.text
    finally:
        d.close()
