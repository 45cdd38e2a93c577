"""The ``deepseek`` root command: --version, --help, one-line errors with exit code 2, and the
plugin host a command runs with."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from deepseek import hookimpl
from deepseek.cli.context import command_host
from deepseek.cli.main import main
from deepseek.plugins.host import PluginHost, get_host
from deepseek.plugins.settings import PluginSettings

HAS_PRO = importlib.util.find_spec("deepseek_pro") is not None


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    return subprocess.run(
        [sys.executable, "-m", "deepseek", *args], capture_output=True, text=True,
        env={**base, **env}, timeout=120,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_version_lists_core_and_plugin_distributions() -> None:
    proc = run("--version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "deepseek-core 0.1.0"
    if HAS_PRO:
        assert "deepseek-pro 0.1.0 (pro (V2))" in lines
    only_core = run("--version", DEEPSEEK_PLUGINS="deepseek-core").stdout.splitlines()
    assert only_core[0] == "deepseek-core 0.1.0"
    assert all(line.endswith("[disabled]") for line in only_core[1:])
    assert run("--version", "--plugins", "deepseek-core").stdout.splitlines() == only_core  # any order


def test_help_lists_plugin_options_and_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0, proc.stderr
    for text in ("--version", "--strict-plugins", "--plugins A,B", "--disable-plugins A,B", "--no-plugin-autoload", "--debug"):
        assert text in proc.stdout
    commands = proc.stdout.split("Commands:")[1]
    assert "plugins" in commands and "inspect and scaffold plugins" in commands
    assert run().stdout == proc.stdout  # no arguments: the same help, exit 0
    assert run().returncode == 0


def test_unknown_command_is_one_line_with_a_suggestion() -> None:
    proc = run("plguins")
    assert proc.returncode == 2
    assert one_error_line(proc) == "error: no such command 'plguins'; did you mean 'plugins'? (see 'deepseek --help')"


@pytest.mark.parametrize(("typed", "choices", "meant"), [
    ("tyni", ["1.3b", "gpt", "small", "tiny"], "tiny"),  # two letters swapped: difflib's ratio alone says nothing
    ("gtp", ["gpt", "tiny"], "gpt"),
    ("smal", ["tiny", "small"], "small"),
    ("fsdp2", ["fsdp", "ddp"], "fsdp"),
    ("xyz", ["gpt", "tiny"], None),
    ("ab", ["ba"], None),  # one edit from a two-letter name is no evidence
])
def test_the_one_did_you_mean_rule(typed: str, choices: list[str], meant: str | None) -> None:
    from deepseek.names import closest, did_you_mean

    assert closest(typed, choices) == meant
    assert did_you_mean(typed, choices) == (f" (did you mean {meant!r}?)" if meant else "")


@pytest.mark.parametrize(("typed", "installed", "meant"), [
    ("acme", ["acme-extras", "deepseek-pro"], "acme-extras"),  # a part of the name
    ("acme_extra", ["acme-extras"], "acme-extras"),  # a typo
    ("acme", ["acme-extras", "acme-tools"], None),  # two could be meant: neither is said
    ("zeta", ["acme-extras"], None),
])
def test_a_distribution_named_by_part_of_its_name_is_suggested(typed: str, installed: list[str], meant: str) -> None:
    from deepseek.names import meant_distribution

    assert meant_distribution(typed, installed) == (f" (did you mean {meant!r}?)" if meant else "")


def test_a_mistyped_model_name_gets_a_suggestion() -> None:
    proc = run("bench", "train", "--model", "tyni")
    assert proc.returncode == 2
    assert "unknown model 'tyni'; did you mean 'tiny'?" in one_error_line(proc)
    proc = run("advise", "--model", "tyni")
    assert proc.returncode == 2
    assert "unknown preset 'tyni' (did you mean 'tiny'?)" in one_error_line(proc)


def test_bad_options_are_one_line() -> None:
    proc = run("--bogus")
    assert proc.returncode == 2
    assert one_error_line(proc) == "error: No such option '--bogus'. (see 'deepseek --help')"
    proc = run("plugins", "list", "--jsn")
    assert proc.returncode == 2
    assert "Did you mean '--json'?" in one_error_line(proc)
    proc = run("plugins", "which", "strategy")
    assert proc.returncode == 2
    assert one_error_line(proc) == "error: Missing argument 'NAME'. (see 'deepseek plugins which --help')"


@pytest.mark.parametrize(("args", "hint"), [
    (("train", "--plugins", "pro"), "'--plugins'; --plugins is an option of deepseek itself: give it before the "
                                    "command (deepseek --plugins ... train ...)"),
    (("plugins", "list", "--strict-plugins"), "(deepseek --strict-plugins plugins list ...)"),
])
def test_a_root_option_after_the_command_says_where_it_goes(args: tuple[str, ...], hint: str) -> None:
    # an outside author wrote `deepseek train --plugins pro` from docs/plugins.md section 8's table
    # and got only click's "No such option"
    proc = run(*args)
    assert proc.returncode == 2
    assert hint in one_error_line(proc)
    other = one_error_line(run("train", "--bogus"))
    assert "option of deepseek itself" not in other and "No such option '--bogus'." in other
    doc = (Path(__file__).resolve().parents[3] / "docs" / "plugins.md").read_text()
    assert "The options are those of `deepseek` itself and come before the command" in doc


def test_command_of_a_missing_edition_names_it() -> None:
    proc = run("launch", "-n", "2", DEEPSEEK_PLUGINS="deepseek-core")
    assert proc.returncode == 2
    assert one_error_line(proc).startswith("error: command 'launch' is provided by deepseek-pro")


def test_traceback_only_with_debug() -> None:
    plain = run("plugins", "which", "strategy", "nope")
    assert plain.returncode == 2
    one_error_line(plain)
    debug = run("--debug", "plugins", "which", "strategy", "nope")
    assert debug.returncode == 2  # --debug adds the traceback, never changes the exit code
    assert "Traceback (most recent call last)" in debug.stderr
    assert "ComponentNotFoundError: unknown strategy 'nope'" in debug.stderr


# ----------------------------------------------------------------- the host of a command


@click.command("nb-hosts")
def show_host() -> None:
    """Print the distributions of the host this command runs with."""
    click.echo(",".join(sorted(d for d, r in command_host().records.items() if r.status == "ok")))


class Notebook:
    @hookimpl
    def deepseek_register_commands(self, register):  # noqa: ANN001, ANN201
        register("nb-hosts", show_host)


def run_main(capsys: pytest.CaptureFixture[str], *args: str, host: PluginHost | None = None) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args), host=host)
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture
def notebook_host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Notebook(), dist="deepseek-notebook", version="0.2").status == "ok"
    return host


def test_commands_run_with_the_host_given_to_main(notebook_host: PluginHost, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(capsys, "nb-hosts", host=notebook_host)[:2] == (0, "deepseek-core,deepseek-notebook\n")
    code, out, _ = run_main(capsys, "plugins", "list", "--json", host=notebook_host)
    records = {r["distribution"]: r for r in json.loads(out)}
    assert code == 0 and records["deepseek-notebook"]["components"] == {"command": ["nb-hosts"]}
    assert (records["deepseek-notebook"]["version"], records["deepseek-notebook"]["edition"]) == ("0.2", "third-party")
    code, out, _ = run_main(capsys, "plugins", "which", "command", "nb-hosts", host=notebook_host)
    assert code == 0 and out.splitlines()[0] == "command nb-hosts -> deepseek-notebook:nb-hosts"
    assert "deepseek-notebook 0.2 (third-party)" in out
    code, out, _ = run_main(capsys, "--help", host=notebook_host)
    assert code == 0 and re.search(r"\n  nb-hosts +Print the distributions of the host", out)


def test_plugin_options_do_not_apply_to_a_given_host(notebook_host: PluginHost, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "--plugins", "deepseek-core", "plugins", "list", host=notebook_host)
    assert code == 2
    assert err.strip().splitlines() == [
        "error: --plugins: the plugins are those of the host given to deepseek.cli.main.main(host=...); "
        "drop the option or build that host with PluginSettings to match"
    ]


def test_plugin_options_build_the_command_host_and_leave_the_process_host(capsys: pytest.CaptureFixture[str]) -> None:
    process_host = get_host()
    statuses = {d: r.status for d, r in process_host.records.items()}
    code, out, _ = run_main(capsys, "--no-plugin-autoload", "plugins", "list", "--json")
    assert code == 0
    assert [r["distribution"] for r in json.loads(out) if r["status"] == "ok"] == ["deepseek-core"]
    assert get_host() is process_host
    assert {d: r.status for d, r in process_host.records.items()} == statuses
    # Without plugin options a command runs with the process's host.
    code, out, _ = run_main(capsys, "plugins", "list", "--json")
    assert {r["distribution"]: r["status"] for r in json.loads(out)} == statuses


@click.command("nb-boom")
@click.option("--fail", type=click.Choice(["bug", "refusal"]), default="bug")
def boom(fail: str) -> None:
    """Raise, as a command with a bug."""
    from deepseek.errors import UsageError

    if fail == "refusal":
        raise UsageError("nb-boom: refused on purpose")
    raise ValueError("deliberate")


def test_a_third_party_commands_bug_names_the_command_and_its_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    """An exception a plugin command raises is one line naming the command, its distribution and
    the plugin module, exit code 1, not an 'internal error' of the framework; a deepseek error the
    command raises on purpose, and click's usage errors, pass as they are."""

    class Boom:
        @hookimpl
        def deepseek_register_commands(self, register):  # noqa: ANN001, ANN201
            register("nb-boom", boom)

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Boom(), dist="deepseek-boom", version="0.3").status == "ok"
    code, _, err = run_main(capsys, "nb-boom", host=host)
    assert code == 1
    assert err.strip().splitlines() == [
        "error: command 'nb-boom' (deepseek-boom 0.3, registered by test_cli_root): its callback raised ValueError: "
        "deliberate; a bug in the plugin: upgrade it or report it to its authors (--debug shows the traceback)"
    ], err
    code, _, err = run_main(capsys, "nb-boom", "--fail", "refusal", host=host)
    assert (code, err.strip()) == (2, "error: nb-boom: refused on purpose")
    code, _, err = run_main(capsys, "nb-boom", "--fail", "nope", host=host)
    assert code == 2 and "internal error" not in err and "deepseek-boom" not in err


@click.group("click-name")
def nb_group() -> None:
    """The group's own help."""


@nb_group.command("rows")
def nb_rows() -> None:
    click.echo("rows ran")


def test_a_command_runs_under_its_registered_name(capsys: pytest.CaptureFixture[str]) -> None:
    # an outside author registered "omega-peek" with @click.command("peek") and could not tell from
    # docs/hooks.md which name the command line takes: the registered one, as the docstring now says
    class Group:
        @hookimpl
        def deepseek_register_commands(self, register):  # noqa: ANN001, ANN201
            register("nb-group", nb_group, description="rows of the notebook's data")

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Group(), dist="deepseek-group", version="0.1").status == "ok"
    assert run_main(capsys, "nb-group", "rows", host=host)[:2] == (0, "rows ran\n")
    code, _, err = run_main(capsys, "click-name", "rows", host=host)
    assert code == 2 and "no such command 'click-name'" in err
    code, out, _ = run_main(capsys, "--help", host=host)
    assert code == 0 and re.search(r"\n  nb-group +rows of the notebook's data\n", out)
    hooks = " ".join((Path(__file__).resolve().parents[3] / "docs" / "hooks.md").read_text().split())
    assert "the name given to `@click.command(...)` is not read, and `description` is the command's line" in hooks
