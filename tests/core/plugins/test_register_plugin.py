"""``PluginHost.register_plugin``: an in-process plugin takes the entry-point plugin's path."""

from __future__ import annotations

import types

import click
import pytest
from plugin_testing import host_for

from deepseek import hookimpl
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost, PluginWarning
from deepseek.plugins.settings import PluginSettings


class Notebook:
    """A plugin object as a notebook would define it."""

    @hookimpl
    def deepseek_register_passes(self, register):  # noqa: ANN001, ANN201
        register("nb.pass", lambda: "built", aliases=("nb.p",), description="a notebook pass")

    @hookimpl
    def deepseek_register_commands(self, register):  # noqa: ANN001, ANN201
        register("nb-hello", hello)


@click.command("nb-hello")
def hello() -> None:
    """Say hello from the notebook."""
    click.echo("hello from the notebook")


GIZMO_SPECS = """
from deepseek.hookspecs import hookspec

@hookspec
def deepseek_register_gizmos(register):
    '''Register gizmos.'''
"""


def _plugin_module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(source, module.__dict__)  # noqa: S102 - a plugin module made in the test
    return module


def test_registered_plugin_is_a_distribution_like_an_installed_one() -> None:
    host = host_for()
    record = host.register_plugin(Notebook(), dist="Deepseek_Notebook", version="0.3")
    assert record is host.records["deepseek-notebook"]
    assert (record.status, record.version, record.edition) == ("ok", "0.3", "third-party")
    assert record.modules == [f"{__name__}:Notebook"]
    assert record.components == {"command": ["nb-hello"], "pass": ["nb.pass"]}
    comp = host.resolve("pass", "nb.p")
    assert (comp.dist, comp.alias_of, comp.qualified_name) == ("deepseek-notebook", "nb.pass", "deepseek-notebook:nb.p")
    assert host.create("pass", "deepseek-notebook:nb.pass") == "built"
    assert ("deepseek-notebook", "0.3", "ok") in host.fingerprint()
    assert "nb.pass" not in host_for().names("pass")  # hosts are independent


def test_a_failing_registration_keeps_nothing_and_names_dist_plugin_and_hook() -> None:
    class Half:
        @hookimpl
        def deepseek_register_passes(self, register):  # noqa: ANN001, ANN201
            register("half.pass", "m:x")
            register("Half Pass", "m:y")

    host = host_for()
    with pytest.warns(PluginWarning) as caught:
        record = host.register_plugin(Half(), dist="deepseek-half")
    assert record.status == "failed"
    assert record.reason.startswith(
        "deepseek-half 0.0.0 (deepseek-half:Half, deepseek_register_passes): invalid pass name 'Half Pass'"
    )
    assert record.reason.endswith("fix the plugin or skip it with DEEPSEEK_DISABLE_PLUGINS=deepseek-half")
    assert [str(w.message) for w in caught] == [record.reason]
    assert "half.pass" not in host.names("pass") and record.components == {}
    assert not any("Half" in name for name, _ in host.pm.list_name_plugin())
    with pytest.raises(PluginError, match=r"invalid pass name 'Half Pass'.*\(strict plugin mode is on\)$"):
        host_for(strict=True).register_plugin(Half(), dist="deepseek-half")


def test_unknown_hooks_and_bad_signatures_are_rejected() -> None:
    typo = _plugin_module("nb_typo", "from deepseek import hookimpl\n\n@hookimpl\ndef deepseek_register_pases(register):\n    pass\n")
    host = host_for()
    with pytest.warns(PluginWarning):
        record = host.register_plugin(typo, dist="deepseek-typo")
    assert record.modules == ["nb_typo"]
    assert "nb_typo implements unknown hook 'deepseek_register_pases' (did you mean 'deepseek_register_passes'?)" in record.reason

    class WrongArgs:
        @hookimpl
        def deepseek_train_end(self, trainer, metrics, extra):  # noqa: ANN001, ANN201
            pass

    with pytest.warns(PluginWarning, match=r"^deepseek-wrong 0\.0\.0: plugin 'WrongArgs' \(.*\): deepseek_train_end asks for the argument 'extra', which the hook does not pass; its arguments are trainer, metrics"):
        assert host.register_plugin(WrongArgs(), dist="deepseek-wrong").status == "failed"
    assert host.hook.deepseek_train_end.get_hookimpls() == []


