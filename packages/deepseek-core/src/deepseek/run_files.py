"""The files of a run folder, in one place: those every run's training writes (:data:`RUN_FILES`,
and the configs a resume keeps: :func:`edited_config`),
those the run's dataset and model declare they write (``written_files``, checked by
:func:`declared_written_files`), those a command declares it writes into the run folders it makes
(:data:`~deepseek.plugins.records.COMMAND_RUN_FILES`, a fact of its registration: ``compression.json``
of ``deepseek compress``), and which path is a
run's own (:func:`run_owning`), so that no command's output option replaces it. The trainer
refuses a folder in the place of any of them when a run starts
(:func:`deepseek.training.run_folder.pick_run_folder`); every command's output is refused over one
(:func:`deepseek.paths.check_output`). Nothing here imports torch at module level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deepseek.data.tokenizer import TOKENIZER_FILE
from deepseek.errors import PluginError
from deepseek.plugins.records import COMMAND_RUN_FILES, Component, run_file_names
from deepseek.training.run_lock import LOCK_FILE

if TYPE_CHECKING:
    from deepseek.plugins.host import PluginHost

CHECKPOINTS = "checkpoints"
"""The run's checkpoint folder: every file under it is the run's."""

POINTER_FILE = "final_checkpoint.json"
"""Written into the run folder at the end of a tracked run (:mod:`deepseek.tracking.session`): the
final checkpoint's path and step."""

RUN_FILES = ("config.toml", "metrics.jsonl", "loss.png", POINTER_FILE, LOCK_FILE, f"{CHECKPOINTS}/latest",
             f"{CHECKPOINTS}/best")
"""Files the trainer writes in every run folder, by their path in it (the resolved config, the
metrics, the loss plot, the final checkpoint's pointer of a tracked run, the lock of the job writing
it, the checkpoint pointers)."""

EDITED_CONFIG = "config.edited.toml"
"""Where a resume keeps a run's ``config.toml`` that differs from the config it runs
(:func:`deepseek.training.run_folder.keep_edited_config`); ``config.edited-2.toml``, ... when
taken (:func:`edited_config`)."""

_EDITED_CONFIGS = re.compile(r"config\.edited(-[1-9][0-9]*)?\.toml")


def edited_config(n: int) -> str:
    """The name of the ``n``-th kept edited config of a run folder: :data:`EDITED_CONFIG` for 1,
    ``config.edited-N.toml`` after it. Every such name is a run's own (:func:`is_run_own_file`)."""
    return EDITED_CONFIG if n == 1 else f"config.edited-{n}.toml"

KEPT_COPIES = (TOKENIZER_FILE,)
"""Copies a run keeps of files its data names (:meth:`~deepseek.data.dataset.Dataset.run_files`
of the built-in text datasets: the tokenizer), known as the run's without its dataset."""

RUN_OWN_FILES = (*(name for name in RUN_FILES if "/" not in name), *KEPT_COPIES)
"""The files directly in a run folder that are the run's own, whatever its dataset and model
(derived from :data:`RUN_FILES`, with :data:`KEPT_COPIES`); the kept edited configs too
(:func:`is_run_own_file`)."""


