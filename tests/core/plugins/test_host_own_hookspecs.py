"""A plugin adding hookspecs of its own: ``deepseek_register_*`` ones get the register machinery,
their kinds by the name rule or declared (``registers_kind``). Refused hookspecs:
test_host_own_hookspecs_refusals.py; a failing plugin's hookspecs taken out again:
test_host_own_hookspecs_removal.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
from plugin_testing import DistFactory, host_for

from deepseek.hookspecs import hookspec

EXT_SPECS = '''
from deepseek import hookimpl
from deepseek.hookspecs import hookspec

@hookspec
def deepseek_register_widgets(register):
    """Register widgets."""

@hookspec
def deepseek_register_gadgetry(register, extra):
    """Not a registration hook: it takes more than ``register``."""

@hookspec
def deepseek_widget_made(widget):
    """A plain hook of the extension."""
'''

EXT_PLUGIN = """
from deepseek import hookimpl

@hookimpl
def deepseek_add_hookspecs(pluginmanager):
    import ext_specs
    pluginmanager.add_hookspecs(ext_specs)

@hookimpl
def deepseek_register_widgets(register):
    register("ext.widget", "ext_plugin:Widget", description="the extension's own widget")

class Widget:
    pass
"""

USER_PLUGIN = """
from deepseek import hookimpl

@hookimpl
def deepseek_register_widgets(register):
    register("user.widget", dict, description="a user's widget")

@hookimpl
def deepseek_widget_made(widget):
    return f"seen {widget}"
"""


def _make(make_dist: DistFactory) -> None:
    # deepseek-aaa-user sorts before deepseek-ext: it is imported before the spec exists.
    make_dist("deepseek-aaa-user", {"user_plugin": USER_PLUGIN})
    make_dist("deepseek-ext", {"ext_specs": EXT_SPECS, "ext_plugin": EXT_PLUGIN}, entry_points={"ext": "ext_plugin"})


def test_plugin_hookspecs_get_the_register_callback(make_dist: DistFactory) -> None:
    _make(make_dist)
    host = host_for("deepseek-aaa-user", "deepseek-ext")
    assert host.records["deepseek-ext"].status == "ok"
    assert host.records["deepseek-aaa-user"].status == "ok", host.records["deepseek-aaa-user"].reason
    hooks = host.registration_hooks()
    assert hooks["deepseek_register_widgets"] == "widget"
    assert "deepseek_register_gadgetry" not in hooks
    assert "widget" in host.known_kinds()
    assert host.names("widget") == ["ext.widget", "user.widget"]
    assert host.create("widget", "user.widget", a=1) == {"a": 1}
    assert type(host.create("widget", "ext.widget")).__name__ == "Widget"
    assert host.records["deepseek-aaa-user"].components == {"widget": ["user.widget"]}
    assert host.hook.deepseek_widget_made(widget="w") == ["seen w"]


REGISTRY_SCRIPT = """
from deepseek.plugins.registry import create_component, list_components

