"""Plugins are the server's: a job runs with its server's plugin settings, and a job whose config
names a component of a plugin the server disabled (or of none) is refused at submit with the line
the job would print (service.jobcheck, deepseek.config.load.check_component_names)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from _hosts import registering
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
    d = two_tenants(tmp_path / "srv", host, study_check=False)
    try:
        job = {"command": command, "args": args, "files": files, **({"config": config} if config is not None else {})}
        r = d.submit("acme", d.tokens["bob"], **job)
        assert (r.status_code, r.json()["detail"]) == (422, expected)
    finally:
        d.close()


def test_the_same_job_is_accepted_by_a_server_that_loads_the_plugin(tmp_path: Path) -> None:
    d = two_tenants(tmp_path / "srv", CLI_HOST, study_check=False)
    try:
        for job in ({"command": "train", "config": DDP},
                    {"command": "bench", "files": {"cfg.toml": DDP}, "args": ["latency", "--config", "cfg.toml"]},
                    {"command": "tune", "config": DDP, "files": {"space.toml": SPACE}, "args": TUNE}):
            r = d.submit("acme", d.tokens["bob"], **job)
            assert r.status_code == 201, r.text
    finally:
        d.close()


NO_ENTERPRISE = PluginHost(PluginSettings(deny=frozenset({"deepseek-enterprise"})))
"""deepseek --disable-plugins deepseek-enterprise server: none of enterprise's datasets."""

TRACKED = '[train]\nmax_steps = 1\n[logging]\ntrackers = ["tensorbord"]\n'


