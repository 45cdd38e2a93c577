"""A kind of a plugin's own hookspec used through a host, as docs/plugins.md section 7 states it:
``host.names(kind)`` lists the names, ``host.create`` calls the target, and an unknown name is a
``ComponentNotFoundError`` (a ``UsageError`` and a ``LookupError``) that a command lets pass as its
one line, exit 2. (An outside plugin, written from the docs alone, had to read the host's source to
find ``names`` and what ``create`` raises.)"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import click
import pytest

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.errors import ComponentNotFoundError, UsageError
from deepseek.hookspecs import hookspec
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

specs = types.ModuleType("widget_specs")


def deepseek_register_widgets(register: Any) -> None:
    """Register widgets (kind ``widget``)."""


specs.deepseek_register_widgets = hookspec(deepseek_register_widgets)


class Widget:
    def __init__(self, size: int = 1) -> None:
        self.size = size


@click.command()
@click.argument("name")
def widget_show(name: str) -> None:
    from deepseek.cli.context import command_host

    click.echo(f"{name}: size {command_host().create('widget', name, 2).size}")


class WidgetPlugin:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager: Any) -> None:
        pluginmanager.add_hookspecs(specs)

    @hookimpl
    def deepseek_register_widgets(self, register: Any) -> None:
        register("w.one", Widget, description="a widget")
        register("w.two", Widget, aliases=("w.2",), description="another")

    @hookimpl
    def deepseek_register_commands(self, register: Any) -> None:
        register("widget-show", widget_show, description="make a widget by name")


def test_own_kind_names_create_and_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    record = host.register_plugin(WidgetPlugin(), dist="deepseek-widget", version="0.1.0")
    assert record.status == "ok", record.reason
    assert host.names("widget") == ["w.2", "w.one", "w.two"]
    assert host.create("widget", "w.one", 3).size == 3
    with pytest.raises(ComponentNotFoundError) as caught:
        host.create("widget", "w.on")
    assert isinstance(caught.value, UsageError) and isinstance(caught.value, LookupError)
    assert "did you mean 'w.one'" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(SystemExit) as exit_:
        main(["widget-show", "w.two"], host=host)
    assert exit_.value.code == 0 and capsys.readouterr().out == "w.two: size 2\n"
    with pytest.raises(SystemExit) as exit_:
        main(["widget-show", "w.tw"], host=host)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "did you mean 'w.two'" in err[0], err
    doc = " ".join((Path(__file__).resolve().parents[3] / "docs" / "plugins.md").read_text().split())
    assert "`host.names(\"widget\")` lists the registered names (sorted, aliases included)" in doc
    assert "a name nobody registered raises `deepseek.errors.ComponentNotFoundError` (a `UsageError`, and a `LookupError`)" in doc
