"""Transactional registration of a plugin's own hookspecs: a plugin that fails takes every
hookspec it added out of the plugin manager again."""

from __future__ import annotations

import pytest
from _sprocket_specs import Sprockets, SprocketSpecs
from plugin_testing import DistFactory

from deepseek import hookimpl
from deepseek.hookspecs import hookspec


class _OptionalGizmos:
    @hookimpl(optionalhook=True)
    def deepseek_register_gizmos(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("opt.gizmo", dict, description="registered only where a plugin specifies gizmos")


class _SpecsThenRaise:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(Sprockets)
        raise RuntimeError("half set up")


class _SpecsThenBrokenRegistration:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(Sprockets)

    @hookimpl
    def deepseek_register_models(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        raise RuntimeError("broken registration")


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
    record = host.register_plugin(SprocketSpecs(), dist="deepseek-sprockets", name="sprockets")
    assert (record.status, record.reason) == ("ok", "")
    assert host.registration_hooks()["deepseek_register_sprockets"] == "sprocket"
    assert host.names("sprocket") == ["ext.sprocket"]

    host = PluginHost(PluginSettings(autoload=False))
    gizmos = host.register_plugin(_OptionalGizmos(), dist="deepseek-gizmos", name="gizmos")
    assert gizmos.status == "ok"
    with pytest.warns(PluginWarning, match="half set up"):
        assert host.register_plugin(_GizmoSpecsThenRaise(), dist="deepseek-gizmo", name="gizmo").status == "failed"
    assert host.pm.hook.deepseek_register_gizmos.spec is None and "gizmo" not in host.known_kinds()
    assert gizmos.skipped == ["deepseek_register_gizmos: no loaded distribution specifies it"]  # one note a hook


SPROCKET_EXT = """
from deepseek import hookimpl

@hookimpl
def deepseek_add_hookspecs(pluginmanager):
    from _sprocket_specs import Sprockets  # the tests' folder is on sys.path
    pluginmanager.add_hookspecs(Sprockets)

@hookimpl
def deepseek_register_models(register):
    raise RuntimeError("broken registration")
"""

SPROCKET_USER = """
from deepseek import hookimpl

@hookimpl
def deepseek_register_sprockets(register):
    register("user.sprocket", dict, description="through the extension's hookspec")

@hookimpl
def deepseek_register_models(register):
    register("user.model", dict, description="the user plugin's other component")
"""

SPROCKET_OPTIONAL = SPROCKET_USER.replace("user.", "opt.").replace(
    "@hookimpl\ndef deepseek_register_sprockets", "@hookimpl(optionalhook=True)\ndef deepseek_register_sprockets")

SPROCKET_MADE = """
from deepseek import hookimpl

@hookimpl
def deepseek_sprocket_made(sprocket):
    return sprocket
"""


SPROCKET_EXT_RAISING = SPROCKET_EXT.replace("    pluginmanager.add_hookspecs(Sprockets)\n",
                                            "    pluginmanager.add_hookspecs(Sprockets)\n"
                                            "    raise RuntimeError('broken registration')\n")


@pytest.mark.parametrize(("ext", "source"), [("deepseek-aaa-ext", SPROCKET_EXT), ("deepseek-zzz-ext", SPROCKET_EXT),
                                             ("deepseek-aaa-ext", SPROCKET_EXT_RAISING)],
                         ids=["dropped-first", "dropped-last", "dropped-adding"])
def test_implementers_of_a_hookspec_whose_plugin_is_dropped_in_the_same_batch_keep_nothing_of_it(
        make_dist: DistFactory, ext: str, source: str) -> None:
    """A plugin adds hookspecs and is dropped in the registration pass (its
    deepseek_register_models raises), or as it adds them; plugins of the same batch implement its
    hooks. Whether their registration ran before the drop (ext sorts after them) or after it (ext
    sorts first), the outcome is the same, that of an unknown hook (docs/plugins.md section 7): a plain implementer
    is dropped with one line naming its distribution, the hook and the dropped plugin, keeping
    nothing; an optionalhook one keeps its other components, none of the withdrawn kind, and its
    record notes the skipped hook."""
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.records import PluginWarning
    from deepseek.plugins.settings import PluginSettings

    make_dist(ext, {"sprocket_ext": source},
              entry_points={"ext": "sprocket_ext"})
    make_dist("deepseek-mmm-user", {"sprocket_user": SPROCKET_USER}, entry_points={"user": "sprocket_user"})
    make_dist("deepseek-mmm-opt", {"sprocket_opt": SPROCKET_OPTIONAL}, entry_points={"opt": "sprocket_opt"})
    make_dist("deepseek-mmm-made", {"sprocket_made": SPROCKET_MADE}, entry_points={"made": "sprocket_made"})
    with pytest.warns(PluginWarning):
        host = PluginHost(PluginSettings(allow=frozenset({ext, "deepseek-mmm-user", "deepseek-mmm-opt",
                                                           "deepseek-mmm-made"})))
    assert "RuntimeError: broken registration" in host.records[ext].reason
    tail = (f"whose hookspec {ext} added; {ext} failed to load (its own line says why), so no loaded plugin "
            f"specifies the hook; fix {ext}, or mark the implementation @hookimpl(optionalhook=True) to load "
            "without it, or skip this plugin with DEEPSEEK_DISABLE_PLUGINS=")
    user, made, opt = (host.records[f"deepseek-mmm-{d}"] for d in ("user", "made", "opt"))
    assert (user.status, user.components) == ("failed", {})
    assert user.reason == ("deepseek-mmm-user 0.1.0: plugin 'user' (sprocket_user) implements "
                           f"deepseek_register_sprockets, {tail}deepseek-mmm-user")
    assert (made.status, made.reason) == ("failed", "deepseek-mmm-made 0.1.0: plugin 'made' (sprocket_made) "
                                                    f"implements deepseek_sprocket_made, {tail}deepseek-mmm-made")
    assert (opt.status, opt.components) == ("ok", {"model": ["opt.model"]})
    assert opt.skipped == [f"deepseek_register_sprockets: its hookspec's plugin {ext} failed to load"]
    assert "sprocket" not in host.known_kinds() and "user.model" not in host.names("model")
    assert len(host.problems) == 3  # one line each: ext, user, made
    assert host.pm.hook.deepseek_register_sprockets.spec is None  # the optional implementation left on it
    assert not hasattr(host.pm.hook, "deepseek_sprocket_made")  # its last implementer dropped