def is_run_own_file(name: str) -> bool:
    """Whether the file ``name`` directly in a run folder is the run's own whatever its dataset,
    model and commands: one of :data:`RUN_OWN_FILES`, or a config a resume kept
    (:func:`edited_config`: ``config.edited.toml``, ``config.edited-2.toml``, ...)."""
    return name in RUN_OWN_FILES or _EDITED_CONFIGS.fullmatch(name) is not None


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a run: a ``config.toml`` file and a ``checkpoints/`` folder."""
    return (folder / "config.toml").is_file() and (folder / CHECKPOINTS).is_dir()


def declared_written_files(cls: type, kind: str, component: Component | None = None,
                           host: PluginHost | None = None) -> tuple[str, ...]:
    """``cls.written_files`` of a dataset or model class (``kind``: ``"dataset"`` or ``"model"``,
    for the message) registered as ``component`` on ``host``, checked (:func:`written_files_problem`,
    against the files of every command and lifecycle hooks on ``host``; without ``component`` and
    ``host``: core's only), else one :class:`~deepseek.errors.PluginError` naming the class and its
    distribution. Checked whenever a run or an output check reads the class (a class registered
    lazily is imported only then; one registered as a class was checked when it was registered,
    and its attribute may have changed since)."""
    from deepseek.plugins.registrar import run_file_owners

    names = cls.written_files  # type: ignore[attr-defined]  # Dataset's and TrainableModel's declared attribute
    who = f"{kind} {cls.__module__}.{cls.__qualname__}" + (
        f" ({component.dist} {component.version}, registered as {component.name!r})" if component is not None else "")
    owners = {} if host is None else run_file_owners(host.records, {"command": {c.name: [c] for c in
                                                                            host.components("command")}})
    problem = written_files_problem(names, component.dist if component is not None else "", owners)
    if problem is not None:
        raise PluginError(f"{who}: {problem}")
    return names


def written_files_problem(names: object, dist: str, owners: Mapping[str, tuple[str, str]]) -> str | None:
    """What is wrong with ``names`` as the ``written_files`` of a dataset or model of the
    distribution ``dist``, in one phrase, else ``None``: the one rule, checked where the class is
    registered as a class (:class:`~deepseek.plugins.registrar.Registrar`) and where a run or an
    output check reads it (:func:`declared_written_files`). A tuple of names in the run folder, a
    folder's ending in ``/`` (:func:`~deepseek.plugins.records.run_file_names`, as a command's
    ``run_files``: no absolute path, no ``..``, no subfolder), none of them core's
    (``config.toml``, ``metrics.jsonl``, ``checkpoints/``, ...) nor one another distribution's
    command or lifecycle hooks declare (``owners``: :func:`~deepseek.plugins.registrar.run_file_owners`,
    the rule :func:`~deepseek.plugins.registrar.run_file_clash`)."""
    from deepseek.plugins.registrar import run_file_clash

    if not run_file_names(names):
        return (f"written_files must be a tuple of names in the run folder (no '/'; a folder's name ends in one: "
                f"'acme-plots/'), got {names!r}; fix the class attribute")
    clash = run_file_clash(names, dist, owners)  # type: ignore[arg-type]  # run_file_names: a tuple of str
    return None if clash is None else f"written_files {clash}"


def declaring_base(kind: str) -> type:
    """The class whose subclasses declare ``written_files`` for the component ``kind``
    (``"dataset"``: :class:`~deepseek.data.dataset.Dataset`, ``"model"``:
    :class:`~deepseek.models.protocol.TrainableModel`); imports torch."""
    if kind == "dataset":
        from deepseek.data.dataset import Dataset

        return Dataset
    from deepseek.models.protocol import TrainableModel

    return TrainableModel


def _shared_name(name: str, component: Component | None, first: Component | None) -> str | None:
    """Why ``component`` cannot declare ``name`` in its ``written_files`` when ``first`` (another
    dataset or model) declared it first, else ``None``: a name is one distribution's."""
    if component is None or first is None or first.dist == component.dist:
        return None
    return (f"{component.label}: written_files names {name!r}, which {first.label} declares too: both would write "
            f"RUN/{name}; give your file a name of your own, starting with your plugin's name")


def run_written_files(host: PluginHost | None,
                      found: tuple[tuple[str, type, Component | None], ...]) -> tuple[str, ...]:
    """The files a run's dataset and model declare they write in its folder, ``found`` as
    ``(kind, class, registration or None)``: each class's checked
    (:func:`declared_written_files`), and one name declared by both when they are two
    distributions' refused in one :class:`~deepseek.errors.PluginError` (both would write it)."""
    names: list[str] = []
    first: dict[str, Component | None] = {}
    for kind, cls, component in found:
        for name in declared_written_files(cls, kind, component, host):
            problem = _shared_name(name, component, first.setdefault(name.removesuffix("/"), component))
            if problem is not None:
                raise PluginError(problem)
            names.append(name)
    return tuple(names)


def written_files_problems(host: PluginHost, of: Component | None = None) -> list[str]:
    """What is wrong with the ``written_files`` of every dataset and model registered on ``host``
    as a class, one line each: each checked as a run's are (:func:`declared_written_files`), and
    no name declared by two distributions' components (a run pairing them would write it twice).
    With ``of``, only the lines about that component: its own list, and a name it shares with
    another distribution's component, whichever of the two declared it first (the contract
    suite's per-component check, whose test id names it). The contract suite's check
    (``tests/contract``); it imports every such component."""
    return [line for line, about in _written_files_scan(host)[1] if of is None or of in about]


