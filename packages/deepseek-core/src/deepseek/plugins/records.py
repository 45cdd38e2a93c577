"""What the plugin host records: registered components and plugin distributions."""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deepseek.errors import DeepseekError, PluginError
from deepseek.plugins.settings import ENV_DENY

CORE_DIST = "deepseek-core"
"""The distribution of core's built-in plugins (its :class:`PluginRecord`'s ``dist``)."""
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*\Z")
"""Valid component names: lower case letters, digits, ``.``, ``_`` and ``-`` (``\\Z``, not ``$``,
which ``match`` lets a trailing line break past: a component named ``"ok\\n"`` was registered)."""

LAZY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")  # not $: it let "m:x\n" past
"""Valid lazy targets: ``package.module:attribute``."""

STATUSES = ("ok", "blocked", "failed", "disabled")
"""Possible :attr:`PluginRecord.status` values."""

WARNED_STATUSES = ("blocked", "failed")
"""Statuses whose reason the host shows when it loads the plugins (a ``PluginWarning``; an error
in strict mode): a later message refers to that warning instead of showing the failure again."""


class PluginWarning(UserWarning):
    """A plugin was skipped (failed or blocked); the host keeps working without it."""


def one_line(text: object) -> str:
    """``text`` with line breaks and runs of blanks collapsed, for one-line messages."""
    return " ".join(str(text).split())


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line."""
    message = one_line(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def import_advice(exc: BaseException, module: str, dist: str) -> str:
    """What to do about ``module`` of ``dist`` failing to import (or lacking an attribute), for
    both readers of the message: a missing dependency is named; otherwise the plugin's author
    fixes the code, and its user reinstalls or upgrades."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing and missing.partition(".")[0] != module.partition(".")[0]:  # not the plugin's own package
        return f"{dist} needs the module {missing!r}, which is not installed: install it (or reinstall {dist})"
    return f"if you develop {dist}, fix that code; otherwise reinstall or upgrade {dist}"


