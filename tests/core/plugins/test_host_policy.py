"""Loading policy, compatibility from metadata, conflicts and precedence, tracing, lookups."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from plugin_testing import PASS_PLUGIN, DistFactory, host_for

from deepseek.errors import ComponentConflictError, ComponentNotFoundError, PluginError, UsageError
from deepseek.plugins import catalogue
from deepseek.plugins.host import PluginHost, PluginWarning
from deepseek.plugins.install import install_command, installer
from deepseek.plugins.records import PluginRecord
from deepseek.plugins.settings import PluginSettings

SIDE_EFFECT = "raise AssertionError('this module must not be imported')\n"


def _pass_dist(make_dist: DistFactory, short: str, name: str = "dup.pass", **kw: object) -> str:
    module = f"{short}_plugin"
    return make_dist(f"deepseek-{short}", {module: PASS_PLUGIN.format(name=name, module=module)}, **kw)


# ----------------------------------------------------------------- compatibility (metadata only)


def test_incompatible_core_is_blocked_without_importing(make_dist: DistFactory) -> None:
    make_dist("deepseek-future", {"future_plugin": SIDE_EFFECT}, version="3.0", requires=["deepseek-core>=9.0,<10"])
    host = host_for("deepseek-future")
    record = host.records["deepseek-future"]
    assert record.status == "blocked"
    assert record.reason == (
        "deepseek-future 3.0 requires deepseek-core<10,>=9.0 but deepseek-core 0.1.0 is installed; "
        f"fix: {installer()} 'deepseek-core<10,>=9.0' (or install a release of deepseek-future that "
        "supports deepseek-core 0.1.0)"
    )
    assert "future_plugin" not in sys.modules


def test_missing_edition_requirement_gives_the_install_command(make_dist: DistFactory) -> None:
    make_dist("deepseek-needs", {"needs_plugin": SIDE_EFFECT}, requires=["deepseek-nonexistent>=1.2", "numpy"])
    record = host_for("deepseek-needs").records["deepseek-needs"]
    assert record.status == "blocked"
    assert record.reason == (
        "deepseek-needs 0.1.0 requires deepseek-nonexistent>=1.2, which is not installed; "
        f"fix: {installer()} 'deepseek-nonexistent>=1.2'"
    )


def test_requirements_behind_an_extra_or_compatible_are_fine(make_dist: DistFactory) -> None:
    _pass_dist(make_dist, "fine", requires=[
        "deepseek-core (>=0.1,<0.2)", 'deepseek-core>=99; extra == "dev"', 'deepseek-core>=99; python_version < "3"',
        "deepseek-core @ https://example.invalid/x.whl",
    ])
    host = host_for("deepseek-fine")
    assert host.records["deepseek-fine"].status == "ok"
    assert host.resolve("pass", "dup.pass").dist == "deepseek-fine"


def test_environment_markers_are_evaluated(make_dist: DistFactory) -> None:
    make_dist("deepseek-marked", {"marked_plugin": SIDE_EFFECT}, requires=['deepseek-core>=99; python_version >= "3"'])
    assert host_for("deepseek-marked").records["deepseek-marked"].status == "blocked"


# ----------------------------------------------------------------- allow / deny / autoload


def test_allowlist_loads_only_the_named(make_dist: DistFactory) -> None:
    _pass_dist(make_dist, "aa", "aa.pass")
    _pass_dist(make_dist, "bb", "bb.pass")
    host = PluginHost(PluginSettings(allow=frozenset({"aa"})))  # short name of deepseek-aa
    assert host.records["deepseek-aa"].status == "ok"
    assert host.records["deepseek-bb"].status == "disabled"
    assert "allowlist DEEPSEEK_PLUGINS" in host.records["deepseek-bb"].reason
    assert "bb.pass" not in host.names("pass") and "aa.pass" in host.names("pass")
    assert all(r.status == "disabled" for d, r in host.records.items() if d not in {"deepseek-core", "deepseek-aa"})
    assert host.problems == []


def test_blocklist_from_the_environment(make_dist: DistFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    _pass_dist(make_dist, "aa", "aa.pass")
    _pass_dist(make_dist, "bb", "bb.pass")
    monkeypatch.setenv("DEEPSEEK_DISABLE_PLUGINS", "deepseek_BB")  # any spelling of the name
    host = PluginHost()
    assert host.records["deepseek-bb"].status == "disabled"
    assert host.records["deepseek-bb"].reason.startswith("disabled by DEEPSEEK_DISABLE_PLUGINS")
    assert host.records["deepseek-aa"].status == "ok"
    assert host.problems == []


def test_autoload_off_loads_only_builtins_unless_allowed(make_dist: DistFactory) -> None:
    _pass_dist(make_dist, "aa", "aa.pass")
    host = PluginHost(PluginSettings.from_env({"DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD": "1"}))
    assert host.records["deepseek-aa"].status == "disabled"
    assert "autoload disabled" in host.records["deepseek-aa"].reason
    assert host.names("strategy") == ["single"]  # core's built-ins always load
    env = {"DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD": "1", "DEEPSEEK_PLUGINS": "deepseek-aa"}
    assert PluginHost(PluginSettings.from_env(env)).records["deepseek-aa"].status == "ok"


def test_cli_options_replace_the_allowlist_and_add_to_the_blocklist() -> None:
    env = PluginSettings.from_env({"DEEPSEEK_PLUGINS": "aa", "DEEPSEEK_DISABLE_PLUGINS": "bb"})
    assert env.with_cli_options() == env
    changed = env.with_cli_options(plugins="cc,Deepseek_DD", disable_plugins="ee", no_plugin_autoload=True, strict_plugins=True)
    assert (changed.allow, changed.deny) == (frozenset({"cc", "deepseek-dd"}), frozenset({"bb", "ee"}))
    assert (changed.autoload, changed.strict) == (False, True)


def test_deny_wins_over_allow(make_dist: DistFactory) -> None:
    _pass_dist(make_dist, "aa", "aa.pass")
    host = host_for(allow=frozenset({"deepseek-aa"}), deny=frozenset({"deepseek-aa"}))
    assert host.records["deepseek-aa"].status == "disabled"


def test_unknown_name_in_allowlist_is_reported(make_dist: DistFactory) -> None:
    _pass_dist(make_dist, "aa", "aa.pass")
    with pytest.warns(PluginWarning, match=r"'deepseek-aaa' named in DEEPSEEK_PLUGINS .* is not installed "
                                           r"\(did you mean 'deepseek-aa'\?\); installed: .*deepseek-aa"):
        PluginHost(PluginSettings(allow=frozenset({"deepseek-aaa"})))
    with pytest.raises(PluginError, match="'typo' named in DEEPSEEK_PLUGINS"):
        PluginHost(PluginSettings(deny=frozenset({"typo"}), strict=True))


# ----------------------------------------------------------------- conflicts and precedence


def test_conflict_names_both_distributions(make_dist: DistFactory) -> None:
    _pass_dist(make_dist, "aa", version="1.0")
    _pass_dist(make_dist, "bb", version="2.0")
    host = host_for("deepseek-aa", "deepseek-bb")
    with pytest.raises(ComponentConflictError) as info:
        host.resolve("pass", "dup.pass")
    assert str(info.value) == (
        "pass 'dup.pass' is registered by both deepseek-aa 1.0 (aa_plugin) and deepseek-bb 2.0 "
        "(bb_plugin); choose one as 'deepseek-aa:dup.pass' or set precedence with [plugins] "
        "prefer = [\"deepseek-aa\"] or DEEPSEEK_PLUGIN_PREFER=deepseek-aa"
    )
    assert isinstance(info.value, UsageError)  # the CLI exits with code 2
    assert host.resolve("pass", "deepseek-bb:dup.pass").dist == "deepseek-bb"
    assert host.resolve("pass", "aa:dup.pass").dist == "deepseek-aa"
    assert host.create("pass", "deepseek-bb:dup.pass") == "dup.pass"
    with pytest.raises(ComponentNotFoundError, match="no distribution 'deepseek-cc' registers a pass named 'dup.pass' "
                       r"\(candidates: deepseek-aa:dup.pass, deepseek-bb:dup.pass\)"):
        host.resolve("pass", "deepseek-cc:dup.pass")
    assert host.records["deepseek-aa"].status == host.records["deepseek-bb"].status == "ok"


def test_precedence_env_first_then_config(make_dist: DistFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    _pass_dist(make_dist, "aa")
    _pass_dist(make_dist, "bb")
    host = host_for("deepseek-aa", "deepseek-bb", prefer=("deepseek-bb",))
    res = host.explain("pass", "dup.pass")
    assert (res.winner.dist, res.reason) == ("deepseek-bb", "preferred by DEEPSEEK_PLUGIN_PREFER")
    config_view = host.with_preference(["deepseek-aa"])  # a config's [plugins] prefer: after the environment
    assert config_view.resolve("pass", "dup.pass").dist == "deepseek-bb"
    assert config_view.preference() == ("deepseek-bb", "deepseek-aa")
    plain = host_for("deepseek-aa", "deepseek-bb")
    res = plain.with_preference(["deepseek_aa"]).explain("pass", "dup.pass")
    assert (res.winner.dist, res.reason) == ("deepseek-aa", "preferred by [plugins] prefer")
    monkeypatch.setenv("DEEPSEEK_PLUGIN_PREFER", "bb,aa")
    assert PluginSettings.from_env().prefer == ("bb", "aa")


def test_same_dist_registering_a_name_twice_is_invalid(make_dist: DistFactory) -> None:
    make_dist("deepseek-twice", {
        "twice_a": PASS_PLUGIN.format(name="t.pass", module="twice_a"),
        "twice_b": PASS_PLUGIN.format(name="t.pass", module="twice_b"),
    })
    record = host_for("deepseek-twice").records["deepseek-twice"]
    assert record.status == "failed" and "pass 't.pass' registered twice" in record.reason


# ----------------------------------------------------------------- tracing


def test_trace_shows_loading_registration_and_hook_calls(make_dist: DistFactory, capsys: pytest.CaptureFixture[str]) -> None:
    _pass_dist(make_dist, "aa", "aa.pass")
    host = host_for("deepseek-aa", trace=True)
    host.hook.deepseek_train_end(trainer=None, metrics={"loss": 1.5})
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert all(line.startswith("[deepseek-trace] ") for line in lines)
    assert "[deepseek-trace] import deepseek-aa 0.1.0: aa_plugin = aa_plugin" in lines
    assert "[deepseek-trace] call deepseek_register_passes of deepseek-aa:aa_plugin" in lines
    assert "[deepseek-trace]   pass 'aa.pass' -> aa_plugin:make" in lines
    assert any("deepseek_train_end" in line and "[hook]" in line for line in lines)
    assert any("finish deepseek_train_end" in line for line in lines)
    host_for("deepseek-aa")
    assert capsys.readouterr().err == ""  # off by default


def test_trace_from_the_environment() -> None:
    assert PluginSettings.from_env({"DEEPSEEK_TRACE_PLUGINS": "1"}).trace


# ----------------------------------------------------------------- lookups and edition-aware errors


def test_edition_aware_not_found_when_pro_is_missing() -> None:
    core_only = {"deepseek-core": PluginRecord("deepseek-core", "0.1.0", "core (V1)")}
    assert catalogue.unavailable_reason("strategy", "zero3", core_only) == (
        "strategy 'zero3' is provided by deepseek-pro (pro (V2)), which is not installed; "
        f"install it with: {install_command('deepseek-pro')}"
    )
    assert catalogue.unavailable_reason("strategy", "nonsense", core_only) is None


def test_edition_aware_not_found_through_the_host() -> None:
    host = host_for()  # core only: installed editions are not loaded
    with pytest.raises(ComponentNotFoundError) as info:
        host.resolve("strategy", "zero3")
    if importlib.util.find_spec("deepseek_pro") is None:
        assert str(info.value).endswith(f"which is not installed; install it with: {install_command('deepseek-pro')}")
    else:
        assert str(info.value).startswith("strategy 'zero3' is provided by deepseek-pro 0.1.0, which is installed but disabled")


def test_unknown_component_suggests_a_close_name() -> None:
    host = host_for()
    with pytest.raises(ComponentNotFoundError, match=r"unknown strategy 'singel'; did you mean 'single'\? available: single"):
        host.resolve("strategy", "singel")


def test_unknown_kind() -> None:
    host = host_for()
    with pytest.raises(UsageError, match=r"unknown component kind 'stratgy'; did you mean 'strategy'\?"):
        host.resolve("stratgy", "single")
    installed = importlib.util.find_spec("deepseek_enterprise") is not None
    expected = "0.1.0, which is installed but disabled" if installed else r"\(enterprise \(V3\)\), which is not installed"
    with pytest.raises(ComponentNotFoundError, match=f"^component kind 'compressor' is added by deepseek-enterprise {expected}"):
        host.resolve("compressor", "prune")


def test_aliases_and_descriptions(make_dist: DistFactory) -> None:
    make_dist("deepseek-alias", {"alias_plugin": '''
        from deepseek import hookimpl

        class Thing:
            """A documented thing.

            More text that is not part of the description.
            """

        @hookimpl
        def deepseek_register_strategies(register):
            register("al.thing", Thing, aliases=("al.t", "al.th"))
        '''})
    host = host_for("deepseek-alias")
    main, alias = host.resolve("strategy", "al.thing"), host.resolve("strategy", "al.t")
    assert main.load() is alias.load()
    assert (main.aliases, alias.alias_of, main.description) == (("al.t", "al.th"), "al.thing", "A documented thing.")
    assert host.records["deepseek-alias"].components == {"strategy": ["al.thing"]}
    assert {"al.t", "al.th", "al.thing"} <= set(host.names("strategy"))
    assert [c.name for c in host.components("strategy") if c.dist == "deepseek-alias"] == ["al.thing"]


def test_lazy_target_that_fails_to_load_names_the_distribution(make_dist: DistFactory) -> None:
    make_dist("deepseek-lazy", {"lazy_plugin": """
        from deepseek import hookimpl

        @hookimpl
        def deepseek_register_models(register):
            register("lazy.model", "lazy_missing_module:build", description="never there")
        """}, version="0.4")
    host = host_for("deepseek-lazy")
    with pytest.raises(PluginError, match=r"model 'lazy.model' from deepseek-lazy 0.4 could not be loaded from "
                       r"'lazy_missing_module:build': ModuleNotFoundError.*; if you develop deepseek-lazy, fix "
                       r"that code; otherwise reinstall or upgrade deepseek-lazy$"):
        host.create("model", "lazy.model")


def test_fingerprint_lists_every_distribution(make_dist: DistFactory) -> None:
    _pass_dist(make_dist, "aa", "aa.pass", version="1.2")
    fp = host_for("deepseek-aa").fingerprint()
    assert ("deepseek-aa", "1.2", "ok") in fp and ("deepseek-core", "0.1.0", "ok") in fp


def test_a_command_registered_twice_names_the_fixes_that_work_for_commands() -> None:
    """'deepseek deepseek-aa:dup-cmd' is no command and a config's [plugins] prefer is read after the
    command is chosen: a shared command name advises the environment's precedence and the deny list."""
    import click

    from deepseek import hookimpl

    @click.command()
    def noop() -> None:
        """Nothing."""

    class Cmd:
        @hookimpl
        def deepseek_register_commands(self, register):  # noqa: ANN001, ANN201
            register("dup-cmd", noop)

    host = PluginHost(PluginSettings(autoload=False))
    for dist in ("deepseek-aa", "deepseek-bb"):
        assert host.register_plugin(Cmd(), dist=dist, version="1.0").status == "ok"
    with pytest.raises(ComponentConflictError) as info:
        host.resolve("command", "dup-cmd")
    assert str(info.value) == (
        "command 'dup-cmd' is registered by both deepseek-aa 1.0 (test_host_policy) and deepseek-bb 1.0 "
        "(test_host_policy); choose one with "
        "DEEPSEEK_PLUGIN_PREFER=deepseek-aa, or disable the other with --disable-plugins")


def test_a_qualified_name_of_no_such_distribution_reads_as_english_for_every_kind() -> None:
    host = PluginHost()  # core's own: its text.transformer encoder and gpt model
    with pytest.raises(ComponentNotFoundError) as info:
        host.resolve("encoder", "deepseek-cc:text.transformer")
    assert "no distribution 'deepseek-cc' registers an encoder named 'text.transformer'" in str(info.value)
    with pytest.raises(ComponentNotFoundError) as info:
        host.resolve("model", "deepseek-cc:gpt")
    assert "no distribution 'deepseek-cc' registers a model named 'gpt'" in str(info.value)