def _written_files_scan(host: PluginHost) -> tuple[dict[Component, tuple[str, ...]],
                                                   list[tuple[str, tuple[Component, ...]]]]:
    """Every dataset's and model's ``written_files`` on ``host``, each class read once
    (:func:`class_written_files`): the names of each whose list is sound, and what is wrong, one
    line each with the components it is about (the one whose list is refused, or the two
    distributions' components declaring one name, the later first), in registration order,
    datasets before models."""
    from deepseek.errors import DeepseekError

    names_of: dict[Component, tuple[str, ...]] = {}
    problems: list[tuple[str, tuple[Component, ...]]] = []
    first: dict[str, Component] = {}
    for kind in ("dataset", "model"):
        for component in host.components(kind):
            try:
                names = names_of[component] = class_written_files(host, component)
            except DeepseekError as exc:
                problems.append((str(exc), (component,)))
                continue
            for name in names:
                earlier = first.setdefault(name.removesuffix("/"), component)
                problem = _shared_name(name, component, earlier)
                if problem is not None:
                    problems.append((problem, (component, earlier)))
    return names_of, problems


def class_written_files(host: PluginHost, component: Component) -> tuple[str, ...]:
    """The ``written_files`` of the dataset or model ``component`` registered on ``host``, its
    class imported (torch with it) and its list checked (:func:`declared_written_files`); ``()``
    for one registered as a factory function, which declares nothing. A class that does not
    import, or a list that is malformed or names another distribution's file, is one
    :class:`~deepseek.errors.PluginError`."""
    cls = component.load()
    return declared_written_files(cls, component.kind, component, host) if (
        isinstance(cls, type) and issubclass(cls, declaring_base(component.kind))) else ()


def component_run_files(host: PluginHost, *, classes: bool = False
                        ) -> dict[str, tuple[dict[str, dict[str, list[str]]], list[str]]]:
    """By distribution on ``host``: the files its components declare they write in run folders,
    by kind and name (``{"command": {"export": ["model.pt2", ...]}}``), and what is wrong with them,
    one line each: each command's ``run_files`` (:data:`~deepseek.plugins.records.COMMAND_RUN_FILES`,
    read from its registration, nothing imported, checked when it registered) and, with
    ``classes``, each dataset's and model's ``written_files`` (:func:`class_written_files`:
    importing the classes, torch with them, each read once for all distributions), a name shared
    with another distribution's dataset or model included, in both distributions' lines
    (:func:`written_files_problems`). Every distribution of ``host.records`` has an entry.
    ``deepseek plugins list`` shows them; the files a distribution's lifecycle hooks declare are
    its record's (:attr:`~deepseek.plugins.records.PluginRecord.run_files`)."""
    by_dist: dict[str, tuple[dict[str, dict[str, list[str]]], list[str]]] = {
        dist: ({}, []) for dist in host.records}
    for component in host.components("command"):
        names = component.declared(COMMAND_RUN_FILES)
        if names:
            by_dist.setdefault(component.dist, ({}, []))[0].setdefault("command", {})[component.name] = list(names)
    names_of, problems = _written_files_scan(host) if classes else ({}, [])
    for kind in ("dataset", "model") if classes else ():
        for component in host.components(kind):
            found, lines = by_dist.setdefault(component.dist, ({}, []))
            if names_of.get(component):
                found.setdefault(kind, {})[component.name] = list(names_of[component])
            lines += [line for line, about in problems if component in about and line not in lines]
    return by_dist


def _registered(host: PluginHost, kind: str, name: object) -> Component | None:
    """The component ``name`` names on ``host`` (a run's ``data.name`` or ``model.name``), or
    ``None`` when it is not one or not installed here, or ambiguous (its files are not known)."""
    from deepseek.errors import DeepseekError

    if not isinstance(name, str):
        return None
    try:
        return host.resolve(kind, name)
    except DeepseekError:
        return None