print(list_components("widget"))
print(list_components("widget", "user.*"))
print(create_component("widget", "deepseek-aaa-user:user.widget", b=2))
"""


def test_generic_registry_functions(make_dist: DistFactory) -> None:
    # The registry functions use the process's host, which the environment configures: a
    # process of its own sees exactly these plugins.
    _make(make_dist)
    env = make_dist.env(DEEPSEEK_PLUGINS="deepseek-aaa-user,deepseek-ext")
    proc = subprocess.run([sys.executable, "-c", REGISTRY_SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['ext.widget', 'user.widget']", "['user.widget']", "{'b': 2}"]


def test_without_the_extension_its_hooks_are_unknown(make_dist: DistFactory) -> None:
    _make(make_dist)
    host = host_for("deepseek-aaa-user")  # deepseek-ext is installed but not enabled
    record = host.records["deepseek-aaa-user"]
    assert record.status == "failed"
    assert "implements unknown hook" in record.reason and "neither core nor any loaded plugin specifies it" in record.reason
    assert "widget" not in host.known_kinds()


def test_enterprise_kinds_follow_the_same_machinery() -> None:
    import importlib.util

    host = host_for("deepseek-enterprise", "deepseek-pro")
    if importlib.util.find_spec("deepseek_enterprise") is None:
        assert "compressor" not in host.known_kinds()
    elif host.records["deepseek-enterprise"].status == "ok":
        assert {"compressor", "tuner"} <= set(host.known_kinds())


def test_an_edition_hook_without_the_edition_names_the_edition() -> None:
    """A plugin implementing enterprise's registration hook where enterprise is not installed (as in
    this session) or not loaded is told which edition specifies it, not offered a lookalike hook."""
    from deepseek import hookimpl
    from deepseek.plugins.discovery import installed_dists
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.records import PluginWarning
    from deepseek.plugins.settings import PluginSettings

    class Fusions:
        @hookimpl
        def deepseek_register_fusions(self, register):  # type: ignore[no-untyped-def]
            register("acme.gated", "m:x")

    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro"})))
    with pytest.warns(PluginWarning):
        record = host.register_plugin(Fusions(), dist="deepseek-acme")
    assert record.status == "failed" and record.components == {}
    assert "implements hook 'deepseek_register_fusions'; that hook is specified by deepseek-enterprise" in record.reason
    installed = any(d.name == "deepseek-enterprise" for d in installed_dists())
    assert ("which is installed but disabled" if installed else "which is not installed; install it with: ") in record.reason
    assert "did you mean" not in record.reason and "optionalhook=True" in record.reason

    class OptionalFusions:  # the same, marked optional: loaded, the hook skipped with the reason
        @hookimpl(optionalhook=True)
        def deepseek_register_fusions(self, register):  # type: ignore[no-untyped-def]
            register("acme.gated", "m:x")

    kept = host.register_plugin(OptionalFusions(), dist="deepseek-acme2")
    assert kept.status == "ok" and kept.components == {}
    (note,) = kept.skipped
    assert note.startswith("deepseek_register_fusions: that hook is specified by deepseek-enterprise")


VALIDATING_PLUGIN = EXT_PLUGIN + '''
import os
from deepseek.errors import ConfigError

@hookimpl
def deepseek_validate_config(config, host):
    for name in filter(None, os.environ.get("EXT_WIDGETS", "").split(",")):
        if name not in host.names("widget"):
            raise ConfigError(f"EXT_WIDGETS: unknown widget {name!r}; registered: {', '.join(host.names('widget'))}")
'''


def test_validate_config_checks_a_kind_of_its_own_on_the_host_the_config_loads_on(
        make_dist: DistFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin with a kind of its own checks the names a run uses in ``deepseek_validate_config``
    against the host the config is loaded on (the command's ``--plugins`` / ``--disable-plugins``),
    handed to it as ``host``: ``get_host()`` would ignore those options. (Written from the docs
    alone, acme-deepseek-seven had no way to reach that host.)"""
    from deepseek.config.load import config_from_dict
    from deepseek.errors import ConfigError

    make_dist("deepseek-aaa-user", {"user_plugin": USER_PLUGIN})
    make_dist("deepseek-ext", {"ext_specs": EXT_SPECS, "ext_plugin": VALIDATING_PLUGIN}, entry_points={"ext": "ext_plugin"})
    monkeypatch.setenv("EXT_WIDGETS", "user.widget")
    both = host_for("deepseek-aaa-user", "deepseek-ext")
    assert both.records["deepseek-ext"].status == "ok", both.records["deepseek-ext"].reason
    assert config_from_dict({}, host=both).model.name == "tiny"
    alone = host_for("deepseek-ext")  # the user's widgets' distribution left out
    with pytest.raises(ConfigError, match=r"^EXT_WIDGETS: unknown widget 'user\.widget'; registered: ext\.widget$"):
        config_from_dict({}, host=alone)


def test_an_add_on_without_the_plugin_it_requires_names_that_plugin(make_dist: DistFactory) -> None:
    """An add-on implementing a third-party plugin's hooks, loaded without that plugin, is told it
    requires it (from its Requires-Dist) and why it is not loaded, with no lookalike core hook
    offered. Before: "did you mean 'deepseek_register_passes'?" and a list of every disabled
    distribution (acme-deepseek-seven-probes, found by an outside plugin written from the docs)."""
    make_dist("deepseek-aaa-user", {"user_plugin": USER_PLUGIN}, requires=["deepseek-ext>=0.1"])
    make_dist("deepseek-ext", {"ext_specs": EXT_SPECS, "ext_plugin": EXT_PLUGIN}, entry_points={"ext": "ext_plugin"})
    record = host_for("deepseek-aaa-user").records["deepseek-aaa-user"]
    assert record.status == "failed"
    assert "implements unknown hook 'deepseek_register_widgets'; it requires deepseek-ext, which is installed but not " \
           "loaded: not in the allowlist DEEPSEEK_PLUGINS / --plugins (add it there to load it); " in record.reason, \
           record.reason
    assert "did you mean" not in record.reason


