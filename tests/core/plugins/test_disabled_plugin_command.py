"""A third-party plugin's command while its distribution is not loaded (``--disable-plugins``,
``DEEPSEEK_DISABLE_PLUGINS``, outside ``--plugins``): one line naming the distribution, the plugin
and how to load it, exit 2, from the entry-point metadata alone (the plugin is not imported).
Before, only a disabled edition's command got such a line; a third party's was click's bare
"No such command"."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from plugin_testing import DistFactory, run_cli

PLUGIN = """
import click
from deepseek import hookimpl

@click.command()
@click.argument("run")
def summary(run):
    \"\"\"Summarise RUN.\"\"\"
    click.echo(f"summary of {run}")

@hookimpl
def deepseek_register_commands(register):
    register("acme-summary", "acme_train.plugin:summary", description="summarise a run folder")
"""


@pytest.fixture
def acme(make_dist: DistFactory) -> DistFactory:
    make_dist("acme-train", {"acme_train.plugin": PLUGIN}, entry_points={"acme": "acme_train.plugin"})
    return make_dist


def test_the_enabled_plugins_command_runs(acme: DistFactory) -> None:
    out = run_cli("acme-summary", "runs/x", env=acme.env())
    assert (out.returncode, out.stdout) == (0, "summary of runs/x\n"), out.stderr


RUN = """
import json, sys

from deepseek.cli.main import main

try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "imported": [m for m in ("acme_train.plugin", "torch") if m in sys.modules]}))
"""


@pytest.mark.parametrize(("flags", "env", "why"), [
    (("--disable-plugins", "acme-train"), {}, "disabled: disabled by DEEPSEEK_DISABLE_PLUGINS / --disable-plugins "
                                              "(remove it there to load it)"),
    ((), {"DEEPSEEK_DISABLE_PLUGINS": "acme-train"}, "disabled: disabled by DEEPSEEK_DISABLE_PLUGINS / "
                                                     "--disable-plugins (remove it there to load it)"),
    (("--no-plugin-autoload",), {}, "disabled: autoload disabled by DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD / "
                                    "--no-plugin-autoload (name it in DEEPSEEK_PLUGINS / --plugins to load it)"),
])
def test_a_disabled_plugins_command_names_it_without_importing_it(
    acme: DistFactory, flags: tuple[str, ...], env: dict[str, str], why: str
) -> None:
    out = subprocess.run([sys.executable, "-c", RUN, *flags, "acme-summary", "runs/x"], capture_output=True, text=True,
                         env=acme.env(**env), timeout=120)
    assert json.loads(out.stdout) == {"code": 2, "imported": []}, out.stderr
    assert out.stderr.splitlines() == [
        "error: command 'acme-summary' is not loaded: it is named for plugin 'acme' (acme_train.plugin) of "
        f"acme-train 0.1.0, which is installed but {why}"
    ]


def test_the_import_check_sees_an_enabled_plugin(acme: DistFactory) -> None:
    out = subprocess.run([sys.executable, "-c", RUN, "acme-summary", "runs/x"], capture_output=True, text=True,
                         env=acme.env(), timeout=120)
    assert json.loads(out.stdout.splitlines()[-1]) == {"code": 0, "imported": ["acme_train.plugin"]}, out.stderr


def test_a_command_outside_its_namespace_gets_a_note(acme: DistFactory) -> None:
    """Which commands a plugin registers is known only by running its code, which a plugin that is
    not loaded never gets to: the note says so (it read "and may register it", a guess)."""
    out = run_cli("--disable-plugins", "acme-train", "zork", env=acme.env())
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "error: no such command 'zork'; acme-train 0.1.0 is installed but disabled: disabled by "
        "DEEPSEEK_DISABLE_PLUGINS / --disable-plugins (remove it there to load it): whether it registers 'zork' is "
        "known only once it loads (a plugin registers its commands in its code, which is not imported while it is "
        "not loaded) (see 'deepseek --help')"
    ]