def declaring_class(host: PluginHost, kind: str, name: object) -> tuple[str, type, Component] | None:
    """``(kind, class, registration)`` of what declares the ``written_files`` of a run's dataset or
    model (``kind``), found on ``host`` by its config ``name`` (``data.name``, ``model.name``): the
    class registered under it, a :class:`~deepseek.data.dataset.Dataset` or
    :class:`~deepseek.models.protocol.TrainableModel` subclass. ``None`` (declares nothing) for a
    component that is not installed here, not importable or ambiguous, or registered as a factory
    function (what it makes is not known without building it). The one rule for a run's start and
    for an output check reading the run's ``config.toml``, so both see the same names."""
    from deepseek.errors import DeepseekError

    component = _registered(host, kind, name)
    try:
        cls = component.load() if component is not None else None
    except DeepseekError:  # not importable here: its files are not known
        return None
    return (kind, cls, component) if component is not None and isinstance(cls, type) and issubclass(
        cls, declaring_base(kind)) else None


def written_by(host: PluginHost, data_name: object, model_name: object) -> tuple[str, ...]:
    """The files a run declares its dataset and model write in its folder, by their config names
    (``data.name``, ``model.name``) on ``host``: the ``written_files`` of the classes registered
    under them (:func:`declaring_class`; a model made by a factory function declares nothing, for
    the run's start as for an output check), checked as :func:`run_written_files` checks them."""
    found = (declaring_class(host, "dataset", data_name), declaring_class(host, "model", model_name))
    return run_written_files(host, tuple(f for f in found if f is not None))


@dataclass(frozen=True)
class OwnRunFile:
    """A file (or a folder: ``hf/``) that ``command`` declares in its ``run_files``
    (:data:`~deepseek.plugins.records.COMMAND_RUN_FILES`) and writes again as a whole as one
    output: :func:`deepseek.paths.check_output`'s ``replaces``. ``command`` is the command's
    registration as the plugin host holds it (in a command's callback,
    :func:`deepseek.cli.context.running_command`; ``deepseek export``'s:
    :func:`deepseek.builtins.commands.export_run_file`), not a name: a command may replace only a
    file it declares itself, so one is made only for such a name (else one :class:`PluginError`),
    and :func:`run_owning` refuses one whose command is not the one registered on its host."""

    command: Component
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.command, Component) or self.command.kind != "command":
            raise PluginError(f"OwnRunFile(..., {self.name!r}): the command must be a command's registration (in its "
                              f"callback, deepseek.cli.context.running_command()), got {type(self.command).__name__}")
        declared = self.command.declared(COMMAND_RUN_FILES, ())
        if self.name not in declared:
            raise PluginError(f"{self.command.label}: cannot replace {self.name!r} as its own run file: it declares "
                              f"{list(declared) or 'none'} in declares[{COMMAND_RUN_FILES!r}]; a command replaces only "
                              "what it declares when it registers")

    def check(self, host: PluginHost | None) -> None:
        """Refuse, in one :class:`PluginError`, this claim unless its command is one registered on
        ``host`` (that very registration: a copy made elsewhere is no command's)."""
        if host is None or not any(c is self.command for c in host.candidates("command", self.command.name)):
            raise PluginError(f"{self.command.label}: replaces {self.name!r} through a registration that is not the "
                              "command's on the host checking the output; pass the running command's own "
                              "(deepseek.cli.context.running_command()) and its host")


def replaced_name(replaces: object, host: PluginHost | None) -> str | None:
    """The name ``replaces`` (:func:`deepseek.paths.check_output`'s: ``None`` or an
    :class:`OwnRunFile`) lets its command write again, checked (:meth:`OwnRunFile.check`); any
    other value (a bare name, which any command could give) is one :class:`PluginError`."""
    if replaces is None:
        return None
    if not isinstance(replaces, OwnRunFile):
        raise PluginError(f"{_running_label()}replaces={replaces!r}: give a deepseek.run_files.OwnRunFile, the "
                          "running command's registration and one file it declares (OwnRunFile(running_command(), 'pack.json')), not "
                          "a name, which any command could give")
    replaces.check(host)
    return replaces.name


def _running_label() -> str:
    """``"<the running command's label>: "`` where a deepseek command runs (its plugin named), else ``""``."""
    import click

    from deepseek.cli.context import running_command

    try:
        return f"{running_command(click.get_current_context(silent=True)).label}: "
    except (TypeError, AttributeError, RuntimeError):
        return ""


