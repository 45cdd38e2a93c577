"""The ``register`` callback handed to registration hooks: validates every call, names the culprit."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pluggy

from deepseek.errors import PluginError
from deepseek.plugins.kinds import check_registration_spec, spec_marks
from deepseek.plugins.kinds import (
    registers_kind as registers_kind,  # documented here (docs/plugins.md section 7)
)
from deepseek.plugins.records import (
    COMMAND_RUN_FILES,
    CORE_DIST,
    LAZY_RE,
    NAME_RE,
    Component,
    PluginRecord,
    one_line,
    run_file_names,
)

WRITTEN_FILES_KINDS = ("dataset", "model")
"""The component kinds whose classes declare the files their runs write (``written_files``)."""


_Spec = TypeVar("_Spec", bound=Callable[..., Any])

RESERVES_MARK = "deepseek_reserves"
"""The attribute :func:`reserves` sets on the spec function it decorates, ``{name: why}``: data of
the hookspec itself, read by a host only for the hookspecs of its plugin manager
(:func:`reserved_names`)."""


def reserves(names: Mapping[str, str]) -> Callable[[_Spec], _Spec]:
    """Decorate a registration hookspec (a ``deepseek_register_<kinds>`` function a plugin adds,
    next to ``@hookspec``) to reserve names its kind's components may not take: ``{name: why}``,
    ``why`` saying what the name means to the kind's users instead. Registering one, as name or
    alias, is refused naming ``why`` (the plugin keeps nothing it registered)."""
    reserved = dict(names)
    bad = [k for k, v in reserved.items() if not (isinstance(k, str) and NAME_RE.match(k) and isinstance(v, str) and v)]
    if bad:
        raise TypeError(f"reserves: {bad!r} are no component names with a non-empty reason; reserve "
                        "{name: why} with lower-case names")

    def mark(spec: _Spec) -> _Spec:
        check_registration_spec("reserves", spec, "reserve names on")
        setattr(spec, RESERVES_MARK, reserved)  # noqa: B010  (the marker's name is one constant)
        return spec

    return mark


def reserved_names(pm: pluggy.PluginManager, hook_name: str) -> Mapping[str, str]:
    """The names the spec of registration hook ``hook_name`` in ``pm`` reserves (:func:`reserves`)."""
    hook = getattr(pm.hook, hook_name, None)  # pluggy's relay: one attribute per hook name
    spec = hook.spec if isinstance(hook, pluggy.HookCaller) else None
    return dict(spec_marks(spec.function).get(RESERVES_MARK, {})) if spec is not None else {}


class InvalidRegistration(PluginError):
    """A ``register`` call was invalid; the message names distribution, plugin and hook."""


def _default_description(target: Any) -> str:
    """A description taken from a non-lazy target: a click command's help, or a docstring."""
    short_help = getattr(target, "get_short_help_str", None)
    if callable(short_help):
        return one_line(short_help())
    if inspect.isclass(target) or inspect.isroutine(target):
        doc = inspect.getdoc(target) or ""
        return one_line(doc.split("\n\n")[0])
    return ""