def guarded_hook(function: Callable[..., Any], where: str, dist: str) -> Callable[..., Any]:
    """``function`` (a plugin's hook implementation) raising a one-line :class:`PluginError` that
    starts with ``where`` (distribution, version, plugin, hook) in place of anything but deepseek's
    own errors, which pass as they are (a plugin's ``ConfigError`` is already its one line), and
    running out of memory."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except DeepseekError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in the plugin, reported with it named
            from deepseek.cli.root import out_of_memory

            if out_of_memory(exc):  # too large for this machine, not a bug: the CLI's own line
                raise
            raise PluginError(
                f"{where}: {describe_error(exc)}; a bug in the plugin: fix it, or skip it with "
                f"{ENV_DENY}={dist}"
            ) from exc

    return call


def guard_hooks(pm: Any, plugin: Any, where: str, dist: str, *, skip: Callable[[str], bool]) -> None:
    """Wrap each of ``plugin``'s hook implementations registered on ``pm`` (wrappers aside, and
    hooks ``skip`` names: the ones the host calls itself) in :func:`guarded_hook`, so that what
    they raise names ``where`` (distribution, version, plugin) and the hook."""
    for caller in pm.get_hookcallers(plugin) or ():
        if skip(caller.name):
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not (impl.hookwrapper or impl.wrapper):
                impl.function = guarded_hook(impl.function, f"{where} raised in {caller.name}", dist)
                if caller.name in METRIC_HOOKS and "metrics" in impl.argnames:  # pluggy passes them by position
                    impl.function = checked_metrics(impl.function, impl.argnames.index("metrics"),
                                                    f"{where}: {caller.name}", dist)
                elif caller.name in NONE_HOOKS:
                    impl.function = returns_none(impl.function, f"{where}: {caller.name}", dist,
                                                 NONE_HOOKS[caller.name])
                if caller.name in TRAINER_HOOKS and "trainer" in impl.argnames:
                    impl.function = checked_should_stop(impl.function, impl.argnames.index("trainer"),
                                                        f"{where}: {caller.name}", dist)


METRIC_HOOKS = ("deepseek_train_step_end", "deepseek_evaluate")
"""Hooks whose ``metrics`` a plugin may extend in place (what it adds is logged)."""

NONE_HOOKS: dict[str, str] = {
    "deepseek_validate_config": "refuse a config by raising deepseek.errors.ConfigError with one line, "
                                "accept it by returning None",
    "deepseek_train_start": "the hook returns None",
    "deepseek_train_epoch_end": "the hook returns None",
    "deepseek_checkpoint_saved": "the hook returns None",
    "deepseek_train_end": "the hook returns None",
}
"""Core's hooks (besides :data:`METRIC_HOOKS`) whose return value nobody reads -> what to do
instead: a value returned (a message meant to refuse a config) is refused, not dropped."""


TRAINER_HOOKS = ("deepseek_train_start", "deepseek_train_step_end", "deepseek_train_epoch_end",
                 "deepseek_evaluate", "deepseek_checkpoint_saved", "deepseek_train_end")
"""The training lifecycle hooks: they get the trainer, whose ``should_stop`` a plugin may set."""


def checked_should_stop(function: Callable[..., Any], position: int, where: str, dist: str) -> Callable[..., Any]:
    """``function`` (a plugin's implementation of a :data:`TRAINER_HOOKS` hook, which gets the
    trainer as its argument number ``position``) refused in one :class:`PluginError` naming
    ``where`` when it sets ``trainer.should_stop`` to anything but a ``bool``: a string or a
    tensor would be read by its truth value (``"no"`` stopping the run, a tensor of several
    values raising inside the trainer), so the contract is ``True`` or ``False``."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        trainer = args[position] if len(args) > position else kwargs.get("trainer")
        before = getattr(trainer, "should_stop", False)
        out = function(*args, **kwargs)
        value = getattr(trainer, "should_stop", False)
        if value is not before and not isinstance(value, bool):  # this hook set it
            shown = one_line(repr(value))
            shown = shown if len(shown) <= 60 else f"{shown[:57]}..."
            raise PluginError(f"{where}: set trainer.should_stop to {shown} ({type(value).__name__}); it takes "
                              f"True (end the run as complete before the next step) or False; a bug in the plugin: "
                              f"fix it, or skip it with {ENV_DENY}={dist}")
        return out

    return call


def returns_none(function: Callable[..., Any], where: str, dist: str, instead: str) -> Callable[..., Any]:
    """``function`` (a plugin's implementation of a :data:`NONE_HOOKS` hook) refused in one
    :class:`PluginError` naming ``where`` when it returns something: the framework would drop
    it without a word (a ``deepseek_validate_config`` returning its refusal accepted the config)."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        out = function(*args, **kwargs)
        if out is not None:
            shown = one_line(repr(out))
            shown = shown if len(shown) <= 60 else f"{shown[:57]}..."
            raise PluginError(f"{where}: returned {shown} ({type(out).__name__}), which the framework does not read; "
                              f"{instead}; a bug in the plugin: fix it, or skip it with {ENV_DENY}={dist}")
        return out

    return call


def checked_metrics(function: Callable[..., Any], position: int, where: str, dist: str) -> Callable[..., Any]:
    """``function`` (a plugin's implementation of a :data:`METRIC_HOOKS` hook, which gets the
    metrics as its argument number ``position``) refused in one
    :class:`PluginError` naming ``where`` when it changes a value the trainer logged, adds one
    that is not a string or a single number (a 3-element tensor failed later, in the metrics
    file, as the framework's internal error), or returns something (a dict of new metrics was
    dropped without a word)."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        metrics = args[position] if len(args) > position else kwargs.get("metrics")
        before = dict(metrics) if isinstance(metrics, dict) else None
        out = function(*args, **kwargs)
        problem = _metrics_problem(before, metrics) if before is not None else None
        if problem is None and out is not None:  # the hook returns nothing: a value returned is lost
            problem = (f"returned a {type(out).__name__}, which the trainer does not read; add values to "
                       "metrics in place (metrics['name'] = value) and return None")
        if problem is not None:
            raise PluginError(f"{where}: {problem}; a bug in the plugin: fix it, or skip it with {ENV_DENY}={dist}")
        return out

    return call