RESERVING_SPECS = '''
from deepseek import hookimpl
from deepseek.hookspecs import hookspec
from deepseek.plugins.registrar import reserves

@reserves({"default": "'--widget default' picks the configured widget"})
@hookspec
def deepseek_register_widgets(register):
    """Register widgets."""

@hookspec
def deepseek_widget_made(widget):
    """A plain hook of the extension."""
'''


def test_a_plugin_hookspec_reserves_names_as_the_docs_say(make_dist: DistFactory) -> None:
    """docs/plugins.md section 7: a plugin's registration hookspec decorated with
    ``reserves({name: why})`` refuses that name (or alias) of its kind, naming ``why``; the plugin
    registering it keeps nothing. A name reserved by no spec, or a bad ``reserves``, is refused
    when the spec is written."""
    from deepseek.plugins.registrar import reserves

    make_dist("deepseek-aaa-user", {"user_plugin": USER_PLUGIN.replace('"user.widget"', '"default"')})
    make_dist("deepseek-ext", {"reserving_specs": RESERVING_SPECS,
                               "ext_plugin": EXT_PLUGIN.replace("import ext_specs", "import reserving_specs as ext_specs")},
              entry_points={"ext": "ext_plugin"})
    host = host_for("deepseek-aaa-user", "deepseek-ext")
    assert host.records["deepseek-ext"].status == "ok", host.records["deepseek-ext"].reason
    record = host.records["deepseek-aaa-user"]
    assert record.status == "failed" and record.components == {}
    assert ("deepseek_register_widgets): widget name 'default' is reserved: '--widget default' picks the configured "
            "widget; give your widget another name") in record.reason, record.reason
    assert host.names("widget") == ["ext.widget"]
    with pytest.raises(TypeError, match=r"^reserves: \['Default'\] are no component names"):
        reserves({"Default": "why"})
    with pytest.raises(TypeError, match=r"^reserves: deepseek_widget_made is no registration hookspec"):
        @reserves({"default": "why"})
        def deepseek_widget_made(widget):  # type: ignore[no-untyped-def]
            """Not a registration hook."""


KIND_SPECS = '''
from deepseek import hookimpl
from deepseek.hookspecs import hookspec
from deepseek.plugins.registrar import registers_kind

@registers_kind("index")
@hookspec
def deepseek_register_indices(register):
    """Register search indices."""
'''

KIND_PLUGIN = """
from deepseek import hookimpl

@hookimpl
def deepseek_add_hookspecs(pluginmanager):
    import kind_specs
    pluginmanager.add_hookspecs(kind_specs)

@hookimpl
def deepseek_register_indices(register):
    register("ext.flat", dict, description="a flat index")
"""


def test_a_plugin_hookspec_declares_its_kind_as_the_docs_say(make_dist: DistFactory) -> None:
    """docs/plugins.md section 7: a registration hookspec whose name's singular is not its kind
    (``deepseek_register_indices`` would be ``indice``) declares it with ``registers_kind``; the
    host, the lookup and the edition page's table read it there. A bad or core kind, or the
    decorator on a hook that registers nothing, is refused when the spec is written."""
    import importlib

    from deepseek.plugins.docgen import render_edition
    from deepseek.plugins.registrar import registers_kind

    make_dist("deepseek-ext", {"kind_specs": KIND_SPECS, "kind_plugin": KIND_PLUGIN}, entry_points={"ext": "kind_plugin"})
    host = host_for("deepseek-ext")
    assert host.records["deepseek-ext"].status == "ok", host.records["deepseek-ext"].reason
    assert host.registration_hooks()["deepseek_register_indices"] == "index"
    assert host.records["deepseek-ext"].components == {"index": ["ext.flat"]}
    assert host.create("index", "ext.flat", a=1) == {"a": 1}
    assert "| `deepseek_register_indices` | `index` |" in render_edition(importlib.import_module("kind_specs"))
    with pytest.raises(TypeError, match=r"^registers_kind: 'Index' is no lower-case kind name"):
        registers_kind("Index")
    with pytest.raises(TypeError, match=r"^registers_kind: 'index\\n' is no lower-case kind name"):
        registers_kind("index\n")  # re.match's '$' lets a trailing line break past
    with pytest.raises(TypeError, match=r"^registers_kind: 'model' is core's kind of deepseek_register_models; "):
        registers_kind("model")
    with pytest.raises(TypeError, match=r"^registers_kind: deepseek_index_built is no registration hookspec"):
        @registers_kind("index")
        def deepseek_index_built(index):  # type: ignore[no-untyped-def]
            """Not a registration hook."""