def test_hookspecs_of_an_in_process_plugin_add_a_kind() -> None:
    specs = _plugin_module("nb_specs", GIZMO_SPECS)

    class Extension:
        @hookimpl
        def deepseek_add_hookspecs(self, pluginmanager):  # noqa: ANN001, ANN201
            pluginmanager.add_hookspecs(specs)

        @hookimpl
        def deepseek_register_gizmos(self, register):  # noqa: ANN001, ANN201
            register("ext.gizmo", dict, description="a gizmo")

    class User:
        @hookimpl
        def deepseek_register_gizmos(self, register):  # noqa: ANN001, ANN201
            register("user.gizmo", list, description="another gizmo")

    host = host_for()
    assert host.register_plugin(Extension(), dist="deepseek-ext").status == "ok"
    assert host.register_plugin(User(), dist="deepseek-user").status == "ok"
    assert host.names("gizmo") == ["ext.gizmo", "user.gizmo"]
    assert host.resolve("gizmo", "user.gizmo").dist == "deepseek-user"


def test_known_distribution_names_are_refused_and_the_blocklist_applies() -> None:
    host = host_for()
    with pytest.raises(PluginError, match=r"distribution 'deepseek-core' is already known to this host"):
        host.register_plugin(Notebook(), dist="deepseek-core")
    host.register_plugin(Notebook(), dist="deepseek-notebook")
    with pytest.raises(PluginError, match="'deepseek-notebook' is already known"):
        host.register_plugin(Notebook(), dist="deepseek-notebook")
    with pytest.raises(PluginError, match="invalid distribution name"):
        host.register_plugin(Notebook(), dist="")
    with pytest.warns(PluginWarning, match="'notebook' named in DEEPSEEK_PLUGINS / DEEPSEEK_DISABLE_PLUGINS .* is not installed"):
        denied = PluginHost(PluginSettings(autoload=False, deny=frozenset({"notebook"})))
    record = denied.register_plugin(Notebook(), dist="deepseek-notebook")
    assert record.status == "disabled" and record.reason.startswith("disabled by DEEPSEEK_DISABLE_PLUGINS")
    assert "nb.pass" not in denied.names("pass")


def test_a_view_with_preference_sees_plugins_registered_later() -> None:
    host = host_for()
    view = host.with_preference(["deepseek-notebook"])
    host.register_plugin(Notebook(), dist="deepseek-notebook")
    assert view.resolve("pass", "nb.pass").dist == "deepseek-notebook"
    assert view.records is host.records


def test_declarations_are_checked_and_read_without_importing_the_target() -> None:
    from deepseek.advise.engines import row_engines

    class Declaring:
        @hookimpl
        def deepseek_register_strategies(self, register):
            register("acme.offload", "acme_never_imported.strategy:Offload", description="a declared strategy",
                     declares={"memory_rows": ["ddp+offload"], "nodes": 2})

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Declaring(), dist="deepseek-acme").status == "ok"
    comp = host.resolve("strategy", "acme.offload")
    assert comp.declared("memory_rows") == ("ddp+offload",) and comp.declared("nodes") == 2
    assert comp.as_dict()["declares"] == {"memory_rows": ["ddp+offload"], "nodes": 2}
    assert row_engines(host)["ddp+offload"] == ("acme.offload", "deepseek-acme")  # the target stays unimported

    class Bad:
        @hookimpl
        def deepseek_register_strategies(self, register):
            register("acme.bad", "acme.s:S", declares={"memory_rows": [object()]})

    with pytest.warns(PluginWarning, match=r"strategy 'acme\.bad': declares\['memory_rows'\] must be a string key"):
        record = host.register_plugin(Bad(), dist="deepseek-bad")
    assert record.status == "failed"


def test_a_third_party_strategy_does_not_take_an_editions_memory_row() -> None:
    """Declaring pro's ``ddp`` row leaves it (and the advice to install deepseek-pro) with pro's
    ``ddp``, installed or not; the plugin realises only rows no edition's strategy does."""
    from deepseek.advise.engines import row_engines

    class AlsoDdp:
        @hookimpl
        def deepseek_register_strategies(self, register):
            register("acme.allreduce", "acme_never_imported.strategy:AllReduce", description="plain DP",
                     declares={"memory_rows": ["ddp", "ddp+offload"]})

    host = PluginHost(PluginSettings(autoload=True))
    assert host.register_plugin(AlsoDdp(), dist="deepseek-acme").status == "ok"
    engines = row_engines(host)
    assert engines["ddp"] == ("ddp", "pro")
    assert engines["ddp+offload"] == ("acme.allreduce", "deepseek-acme")

