"""The kind of a ``deepseek_register_<kinds>`` hookspec where English reads the name two ways:
``-ies`` (categories / cookies) and ``-is`` (apis / axis) have two readings; the kind is the word as
written (records, ``deepseek plugins list`` and suggestions name no singular the author did not
write: ``cooky``), and either reading is taken for it wherever a kind is named, unless that would
be ambiguous against what is registered (then the hookspec is refused); ``-sis`` is a singular
(analysis). docs/plugins.md section 7."""

from __future__ import annotations

import pytest

from deepseek import hookimpl
from deepseek.errors import UsageError
from deepseek.hookspecs import hookspec
from deepseek.plugins.host import PluginHost, PluginWarning
from deepseek.plugins.kinds import PREFIX, kind_from_hook, kind_readings, registration_hook_of
from deepseek.plugins.registrar import registers_kind
from deepseek.plugins.settings import PluginSettings

TWO_READINGS = {"cookies": ("cooky", "cookie"), "movies": ("movy", "movie"), "zombies": ("zomby", "zombie"),
                "calories": ("calory", "calorie"), "categories": ("category", "categorie"),
                "queries": ("query", "querie"), "apis": ("api", "apis"), "uris": ("uri", "uris"),
                "taxis": ("taxi", "taxis"), "axis": ("axi", "axis"), "iris": ("iri", "iris")}
SINGULARS = ("analysis", "basis", "thesis", "crisis", "diagnosis", "synopsis", "chassis")


def test_two_readings_and_singulars_in_sis() -> None:
    """11 names read two ways, their kind the word as written, whose hook is that word again; 7
    ``-sis`` names are singulars, their own kind and their own hook's word (analysis read 'analysi'
    before); either reading of an ``-ies`` name has it as its plural too (zombie -> zombies)."""
    assert {w: kind_readings(PREFIX + w) for w in TWO_READINGS} == TWO_READINGS
    assert {w: kind_from_hook(PREFIX + w) for w in TWO_READINGS} == {w: w for w in TWO_READINGS}
    assert {w: registration_hook_of(w) for w in TWO_READINGS} == {w: PREFIX + w for w in TWO_READINGS}
    assert {w: (kind_readings(PREFIX + w), registration_hook_of(w)) for w in SINGULARS} == {
        w: ((w,), PREFIX + w) for w in SINGULARS}
    assert {k: registration_hook_of(k) for k in ("zombie", "zomby", "movie", "calorie", "cookie")} == {
        "zombie": PREFIX + "zombies", "zomby": PREFIX + "zombies", "movie": PREFIX + "movies",
        "calorie": PREFIX + "calories", "cookie": PREFIX + "cookies"}  # _Biscuits' declared 'cookie' is its host's only
    assert kind_readings(PREFIX + "analyses") == ()  # analysis / analyse: refused undeclared, as bases


class _Cookies:
    @staticmethod
    @hookspec
    def deepseek_register_cookies(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register cookies."""

    @staticmethod
    @hookspec
    def deepseek_register_analysis(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register analyses (kind 'analysis': the name is a singular)."""


class _Bakery:
    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(_Cookies)

    @hookimpl
    def deepseek_register_cookies(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("bake.chocolate", dict, description="a cookie")

    @hookimpl
    def deepseek_register_analysis(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        register("bake.crumb", dict, description="an analysis")


class _Cookie:
    @staticmethod
    @hookspec
    def deepseek_register_cookie(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register cookies (kind 'cookie', the name without a final s)."""


class _Biscuits:
    @staticmethod
    @registers_kind("cookie")
    @hookspec
    def deepseek_register_biscuits(register):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN205
        """Register biscuits (kind 'cookie', declared)."""


class _Adds:
    def __init__(self, specs: type) -> None:
        self.specs = specs

    @hookimpl
    def deepseek_add_hookspecs(self, pluginmanager):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        pluginmanager.add_hookspecs(self.specs)


def _host() -> PluginHost:
    return PluginHost(PluginSettings(autoload=False))


def test_either_reading_names_the_kind_where_unambiguous() -> None:
    """deepseek_register_cookies registers kind 'cookies', as written: the record, known kinds and
    a did-you-mean name it so, never 'cooky'; 'cookie' and 'cooky' find the same components
    (names, components, create, candidates, check_kind; a miss says 'cookie' as asked);
    deepseek_register_analysis registers kind 'analysis'."""
    host = _host()
    record = host.register_plugin(_Bakery(), dist="deepseek-bakery")
    assert (record.status, record.components) == ("ok", {"analysis": ["bake.crumb"], "cookies": ["bake.chocolate"]})
    assert host.names("cookie") == host.names("cooky") == host.names("cookies") == ["bake.chocolate"]
    assert [c.name for c in host.components("cookie")] == ["bake.chocolate"]
    assert host.create("cookie", "bake.chocolate", a=1) == {"a": 1}
    assert host.kind_of("cookie") == host.kind_of("cooky") == "cookies" and host.kind_of("analysi") == "analysi"
    assert "cookies" in host.known_kinds() and "cooky" not in host.known_kinds()
    host.check_kind("cookie")
    with pytest.raises(UsageError, match=r"^unknown component kind 'cookiez'; did you mean 'cookies'\? kinds: analysis, "):
        host.check_kind("cookiez")
    with pytest.raises(LookupError, match=r"^unknown cookie 'bake\.oat'; did you mean 'bake\.chocolate'\? "):
        host.create("cookie", "bake.oat")
    assert host.names("analysis") == ["bake.crumb"] and "analysi" not in host.known_kinds()


@pytest.mark.parametrize(("first", "second", "line"), [
    (_Adds(_Biscuits), _Adds(_Cookies), "deepseek_register_cookies, whose name reads as 'cooky' or 'cookie', "
                                        "and 'cookie' is registered by deepseek_register_biscuits"),
    (_Bakery(), _Adds(_Cookie), "deepseek_register_cookie, whose component kind 'cookie' is how "
                                "deepseek_register_cookies reads too ('cooky' or 'cookie')"),
    (_Bakery(), _Adds(_Biscuits), "deepseek_register_biscuits, whose component kind 'cookie' is how "
                                  "deepseek_register_cookies reads too ('cooky' or 'cookie')"),
], ids=["reading-taken", "kind-is-a-reading", "declared-kind-is-a-reading"])
def test_a_reading_that_would_be_ambiguous_is_refused(first: object, second: object, line: str) -> None:
    """Where the second reading of one hook would be another hook's kind, 'cookie' would name two
    kinds: the hookspec added second is refused with one line, and nothing of it stays; the first
    keeps its kind, 'cookie' still naming one."""
    host = _host()
    assert host.register_plugin(first, dist="deepseek-first").status == "ok"
    kinds = host.known_kinds()
    with pytest.warns(PluginWarning):
        record = host.register_plugin(second, dist="deepseek-second", name="second")
    assert record.status == "failed"
    assert record.reason.startswith(f"deepseek-second 0.0.0: plugin 'second' ({__name__}:_Adds) adds hookspec {line}; "
                                    "declare its kind with @registers_kind(kind) next to @hookspec (docs/plugins.md "
                                    "section 7); fix the plugin")
    assert host.known_kinds() == kinds and host.kind_of("cookie") in kinds