@pytest.mark.parametrize(("host", "command", "config", "files", "args", "says"), [
    (CLI_HOST, "train", TRACKED, {}, [], "logging.trackers: unknown tracker 'tensorbord'"),
    (CLI_HOST, "train", None, {}, ["--tracker", "mlflw"], "did you mean 'mlflow'"),
    (NO_PRO, "train", None, {}, ["--tracker", "deepseek-pro:tensorboard"], "no distribution 'deepseek-pro'"),
    (CLI_HOST, "bench", None, {"cfg.toml": TRACKED}, ["latency", "--config", "cfg.toml"], "did you mean 'tensorboard'"),
    (CLI_HOST, "tune", TRACKED, {"space.toml": SPACE}, TUNE, "did you mean 'tensorboard'"),
])
def test_a_tracker_the_servers_plugins_do_not_provide_is_refused_at_submit_with_the_jobs_line(
        tmp_path: Path, host: PluginHost, command: str, config: str | None, files: dict[str, str],
        args: list[str], says: str) -> None:
    """logging.trackers (and --tracker) were found only when the job loaded its config."""
    expected = _job_line(tmp_path, host, command, config, files, args)
    assert "logging.trackers: " in expected and says in expected, expected
    d = two_tenants(tmp_path / "srv", host, study_check=False)
    try:
        job = {"command": command, "args": args, "files": files, **({"config": config} if config is not None else {})}
        r = d.submit("acme", d.tokens["bob"], **job)
        assert (r.status_code, r.json()["detail"]) == (422, expected)
    finally:
        d.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of a tiny model trained 2 steps: eval reads its weights before its --config."""
    from _submitlines import run_in

    work = tmp_path_factory.mktemp("trained")
    (work / "c.toml").write_text(
        '[model]\nname = "tiny"\nd_model = 16\nn_heads = 2\nn_layers = 1\nmax_seq_len = 16\nd_ff = 32\n'
        "[data]\nseq_len = 16\nbatch_size = 4\neval_batches = 1\n[train]\nmax_steps = 2\neval_interval = 0\n"
        '[strategy]\nname = "single"\ndevice = "cpu"\n[logging]\nplot = false\nprogress = false\n')
    code, _, err = run_in(work, ["train", "c.toml", "--run-dir", "run", "--quiet"])
    assert code == 0, err
    return work / "run"


@pytest.mark.parametrize(("host", "data", "args", "says"), [
    (NO_ENTERPRISE, 'name = "multimodal.digits"', [], "is installed but disabled"),
    (CLI_HOST, 'name = "txt"', [], "did you mean 'text'"),
    (CLI_HOST, "seq_len = 16", ["--set", 'data.name="txt"'], "did you mean 'text'"),
])
def test_an_eval_jobs_dataset_the_servers_plugins_do_not_provide_is_refused_at_submit_with_the_jobs_line(
        tmp_path: Path, trained: Path, host: PluginHost, data: str, args: list[str], says: str) -> None:
    """An eval job's --config naming a disabled plugin's dataset was checked only when the job ran."""
    import shutil

    files = {"cfg.toml": f"[data]\n{data}\n"}
    args = ["--checkpoint", "runs/a", "--config", "cfg.toml", *args]
    shutil.copytree(trained, workspace(tmp_path, None, files) / "runs" / "a")  # the job reads its weights first
    expected = _job_line(tmp_path, host, "eval", None, files, args)
    assert "cfg.toml" in expected and "data.name: " in expected and says in expected, expected
    d = two_tenants(tmp_path / "srv", host, study_check=False)
    try:
        r = d.submit("acme", d.tokens["bob"], command="eval", args=args, files=files)
        assert (r.status_code, r.json()["detail"]) == (422, expected)
        files = {"cfg.toml": "[data]\nseq_len = 16\n"}  # the same job on a dataset the server has
        assert d.submit("acme", d.tokens["bob"], command="eval", args=args[:4], files=files).status_code == 201
    finally:
        d.close()


def _exits(code: int) -> Callable[[click.Context, click.Parameter, bool], None]:
    """An eager flag's callback that prints a line and ends the command line with ``code`` as it is
    parsed (as ``click.version_option``'s does with 0)."""

    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            click.echo("acme-train 1.0")
            ctx.exit(code)

    return callback


def _aborts(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        raise click.Abort


def _broken(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        raise ValueError("acme's option callback broke")


@click.command("train")
@click.option("--broken", is_flag=True, expose_value=False, callback=_broken)
@click.option("--version", is_flag=True, is_eager=True, expose_value=False, callback=_exits(0))
@click.option("--fail", is_flag=True, is_eager=True, expose_value=False, callback=_exits(3))
@click.option("--abort", is_flag=True, is_eager=True, expose_value=False, callback=_aborts)
@click.option("--steps", type=int, default=1)
def _acme_train(steps: int) -> None:
    """A third-party distribution's own ``train`` whose options end its command line as it is parsed."""


@pytest.fixture
def acme_train() -> PluginHost:
    """A server's host preferring ``deepseek-acme``'s ``train`` (:func:`_acme_train`)."""
    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"}),
                                     prefer=("deepseek-acme",)))
    plugin = registering("deepseek_register_commands", {"train": "test_service_submit_check_plugins:_acme_train"})
    assert host.register_plugin(plugin, dist="deepseek-acme", version="1.0").status == "ok"
    return host


def test_an_eager_option_that_exits_as_the_command_line_is_parsed_is_accepted_or_refused_not_an_internal_error(
        tmp_path: Path, acme_train: PluginHost) -> None:
    """click's Exit and Abort from a plugin command's eager option escaped the submit check (500)."""
    from _submitlines import run_in

    host = acme_train
    # what the job does: --version prints and succeeds, --fail exits 3, --abort exits 130
    assert run_in(tmp_path, ["train", "--version", "--steps", "x"], host)[:2] == (0, "acme-train 1.0\n")
    assert [run_in(tmp_path, ["train", flag], host)[0] for flag in ("--fail", "--abort")] == [3, 130]
    d = two_tenants(tmp_path / "srv", host, study_check=False)
    try:
        r = d.submit("acme", d.tokens["bob"], command="train", args=["--version", "--steps", "x"])
        assert r.status_code == 201, r.text  # as a help: the option is taken first, the job prints and succeeds
        r = d.submit("acme", d.tokens["bob"], command="train", args=["--fail"])
        assert (r.status_code, r.json()["detail"]) == (422, (
            "an option of 'deepseek train' ends the job with exit code 3 as its command line is parsed, "
            "before the command runs (see 'deepseek train --help')"))
        r = d.submit("acme", d.tokens["bob"], command="train", args=["--abort"])
        assert (r.status_code, r.json()["detail"]) == (422, (
            "an option of 'deepseek train' aborts the job as its command line is parsed, "
            "before the command runs (see 'deepseek train --help')"))
        assert [j["args"] for j in d.call("GET", "/v1/tenants/acme/jobs", d.tokens["bob"]).json()] == [
            ["--version", "--steps", "x"]]
    finally:
        d.close()


def test_a_plugin_option_callbacks_own_error_is_refused_with_the_jobs_line_not_an_internal_error(
        tmp_path: Path, acme_train: PluginHost) -> None:
    """An exception a third-party command's option callback raised as the job's command line was
    parsed at submit was the server's internal error (500); the job prints one line blaming the plugin."""
    expected = cli_line(tmp_path, ["train", "--broken"], acme_train, code=1)
    assert expected.startswith("command 'train' (deepseek-acme 1.0") and "ValueError: acme's option callback broke" in expected, expected
    d = two_tenants(tmp_path / "srv", acme_train, study_check=False)
    try:
        r = d.submit("acme", d.tokens["bob"], command="train", args=["--broken"])
        assert (r.status_code, r.json()["detail"]) == (422, expected)
    finally:
        d.close()


def _sys_exit(_ctx: click.Context, _param: click.Parameter, value: int | None) -> None:
    if value is not None:
        print("acme-train 1.0")
        sys.exit(value)


def _refuses(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        raise click.ClickException("acme's train takes no --refuse")


@click.command("train")
@click.option("--quit", type=int, is_eager=True, expose_value=False, callback=_sys_exit)
@click.option("--refuse", is_flag=True, expose_value=False, callback=_refuses)
def _acme_train_exits() -> None:
    """A third-party ``train`` whose option callbacks call ``sys.exit()`` or raise click's own error."""


def test_a_plugin_option_callbacks_sys_exit_or_click_error_is_the_jobs_answer_not_an_internal_error(
        tmp_path: Path) -> None:
    """``sys.exit()`` in a third-party command's option callback escaped the submit check (SystemExit:
    an internal error, 500, the request cancelled under TestClient), and so did a ``click.ClickException``
    that is not a usage error: now ``sys.exit(0)`` is accepted as the job succeeds, another status
    refused as ``ctx.exit()``'s, the ClickException with the line the job prints."""
    from _submitlines import run_in

    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"}),
                                     prefer=("deepseek-acme",)))
    plugin = registering("deepseek_register_commands", {"train": "test_service_submit_check_plugins:_acme_train_exits"})
    assert host.register_plugin(plugin, dist="deepseek-acme", version="1.0").status == "ok"
    assert [run_in(tmp_path, ["train", "--quit", code], host)[0] for code in ("0", "4")] == [0, 4]
    assert cli_line(tmp_path, ["train", "--refuse"], host, code=1) == "acme's train takes no --refuse"
    d = two_tenants(tmp_path / "srv", host, study_check=False)
    try:
        answers = [d.submit("acme", d.tokens["bob"], command="train", args=args)
                   for args in (["--quit", "0"], ["--quit", "4"], ["--refuse"])]
        assert [(r.status_code, r.json().get("detail")) for r in answers] == [
            (201, None),
            (422, "an option of 'deepseek train' ends the job with exit code 4 as its command line is parsed, "
                  "before the command runs (see 'deepseek train --help')"),
            (422, "acme's train takes no --refuse")]
    finally:
        d.close()


