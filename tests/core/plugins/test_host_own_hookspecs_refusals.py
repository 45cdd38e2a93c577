"""A plugin's registration hookspecs refused when they are added: a kind another hook registers
(core's, a loaded plugin's, or a second hookspec of the same call)."""

from __future__ import annotations

import pytest

from deepseek import hookimpl
from deepseek.hookspecs import hookspec
from deepseek.plugins.registrar import registers_kind


class _TakenSpecs:
    @staticmethod
    @hookspec
    def deepseek_register_gizmos(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """A kind of its own, added in the same call: taken out with the other."""

    @staticmethod
    @hookspec
    def deepseek_register_model(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Its kind by the name rule is core's 'model'."""


class _Taker:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_TakenSpecs)

    @hookimpl
    def deepseek_register_model(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("taken.model", dict, description="a model through the plugin's own hook")


class _OptionalGizmos:
    @hookimpl(optionalhook=True)
    def deepseek_register_gizmos(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("opt.gizmo", dict, description="registered only where a plugin specifies gizmos")


class _Widgets:
    @staticmethod
    @hookspec
    def deepseek_register_widgets(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register widgets."""


class _WidgetSpecs:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_Widgets)


class _Widget:
    @staticmethod
    @hookspec
    def deepseek_register_widget(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Registers widgets too (the name rule leaves 'widget' as it is)."""


class _WidgetTaker:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_Widget)


class _BothWidgets:
    @staticmethod
    @hookspec
    def deepseek_register_widget(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Kind 'widget' by the name rule."""

    @staticmethod
    @hookspec
    def deepseek_register_widgets(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Kind 'widget' too."""


class _BothWidgetsTaker:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_BothWidgets)


def test_a_plugin_adding_two_hookspecs_of_one_kind_is_told_so() -> None:
    """Two registration hookspecs of one kind added in the same call: both are taken out again,
    and the line names both as the plugin's own (not one as 'a loaded plugin's' to implement)."""
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.records import PluginWarning
    from deepseek.plugins.settings import PluginSettings

    host = PluginHost(PluginSettings(autoload=False))
    with pytest.warns(PluginWarning):
        record = host.register_plugin(_BothWidgetsTaker(), dist="deepseek-both", version="0.1.0", name="both")
    assert record.reason == (
        "deepseek-both 0.1.0: plugin 'both' (test_host_own_hookspecs_refusals:_BothWidgetsTaker) adds hookspecs "
        "deepseek_register_widget and deepseek_register_widgets, both of component kind 'widget'; keep one, or give "
        "the other a kind of its own (a deepseek_register_<kinds> name, or @registers_kind(kind)); fix the plugin or "
        "skip it with DEEPSEEK_DISABLE_PLUGINS=deepseek-both")
    assert not {"deepseek_register_widget", "deepseek_register_widgets"} & set(host.registration_hooks())


def test_a_plugin_hookspec_of_a_kind_another_hook_registers_is_refused() -> None:
    """A registration hookspec a plugin adds whose kind is core's (``deepseek_register_model``)
    or one a loaded plugin's hook registers is refused when it is added: one line naming the
    distribution, the plugin and the hooks; nothing the plugin added or registered stays (a hook an
    earlier plugin implements optionally is unspecified again)."""
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.records import PluginWarning
    from deepseek.plugins.settings import PluginSettings

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(_OptionalGizmos(), dist="deepseek-gizmos", name="gizmos").status == "ok"
    with pytest.warns(PluginWarning):
        record = host.register_plugin(_Taker(), dist="deepseek-taker", version="0.1.0", name="taker")
    assert record.status == "failed"
    assert record.reason == (
        "deepseek-taker 0.1.0: plugin 'taker' (test_host_own_hookspecs_refusals:_Taker) adds hookspec "
        "deepseek_register_model, whose component kind 'model' is core's (deepseek_register_models); implement "
        "deepseek_register_models instead, or give the hookspec a kind of its own (a deepseek_register_<kinds> "
        "name, or @registers_kind(kind)); fix the plugin or skip it with DEEPSEEK_DISABLE_PLUGINS=deepseek-taker")
    hooks = host.registration_hooks()
    assert "deepseek_register_model" not in hooks and "deepseek_register_gizmos" not in hooks
    assert "taken.model" not in host.names("model")
    assert host.records["deepseek-gizmos"].status == "ok" and "gizmo" not in host.known_kinds()
    assert host.register_plugin(_WidgetSpecs(), dist="deepseek-widgets", name="widgets").status == "ok"
    with pytest.warns(PluginWarning, match=r"adds hookspec deepseek_register_widget, whose component kind 'widget' "
                                           r"is registered by deepseek_register_widgets, which a loaded plugin added; "):
        assert host.register_plugin(_WidgetTaker(), dist="deepseek-widget", name="widget").status == "failed"
    assert host.registration_hooks()["deepseek_register_widgets"] == "widget"
    assert "deepseek_register_widget" not in host.registration_hooks()


class _Caches:
    @staticmethod
    @hookspec
    def deepseek_register_caches(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Caches or cachs? The name does not tell."""


class _CacheSpecs:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_Caches)

    @hookimpl
    def deepseek_register_caches(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("kv.cache", dict, description="a key-value cache")


class _DeclaredCaches:
    @staticmethod
    @registers_kind("cache")
    @hookspec
    def deepseek_register_caches(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register caches (kind 'cache', declared)."""


class _DeclaredCacheSpecs(_CacheSpecs):
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_DeclaredCaches)


def test_a_plugin_hookspec_whose_name_does_not_tell_its_kind_is_refused() -> None:
    """deepseek_register_caches read 'cach' (the ``ches`` rule of batches). A registration hookspec
    whose plural English forms from more than one singular is refused when it is added, one line
    telling the author to declare the kind; nothing stays. Declared, it loads with its kind."""
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.records import PluginWarning
    from deepseek.plugins.settings import PluginSettings

    host = PluginHost(PluginSettings(autoload=False))
    with pytest.warns(PluginWarning):
        record = host.register_plugin(_CacheSpecs(), dist="deepseek-caches", version="0.1.0", name="caches")
    assert (record.status, record.components) == ("failed", {})
    assert record.reason == (
        "deepseek-caches 0.1.0: plugin 'caches' (test_host_own_hookspecs_refusals:_CacheSpecs) adds hookspec "
        "deepseek_register_caches, whose name does not tell its component kind ('caches' is the plural of more than "
        "one singular, or of none: caches / batches, bases / buses, sizes / quizzes, loss, status); declare the kind "
        "with @registers_kind(kind) next to @hookspec (docs/plugins.md section 7); fix the plugin or skip it with "
        "DEEPSEEK_DISABLE_PLUGINS=deepseek-caches")
    assert not hasattr(host.pm.hook, "deepseek_register_caches") and "cach" not in host.known_kinds()
    record = host.register_plugin(_DeclaredCacheSpecs(), dist="deepseek-kv", name="kv")
    assert (record.status, record.components) == ("ok", {"cache": ["kv.cache"]})
    assert host.registration_hooks()["deepseek_register_caches"] == "cache"
