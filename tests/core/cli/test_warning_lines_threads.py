"""Two in-process ``main()`` calls that overlap in two threads share the process's
``warnings.showwarning``: the one-line display stays while either runs and what was there comes
back when the last one leaves (each call's own ``catch_warnings`` let the first to leave take the
display from the other, and the last to leave put the one-line display back for good)."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import click
import pytest

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.cli.warning_lines import show_warning_on_one_line
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

EVENTS = {name: threading.Event() for name in ("a_in", "a_go", "b_in", "b_go")}
SEEN: dict[str, Any] = {}
"""What each run's command found as ``warnings.showwarning`` once told to go on."""


@click.command("nb-wait")
@click.argument("name")
def wait(name: str) -> None:
    EVENTS[f"{name}_in"].set()
    assert EVENTS[f"{name}_go"].wait(60)
    SEEN[name] = warnings.showwarning


class Waits:
    @hookimpl
    def deepseek_register_commands(self, register):  # noqa: ANN001, ANN201
        register("nb-wait", wait)


def test_overlapping_mains_in_two_threads_restore_the_warning_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # whatever happens, the tests after get it
    monkeypatch.setattr(warnings, "filters", warnings.filters)
    before = warnings.showwarning
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Waits(), dist="deepseek-waits", version="0.1").status == "ok"
    codes: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            main(["nb-wait", name], host=host)
        except SystemExit as exc:
            codes[name] = exc.code

    first, second = (threading.Thread(target=run, args=(name,)) for name in "ab")
    try:
        first.start()
        assert EVENTS["a_in"].wait(60)
        second.start()
        assert EVENTS["b_in"].wait(60)  # both inside main: a leaves first, b last
        EVENTS["a_go"].set()
        first.join(60)
        EVENTS["b_go"].set()
        second.join(60)
    finally:
        for event in EVENTS.values():
            event.set()
    assert codes == {"a": 0, "b": 0}
    assert SEEN == {"a": show_warning_on_one_line, "b": show_warning_on_one_line}  # b's still after a left
    assert warnings.showwarning is before