def _metrics_problem(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """What is wrong with what a hook did to a metrics record (``before`` -> ``after``)."""
    for key, value in before.items():
        if key not in after:
            return f"removed metrics[{key!r}], a value the trainer logs; leave the trainer's values as they are"
        if after[key] is not value and not _same(after[key], value):
            return (f"changed metrics[{key!r}] ({value!r} -> {after[key]!r}), a value the trainer logs; add a key "
                    "of the plugin's own instead")
    for key in after.keys() - before.keys():
        value = after[key]
        if not isinstance(key, str) or not key:
            return f"added the key {key!r}; metric names are non-empty strings"
        if not _loggable(value):
            shape = f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else ""
            return (f"added metrics[{key!r}] = a {type(value).__name__}{shape}, which is not a single number; "
                    "log a number, a 0-dim tensor (.item() is read) or a string")
    return None


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that cannot be compared are not the same
        return False


def _loggable(value: Any) -> bool:
    """A string, a number, or a one-element tensor/array (what the metrics file writes as a number)."""
    if isinstance(value, (str, int, float)) or value is None:
        return True
    numel = getattr(value, "numel", None) or getattr(value, "size", None)
    try:
        count = numel() if callable(numel) else numel
        return count == 1 and not isinstance(value, (list, tuple, dict)) and isinstance(float(value), float)
    except (TypeError, ValueError, RuntimeError):
        return False


def target_text(target: Any) -> str:
    """A lazy target as is, or ``module:qualname`` of an object (without importing anything)."""
    if isinstance(target, str):
        return target
    obj = target if hasattr(target, "__qualname__") else type(target)
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


COMMAND_RUN_FILES = "run_files"
"""The ``declares`` key of a command's registration that names the files the command writes
directly in the run folders it makes or writes into, besides core's (``register("compress", ...,
declares={"run_files": ["compression.json"]})``): a list of plain file names, or folder names
ending in ``/`` (``deepseek export``'s ``hf/``; :func:`run_file_names`), checked when the command
is registered. They are the run's own in every run folder, as its ``config.toml`` is, a folder
with everything in it (:func:`deepseek.run_files.run_owning`), as are those a plugin's lifecycle
hooks write (``deepseek_declare_run_files``, :attr:`PluginRecord.run_files`)."""


def plain_file_names(names: object) -> bool:
    """Whether ``names`` is a tuple of plain file names: each a non-empty string without ``/`` or
    NUL, not ``.`` or ``..`` (each name of :func:`run_file_names`, a folder's without its ``/``)."""
    return isinstance(names, tuple) and all(
        isinstance(n, str) and n not in ("", ".", "..") and "/" not in n and "\0" not in n for n in names)


def run_file_names(names: object) -> bool:
    """Whether ``names`` is a tuple of what a command's :data:`COMMAND_RUN_FILES`, a plugin's
    ``deepseek_declare_run_files`` or a dataset's or model's ``written_files`` may name in a run
    folder: plain file names
    (:func:`plain_file_names`), or a folder's plain name followed by one ``/`` (``hf/``)."""
    return isinstance(names, tuple) and all(
        isinstance(n, str) and plain_file_names((n.removesuffix("/"),)) for n in names)


@dataclass(frozen=True)
class Component:
    """One registered component: a strategy, pass, encoder, model, command, ..."""

    kind: str
    name: str
    target: Any
    dist: str
    version: str
    module: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    alias_of: str | None = None
    declares: tuple[tuple[str, Any], ...] = ()
    """Facts the plugin declared at registration (``register(..., declares={...})``), readable
    without importing the target, as sorted ``(key, value)`` pairs (lists become tuples)."""

    def declared(self, key: str, default: Any = None) -> Any:
        """One declared fact (``default`` when the plugin declared none under ``key``)."""
        return dict(self.declares).get(key, default)

    @property
    def qualified_name(self) -> str:
        """``dist:name``, the form that picks this component when several share a name."""
        return f"{self.dist}:{self.name}"

    @property
    def target_text(self) -> str:
        """Where the component lives, as ``module:attribute`` (nothing is imported)."""
        return target_text(self.target)

    def load(self) -> Any:
        """The component's object, importing a lazy ``module:attribute`` target if needed."""
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # noqa: BLE001 - reported with the culprit named
            raise PluginError(
                f"{self.kind} {self.name!r} from {self.dist} {self.version} could not be loaded "
                f"from {self.target!r}: {describe_error(exc)}; {import_advice(exc, module_name, self.dist)}"
            ) from exc
        return obj

    @property
    def label(self) -> str:
        """``strategy 'acme.fast' (deepseek-acme 0.1.0, registered by acme.plugin)``: how a message
        about a broken registration names the component, its distribution and the plugin module
        whose ``deepseek_register_*`` hook registered it."""
        return f"{self.kind} {self.name!r} ({self.dist} {self.version}, registered by {self.module})"

    def load_subclass(self, base: type, *, see: str) -> Any:
        """:meth:`load`, refused in one :class:`PluginError` naming the component
        (:attr:`label`) unless the target is a subclass of ``base``; ``see`` is the page a plugin
        author reads to fix it (``docs/plugins.md section 12``)."""
        target = self.load()
        if not (isinstance(target, type) and issubclass(target, base)):
            article = "an" if base.__name__[:1] in "AEIOU" else "a"
            raise PluginError(f"{self.label}: registered as {target!r}, not a subclass of {base.__module__}."
                              f"{base.__qualname__}; its plugin must register {article} {base.__name__} subclass ({see})")
        return target

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form used by ``deepseek plugins which --json``."""
        return {
            "kind": self.kind,
            "name": self.name,
            "qualified_name": self.qualified_name,
            "distribution": self.dist,
            "version": self.version,
            "module": self.module,
            "target": self.target_text,
            "description": self.description,
            "aliases": list(self.aliases),
            "declares": {k: list(v) if isinstance(v, tuple) else v for k, v in self.declares},
            "alias_of": self.alias_of,
        }


@dataclass
class PluginRecord:
    """What the host knows about one plugin distribution."""

    dist: str
    version: str
    edition: str
    modules: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    """The names of its entry points (``acme``), one per module of :attr:`modules`, in that order."""
    status: str = "ok"  # one of STATUSES
    reason: str = ""
    components: dict[str, list[str]] = field(default_factory=dict)
    hooks: list[str] = field(default_factory=list)
    """The hooks other than registration hooks its plugins implement (``deepseek_train_start``)."""
    run_files: list[str] = field(default_factory=list)
    """The files (and folders: ``name/``) its plugins' lifecycle hooks write directly in a run folder,
    as they declared them (``deepseek_declare_run_files``): the run's own in every run folder
    (:mod:`deepseek.run_files`)."""
    skipped: list[str] = field(default_factory=list)
    """Why each ``@hookimpl(optionalhook=True)`` implementation no loaded distribution specifies
    was skipped (``deepseek_register_fusions: ... deepseek-enterprise ..., which is not installed``)."""

    def why_unloaded(self) -> str:
        """Why the distribution is not loaded, as an error about a component it would provide says
        it: ``disabled: <reason>``; for a failure the host already showed as a warning
        (:data:`WARNED_STATUSES`), a pointer to it, so the failure is shown once."""
        if self.status in WARNED_STATUSES:
            return f"{self.status} (the warning above says why; so does 'deepseek plugins list')"
        return f"{self.status}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form used by ``deepseek plugins list --json``."""
        return {
            "distribution": self.dist,
            "version": self.version,
            "edition": self.edition,
            "modules": list(self.modules),
            "status": self.status,
            "reason": self.reason,
            "components": {k: sorted(v) for k, v in sorted(self.components.items())},
            "hooks": list(self.hooks),
            "run_files": list(self.run_files),
            "skipped": list(self.skipped),
        }


@dataclass(frozen=True)
class Resolution:
    """How a component name resolves: the winner (if any), every candidate, and why."""

    kind: str
    name: str
    candidates: tuple[Component, ...]
    winner: Component | None
    reason: str
