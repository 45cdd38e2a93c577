"""Config sections that name a registered component: ``[model]``, ``[data]``, ``[optimizer]``,
``[lr_schedule]``, ``[strategy]``.

Each such table holds ``name`` (the registered component), keys every component of that kind
accepts (``[data]``'s ``batch_size`` and ``eval_batches``, ``[optimizer]``'s shared keys), and the component's own keys, which
its ``Options`` dataclass validates exactly like a core section: unknown key, wrong type or
out-of-range value -> one line with the field path and a did-you-mean. The loaded target of every
component carries ``Options`` (a dataclass; :class:`NoOptions` when it takes
none); it is created with the validated instance as its first argument.

Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deepseek.config.foreign_keys import unknown_key_hint, unknown_keys
from deepseek.config.validate import build_dataclass
from deepseek.errors import ConfigError, PluginError


@dataclass(frozen=True)
class NoOptions:
    """Options of a component that takes none."""


def options_class(target: Any, *, kind: str, name: str, label: str = "", see: str = "") -> type:
    """The ``Options`` dataclass that component ``name`` declares (a :class:`PluginError` naming
    it when the target breaks that contract). ``label``: how the message names the component
    (its registration's ``label``, with its distribution; default ``kind 'name'``); ``see``: the
    page that documents its kind (default: :data:`BASES`' guide, else docs/plugins.md section 10)."""
    label = label or f"{kind} {name!r}"
    see = see or BASES.get(kind, ("", "docs/plugins.md section 10"))[1]
    cls = getattr(target, "Options", None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise PluginError(
            f"{label}: its target {target!r} declares no Options dataclass; every "
            f"registered {kind} carries 'Options' (deepseek.config.components.NoOptions when it "
            f"takes no keys), see {see}"
        )
    bare = [f.name for f in dataclasses.fields(cls)
            if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if bare:  # a config leaving the key out would fail in the dataclass, blaming the user's config
        raise PluginError(
            f"{label}: its Options {cls.__qualname__} field {bare[0]!r} has no default; every option "
            f"needs one, a config sets only the keys it changes ({see})"
        )
    if (unfrozen := unfrozen_options(cls)) is not None:
        raise PluginError(f"{label}: {unfrozen} ({see})")
    taken = [f.name for f in dataclasses.fields(cls) if f.name in section_keys(kind)]
    if taken:  # load.py pops the section's own keys before Options sees the table
        section = COMPONENT_SECTION[kind]
        shared = ("; an optimizer reads the keys every optimizer shares as self.config." + taken[0]
                  if kind == "optimizer" and taken[0] != "name" else "")
        raise PluginError(
            f"{label}: its Options {cls.__qualname__} field {taken[0]!r} is the [{section}] key "
            f"{section}.{taken[0]} of the section itself, so a config's value never reaches the field; "
            f"rename the field{shared} ({see})"
        )
    return cls


def unfrozen_options(cls: type) -> str | None:
    """Why dataclass ``cls``, a component's ``Options``, breaks the contract that it is frozen, else
    ``None``: the validated instance a component is created with is the config's own section (and,
    for a run, the one its config file records), so a component that changed it would change what
    the run says it ran with. Checked where a target is registered as a class
    (:class:`~deepseek.plugins.registrar.Registrar`) and where any target is loaded
    (:func:`options_class`)."""
    if dataclasses.is_dataclass(cls) and not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        return (f"its Options {cls.__qualname__} is a dataclass that is not frozen; declare it "
                "@dataclass(frozen=True): the validated options are the config's, read-only")
    return None


COMPONENT_SECTION: dict[str, str] = {
    "model": "model", "dataset": "data", "optimizer": "optimizer", "lr_schedule": "lr_schedule", "strategy": "strategy",
}
"""Component kinds named by a config section -> that section."""


def section_keys(kind: str) -> tuple[str, ...]:
    """The keys of a component kind's config section that are not its ``Options``'s: ``name`` and
    the keys every component of the kind shares (``[optimizer] momentum``, ``[data] batch_size``);
    none for a kind no section names (trackers, encoders)."""
    from deepseek.config.schema import SHARED_KEYS

    section = COMPONENT_SECTION.get(kind)
    return () if section is None else ("name", *SHARED_KEYS.get(section, ()))


def build_options(
    target: Any, table: dict[str, Any], *, kind: str, name: str, path: str, known: tuple[str, ...] = (),
    label: str = "", see: str = "",
) -> Any:
    """Validate ``table`` against the component's ``Options`` (field paths ``path.key``);
    ``known``: the section's other keys (``name`` ...), listed in the unknown-key message;
    ``label``, ``see``: as :func:`options_class` takes them."""
    cls = options_class(target, kind=kind, name=name, label=label, see=see)
    if not dataclasses.fields(cls) and table:
        allowed = f"; allowed keys: {', '.join(sorted(known))}" if known else ""
        raise ConfigError(f"{unknown_keys(path, sorted(table), known)} ({kind} {name!r} takes "
                          f"no options of its own){allowed}")
    with keys_under(path, own_path(kind, name, path)):  # its own checks (__post_init__) name its keys there
        return build_dataclass(cls, table, path=path, known=known)


def own_path(kind: str, name: str, path: str) -> str:
    """Where a component's own errors name its keys: ``encoder.<name>`` for an encoder (the
    documented prefix, ``encoder.vision.swin.img_size``), else ``path`` itself."""
    return f"{kind}.{name.rpartition(':')[2]}" if kind == "encoder" else path


@contextlib.contextmanager
def keys_under(path: str, own: str) -> Iterator[None]:
    """A :class:`ConfigError` that a component raises itself (``__post_init__``, ``__init__``)
    naming its keys by its own path ``own`` (``encoder.vision.swin.img_size``) is re-raised
    naming them where they were given (``model.vision.img_size``), as field errors do: one path
    style per key."""
    try:
        yield
    except ConfigError as exc:
        message = str(exc)
        if own == path or not message.startswith(f"{own}."):
            raise
        raise ConfigError(f"{path}.{message[len(own) + 1:]}") from None


OPTIONS_OF = "options_of"
"""Field metadata key of an ``Options`` table field whose keys are another registered
component's options (``[model.fusion_options]``): a function of the validated options giving
``(kind, name_field)`` (the sibling field naming that component) or ``None`` where the table is
not used; a third item, ``check(target, label)``, checks the registered target first (its base
class, its ``Options``' base), raising a one-line error that names ``label``: a
:class:`~deepseek.errors.PluginError` where the plugin registered the wrong thing
(:func:`deepseek.plugins.calls.broken_answer`), passed on as it is, as :func:`load_checked`'s
are; a :class:`~deepseek.errors.ConfigError` (the config picked a component this table cannot
take) is named at the field that picks it (``model.fusion: ...``). A fourth item, ``prefix``
(``"vision."``; the check may then be ``None``), restricts the table to components whose name
starts with it: another name is refused before it is looked up (:func:`prefix_problem`).
:func:`fill_component_tables` validates such a table and fills in its defaults."""


def prefix_problem(lookups: Any, kind: str, name: str, prefix: str) -> str | None:
    """What is wrong with ``name`` as a ``kind`` whose name must start with ``prefix`` (a
    ``dist:name`` is judged by its name), or ``None``: the line names the registered ones that do,
    with a did-you-mean over them (``'acme.patches' is not a vision encoder (did you mean
    'vision.acme_patches'?); give a registered 'vision.*' encoder: vision.acme_patches, vision.swin
    (see 'deepseek plugins list')``). ``lookups``: the host whose names count."""
    from deepseek.arguments import lookup_hint
    from deepseek.names import did_you_mean

    if name.rpartition(":")[2].startswith(prefix):
        return None
    choices = [n for n in lookups.names(kind) if n.startswith(prefix)]
    return (f"{name!r} is not a {prefix.rstrip('.')} {kind}{did_you_mean(name, choices)}; give a registered "
            f"'{prefix}*' {kind}: {', '.join(choices) or 'none'} ({lookup_hint()})")


def resolve_at(lookups: Any, kind: str, name: Any, at: str) -> Any:
    """The registered ``kind`` that ``name`` names, given by the config key ``at``: a ``name`` that
    is not a non-empty string, or that names no component or several, is a one-line ConfigError
    starting with ``at`` (``model.fusion: unknown fusion 'x'; did you mean ...``)."""
    from deepseek.errors import ComponentConflictError, ComponentNotFoundError

    if not isinstance(name, str) or not name:
        raise ConfigError(f"{at}: expected the name of a registered {kind} (a string), got {name!r}; "
                          "'deepseek plugins list' names them")
    try:
        return lookups.resolve(kind, name)
    except (ComponentNotFoundError, ComponentConflictError) as exc:
        raise ConfigError(f"{at}: {exc}") from exc


def fill_component_tables(options: Any, lookups: Any, *, path: str) -> Any:
    """``options`` with each table declared :data:`OPTIONS_OF` another component checked by that
    component's ``Options`` (errors name ``path.field.key``) and given every default, so that a
    config shows and records what the component runs with; ``lookups``: the run's host."""
    if options is None or not dataclasses.is_dataclass(options):
        return options
    filled = {}
    for f in dataclasses.fields(options):
        picked = f.metadata[OPTIONS_OF](options) if OPTIONS_OF in f.metadata else None
        if picked is None:
            continue
        kind, name_field, *rest = picked
        check, prefix = (rest[0] if rest else None), (rest[1] if len(rest) > 1 else "")
        name = getattr(options, name_field)
        problem = prefix_problem(lookups, kind, name, prefix) if prefix else None
        if problem is not None:
            raise ConfigError(f"{path}.{name_field}: {problem}")
        component = resolve_at(lookups, kind, name, f"{path}.{name_field}")
        target = load_checked(kind, component)
        if check is not None:  # the component's own kind of target, before its keys are read by its Options
            try:
                check(target, component.label)
            except ConfigError as exc:  # the name's pick is refused: named at that field (a PluginError passes)
                raise ConfigError(f"{path}.{name_field}: {exc}") from exc
        table = getattr(options, f.name)
        if not isinstance(table, dict):
            raise ConfigError(f"{path}.{f.name}: expected a table of {kind} {name!r}'s keys, got {table!r}")
        refuse_other_components_keys(lookups, kind, name, target, table, path=f"{path}.{f.name}",
                                     name_key=f"{path}.{name_field}", prefix=prefix)  # a resume's old component's
        built = build_options(target, dict(table), kind=kind, name=name, path=f"{path}.{f.name}")
        filled[f.name] = _as_config_data(options_dict(built))
    return dataclasses.replace(options, **filled) if filled else options


def refuse_other_components_keys(lookups: Any, kind: str, name: str, target: Any, table: dict[str, Any], *,
                                 path: str, name_key: str, known: tuple[str, ...] = (), prefix: str = "") -> None:
    """The keys of ``table`` (the options at ``path`` of the ``kind`` that ``name_key`` names) that
    ``name``'s Options lack, where another registered component of the same kind takes one of them
    (``data.files`` with the default text dataset, where ``hf`` takes it; a resumed run's
    ``model.fusion_options`` of its old fusion method after ``--set model.fusion=...``): one line
    naming every such key with the component that takes it (and the other unknown keys with their
    did-you-mean), the name to set where one component takes them (with the keys none takes to
    remove under it) and the keys to remove, before the plain unknown-key message
    would list only this one's keys (only components whose names start with ``prefix``, the ones
    ``name_key`` may name). Other components' targets are loaded only when a key is unknown here."""
    own = {f.name for f in dataclasses.fields(options_class(target, kind=kind, name=name))} | set(known)
    unknown = sorted(k for k in table if k not in own)
    takers = {key: _takers(lookups, kind, name, key, prefix) for key in unknown}
    if not any(takers.values()):
        return  # the plain unknown-key line names them
    if len(unknown) == 1:
        key, first = unknown[0], takers[unknown[0]][0]
        raise ConfigError(f"{path}.{key}: unknown key for {kind} {name!r}; {_taken_by(kind, takers[key])} it: set "
                          f"{name_key} = \"{first.name}\", or remove {path}.{key} (--set '~{path}.{key}')")
    groups: dict[tuple[Any, ...], list[str]] = {}  # the keys by the components that take them, in key order
    for key in unknown:
        if takers[key]:
            groups.setdefault(tuple(takers[key]), []).append(key)
    parts = [f"{', '.join(keys)} ({_taken_by(kind, list(group))} {'it' if len(keys) == 1 else 'them'})"
             for group, keys in groups.items()]
    typos = [key for key in unknown if not takers[key]]  # no component takes them: removed under any name
    parts += [f"{key}{unknown_key_hint(path, key, sorted(own))}" for key in typos]
    removes = _removals(path, unknown)
    if len(groups) > 1:  # no one name to set
        raise ConfigError(f"{path}: unknown keys for {kind} {name!r}: {', '.join(parts)}; remove them ({removes})")
    switch = f"set {name_key} = \"{next(iter(groups))[0].name}\""
    if typos:  # that name takes the other component's keys; keys none takes are refused under it too
        switch += f" and remove {', '.join(typos)} ({_removals(path, typos)})"
    raise ConfigError(f"{path}: unknown keys for {kind} {name!r}: {', '.join(parts)}; {switch}, or remove "
                      f"them{' all' if typos else ''} ({removes})")


def _removals(path: str, keys: list[str]) -> str:
    """The ``--set '~PATH.KEY'`` arguments that remove ``keys`` from the table at ``path``."""
    return " ".join(f"--set '~{path}.{key}'" for key in keys)


def _takers(lookups: Any, kind: str, name: str, key: str, prefix: str) -> list[Any]:
    """Every other component of ``kind`` (named with ``prefix``) whose Options take ``key`` (fsdp
    as well as ddp)."""
    found = []
    for other in lookups.components(kind):
        if other.name == name or other.qualified_name == name or not other.name.startswith(prefix):
            continue
        try:
            cls = options_class(load_checked(kind, other), kind=kind, name=other.name)
        except Exception:  # noqa: BLE001 - a component that cannot load takes no key here
            continue
        if key in {f.name for f in dataclasses.fields(cls)}:
            found.append(other)
    return found


def _taken_by(kind: str, takers: list[Any]) -> str:
    """``encoder 'vision.swin' (deepseek-enterprise) takes`` for the components ``takers``."""
    names = " or ".join(repr(t.name) for t in takers[:4])
    dists = " ..." if len({t.dist for t in takers}) > 1 else ""
    return f"{kind} {names} ({takers[0].dist}{dists}) take{'s' if len(takers) == 1 else ''}"


def _as_config_data(value: Any) -> Any:
    """``value`` as a config file gives it back (TOML has lists, not tuples)."""
    if isinstance(value, dict):
        return {k: _as_config_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_config_data(v) for v in value]
    return value


def options_dict(options: Any) -> dict[str, Any]:
    """A component's validated options as plain data (``None`` values left out)."""
    if options is None or not dataclasses.is_dataclass(options):
        return {}
    return {k: v for k, v in dataclasses.asdict(options).items() if v is not None}


BASES: dict[str, tuple[str, str]] = {
    "strategy": ("deepseek.training.strategy:Strategy", "docs/plugins.md section 12"),
    "dataset": ("deepseek.data.dataset:Dataset", "docs/plugins.md section 11"),
    "optimizer": ("deepseek.training.optimizers:OptimizerBuilder", "docs/plugins.md section 14"),
    "lr_schedule": ("deepseek.training.schedule:LRSchedule", "docs/plugins.md section 14"),
}
"""Component kinds whose registered target must subclass a base class -> (that class, the guide)."""


def load_checked(kind: str, component: Any) -> Any:
    """The registered target, of its kind's type (:data:`BASES`) and, where that type is an
    abstract base, implementing every abstract method (a strategy also leaving core's final
    methods alone: :func:`~deepseek.training.strategy_rules.check_core_calls`): a PluginError
    naming the component and its distribution otherwise (a model's target need only be callable)."""
    import importlib
    import inspect

    if kind not in BASES:
        target = component.load()
        if not callable(target):
            raise PluginError(f"{component.label}: registered as {target!r}, which is not callable; register a "
                              "class or factory (docs/plugins.md section 10)")
        return target
    module, _, attr = BASES[kind][0].partition(":")
    base = getattr(importlib.import_module(module), attr)
    target = component.load_subclass(base, see=BASES[kind][1])
    if inspect.isabstract(target):
        missing = ", ".join(sorted(target.__abstractmethods__))
        raise PluginError(
            f"{component.label}: {target.__qualname__} does not implement the abstract "
            f"method(s) {missing} of {base.__name__}; implement them in the plugin"
        )
    if kind == "strategy":
        from deepseek.training.strategy_rules import check_core_calls

        check_core_calls(target, component.label)
    return target
