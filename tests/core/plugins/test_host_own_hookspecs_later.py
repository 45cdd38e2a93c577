"""A plugin registered in an earlier call whose ``optionalhook`` implementation was skipped (no
loaded distribution specified the hook) takes it up when a later plugin adds that hookspec: the
note goes and its registration runs for the hook then, one transaction (docs/plugins.md section 7).
An earlier implementation that does not fit that hookspec drops its own plugin, not the later one;
an earlier plugin that fails late takes the hookspecs it added, and their implementers, with it."""

from __future__ import annotations

import re

import pytest
from _sprocket_specs import SprocketSpecs

from deepseek import hookimpl
from deepseek.errors import PluginError
from deepseek.hookspecs import hookspec
from deepseek.plugins.host import PluginHost, PluginWarning
from deepseek.plugins.settings import PluginSettings


class _Early:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    @hookimpl
    def deepseek_register_models(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("early.model", dict, description="kept whatever the sprockets do")

    @hookimpl(optionalhook=True)
    def deepseek_register_sprockets(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("early.sprocket", dict, description="registered once a plugin specifies sprockets")
        if self.fail:
            raise RuntimeError("broken sprockets")

    @hookimpl(optionalhook=True)
    def deepseek_sprocket_made(self, sprocket):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        return f"early saw {sprocket}"


def _host() -> PluginHost:
    return PluginHost(PluginSettings(allow=frozenset()))


def test_an_earlier_optional_implementer_takes_up_a_hookspec_added_later() -> None:
    host = _host()
    early = host.register_plugin(_Early(), dist="deepseek-early")
    assert early.status == "ok" and early.components == {"model": ["early.model"]}
    assert sorted(n.partition(":")[0] for n in early.skipped) == ["deepseek_register_sprockets",
                                                                  "deepseek_sprocket_made"]
    ext = host.register_plugin(SprocketSpecs(), dist="deepseek-ext")
    assert ext.status == "ok", ext.reason
    assert early.skipped == []
    assert early.components == {"model": ["early.model"], "sprocket": ["early.sprocket"]}
    assert host.names("sprocket") == ["early.sprocket", "ext.sprocket"]
    assert host.create("sprocket", "early.sprocket", a=1) == {"a": 1}
    assert host.pm.hook.deepseek_sprocket_made(sprocket="s1") == ["early saw s1"]
    assert host.problems == []


def test_an_earlier_plugin_whose_late_registration_fails_is_dropped_keeping_nothing() -> None:
    host = _host()
    early = host.register_plugin(_Early(fail=True), dist="deepseek-early")
    assert early.status == "ok" and early.components == {"model": ["early.model"]}
    with pytest.warns(PluginWarning, match="broken sprockets"):
        ext = host.register_plugin(SprocketSpecs(), dist="deepseek-ext")
    assert ext.status == "ok" and host.names("sprocket") == ["ext.sprocket"]
    assert early.status == "failed" and early.components == {}
    assert early.reason.startswith("deepseek-early 0.0.0: plugin '_Early' (")
    assert "raised in deepseek_register_sprockets: RuntimeError: broken sprockets" in early.reason
    assert "early.model" not in host.names("model")
    assert host.pm.hook.deepseek_sprocket_made(sprocket="s1") == []


class _Misfit:
    """Registers a model, and implements a sprocket hook optionally in a way the hookspec, added
    later, does not allow: an argument the hook does not pass, or a wrapper that is no generator."""

    def __init__(self, wrapper: bool = False) -> None:
        if wrapper:
            self.deepseek_sprocket_made = hookimpl(optionalhook=True, wrapper=True)(_not_a_generator)

    @hookimpl
    def deepseek_register_models(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("misfit.model", dict, description="dropped with its plugin")

    @hookimpl(optionalhook=True)
    def deepseek_sprocket_made(self, gear):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        return f"misfit saw {gear}"


def _not_a_generator(sprocket):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    return sprocket


MISFIT_LINES = {  # what does not fit: the host's own line for an argument, else pluggy's (its wording may change)
    False: re.escape("deepseek_sprocket_made asks for the argument 'gear', which the hook does not pass; its arguments "
                     "are sprocket (its hookspec in Sprockets)"),
    True: r"PluginValidationError: Plugin 'deepseek-misfit:_Misfit' for hook 'deepseek_sprocket_made' .*wrapper.*",
}


@pytest.mark.parametrize("wrapper", [False, True], ids=["argument", "wrapper"])
def test_an_earlier_implementation_that_does_not_fit_a_later_hookspec_drops_its_own_plugin(wrapper: bool) -> None:
    """pluggy checks an earlier plugin's waiting optionalhook implementation when a later plugin adds
    its hookspec, raising inside the later plugin's deepseek_add_hookspecs. The earlier plugin is
    the one whose implementation is wrong: it is dropped (one line: its distribution, plugin and
    hook, and what does not fit; nothing it registered kept), as pluggy would have refused it had it
    loaded second; the later plugin loads, and another earlier plugin takes the hookspec up."""
    host = _host()
    misfit = host.register_plugin(_Misfit(wrapper), dist="deepseek-misfit")
    early = host.register_plugin(_Early(), dist="deepseek-early")
    assert (misfit.status, early.status) == ("ok", "ok") and {"early.model", "misfit.model"} <= set(host.names("model"))
    with pytest.warns(PluginWarning) as caught:
        ext = host.register_plugin(SprocketSpecs(), dist="deepseek-ext")
    assert (ext.status, ext.reason, ext.components) == ("ok", "", {"sprocket": ["ext.sprocket"]})
    assert re.fullmatch(re.escape(f"deepseek-misfit 0.0.0: plugin '_Misfit' ({__name__}:_Misfit) implements "
                                  "deepseek_sprocket_made, whose hookspec deepseek-ext 0.0.0 added after it loaded, and "
                                  "the implementation does not fit the hookspec: ") + MISFIT_LINES[wrapper]
                        + re.escape("; fix the plugin or skip it with DEEPSEEK_DISABLE_PLUGINS=deepseek-misfit"),
                        misfit.reason)
    assert [str(w.message) for w in caught] == host.problems == [misfit.reason]
    assert (misfit.status, misfit.components, misfit.skipped) == ("failed", {}, [])
    assert "misfit.model" not in host.names("model")
    assert early.status == "ok" and early.skipped == []
    assert host.names("sprocket") == ["early.sprocket", "ext.sprocket"]
    assert host.pm.hook.deepseek_sprocket_made(sprocket="s1") == ["early saw s1"]

    strict = PluginHost(PluginSettings(allow=frozenset(), strict=True))
    strict.register_plugin(_Misfit(wrapper), dist="deepseek-misfit")
    with pytest.raises(PluginError, match=r"^deepseek-misfit 0\.0\.0: plugin '_Misfit' .* deepseek_sprocket_made, "
                                          r"whose hookspec deepseek-ext"):
        strict.register_plugin(SprocketSpecs(), dist="deepseek-ext")
    assert not hasattr(strict.pm.hook, "deepseek_sprocket_made") and not hasattr(strict.pm.hook, "deepseek_register_sprockets")


class _Gears:
    @staticmethod
    @hookspec
    def deepseek_register_gears(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register gears."""

    @staticmethod
    @hookspec
    def deepseek_gear_made(gear):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """A plain hook of the gear extension."""


class _GearSpecs:
    """Adds the gear hookspecs, and (``fails_late``) fails once a later plugin specifies sprockets: its
    optional sprocket registration raises, or its optional sprocket hook does not fit."""

    def __init__(self, fails_late: str = "") -> None:
        if fails_late == "raises":
            self.deepseek_register_sprockets = hookimpl(optionalhook=True)(_raising_registration)
        elif fails_late == "misfit":
            self.deepseek_sprocket_made = hookimpl(optionalhook=True)(_misfit_made)

    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_Gears)

    @hookimpl
    def deepseek_register_gears(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("own.gear", dict, description="the gear extension's own")


def _raising_registration(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    raise RuntimeError("broken sprockets")


def _misfit_made(gear):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    return gear


class _GearUser:
    @hookimpl
    def deepseek_register_gears(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("user.gear", dict, description="needs the gear extension")

    @hookimpl
    def deepseek_register_models(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("user.model", dict, description="dropped with its plugin")

    @hookimpl
    def deepseek_gear_made(self, gear):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        return f"user saw {gear}"


class _GearOptional:
    @hookimpl(optionalhook=True)
    def deepseek_register_gears(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("opt.gear", dict, description="only while a plugin specifies gears")

    @hookimpl
    def deepseek_register_models(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("opt.model", dict, description="kept without gears")


@pytest.mark.parametrize("fails_late", ["raises", "misfit"])
def test_an_earlier_plugin_adding_hookspecs_that_fails_late_takes_its_dependants_with_it(fails_late: str) -> None:
    """deepseek-gears adds the gear hookspecs; two plugins registered after it implement them, one
    plainly, one optionally. A later plugin that specifies sprockets makes deepseek-gears fail late
    (its sprocket registration raises, or its sprocket hook does not fit): it is dropped and its gear
    hookspecs are withdrawn. Its dependants then implement an unknown hook, as they would have had
    it failed in their own batch: the plain one is dropped with one line naming the hook and
    deepseek-gears, keeping nothing; the optional one keeps its model, loses its gears, and notes the
    skipped hook. A plugin adding the gear hookspecs again later gives the optional one its gears back."""
    host = _host()
    gears = host.register_plugin(_GearSpecs(fails_late), dist="deepseek-gears")
    user = host.register_plugin(_GearUser(), dist="deepseek-user")
    opt = host.register_plugin(_GearOptional(), dist="deepseek-opt")
    assert host.names("gear") == ["opt.gear", "own.gear", "user.gear"]
    assert (gears.status, user.status, opt.status, host.problems) == ("ok", "ok", "ok", [])
    with pytest.warns(PluginWarning) as caught:
        ext = host.register_plugin(SprocketSpecs(), dist="deepseek-ext")
    assert (ext.status, ext.components) == ("ok", {"sprocket": ["ext.sprocket"]})
    assert (gears.status, gears.components, gears.skipped) == ("failed", {}, [])
    assert ("raised in deepseek_register_sprockets: RuntimeError: broken sprockets" if fails_late == "raises"
            else "implements deepseek_sprocket_made, whose hookspec deepseek-ext 0.0.0 added after it") in gears.reason
    assert (user.status, user.components, user.hooks) == ("failed", {}, [])
    assert user.reason == (
        f"deepseek-user 0.0.0: plugin '_GearUser' ({__name__}:_GearUser) implements deepseek_gear_made, whose hookspec "
        "deepseek-gears added; deepseek-gears failed to load (its own line says why), so no loaded plugin specifies "
        "the hook; fix deepseek-gears, or mark the implementation @hookimpl(optionalhook=True) to load without it, or "
        "skip this plugin with DEEPSEEK_DISABLE_PLUGINS=deepseek-user")
    assert (opt.status, opt.components) == ("ok", {"model": ["opt.model"]})
    assert opt.skipped == ["deepseek_register_gears: its hookspec's plugin deepseek-gears failed to load"]
    assert [str(w.message) for w in caught] == host.problems == [gears.reason, user.reason]
    assert "gear" not in host.known_kinds() and not hasattr(host.pm.hook, "deepseek_gear_made")
    assert {"user.model"} & set(host.names("model")) == set() and "opt.model" in host.names("model")

    again = host.register_plugin(_GearSpecs(), dist="deepseek-gears-again")
    assert (again.status, opt.skipped, opt.components["gear"]) == ("ok", [], ["opt.gear"])
    assert host.names("gear") == ["opt.gear", "own.gear"]
