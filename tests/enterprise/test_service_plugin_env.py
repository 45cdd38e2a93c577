"""A job runs with its server's plugin settings, given to it as data (``Launch.plugin_env``, from
the scheduler), never through the server's process environment: two servers in one process with
different settings run their tenants' jobs each with its own, and the server's own ``DEEPSEEK_*``
variables reach no job."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from _servicehelpers import Deploy, deploy

from deepseek.plugins.settings import ENV_ALLOW, ENV_NAMES, PluginSettings
from deepseek_enterprise.service.executor import Launch, LocalExecutor
from deepseek_enterprise.service.executor_base import plugin_env
from deepseek_enterprise.service.scheduler import Scheduler

# deepseek --plugins pro,enterprise --disable-plugins tidy server: its submit check uses these
PRO = PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"}), deny=frozenset({"deepseek-tidy"}),
                     prefer=("deepseek-enterprise",))
# deepseek --disable-plugins pro --strict-plugins server
NO_PRO = PluginSettings(deny=frozenset({"deepseek-pro"}), strict=True)


def _launch(job_id: int, settings: PluginSettings) -> Launch:
    return Launch(job_id, "acme", "bench", [], None, {}, [], plugin_env=plugin_env(settings))


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's shell sets plugin variables of its own (another allowlist)."""
    for key in ENV_NAMES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv(ENV_ALLOW, "deepseek-acme")


@pytest.mark.usefixtures("shell")
def test_a_jobs_environment_holds_its_launchs_plugin_settings_not_the_servers(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path)  # the Slurm executor builds its jobs' environment with it too
    for settings in (PRO, NO_PRO):
        launch = _launch(3, settings)
        env = ex.environment(tmp_path, [], 3, plugin_env=launch.plugin_env)
        assert PluginSettings.from_env(env) == settings
        assert env.get(ENV_ALLOW) != "deepseek-acme"
    # the defaults: nothing set, the job loads every installed plugin (not the shell's allowlist)
    assert not set(ENV_NAMES) & set(ex.environment(tmp_path, [], 3, plugin_env=_launch(3, PluginSettings()).plugin_env))
    # only plugin variables are taken from it
    assert "DEEPSEEK_DB_URL" not in ex.environment(tmp_path, [], 3, plugin_env={"DEEPSEEK_DB_URL": "x"})


class _EnvPrinting(LocalExecutor):
    """The local executor, its job printing the ``DEEPSEEK_*`` variables it was started with."""

    def argv(self, launch: Launch) -> list[str]:
        code = ("import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
                "if k.startswith('DEEPSEEK_') and k != 'DEEPSEEK_JOB_ID'}))")
        return [sys.executable, "-I", "-c", code]


def _server(root: Path, settings: PluginSettings, tenant: str) -> tuple[Deploy, str]:
    d = deploy(root)
    scheduler = Scheduler(d.store, _EnvPrinting(root), slots=1, gpus=[], interval=0.1, plugin_env=plugin_env(settings))
    d.client.app.state.service.scheduler = d.scheduler = scheduler
    scheduler.start()
    d.tenant(tenant)
    return d, d.user(tenant, "bob", "member")


@pytest.mark.usefixtures("shell")
def test_two_servers_in_one_process_run_their_tenants_jobs_each_with_its_own_plugin_settings(tmp_path: Path) -> None:
    before = dict(os.environ)
    acme, bob = _server(tmp_path / "acme-srv", PRO, "acme")
    globex, gil = _server(tmp_path / "globex-srv", NO_PRO, "globex")
    try:
        seen = {}
        for d, tenant, token in ((acme, "acme", bob), (globex, "globex", gil), (acme, "acme", bob)):
            r = d.submit(tenant, token, command="bench", args=[])
            assert r.status_code == 201, r.text
            job = d.wait(tenant, token, r.json()["id"], {"succeeded", "failed"})
            assert job["state"] == "succeeded", job
            log = (d.root / "tenants" / tenant / "jobs" / str(job["id"]) / "job.log").read_text()
            seen.setdefault(tenant, []).append(json.loads(log.strip().splitlines()[-1]))
        assert [PluginSettings.from_env(env) for env in seen["acme"]] == [PRO, PRO]
        assert [PluginSettings.from_env(env) for env in seen["globex"]] == [NO_PRO]
        assert seen["globex"][0] == {"DEEPSEEK_DISABLE_PLUGINS": "deepseek-pro", "DEEPSEEK_STRICT_PLUGINS": "1"}
        assert dict(os.environ) == before  # no server wrote its settings into the process
    finally:
        acme.close()
        globex.close()


def test_the_server_names_a_plugin_its_jobs_python_cannot_find(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin found only through the server's PYTHONPATH (an outside plugin tried without
    installing it, docs/plugins.md section 1) passes the submit check but is missing from the
    jobs' ``python -I``: the server names it at start, and only it."""
    from importlib import invalidate_caches

    from deepseek.plugins.host import PluginHost
    from deepseek_enterprise.service.executor_base import Executor, plugins_jobs_lack

    site = tmp_path / "site"
    (site / "deepseek_pathonly").mkdir(parents=True)
    (site / "deepseek_pathonly" / "__init__.py").write_text("")
    (site / "deepseek_pathonly" / "plugin.py").write_text(
        "from deepseek import hookimpl\n\n\n@hookimpl\ndef deepseek_register_trackers(register):\n"
        "    register('pathonly', 'deepseek_pathonly.t:T', description='a tracker')\n")
    info = site / "deepseek_pathonly-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-pathonly\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[deepseek]\npathonly = deepseek_pathonly.plugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    invalidate_caches()
    try:
        host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pathonly", "deepseek-enterprise"})))
        assert host.records["deepseek-pathonly"].status == "ok", host.records["deepseek-pathonly"].reason
        lines = plugins_jobs_lack(host.records.values(), LocalExecutor(tmp_path))
        assert len(lines) == 1 and lines[0].startswith("deepseek-pathonly 0.1.0 is loaded by the server but is not "
                                                        "installed where its jobs' Python finds"), lines
        assert sys.prefix in lines[0]
        # an executor that cannot tell where its jobs import from (the contract's default) warns of nothing
        assert plugins_jobs_lack(host.records.values(), Executor(tmp_path)) == []
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "deepseek_pathonly"]:
            del sys.modules[name]
