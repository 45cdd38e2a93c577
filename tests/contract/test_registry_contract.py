"""Contract every registered component meets, whatever is installed (timm's test_models idea).

Parametrized over everything the plugin host knows in this environment: core's built-ins, the
installed editions and any third-party plugin. Every component resolves (qualified and, when
unambiguous, by its bare name), loads, has a one-line description and a valid name, and is of
the type its kind promises (strategies, passes, commands, and the enterprise kinds: compressors,
executors, tuners and fusion methods are subclasses of their base classes). Deeper per-kind checks live next to this module.
"""

from __future__ import annotations

from importlib import metadata

import click
import pytest

from deepseek.errors import ComponentNotFoundError
from deepseek.plugins import catalogue
from deepseek.plugins.host import PluginHost, get_host
from deepseek.plugins.install import install_command
from deepseek.plugins.records import NAME_RE
from deepseek.plugins.settings import PluginSettings

HOST = get_host()
COMPONENTS = [c for kind in HOST.known_kinds() for c in HOST.components(kind)]
IDS = [f"{c.kind}:{c.qualified_name}" for c in COMPONENTS]


def test_core_builtins_are_registered() -> None:
    assert "single" in HOST.names("strategy")
    assert {"tiny", "small", "1.3b"} <= set(HOST.names("model"))
    assert "text.transformer" in HOST.names("encoder")
    assert "plugins" in HOST.names("command")


def test_every_plugin_distribution_loaded() -> None:
    broken = {r.dist: r.reason for r in HOST.records.values() if r.status in ("failed", "blocked")}
    assert not broken


def test_no_name_is_registered_twice() -> None:
    clashes = {
        (kind, name): [c.dist for c in HOST.candidates(kind, name)]
        for kind in HOST.known_kinds()
        for name in HOST.names(kind)
        if len(HOST.candidates(kind, name)) > 1
    }
    assert not clashes


WRITERS = [c for c in COMPONENTS if c.kind in ("dataset", "model")]


@pytest.mark.parametrize("comp", WRITERS, ids=[f"{c.kind}:{c.qualified_name}" for c in WRITERS])
def test_written_files_are_names_in_the_run_folder_of_one_distribution(comp) -> None:  # noqa: ANN001
    """Every dataset's and model's ``written_files`` (docs/plugins.md sections 10 and 11): names in
    the run folder (a folder's ending in ``/``), none of them core's (``metrics.jsonl``,
    ``checkpoints/``) nor declared by another distribution (its commands' ``run_files``, its hooks'
    ``deepseek_declare_run_files``, its datasets' and models' ``written_files``): a run would have
    two writers of ``RUN/<name>``. Each problem is the PluginError line a run reading it raises.
    One test per component, its id naming it, so that ``-k "DIST:"`` runs a plugin's own check."""
    from deepseek.run_files import written_files_problems

    assert written_files_problems(HOST, of=comp) == []


@pytest.mark.parametrize("comp", COMPONENTS, ids=IDS)
def test_component_resolves_loads_and_is_described(comp) -> None:  # noqa: ANN001
    assert NAME_RE.match(comp.name) and all(NAME_RE.match(a) for a in comp.aliases)
    assert comp.description.strip() and "\n" not in comp.description, "register it with a description"
    assert HOST.resolve(comp.kind, comp.qualified_name) == comp
    if len(HOST.candidates(comp.kind, comp.name)) == 1:  # a name two distributions share: test_no_name_is_registered_twice
        assert HOST.resolve(comp.kind, comp.name) == comp
    for alias in comp.aliases:
        assert HOST.resolve(comp.kind, f"{comp.dist}:{alias}").target == comp.target
    assert HOST.records[comp.dist].status == "ok"
    assert comp.name in HOST.records[comp.dist].components[comp.kind]
    obj = comp.load()
    assert callable(obj)
    check = KIND_CHECKS.get(comp.kind)
    if check is not None:
        check(comp, obj)


def _strategy(comp, obj) -> None:  # noqa: ANN001
    from deepseek.training.strategy import Strategy

    assert isinstance(obj, type) and issubclass(obj, Strategy), f"{comp.target_text} is not a Strategy subclass"


def _pass(comp, obj) -> None:  # noqa: ANN001
    from deepseek.graph.passes import GraphPass

    instance = obj()
    assert isinstance(instance, GraphPass), f"{comp.target_text}() is not a GraphPass"
    assert instance.name == comp.name, "a pass's name attribute must match its registered name"


