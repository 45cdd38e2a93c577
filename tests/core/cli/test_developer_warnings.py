"""Warnings meant for the developers of the code that raised them (deprecations, and the
``SyntaxWarning`` / ``DeprecationWarning`` of an invalid escape sequence, which Python raises while
it compiles a module that has no cached bytecode: torchao's under ``PYTHONDONTWRITEBYTECODE=1``)
do not reach the user of a command, whose bad input stays one line; a warning for users still
shows as one ``warning:`` line. The module here is a plugin's, compiled while the command runs."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

MODULE = r'''
import warnings

PATTERN = "acme\.model"  # an invalid escape sequence: warned about when this source compiles

warnings.warn("acme_escapes.old_api is deprecated", DeprecationWarning)
warnings.warn_explicit("invalid escape sequence '\\.'", SyntaxWarning, __file__, 4)  # Python 3.12's form
warnings.warn("acme: the model is a demo")  # for the user: shown
from deepseek.models.presets import tiny
'''


def _bench_acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> int | str | None:
    """``bench latency`` of a plugin's model whose module (``source``) compiles while it runs."""
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delitem(sys.modules, name, raising=False)

    class Plugin:
        @hookimpl
        def deepseek_register_models(self, register: Any) -> None:
            register("acme.escapes", f"{name}:tiny")

    host = PluginHost(PluginSettings(autoload=False))
    host.register_plugin(Plugin(), dist="deepseek-acme")
    with warnings.catch_warnings(), pytest.raises(SystemExit) as exit_:
        warnings.simplefilter("always")  # whatever filters the process has: the command decides what shows
        main(["bench", "latency", "--model", "acme.escapes", "--seq", "1000"], host=host)
    assert name in sys.modules  # compiled and imported while the command ran
    return exit_.value.code


ERROR = "error: --seq 1000: the model 'acme.escapes' takes at most 128 positions"


@pytest.mark.parametrize("user_warning", [True, False])
def test_warnings_for_developers_are_not_shown_before_the_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], user_warning: bool) -> None:
    name = f"acme_escapes_{user_warning}"
    source = MODULE if user_warning else MODULE.replace('warnings.warn("acme: the model is a demo")', "")
    monkeypatch.setattr(sys, "warnoptions", [])  # python run as it usually is: no -W, no PYTHONWARNINGS
    assert _bench_acme(tmp_path, monkeypatch, name, source) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [*(["warning: acme: the model is a demo"] if user_warning else []), ERROR]


def test_a_user_who_asks_python_for_warnings_gets_the_developers_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "warnoptions", ["default"])  # python -W default / PYTHONWARNINGS=default
    assert _bench_acme(tmp_path, monkeypatch, "acme_escapes_asked", MODULE) == 2
    err = capsys.readouterr().err.strip().splitlines()
    escape = "warning: invalid escape sequence '\\.'"  # compiling the source, then its warn_explicit
    assert err == [escape, "warning: acme_escapes.old_api is deprecated", escape,
                   "warning: acme: the model is a demo", ERROR]


COMPILED = SyntaxWarning if sys.version_info >= (3, 12) else DeprecationWarning
"""The category of the invalid escape's warning Python raises as it compiles MODULE."""


@pytest.mark.parametrize(("options", "shown"), [
    (["ignore::UserWarning"], set()),                     # a filter of another category: none (was every one)
    (["default::DeprecationWarning"], {DeprecationWarning}),  # the category asked for, not the SyntaxWarning
    (["always::SyntaxWarning"], {SyntaxWarning}),
    (["default", "ignore::DeprecationWarning"], {SyntaxWarning}),  # the last filter matching decides
    (["ignore::DeprecationWarning", "d"], {DeprecationWarning, SyntaxWarning}),  # an abbreviated action, every category
    (["default:ACME_ESCAPES.OLD:DeprecationWarning", "default:other:Warning"], {"deprecated"}),  # a message's start
    (["default::DeprecationWarning:{name}"], {DeprecationWarning}),  # raised in that module's file
    (["default::DeprecationWarning:acme_other"], set()),
    (["default::Warning::0", "ignore::SyntaxWarning::4"], {DeprecationWarning}),  # at that line
    (["default::Bogus", "bogus", "ignore::Warning:::x"], set()),  # options Python refused at start-up decide nothing
])
def test_a_filter_the_user_set_shows_the_developers_warnings_it_matches_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], options: list[str],
        shown: set[object]) -> None:
    """Any ``-W`` (``sys.warnoptions`` not empty) showed every developer warning: now a filter
    shows those it matches, as Python applies the user's filters (``python -W ... -m deepseek``).
    ``shown``: the categories shown (``"deprecated"``: the deprecation only)."""
    name = f"acme_escapes_{abs(hash(tuple(options)))}"
    monkeypatch.setattr(sys, "warnoptions", [option.format(name=name) for option in options])
    assert _bench_acme(tmp_path, monkeypatch, name, MODULE) == 2
    escape = "warning: invalid escape sequence '\\.'"
    raised = [(COMPILED, escape), (DeprecationWarning, "warning: acme_escapes.old_api is deprecated"),
              (SyntaxWarning, escape)]  # compiling the source, then its warn and warn_explicit
    expected = [line for category, line in raised
                if category in shown or ("deprecated" in shown and "deprecated" in line)]
    assert capsys.readouterr().err.strip().splitlines() == [*expected, "warning: acme: the model is a demo", ERROR]


@pytest.mark.parametrize(("options", "shown"), [
    ([], {COMPILED, DeprecationWarning, SyntaxWarning}),  # python -X dev: every one, as with -W default
    (["ignore::DeprecationWarning"], {SyntaxWarning}),    # python -X dev -W ignore::DeprecationWarning: the user's wins
])
def test_pythons_development_mode_asks_for_the_developers_warnings_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], options: list[str],
        shown: set[object]) -> None:
    """``python -X dev`` / ``PYTHONDEVMODE=1`` shows deprecations by default: the developer who runs
    it sees them as with ``-W default``, and a ``-W`` filter of theirs decides what it matches."""
    flags = {k: getattr(sys.flags, k) for k in dir(sys.flags) if not k.startswith("_") and k not in ("count", "index")}
    monkeypatch.setattr(sys, "flags", type("Flags", (), {**flags, "dev_mode": True})())
    # as Python sets it in development mode: its "default" first, then PYTHONWARNINGS's and the -W options
    monkeypatch.setattr(sys, "warnoptions", ["default", *options])
    name = f"acme_escapes_dev_{len(options)}"
    assert _bench_acme(tmp_path, monkeypatch, name, MODULE) == 2
    escape = "warning: invalid escape sequence '\\.'"
    raised = [(COMPILED, escape), (DeprecationWarning, "warning: acme_escapes.old_api is deprecated"),
              (SyntaxWarning, escape)]  # compiling the source, then its warn and warn_explicit
    expected = [line for category, line in raised if category in shown]
    assert capsys.readouterr().err.strip().splitlines() == [*expected, "warning: acme: the model is a demo", ERROR]
