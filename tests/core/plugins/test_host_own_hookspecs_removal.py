"""Transactional registration of a plugin's own hookspecs: a plugin that fails takes every
hookspec it added out of the plugin manager again."""

from __future__ import annotations

import pytest

from deepseek import hookimpl
from deepseek.hookspecs import hookspec


class _OptionalGizmos:
    @hookimpl(optionalhook=True)
    def deepseek_register_gizmos(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("opt.gizmo", dict, description="registered only where a plugin specifies gizmos")


class _Sprockets:
    @staticmethod
    @hookspec
    def deepseek_register_sprockets(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register sprockets."""

    @staticmethod
    @hookspec
    def deepseek_sprocket_made(sprocket):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """A plain hook of the extension."""


class _SpecsThenRaise:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_Sprockets)
        raise RuntimeError("half set up")


class _SpecsThenBrokenRegistration:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_Sprockets)

    @hookimpl
    def deepseek_register_models(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        raise RuntimeError("broken registration")


class _SprocketSpecs:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_Sprockets)

    @hookimpl
    def deepseek_register_sprockets(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("own.sprocket", dict, description="through the hookspec it adds")


class _GizmoSpecsThenRaise:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_Gizmos)
        raise RuntimeError("half set up")


class _Gizmos:
    @staticmethod
    @hookspec
    def deepseek_register_gizmos(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register gizmos."""


@pytest.mark.parametrize("failing", [_SpecsThenRaise, _SpecsThenBrokenRegistration])
def test_a_failing_plugin_takes_the_hookspecs_it_added_out_again(failing: type) -> None:
    """Registration is all or nothing: a plugin whose ``deepseek_add_hookspecs`` adds hookspecs and
    then raises, or that is dropped later (its registration hook raising), leaves none of them in
    the plugin manager: the names are gone from pluggy's hook relay, no kind is registered through
    them, and another plugin defines them afresh. A hook an earlier plugin implements optionally
    is unspecified again rather than removed."""
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.records import PluginWarning
    from deepseek.plugins.settings import PluginSettings

    host = PluginHost(PluginSettings(autoload=False))
    with pytest.warns(PluginWarning, match="RuntimeError: (half set up|broken registration)"):
        assert host.register_plugin(failing(), dist="deepseek-failing", name="failing").status == "failed"
    assert not hasattr(host.pm.hook, "deepseek_register_sprockets") and not hasattr(host.pm.hook, "deepseek_sprocket_made")
    assert "deepseek_register_sprockets" not in host.registration_hooks() and "sprocket" not in host.known_kinds()
    record = host.register_plugin(_SprocketSpecs(), dist="deepseek-sprockets", name="sprockets")
    assert (record.status, record.reason) == ("ok", "")
    assert host.registration_hooks()["deepseek_register_sprockets"] == "sprocket"
    assert host.names("sprocket") == ["own.sprocket"]

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(_OptionalGizmos(), dist="deepseek-gizmos", name="gizmos").status == "ok"
    with pytest.warns(PluginWarning, match="half set up"):
        assert host.register_plugin(_GizmoSpecsThenRaise(), dist="deepseek-gizmo", name="gizmo").status == "failed"
    assert host.pm.hook.deepseek_register_gizmos.spec is None and "gizmo" not in host.known_kinds()
