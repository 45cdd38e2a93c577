"""Failure isolation: every broken plugin is reported (distribution, version, error) and skipped."""

from __future__ import annotations

import pytest
from plugin_testing import PASS_PLUGIN, DistFactory, host_for

from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost, PluginWarning
from deepseek.plugins.settings import PluginSettings

GOOD = PASS_PLUGIN.format(name="good.pass", module="good_plugin")


def _assert_core_still_works(host: PluginHost) -> None:
    assert host.resolve("strategy", "single").dist == "deepseek-core"
    assert host.records["deepseek-core"].status == "ok"


def test_import_error_is_reported_and_skipped(make_dist: DistFactory) -> None:
    make_dist("deepseek-good", {"good_plugin": GOOD})
    make_dist("deepseek-broken", {"broken_plugin": "import missing_dependency_xyz\n"}, version="2.3.4")
    with pytest.warns(PluginWarning) as caught:
        host = PluginHost(PluginSettings(allow=frozenset({"good", "broken"})))
    record = host.records["deepseek-broken"]
    assert record.status == "failed"
    assert record.reason.startswith("deepseek-broken 2.3.4: plugin 'broken_plugin' (broken_plugin) failed to import")
    assert "ModuleNotFoundError: No module named 'missing_dependency_xyz'" in record.reason
    assert "deepseek-broken needs the module 'missing_dependency_xyz', which is not installed: install it" in record.reason
    assert "DEEPSEEK_DISABLE_PLUGINS=deepseek-broken" in record.reason
    assert [str(w.message) for w in caught] == [record.reason] == host.problems
    assert host.resolve("pass", "good.pass").load()() == "good.pass"
    _assert_core_still_works(host)


def test_raising_in_a_registration_hook_keeps_nothing(make_dist: DistFactory) -> None:
    make_dist("deepseek-raiser", {"raiser_plugin": """
        from deepseek import hookimpl

        @hookimpl
        def deepseek_register_passes(register):
            register("raiser.pass", "raiser_plugin:x")

        @hookimpl
        def deepseek_register_strategies(register):
            register("raiser.strategy", "raiser_plugin:x")
            raise RuntimeError("boom\\nsecond line")
        """}, version="0.9")
    host = host_for("deepseek-raiser")
    record = host.records["deepseek-raiser"]
    assert record.status == "failed"
    assert record.reason.startswith(
        "deepseek-raiser 0.9: plugin 'raiser_plugin' (raiser_plugin) raised in deepseek_register_strategies: "
        "RuntimeError: boom second line"
    )
    assert record.components == {}
    assert "raiser.pass" not in host.names("pass")  # registered before the raise: rolled back
    assert "raiser.strategy" not in host.names("strategy")
    assert not host.pm.get_plugins() & {p for p in host.pm.get_plugins() if "raiser" in repr(p)}
    _assert_core_still_works(host)