class Registrar:
    """Collects the components one hook implementation registers, validating each call.

    Components are only *staged* here; the host commits them once the hook returned without
    raising, so a failing plugin keeps nothing.
    """

    def __init__(
        self,
        kind: str,
        where: str,
        dist: str,
        version: str,
        module: str,
        committed: dict[str, dict[str, list[Component]]],
        records: Mapping[str, PluginRecord],
        reserved: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.reserved = dict(reserved or {})  # name -> what it means instead (:func:`reserved_names`)
        self.where = where
        self.dist = dist
        self.version = version
        self.module = module
        self.staged: list[Component] = []
        self._committed = committed
        self._records = records
        self._closed = False

    def close(self) -> None:
        """Refuse further calls: ``register`` is only valid while its hook runs."""
        self._closed = True

    def _error(self, message: str) -> InvalidRegistration:
        return InvalidRegistration(f"{self.where}: {message}")

    def _check_name(self, name: object, what: str) -> str:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise self._error(
                f"invalid {self.kind} {what} {name!r}; use lower-case letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            )
        if name in self.reserved:
            raise self._error(f"{self.kind} {what} {name!r} is reserved: {self.reserved[name]}; give your {self.kind} "
                              "another name, such as one starting with your plugin's name")
        taken = any(c.name == name for c in self.staged) or any(
            c.dist == self.dist for c in self._committed.get(self.kind, {}).get(name, [])
        )
        if taken:
            raise self._error(f"{self.kind} {name!r} registered twice; register it once")
        return name

    def _declares(self, name: str, declares: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
        """``declares`` checked (string keys; strings, numbers, booleans or lists of them) and
        frozen as sorted pairs."""
        if declares is None:
            return ()
        if not isinstance(declares, Mapping):
            raise self._error(f"{self.kind} {name!r}: declares must be a mapping, got {type(declares).__name__}")
        out = []
        for key, value in declares.items():
            items = value if isinstance(value, (list, tuple)) else [value]
            if not isinstance(key, str) or not all(isinstance(v, (str, int, float, bool)) for v in items):
                raise self._error(
                    f"{self.kind} {name!r}: declares[{key!r}] must be a string key with a string, "
                    f"number, boolean or list of them, got {value!r}"
                )
            out.append((key, tuple(value) if isinstance(value, (list, tuple)) else value))
        if self.kind == "command":
            self._check_run_files(name, dict(out))
        return tuple(sorted(out))

    def _check_written_files(self, name: str, target: Any) -> None:
        """A dataset or model registered as a class (imported already) that declares
        ``written_files``: checked now, as a command's ``run_files`` are, by the rule a run checks
        them with (:func:`deepseek.run_files.written_files_problem`). One registered lazily
        (``'module:Class'``) is imported, and checked, only where a run or an output check reads it;
        a factory function declares nothing."""
        if self.kind not in WRITTEN_FILES_KINDS or not isinstance(target, type):
            return
        from deepseek.run_files import declaring_base, written_files_problem

        if not issubclass(target, declaring_base(self.kind)):
            return
        problem = written_files_problem(target.written_files, self.dist,  # type: ignore[attr-defined]
                                        run_file_owners(self._records, self._committed))
        if problem is not None:
            raise self._error(f"{self.kind} {name!r} ({target.__module__}.{target.__qualname__}): {problem}")

    def _check_options(self, name: str, target: Any) -> None:
        """A target registered as a class (imported already) whose ``Options`` dataclass is not
        frozen: refused now (:func:`deepseek.config.components.unfrozen_options`), so the plugin
        keeps nothing; one registered lazily is checked where it is loaded
        (:func:`~deepseek.config.components.options_class`)."""
        from deepseek.config.components import unfrozen_options

        options = getattr(target, "Options", None) if isinstance(target, type) else None
        problem = unfrozen_options(options) if isinstance(options, type) else None
        if problem is not None:
            raise self._error(f"{self.kind} {name!r} ({target.__module__}.{target.__qualname__}): {problem}")

    def _check_run_files(self, name: str, declared: dict[str, Any]) -> None:
        """A command's ``run_files`` (:data:`~deepseek.plugins.records.COMMAND_RUN_FILES`): a list of
        plain file names (or folder names ending in ``/``), the files it writes directly in the run
        folders it makes, none of them another distribution's (:func:`run_file_clash`)."""
        value = declared.get(COMMAND_RUN_FILES, ())
        if not run_file_names(value):
            raise self._error(f"command {name!r}: declares[{COMMAND_RUN_FILES!r}] {run_files_problem(value)}")
        clash = run_file_clash(value, self.dist, run_file_owners(self._records, self._committed))
        if clash:
            raise self._error(f"command {name!r}: declares[{COMMAND_RUN_FILES!r}] {clash}")

    def __call__(
        self,
        name: str,
        target: Any,
        *,
        aliases: Sequence[str] = (),
        description: str = "",
        declares: Mapping[str, Any] | None = None,
    ) -> None:
        """Register ``target`` as the component ``name`` (see :class:`deepseek.hookspecs.RegisterFn`)."""
        if self._closed:
            raise self._error(
                f"register({name!r}, ...) called after the hook returned; call it inside the hook"
            )
        self._check_name(name, "name")
        if isinstance(aliases, str) or not isinstance(aliases, Sequence):
            raise self._error(
                f"{self.kind} {name!r}: aliases must be a list or tuple of names, got {aliases!r}"
            )
        if isinstance(target, str):
            if not LAZY_RE.match(target):
                raise self._error(
                    f"{self.kind} {name!r} has target {target!r}; a lazy target must look like "
                    "'package.module:attribute'"
                )
        elif not callable(target):
            raise self._error(
                f"{self.kind} {name!r}: target must be callable or a 'module:attribute' string, "
                f"got {type(target).__name__}"
            )
        if description is None:
            description = ""
        if not isinstance(description, str):
            raise self._error(
                f"{self.kind} {name!r}: description must be a string, got "
                f"{type(description).__name__}"
            )
        description = one_line(description) or (
            "" if isinstance(target, str) else _default_description(target)
        )
        self._check_written_files(name, target)
        self._check_options(name, target)
        common: dict[str, Any] = dict(
            kind=self.kind, target=target, dist=self.dist, version=self.version,
            module=self.module, description=description, declares=self._declares(name, declares),
        )
        staged = [Component(name=name, aliases=tuple(aliases), **common)]
        for alias in aliases:
            if alias == name or any(c.name == alias for c in staged):
                raise self._error(f"{self.kind} {name!r}: alias {alias!r} given twice")
            self._check_name(alias, "alias")
            staged.append(Component(name=alias, alias_of=name, **common))
        self.staged.extend(staged)


def run_files_problem(value: object) -> str:
    """What is wrong with ``value`` given as a list of run files (a command's
    :data:`~deepseek.plugins.records.COMMAND_RUN_FILES`, or the list handed to
    :class:`RunFilesDeclarer`): the one wording of the one check,
    :func:`~deepseek.plugins.records.run_file_names`."""
    shown = list(value) if isinstance(value, tuple) else value
    return (f"must be a list of file names in the run folder (no '/'; a folder's name ends in one: 'acme-plots/'), "
            f"got {shown!r}")


def run_file_owners(records: Mapping[str, PluginRecord],
                    components: Mapping[str, Mapping[str, list[Component]]]) -> dict[str, tuple[str, str]]:
    """Every file the loaded distributions declare they write in run folders, with its
    distribution and how a message names the declaration, the first of each name (a folder's
    without its ``/``: ``hf/`` and a file ``hf`` are one place, ``RUN/hf``): file name ->
    (``deepseek-beta``, ``deepseek-beta 0.2.0 (its command 'beta-pack')``) for a command's
    :data:`~deepseek.plugins.records.COMMAND_RUN_FILES`, (``deepseek-beta``, ``deepseek-beta
    0.2.0 (its lifecycle hooks, deepseek_declare_run_files)``) for its :data:`DECLARE_RUN_FILES`."""
    owners: dict[str, tuple[str, str]] = {}
    for by_name in components.get("command", {}).values():
        for command in by_name:
            for name in command.declared(COMMAND_RUN_FILES, ()) if command.alias_of is None else ():
                owners.setdefault(name.removesuffix("/"),
                                  (command.dist, f"{command.dist} {command.version} (its command {command.name!r})"))
    for record in records.values():
        for name in record.run_files if record.status == "ok" else ():
            owners.setdefault(name.removesuffix("/"), (record.dist, f"{record.dist} {record.version} (its lifecycle hooks, "
                                                  f"{DECLARE_RUN_FILES})"))
    return owners


def run_file_clash(names: Sequence[str], dist: str, owners: Mapping[str, tuple[str, str]]) -> str | None:
    """Why the distribution ``dist`` cannot declare ``names`` as its files in run folders, else
    ``None``: the one rule for a command's ``run_files`` and a :data:`DECLARE_RUN_FILES` list. A
    file of a run folder is one distribution's: a run's own file of core's
    (:func:`deepseek.run_files.is_run_own_file`: ``metrics.jsonl``; its ``checkpoints/``), or one
    another loaded distribution declared first (``owners``: :func:`run_file_owners`), is refused,
    since both would write ``RUN/<name>``, a file or a folder (``hf/``) alike; a distribution may
    name its own file again (a command and its hooks)."""
    from deepseek.run_files import CHECKPOINTS, is_run_own_file

    for name in names:
        place = name.removesuffix("/")
        if is_run_own_file(place) or place == CHECKPOINTS:
            who = f"{CORE_DIST}'s trainer writes in every run folder"
        elif (owner := owners.get(place)) is not None and owner[0] != dist:
            who = f"{owner[1]} declared first"
        else:
            continue
        return (f"names {name!r}, which {who}: both would write RUN/{name}; give your file a name of your own, "
                "starting with your plugin's name")
    return None


DECLARE_RUN_FILES = "deepseek_declare_run_files"
"""The hook through which a plugin declares the files its lifecycle hooks write into run folders."""


class RunFilesDeclarer:
    """The ``declare`` callback handed to ``deepseek_declare_run_files``: ``declare([names])``
    checks each call as a command's ``run_files`` is checked (:func:`run_files_problem`, and no
    name of another distribution's or core's: :func:`run_file_clash`) and stages the names; the
    host keeps them (:attr:`~deepseek.plugins.records.PluginRecord.run_files`) only
    once the plugin registered everything without a failure, as it keeps components."""

    def __init__(self, where: str, dist: str, records: Mapping[str, PluginRecord],
                 components: Mapping[str, Mapping[str, list[Component]]]) -> None:
        self.where = where
        self.dist = dist
        self._records = records
        self._components = components
        self.staged: list[str] = []
        self._closed = False

    def close(self) -> None:
        """Refuse further calls: ``declare`` is only valid while its hook runs."""
        self._closed = True

    def __call__(self, names: Sequence[str]) -> None:
        """Declare ``names`` (a list of plain file names, folder names ending in ``/``) the plugin's
        files in every run folder."""
        if self._closed:
            raise InvalidRegistration(f"{self.where}: declare({names!r}) called after the hook returned; call it "
                                      "inside the hook")
        value = tuple(names) if isinstance(names, list) else names
        if not run_file_names(value):
            raise InvalidRegistration(f"{self.where}: declare(...) {run_files_problem(value)}")
        clash = run_file_clash(value, self.dist, run_file_owners(self._records, self._components))
        if clash:
            raise InvalidRegistration(f"{self.where}: declare(...) {clash}")
        self.staged.extend(name for name in value if name not in self.staged)


def call_hook(function: Any, **available: Any) -> Any:
    """Call a hook implementation with the subset of arguments it declares (as pluggy does)."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return function(**available)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return function(**available)
    return function(**{k: v for k, v in available.items() if k in params})