def run_owning(target: Path, host: PluginHost | None, replaces: OwnRunFile | None = None) -> Path | None:
    """The run folder (:func:`is_run_folder`) whose own place ``target`` is or would be, existing
    or not, else ``None``: one of its own files (:func:`is_run_own_file`), a file the run's
    dataset or model declares in ``written_files``, or a file or folder (``hf/``) a plugin
    declares (:func:`plugins_run_files`), looked up on ``host`` (``None``: a folder output of a
    command without a host at hand, checked against core's files and ``checkpoints/`` only), or
    anything below one of them (under its ``checkpoints/``, in a declared folder; a folder in a
    file's place). ``replaces``: the file (``model.pt2``) or folder (``hf/``) the command writing
    ``target`` declares in its ``run_files`` and writes again as a whole (``deepseek export``;
    checked: :func:`replaced_name`), which is its own to replace (:func:`plugins_run_files`) unless
    core's or declared by the run's dataset or model too; what is inside such a folder stays the
    run's. Any other file in a run folder (a report a command wrote there before) may be written again."""
    own = replaced_name(replaces, host)
    path = target.absolute()
    for folder in path.parents:  # every one: a folder output may be any depth under checkpoints/
        if is_run_folder(folder):
            first, whole = (inside := path.relative_to(folder).parts)[0], len(inside) == 1
            if first == CHECKPOINTS or is_run_own_file(first):
                return folder
            if host is not None and {first, f"{first}/"}.intersection(
                    declared_run_files(folder, host, own if whole else None)):
                return folder
    return None


def plugins_run_files(host: PluginHost, replaces: str | None = None) -> tuple[str, ...]:
    """The files the plugins loaded on ``host`` declare they write in run folders: those its
    commands write in the run folders they make (:data:`~deepseek.plugins.records.COMMAND_RUN_FILES`;
    read without importing the commands), then those lifecycle hooks write (a plugin's
    ``deepseek_declare_run_files``: :attr:`~deepseek.plugins.records.PluginRecord.run_files`).
    Left out: ``replaces``, the name of a file the command writing it again declares
    (:func:`replaced_name` checked that; each such name is one distribution's, its commands' and
    hooks' alike: :func:`deepseek.plugins.registrar.run_file_clash`)."""
    commands = tuple(name for component in host.components("command")
                     for name in component.declared(COMMAND_RUN_FILES, ()))
    return tuple(name for name in dict.fromkeys((*commands, *hooks_run_files(host))) if name != replaces)


def hooks_run_files(host: PluginHost) -> tuple[str, ...]:
    """The files the lifecycle hooks of the plugins loaded on ``host`` declare they write in every
    run folder (``deepseek_declare_run_files``: :attr:`~deepseek.plugins.records.PluginRecord.run_files`)."""
    return tuple(dict.fromkeys(name for record in host.records.values() if record.status == "ok"
                               for name in record.run_files))


def declared_run_files(run: Path, host: PluginHost, replaces: str | None = None) -> tuple[str, ...]:
    """The names the plugins on ``host`` declare (:func:`plugins_run_files`, less the command's
    own file ``replaces``), then those the
    dataset and the model of the run in ``run`` declare in ``written_files``
    (:attr:`deepseek.data.dataset.Dataset.written_files`,
    :attr:`deepseek.models.protocol.TrainableModel.written_files`), found on ``host`` by the
    ``data.name`` and ``model.name`` of the run's ``config.toml``. A component that is not
    installed, or a model registered as a factory rather than a class, declares nothing; the
    plugins' names alone when the config cannot be read. Looked up only for a path directly in a
    run folder that is not the run's own (:func:`is_run_own_file`; the components' modules are imported)."""
    from deepseek.parsing import loads_toml, read_text

    commands = plugins_run_files(host, replaces)
    try:
        config = loads_toml(read_text(run / "config.toml"))
    except (OSError, UnicodeDecodeError, ValueError):
        return commands
    data, model = (config.get(section) for section in ("data", "model"))
    return (*commands, *written_by(host, data.get("name") if isinstance(data, dict) else None,
                                   model.get("name") if isinstance(model, dict) else None))