def _command(comp, obj) -> None:  # noqa: ANN001
    assert isinstance(obj, click.Command), f"{comp.target_text} is not a click.Command"


def _subclass_of(base_path: str):  # noqa: ANN202
    """The check of a kind whose target is a subclass of ``module:Class`` (an edition's kinds:
    imported only where the edition registers components of the kind)."""
    def check(comp, obj) -> None:  # noqa: ANN001
        import importlib

        module, _, name = base_path.partition(":")
        base = getattr(importlib.import_module(module), name)
        assert isinstance(obj, type) and issubclass(obj, base), (
            f"{comp.kind} {comp.name} ({comp.dist}): {comp.target_text} is not a {module}.{name} subclass")
    return check


KIND_CHECKS = {"strategy": _strategy, "pass": _pass, "command": _command,
               "compressor": _subclass_of("deepseek_enterprise.compress.compressor:Compressor"),
               "executor": _subclass_of("deepseek_enterprise.service.executor:Executor"),
               "tuner": _subclass_of("deepseek_enterprise.tune.tuner:Tuner"),
               "fusion": _subclass_of("deepseek_enterprise.fusion:Fusion")}


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


# A host loading everything installed, whatever the environment variables say.
EVERYTHING = PluginHost(PluginSettings())


@pytest.mark.parametrize(("kind", "name"), sorted(catalogue.CATALOGUE), ids=lambda v: str(v))
def test_catalogue_entry_is_what_its_edition_registers(kind: str, name: str) -> None:
    """Installed, the edition registers the component; missing, the error names the install."""
    provider = catalogue.CATALOGUE[(kind, name)]
    if _installed(provider):
        assert EVERYTHING.records[provider].status == "ok", EVERYTHING.records[provider].reason
        assert provider in {c.dist for c in EVERYTHING.candidates(kind, name)}, (
            f"catalogue lists {kind} {name!r} for {provider}, which does not register it"
        )
    else:
        with pytest.raises(ComponentNotFoundError) as info:
            EVERYTHING.resolve(kind, name)
        assert str(info.value) == (
            f"{kind} {name!r} is provided by {provider} ({catalogue.edition_of(provider)}), which "
            f"is not installed; install it with: {install_command(provider)}"
        )


@pytest.mark.parametrize(("kind", "name"), sorted(catalogue.DECLARED), ids=lambda v: str(v))
def test_catalogue_declarations_are_what_the_edition_declares(kind: str, name: str) -> None:
    """Installed, the edition declares exactly the catalogue's copy; missing, the copy stands in
    (the advisor still maps its memory rows to that edition's strategy)."""
    from deepseek.advise.engines import row_engines

    provider = catalogue.provider_of(kind, name)
    assert provider is not None, f"catalogue.DECLARED names {kind} {name!r}, which CATALOGUE does not list"
    copy = catalogue.DECLARED[(kind, name)]
    if _installed(provider):
        comp = next(c for c in EVERYTHING.candidates(kind, name) if c.dist == provider)
        assert dict(comp.declares) == copy, f"{provider} declares {dict(comp.declares)} for {kind} {name!r}"
    engines = row_engines(EVERYTHING)
    for row in copy.get("memory_rows", ()):
        assert engines[row] == (name, provider.removeprefix("deepseek-")), row


@pytest.mark.parametrize("kind", sorted(catalogue.KIND_PROVIDERS))
def test_kind_provider_is_the_edition_that_adds_the_kind(kind: str) -> None:
    provider = catalogue.KIND_PROVIDERS[kind]
    if _installed(provider):
        assert kind in EVERYTHING.known_kinds()
        assert EVERYTHING.registration_hooks().get(catalogue.registration_hook_of(kind)) == kind
        without = PluginHost(PluginSettings(deny=frozenset({provider})))
        assert kind not in without.known_kinds(), f"{kind} does not come from {provider}"
        with pytest.raises(ComponentNotFoundError, match=f"^component kind {kind!r} is added by {provider} "):
            without.check_kind(kind)
    else:
        with pytest.raises(ComponentNotFoundError) as info:
            EVERYTHING.check_kind(kind)
        assert str(info.value) == (
            f"component kind {kind!r} is added by {provider} ({catalogue.edition_of(provider)}), "
            f"which is not installed; install it with: {install_command(provider)}"
        )