INVALID = {
    "bad name": ('register("Bad Name", "m:x")', "invalid pass name 'Bad Name'"),
    "line break": ('register("ok\\n", "m:x")', "invalid pass name 'ok\\n'"),  # registered as 'ok\n'
    "non-str name": ('register(3, "m:x")', "invalid pass name 3"),
    "lazy target": ('register("ok", "no_colon")', "a lazy target must look like 'package.module:attribute'"),
    "lazy target line break": ('register("ok", "m:x\\n")', "has target 'm:x\\n'; a lazy target must look like"),
    "not callable": ('register("ok", 42)', "target must be callable or a 'module:attribute' string, got int"),
    "aliases str": ('register("ok", "m:x", aliases="zz")', "aliases must be a list or tuple of names"),
    "bad alias": ('register("ok", "m:x", aliases=["Z!"])', "invalid pass alias 'Z!'"),
    "twice": ('register("ok", "m:x"); register("ok", "m:y")', "pass 'ok' registered twice"),
    "description": ('register("ok", "m:x", description=5)', "description must be a string, got int"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_registration_names_plugin_and_hook(make_dist: DistFactory, case: str) -> None:
    call, expected = INVALID[case]
    make_dist("deepseek-invalid", {"invalid_plugin": f"""
        from deepseek import hookimpl

        @hookimpl
        def deepseek_register_passes(register):
            {call}
        """})
    host = host_for("deepseek-invalid")
    record = host.records["deepseek-invalid"]
    assert record.status == "failed"
    assert record.reason.startswith(
        "deepseek-invalid 0.1.0 (deepseek-invalid:invalid_plugin, deepseek_register_passes): "
    )
    assert expected in record.reason
    assert host.names("pass") == [n for n in host.names("pass") if n != "ok"]


def test_a_registration_hook_returning_its_components_is_refused(make_dist: DistFactory) -> None:
    """Components returned instead of registered loaded as "ok" with nothing registered."""
    make_dist("deepseek-returns", {"returns_plugin": """
        from deepseek import hookimpl

        @hookimpl
        def deepseek_register_passes(register):
            return [("ret.pass", "returns_plugin:deepseek_register_passes")]
        """})
    host = host_for("deepseek-returns")
    record = host.records["deepseek-returns"]
    assert record.status == "failed"
    assert record.reason == ("deepseek-returns 0.1.0 (deepseek-returns:returns_plugin, deepseek_register_passes): "
                             "returned a list, which is not read; register each component with "
                             "register(name, \"module:attr\", ...) inside the hook and return None; fix the plugin or skip "
                             "it with DEEPSEEK_DISABLE_PLUGINS=deepseek-returns")


def test_register_called_after_the_hook_returned(make_dist: DistFactory) -> None:
    make_dist("deepseek-late", {"late_plugin": """
        from deepseek import hookimpl
        KEPT = []

        @hookimpl
        def deepseek_register_passes(register):
            KEPT.append(register)
            register("late.pass", "late_plugin:KEPT")
        """})
    host = host_for("deepseek-late")
    assert host.records["deepseek-late"].status == "ok"
    import late_plugin

    with pytest.raises(PluginError, match=r"register\('again', ...\) called after the hook returned"):
        late_plugin.KEPT[0]("again", "late_plugin:KEPT")
    assert "again" not in host.names("pass")


def test_unknown_hook_is_rejected_with_a_suggestion(make_dist: DistFactory) -> None:
    make_dist("deepseek-typo", {"typo_plugin": """
        from deepseek import hookimpl

        @hookimpl
        def deepseek_register_pases(register):
            register("typo.pass", "typo_plugin:x")
        """})
    make_dist("deepseek-optional", {"optional_plugin": """
        from deepseek import hookimpl

        @hookimpl(optionalhook=True)
        def deepseek_maybe_later(x):
            pass
        """})
    host = host_for("deepseek-typo", "deepseek-optional")
    record = host.records["deepseek-typo"]
    assert record.status == "failed"
    assert "implements unknown hook 'deepseek_register_pases' (did you mean 'deepseek_register_passes'?)" in record.reason
    assert "typo.pass" not in host.names("pass")
    optional = host.records["deepseek-optional"]
    assert optional.status == "ok"  # loaded, and what it skipped is said (plugins list shows it)
    assert optional.skipped == ["deepseek_maybe_later: no loaded distribution specifies it"]
    assert optional.as_dict()["skipped"] == optional.skipped


def test_hook_with_wrong_arguments_is_rejected(make_dist: DistFactory) -> None:
    make_dist("deepseek-sig", {"sig_plugin": """
        from deepseek import hookimpl

        @hookimpl
        def deepseek_train_step_end(trainer, step, metrics, extra):
            pass
        """})
    host = host_for("deepseek-sig")
    record = host.records["deepseek-sig"]
    assert record.status == "failed"
    assert "deepseek_train_step_end asks for the argument 'extra', which the hook does not pass" in record.reason
    assert not host.hook.deepseek_train_step_end.get_hookimpls() or all(
        "sig_plugin" not in impl.plugin_name for impl in host.hook.deepseek_train_step_end.get_hookimpls()
    )


def test_hook_without_hookimpl_decorator_is_reported(make_dist: DistFactory) -> None:
    make_dist("deepseek-plain", {"plain_plugin": """
        def deepseek_register_passes(register):
            register("plain.pass", "plain_plugin:x")
        """})
    host = host_for("deepseek-plain")
    assert host.records["deepseek-plain"].status == "failed"
    assert "defines deepseek_register_passes without @hookimpl" in host.records["deepseek-plain"].reason


def test_a_helper_named_deepseek_something_is_the_plugins_own(make_dist: DistFactory) -> None:
    """A ``deepseek_*`` function that is no hook's name (nor one typo from one) is left alone, as
    pluggy leaves it: it dropped the whole plugin, advising a decorator that then failed too."""
    make_dist("deepseek-helper", {"helper_plugin": """
        from deepseek import hookimpl

        def deepseek_helper_version():
            return "0.1.0"

        @hookimpl
        def deepseek_register_passes(register):
            register("helper.pass", "helper_plugin:deepseek_helper_version")
        """})
    host = host_for("deepseek-helper")
    assert host.records["deepseek-helper"].status == "ok", host.records["deepseek-helper"].reason


def test_an_undecorated_hook_with_a_typo_gets_a_did_you_mean(make_dist: DistFactory) -> None:
    make_dist("deepseek-typo", {"typo_plugin": """
        def deepseek_register_pass(register):
            register("typo.pass", "typo_plugin:x")
        """})
    host = host_for("deepseek-typo")
    reason = host.records["deepseek-typo"].reason
    assert host.records["deepseek-typo"].status == "failed"
    assert ("defines deepseek_register_pass without @hookimpl, so it would never be called; decorate it with 'from "
            "deepseek import hookimpl'; deepseek_register_pass is no hook's name (did you mean "
            "'deepseek_register_passes'?)") in reason


def test_raising_in_add_hookspecs(make_dist: DistFactory) -> None:
    make_dist("deepseek-specfail", {"specfail_plugin": """
        from deepseek import hookimpl

        @hookimpl
        def deepseek_add_hookspecs(pluginmanager):
            raise ValueError("no specs today")
        """})
    host = host_for("deepseek-specfail")
    assert host.records["deepseek-specfail"].reason.startswith(
        "deepseek-specfail 0.1.0: plugin 'specfail_plugin' (specfail_plugin) raised in deepseek_add_hookspecs: "
        "ValueError: no specs today"
    )


def test_failing_plugin_keeps_other_entry_points_of_its_dist_out(make_dist: DistFactory) -> None:
    make_dist(
        "deepseek-twoeps",
        {"twoeps_a": PASS_PLUGIN.format(name="two.a", module="twoeps_a"), "twoeps_b": "raise SystemError('x')\n"},
    )
    host = host_for("deepseek-twoeps")
    assert host.records["deepseek-twoeps"].status == "failed"
    assert "two.a" not in host.names("pass")


def test_strict_mode_raises_on_the_first_failure(make_dist: DistFactory) -> None:
    make_dist("deepseek-broken", {"broken_plugin": "raise ImportError('nope')\n"})
    with pytest.raises(PluginError) as info:
        PluginHost(PluginSettings(allow=frozenset({"deepseek-broken"}), strict=True))
    message = str(info.value)
    assert message.startswith("deepseek-broken 0.1.0: plugin 'broken_plugin' (broken_plugin) failed to import: ImportError: nope")
    assert message.endswith("(strict plugin mode is on)") and "\n" not in message
    assert "if you develop deepseek-broken, fix that code; otherwise reinstall or upgrade deepseek-broken" in message


def test_strict_mode_from_the_environment() -> None:
    assert PluginSettings.from_env({"DEEPSEEK_STRICT_PLUGINS": "1"}).strict
    assert not PluginSettings.from_env({"DEEPSEEK_STRICT_PLUGINS": "0"}).strict


def test_plugin_object_instead_of_module(make_dist: DistFactory) -> None:
    make_dist("deepseek-obj", {"obj_plugin": """
        from deepseek import hookimpl

        class Plugin:
            @hookimpl
            def deepseek_register_encoders(self, register):
                register("obj.encoder", lambda: "built", description="from an object")

        plugin = Plugin()
        """}, entry_points={"obj": "obj_plugin:plugin"})
    host = host_for("deepseek-obj")
    assert host.create("encoder", "obj.encoder") == "built"


def test_registration_hook_as_wrapper_is_rejected(make_dist: DistFactory) -> None:
    make_dist("deepseek-wrap", {"wrap_plugin": """
        from deepseek import hookimpl

        @hookimpl(wrapper=True)
        def deepseek_register_passes(register):
            register("wrap.pass", "wrap_plugin:x")
            return (yield)
        """})
    record = host_for("deepseek-wrap").records["deepseek-wrap"]
    assert record.status == "failed" and "a registration hook cannot be a wrapper" in record.reason