def test_the_hook_of_a_kind_is_the_inverse_of_the_kind_of_a_hook() -> None:
    """registration_hook_of(kind) reads hook_kind's one rule backwards: core's table (strategies,
    passes, lr_schedules), a kind a hookspec of the host declares (registers_kind), else the plural whose
    singular is the kind; hook_kind of the answer is the kind again."""
    from deepseek import hookimpl
    from deepseek.plugins import catalogue
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.kinds import hook_kind, registers_kind, registration_hook_of
    from deepseek.plugins.settings import PluginSettings

    class Specs:
        @staticmethod
        @registers_kind("vertex")
        @hookspec
        def deepseek_register_vertices(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
            """Register vertices (singular by the name rule: 'vertice')."""

    class Adds:
        @hookimpl
        def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
            pluginmanager.add_hookspecs(Specs)

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Adds(), dist="deepseek-graph").status == "ok"
    specs = {"deepseek_register_vertices": Specs.deepseek_register_vertices}
    expected = {"strategy": "deepseek_register_strategies", "pass": "deepseek_register_passes",
                "lr_schedule": "deepseek_register_lr_schedules", "model": "deepseek_register_models",
                "vertex": "deepseek_register_vertices", "fusion": "deepseek_register_fusions",
                "categories": "deepseek_register_categories", "day": "deepseek_register_days",
                "batch": "deepseek_register_batches", "tuner": "deepseek_register_tuners"}
    assert {kind: registration_hook_of(kind, host.pm) for kind in expected} == expected
    for kind, hook in expected.items():
        assert hook_kind(hook, specs.get(hook)) == kind
    assert catalogue.registration_hook_of is registration_hook_of


PLURALS = {"tuners": "tuner", "fusions": "fusion", "types": "type", "shoes": "shoe",
           "days": "day", "keys": "key",
           "batches": "batch", "matches": "match", "switches": "switch", "passes": "pass", "classes": "class",
           "losses": "loss", "meshes": "mesh", "hashes": "hash", "boxes": "box", "prefixes": "prefix"}
UNCLEAR = {"caches": "cache", "niches": "niche", "aches": "ache", "branches": "branch", "searches": "search",
           "bases": "base", "cases": "case", "buses": "bus", "aliases": "alias", "statuses": "status",
           "sizes": "size", "quizzes": "quiz", "loss": "loss", "status": "status"}


def test_the_name_rule_reads_english_plurals_one_way_or_not_at_all() -> None:
    """kind_from_hook (plural -> singular) and its inverse (kind -> plural) are one rule pair: every
    plural the rule reads round-trips (the kind's hook is the plural again), and a plural English
    forms from more than one singular (caches / batches: cache or cach?), or a singular, is read
    as no kind, so its hookspec must declare one (test_host_own_hookspecs_refusals.py); no kind's
    hook is such a name. Names read two ways (categories, cookies, apis, axis), whose kind is the
    word as written: test_kind_readings.py."""
    from deepseek.plugins.kinds import PREFIX, kind_from_hook, registration_hook_of

    assert {p: kind_from_hook(PREFIX + p) for p in PLURALS} == PLURALS
    assert {kind: registration_hook_of(kind) for kind in PLURALS.values()} == {k: PREFIX + p for p, k in PLURALS.items()}
    assert {p: kind_from_hook(PREFIX + p) for p in UNCLEAR} == dict.fromkeys(UNCLEAR)
    assert {kind: kind_from_hook(registration_hook_of(kind)) for kind in ("cache", "branch", "bus", "quiz")} == \
        dict.fromkeys(("cache", "branch", "bus", "quiz"))  # caches, branches, buses, quizes: refused undeclared
    assert kind_from_hook(PREFIX + "widget") == "widget"  # no plural: the name itself, as before
