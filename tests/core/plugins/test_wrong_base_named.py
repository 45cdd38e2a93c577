"""A component registered with the wrong type (a strategy, dataset or tracker that is not a
subclass of its base class, a pass factory that makes something else, a model that is not
callable) is refused in one line naming the component, its distribution and version, and the
plugin module that registered it (``Component.label``), when a config or command uses it."""

from __future__ import annotations

import pytest
from plugin_testing import DistFactory, host_for

from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError
from deepseek.graph.spec import resolve_pass
from deepseek.tracking.resolve import tracker_class

PLUGIN = """
from dataclasses import dataclass

from deepseek import hookimpl


class NotAThing:
    pass


@hookimpl
def deepseek_register_strategies(register):
    register("wrong.strategy", "wrongbase:NotAThing")


@hookimpl
def deepseek_register_datasets(register):
    register("wrong.data", "wrongbase:NotAThing")


@hookimpl
def deepseek_register_trackers(register):
    register("wrong.tracker", "wrongbase:NotAThing")


@hookimpl
def deepseek_register_passes(register):
    register("wrong.pass", "wrongbase:NotAThing")
    register("wrong.broken-pass", "wrongbase:BrokenPass")


class BrokenPass:
    def __init__(self):
        raise KeyError("acme")  # named as the pass's bug, not "internal error: KeyError"


@hookimpl
def deepseek_register_models(register):
    register("wrong.model", "wrongbase:NOT_CALLABLE")
    register("wrong.options", "wrongbase:NoDefaults")


NOT_CALLABLE = 3


class NoDefaults:
    @dataclass
    class Options:
        width: int  # no default: a config leaving it out failed inside the dataclass
        depth: int = 2

    def __init__(self, options):
        self.options = options
"""

LABEL = "({kind} 'wrong.{name}' \\(deepseek-wrongbase 0\\.3, registered by wrongbase\\))"


@pytest.fixture
def host(make_dist: DistFactory):
    make_dist("deepseek-wrongbase", {"wrongbase": PLUGIN}, entry_points={"wrongbase": "wrongbase"}, version="0.3")
    host = host_for("deepseek-wrongbase")
    assert host.records["deepseek-wrongbase"].status == "ok", host.records["deepseek-wrongbase"].reason
    return host


@pytest.mark.parametrize(("section", "kind", "base"), [
    ("strategy", "strategy", r"deepseek\.training\.strategy\.Strategy; its plugin must register a Strategy subclass "
                             r"\(docs/plugins\.md section 12\)"),
    ("data", "dataset", r"deepseek\.data\.dataset\.Dataset; its plugin must register a Dataset subclass "
                        r"\(docs/plugins\.md section 11\)"),
])
def test_a_strategy_or_dataset_of_the_wrong_type_is_named(host, section: str, kind: str, base: str) -> None:
    name = "strategy" if kind == "strategy" else "data"
    with pytest.raises(PluginError, match="^" + LABEL.format(kind=kind, name=name)
                       + r": registered as <class 'wrongbase\.NotAThing'>, not a subclass of " + base + "$"):
        config_from_dict({section: {"name": f"wrong.{name}"}}, host=host)


def test_a_tracker_pass_or_model_of_the_wrong_type_is_named(host) -> None:
    with pytest.raises(PluginError, match="^" + LABEL.format(kind="tracker", name="tracker")
                       + r": registered as .*, not a subclass of deepseek\.tracking\.tracker\.Tracker; its plugin must "
                       r"register a Tracker subclass \(docs/tracking\.md section 5\)$"):
        tracker_class(host, "wrong.tracker")
    with pytest.raises(PluginError, match="^" + LABEL.format(kind="pass", name="pass")
                       + r": created a NotAThing, not a deepseek\.graph\.passes\.GraphPass"):
        resolve_pass("wrong.pass", host)
    with pytest.raises(PluginError, match=r"^pass 'wrong\.broken-pass' \(deepseek-wrongbase 0\.3, registered by wrongbase\): "
                       r"__init__ raised KeyError: 'acme'; a bug in the plugin"):
        resolve_pass("wrong.broken-pass", host)
    with pytest.raises(PluginError, match="^" + LABEL.format(kind="model", name="model")
                       + r": registered as 3, which is not callable"):
        config_from_dict({"model": {"name": "wrong.model"}}, host=host)


def test_options_without_a_default_are_the_plugins_fault(host) -> None:
    """The config is not to blame: ``NoDefaults.__init__() missing ... 'width'`` used to read as
    if the user had left a key out."""
    with pytest.raises(PluginError, match=r"^model 'wrong\.options': its Options NoDefaults\.Options field 'width' has "
                       r"no default; every option needs one, a config sets only the keys it changes "
                       r"\(docs/plugins\.md section 10\)$"):
        config_from_dict({"model": {"name": "wrong.options", "width": 3}}, host=host)