@click.command("train")
@click.confirmation_option(prompt="Train over the last run?")
@click.option("--name", prompt=True, default="run")
def _acme_train_prompts(name: str) -> None:
    """A third-party ``train`` whose options prompt when their value is not given."""


def test_a_plugin_options_prompt_aborts_at_submit_as_the_job_does_not_read_the_servers_stdin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job's stdin is empty, so a prompt aborts it (exit 130); the submit check's parse prompted
    on the server's own stdin: it printed the prompt to the server's output and waited for the
    server's terminal, or took what its stdin held (here "y": accepted, 201, a job that aborts)."""
    import io

    from _submitlines import run_in

    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"}),
                                     prefer=("deepseek-acme",)))
    plugin = registering("deepseek_register_commands", {"train": "test_service_submit_check_plugins:_acme_train_prompts"})
    assert host.register_plugin(plugin, dist="deepseek-acme", version="1.0").status == "ok"
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # the job's: empty
    assert [run_in(tmp_path, ["train", *args], host)[0] for args in ([], ["--yes"], ["--yes", "--name", "x"])] == [
        130, 130, 0]
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 10))  # the server's, as a terminal would answer
    d = two_tenants(tmp_path / "srv", host, study_check=False)
    try:
        answers = [d.submit("acme", d.tokens["bob"], command="train", args=args)
                   for args in ([], ["--yes"], ["--yes", "--name", "x"])]
        aborts = ("an option of 'deepseek train' aborts the job as its command line is parsed, before the command "
                  "runs (see 'deepseek train --help')")
        assert [(r.status_code, r.json().get("detail")) for r in answers] == [(422, aborts), (422, aborts), (201, None)]
        assert sys.stdin.read() == "y\n" * 10  # nothing read
    finally:
        d.close()


@click.command("train")
@click.option("--name", prompt=True, prompt_required=False, default="run")
def _acme_train_prompts_when_bare(name: str) -> None:
    """A third-party ``train`` whose ``--name`` prompts only when given without a value."""


def test_a_plugin_option_given_bare_that_prompts_aborts_at_submit_not_reading_the_servers_stdin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``prompt_required=False``: not given, ``--name`` takes its default; given bare (``--name``
    and no value), click prompts for it: the job, on its empty stdin, aborts (130), so the submit
    refuses it (422) and the server's own stdin is not read."""
    import io

    from _submitlines import run_in

    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"}),
                                     prefer=("deepseek-acme",)))
    plugin = registering("deepseek_register_commands",
                         {"train": "test_service_submit_check_plugins:_acme_train_prompts_when_bare"})
    assert host.register_plugin(plugin, dist="deepseek-acme", version="1.0").status == "ok"
    cases = ([], ["--name"], ["--name", "x"], ["--name="])
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # the job's: empty
    assert [run_in(tmp_path, ["train", *args], host)[0] for args in cases] == [0, 130, 0, 0]
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 10))  # the server's, as a terminal would answer
    d = two_tenants(tmp_path / "srv", host, study_check=False)
    try:
        answers = [d.submit("acme", d.tokens["bob"], command="train", args=args) for args in cases]
        aborts = ("an option of 'deepseek train' aborts the job as its command line is parsed, before the command "
                  "runs (see 'deepseek train --help')")
        assert [(r.status_code, r.json().get("detail")) for r in answers] == [
            (201, None), (422, aborts), (201, None), (201, None)]
        assert sys.stdin.read() == "y\n" * 10  # nothing read
    finally:
        d.close()
