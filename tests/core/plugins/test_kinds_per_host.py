"""What a plugin's hookspec declares (``@registers_kind``, ``@reserves``) is the host's that loads
the plugin, not the process's: another host in the same process, loading other plugins or none,
reads its own hookspecs only. docs/plugins.md section 7."""

from __future__ import annotations

import pytest

from deepseek import hookimpl
from deepseek.hookspecs import hookspec
from deepseek.plugins.host import PluginHost, PluginWarning
from deepseek.plugins.kinds import registration_hook_of
from deepseek.plugins.registrar import registers_kind, reserves
from deepseek.plugins.settings import PluginSettings


class _Vertices:
    @staticmethod
    @reserves({"root": "'--vertex root' picks the graph's root"})
    @registers_kind("vertex")
    @hookspec
    def deepseek_register_vertices(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register vertices (kind 'vertex', declared: the name rule reads 'vertice')."""


class _Nodes:
    @staticmethod
    @registers_kind("vertex")
    @hookspec
    def deepseek_register_nodes(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register nodes (kind 'vertex', declared)."""


class _Adds:
    def __init__(self, specs: type, hook: str, name: str) -> None:
        self.specs, self.hook, self.name = specs, hook, name

    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(self.specs)

    @hookimpl(specname="deepseek_register_vertices", optionalhook=True)
    def vertices(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register(self.name, dict)

    @hookimpl(specname="deepseek_register_nodes", optionalhook=True)
    def nodes(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register(self.name, dict)


class _Root:
    @hookimpl
    def deepseek_register_vertices(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("root", dict)


def _host() -> PluginHost:
    return PluginHost(PluginSettings(autoload=False))


def test_a_declared_kind_and_reserved_names_are_the_loading_hosts_only() -> None:
    """Host ``graph`` loads a plugin declaring kind 'vertex' on deepseek_register_vertices (and
    reserving 'root'), host ``mesh`` one declaring it on deepseek_register_nodes, host ``bare``
    neither: each names the kind's hook by its own hookspecs, and 'root' is refused only where the
    reserving hookspec is loaded."""
    graph, mesh, bare = _host(), _host(), _host()
    assert graph.register_plugin(_Adds(_Vertices, "vertices", "g.v"), dist="deepseek-graph").status == "ok"
    assert mesh.register_plugin(_Adds(_Nodes, "nodes", "root"), dist="deepseek-mesh").status == "ok"
    assert {name: registration_hook_of("vertex", host.pm) for name, host in
            (("graph", graph), ("mesh", mesh), ("bare", bare))} == {
        "graph": "deepseek_register_vertices", "mesh": "deepseek_register_nodes",
        "bare": "deepseek_register_vertexes"}  # bare: the name rule's plural, as for any kind no hookspec declares
    assert registration_hook_of("vertex") == "deepseek_register_vertexes"  # no host: core's and the name rule
    assert (graph.names("vertex"), mesh.names("vertex"), "vertex" in bare.known_kinds()) == (["g.v"], ["root"], False)
    with pytest.warns(PluginWarning):
        record = graph.register_plugin(_Root(), dist="deepseek-other", name="other")
    assert record.status == "failed" and "vertex name 'root' is reserved: '--vertex root' picks" in record.reason
    assert graph.names("vertex") == ["g.v"]
