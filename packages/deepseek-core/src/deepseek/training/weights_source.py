"""What ``--checkpoint PATH`` names, and the data a model is evaluated on.

``PATH`` is a checkpoint (a run folder, ``checkpoints`` folder, ``step-N`` folder or pointer
file), or exported weights: a ``.safetensors`` file written by ``deepseek export`` /
``import-hf`` (its ``[model]`` table in the metadata), or a folder holding such a
``model.safetensors`` and no ``trainer.json`` or ``commit.json``, not even as a broken link
(``deepseek import-hf``'s folder).

The data exported weights come with, by what lies beside the file: a ``config.toml`` gives its
``[data]`` (its ``data.tokenizer`` replaced by the ``tokenizer.json`` beside, as a run folder's
copy replaces a run's), else a ``tokenizer.json`` alone tokenizes the default data, else the
default data in byte tokens. :class:`DataChoice` (``deepseek eval --config FILE --set
data.KEY=VALUE``) replaces that, or a run's own ``[data]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.config.load import check_plain_sections, config_from_dict, dataset_keys, read_toml
from deepseek.config.overrides import apply_overrides, parse_override
from deepseek.config.schema import Config
from deepseek.data.tokenizer import (
    TOKENIZER_FILE,
    checked_run_tokenizer,
    run_folder_of,
    with_run_tokenizer,
)
from deepseek.errors import (
    CheckpointError,
    ComponentConflictError,
    ComponentNotFoundError,
    ConfigError,
    UsageError,
)
from deepseek.parsing import loads_json
from deepseek.training import checkpoint as ckpt
from deepseek.training.provenance import prefer_recorded

if TYPE_CHECKING:
    from deepseek.data.dataset import Dataset
    from deepseek.plugins.host import PluginHost

CONFIG_FILE = "config.toml"
"""The config beside exported weights whose ``[data]`` they are evaluated on (import-hf writes it)."""


@dataclass(frozen=True)
class DataChoice:
    """The evaluation data asked for: ``config_file``'s ``[data]`` table (``deepseek eval
    --config``; its ``[model]``, when it has one, must describe the weights), then ``overrides``
    (``--set data.KEY=VALUE``, parsed as ``deepseek train --set`` parses them)."""

    config_file: str | None = None
    overrides: tuple[str, ...] = ()
    other_data: str | None = None
    """How the caller's user evaluates on other data, named when the weights' own ``[data]`` does
    not load: what that caller takes (``deepseek eval``'s ``--config FILE or --set data.KEY=VALUE``,
    ``deepseek.evaluate(model, data, checkpoint=...)`` from Python); ``None`` for a command that
    takes no other data (``export``, ``compress``): the line then says to restore the run's."""


@dataclass(frozen=True)
class WeightsOrigin:
    """Where a model's weights were read from."""

    kind: str
    """``checkpoint``, ``exported`` (a weights file) or ``imported`` (one whose metadata names the
    ``source`` import-hf read)."""
    step: int | None
    """The training step: a checkpoint's; an exported file's from its metadata (``0`` for an
    import), ``None`` when the metadata has none."""
    path: Path
    """The checkpoint folder, or the weights file."""

    @property
    def weights_file(self) -> Path:
        """The weights file: a checkpoint's ``model.safetensors`` (absent from a sharded one), or
        the exported file itself."""
        return self.path / ckpt.MODEL_FILE if self.kind == "checkpoint" else self.path

    def describe(self) -> str:
        """``step 200``, ``exported weights of step 200``, ``imported weights``."""
        if self.kind == "checkpoint":
            return f"step {self.step}"
        if self.kind == "imported" or self.step is None:
            return f"{self.kind} weights"
        return f"{self.kind} weights of step {self.step}"


@dataclass(frozen=True)
class Source:
    """The weights at a path with the config data they come with."""

    origin: WeightsOrigin
    config_data: dict[str, Any]
    """A checkpoint's saved config; for exported weights ``[model]`` and the data beside them."""
    state: dict[str, Any]
    """A checkpoint's trainer state; ``{}`` for exported weights."""
    data_file: Path | None = None
    """The ``config.toml`` beside exported weights whose ``[data]`` they are evaluated on."""
    tokenizer: bytes | None = None
    """A checkpoint's: the ``tokenizer.json`` its ``data.tokenizer`` names, as read when checked
    against the checkpoint's record (:func:`~deepseek.data.tokenizer.checked_run_tokenizer`);
    ``None`` where nothing was checked. What uses the tokenizer parses these bytes, not the file."""

    @property
    def config_where(self) -> Path:
        """The file the saved config was read from: ``trainer.json`` or the weights file."""
        return self.origin.path / ckpt.TRAINER_FILE if self.origin.kind == "checkpoint" else self.origin.path


def exported_file(p: Path) -> Path | None:
    """The exported-weights file ``p`` names: ``p`` (a ``.safetensors`` file), or the
    ``model.safetensors`` with a ``[model]`` table in its metadata of a folder without trainer
    state or commit marker; else ``None`` (a checkpoint). Either name present in any form (a
    folder, a FIFO, a broken link) makes the folder a checkpoint, whose loading names what is
    wrong with it: an export never writes one, so a folder holding one is no export."""
    if p.is_file() and p.suffix == ".safetensors":
        return p
    inside = p / ckpt.MODEL_FILE
    if not p.is_dir() or not inside.is_file() or any(os.path.lexists(p / f) for f in (ckpt.TRAINER_FILE, ckpt.COMMIT_FILE)):
        return None
    try:
        return inside if "model" in ckpt.read_weights_metadata(inside) else None
    except CheckpointError:  # a damaged file in a checkpoint folder: the checkpoint's error says more
        return None


def _holds_nothing(p: Path) -> bool:
    """``p`` is a folder with no trace of a checkpoint or weights: a ``trainer.json`` or
    ``model.safetensors`` in any form (a FIFO, a folder, a broken link: ``os.path.lexists``, as
    :func:`exported_file` asks) makes it a checkpoint, whose loading names what is wrong with it."""
    return p.is_dir() and not (p / "checkpoints").is_dir() and not any(p.glob("step-*")) and not any(
        os.path.lexists(p / f) for f in (ckpt.TRAINER_FILE, ckpt.MODEL_FILE))


def refuse_hugging_face_folder(p: Path) -> None:
    """A folder as ``save_pretrained`` writes it (``config.json`` and weights, nothing of ours) is
    refused in one line naming ``deepseek import-hf``, which turns it into weights that load."""
    if not (p.is_dir() and (p / "config.json").is_file()):
        return
    ours = (os.path.lexists(p / ckpt.TRAINER_FILE) or (p / "checkpoints").is_dir()
            or os.path.lexists(p / CONFIG_FILE))
    if not ours and (any(p.glob("*.safetensors")) or any(p.glob("pytorch_model*.bin"))):
        raise CheckpointError(
            f"{p}: a Hugging Face model folder (config.json, no {ckpt.TRAINER_FILE}): import it first, "
            f"deepseek import-hf {p} --out DIR, then pass DIR (docs/interop.md)")


def read_source(path: str | Path) -> Source:
    """The weights ``path`` names and the config data they come with (see the module)."""
    p = Path(path)
    weights = exported_file(p)
    if weights is not None:
        return _exported(weights)
    if _holds_nothing(p):
        raise CheckpointError(
            f"{p}: holds no checkpoint ({ckpt.TRAINER_FILE}, checkpoints/step-N) and no {ckpt.MODEL_FILE}; pass a "
            "run folder, a checkpoint folder, or weights written by deepseek import-hf or export_weights")
    refuse_hugging_face_folder(p)
    directory = ckpt.resolve_checkpoint(p)
    state = ckpt.read_trainer_state(directory)
    data, tokenizer = state.get("config") or {}, None
    if isinstance(data, dict):
        data, tokenizer = checked_run_tokenizer(data, run_folder_of(directory), state)
    step = state.get("step")
    return Source(WeightsOrigin("checkpoint", step if isinstance(step, int) else None, directory), data, state,
                  tokenizer=tokenizer)


def _exported(p: Path) -> Source:
    meta = ckpt.read_weights_metadata(p)
    if "model" not in meta:
        raise CheckpointError(
            f"{p}: has no [model] config in its metadata; export it with deepseek's export_weights "
            "or pass the run folder"
        )
    try:
        model = loads_json(meta["model"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{p}: the [model] config in its metadata is not valid JSON ({exc}); export the weights "
            "again or pass the run folder"
        ) from exc
    step = meta.get("step", "")
    origin = WeightsOrigin("imported" if "source" in meta else "exported", int(step) if step.isdecimal() else None, p)
    beside, tokenizer = p.parent / CONFIG_FILE, p.parent / TOKENIZER_FILE
    if beside.is_file():  # read when the data is needed: generate and export do not read it
        return Source(origin, {"model": model}, {}, data_file=beside)
    data = {"tokenizer": str(tokenizer)} if tokenizer.is_file() else {}
    return Source(origin, {"model": model, "data": data}, {})


def check_data_tokenizer(source: Source, config: Config, dataset: Dataset) -> None:
    """The data evaluating ``source``'s weights tokenizes with the tokenizer its check passed,
    where that data reads the run's own tokenizer file (``config``'s ``data.tokenizer`` is the file
    :attr:`Source.tokenizer` holds the checked bytes of; other data, ``--config`` / ``--set
    data.tokenizer``, is the user's choice): ``dataset`` (built from ``config``) read the file again
    by path, so the identity it parsed (its data position's, as a resume compares it) is held to
    the checkpoint's record (:func:`~deepseek.data.tokenizer.check_parsed_tokenizer`). A dataset
    whose position records no tokenizer (a plugin's own ``state_dict``) says nothing of what it
    parsed: it is not held to the record (a token dataset reading a set ``data.tokenizer`` always
    records it)."""
    from deepseek.data.dataset import checked_state_dict
    from deepseek.data.tokenizer import check_parsed_tokenizer

    if source.tokenizer is None:
        return  # nothing was checked: exported weights, an older checkpoint, byte tokens
    checked, setting = source.config_data["data"]["tokenizer"], config.to_dict()["data"].get("tokenizer")
    if isinstance(setting, str) and setting and Path(setting).resolve() == Path(checked).resolve():
        parsed = checked_state_dict(dataset).get("tokenizer")
        if parsed is not None:
            check_parsed_tokenizer(checked, parsed, source.state)


def model_sections(config_data: dict[str, Any], data: Any, host: PluginHost | None) -> dict[str, Any]:
    """A saved config's sections as reading its model needs them: ``data`` as given, strategy
    ``single``, and the parts of training a model's weights do not depend on (the optimizer, the
    schedule, the trackers) kept where their components are installed and at their defaults
    where not, so weights trained with a plugin's optimizer, schedule or tracker load without
    that plugin (a compressed copy or a recovery run then records core's defaults).
    ``train.grad_accum`` is kept where the batch of ``data`` splits by it (a recovery run then cuts
    its batches as the run did) and left at its default where not: the weights do not depend on
    it, and the batch of ``data`` (none: the default 16 rows; or the evaluation's) need not split
    by it, which the config's check would refuse (a run of 12 rows in 3 micro-batches could not be
    read)."""
    from deepseek.plugins.host import get_host

    lookups = host or get_host()

    def installed(kind: str, name: Any) -> bool:
        try:
            lookups.resolve(kind, name)
        except (ComponentNotFoundError, ComponentConflictError):
            return False
        return True

    out = {**config_data, "strategy": {"name": "single"}, "data": data}
    train, rows = out.get("train"), data.get("batch_size") if isinstance(data, dict) else None
    if isinstance(train, dict) and "grad_accum" in train:
        accum = train["grad_accum"]
        if not (isinstance(rows, int) and isinstance(accum, int) and accum > 0 and rows % accum == 0):
            out["train"] = {k: v for k, v in train.items() if k != "grad_accum"}
    for section, default in (("optimizer", "adamw"), ("lr_schedule", "cosine")):
        table = out.get(section)
        if isinstance(table, dict) and not installed(section, table.get("name", default)):
            out[section] = {}
    logging = out.get("logging")
    if isinstance(logging, dict) and not all(installed("tracker", n) for n in logging.get("trackers", [])):
        out.update(logging={**logging, "trackers": [], "tensorboard": False}, trackers={})
    return out


def model_only(config_data: dict[str, Any], where: Path, host: PluginHost | None,
               state: dict[str, Any] | None = None) -> Config:
    """The config of the weights' model (any strategy's checkpoint loads under core: ``single``;
    no data); a table that does not validate is the checkpoint's fault, named at ``where``,
    unless it names a component no installed plugin provides (``state``'s record names it)."""
    try:
        data = prefer_recorded(config_data, state, host)  # the components it was trained with
        return config_from_dict(model_sections(data, {}, host), validate=False, host=host)
    except ConfigError as exc:
        raise unreadable_config(exc, where, state) from exc


def unreadable_config(exc: ConfigError, where: Path, state: dict[str, Any] | None,
                      fix: str = "use another checkpoint") -> CheckpointError:
    """The error for a checkpoint's config that does not load here: a component no installed
    plugin provides names the distribution that provided it (:mod:`deepseek.training.provenance`);
    anything else is the file's fault (``fix``: what to do then)."""
    from deepseek.training.provenance import component_note

    note = component_note(exc, state)
    tail = f"if the file was edited or is damaged, {fix}" if note is None else note
    return CheckpointError(f"{where} (the checkpoint's config): {exc}" + (f"; {tail}" if tail else ""))


def read_choice(choice: DataChoice, read: Callable[..., dict[str, Any]] = read_toml) -> dict[str, Any] | None:
    """What evaluating on ``choice`` checks of it before the weights' config takes part: its
    config file read (``read(path, missing_hint=...)``; ``None`` without one) and every ``--set``
    a ``data.KEY=VALUE``. The job service runs it at submit for ``deepseek eval``, ``read``
    reading the job's workspace as it will be at the job's start."""
    file_config = None
    if choice.config_file is not None:
        file_config = read(Path(choice.config_file), missing_hint="check the path of --config")
        if not isinstance(file_config.get("data", {}), Mapping):  # the loader's line for it, naming the file
            try:
                check_plain_sections({"data": file_config["data"]})
            except ConfigError as exc:
                raise ConfigError(f"{choice.config_file}: {exc}") from None
    for item in choice.overrides:
        if parse_override(item)[0][0] != "data":
            raise UsageError(f"--set {item!r}: eval takes data.KEY=VALUE only (the evaluation data); the model is "
                             "the weights'")
    return file_config


def choice_label(file: Path | None, choice: DataChoice) -> str:
    """How an error in the evaluation data names where it came from: the config file its ``[data]``
    was read from (``--config``, or the one beside exported weights), ``with --set`` when
    overridden; ``""`` for a run's own ``[data]``."""
    return " with ".join([*([str(file)] if file is not None else []), *(["--set"] if choice.overrides else [])])


def with_data(source: Source, weights: Config, choice: DataChoice | None, host: PluginHost | None) -> Config:
    """The config evaluating ``source``'s model: its saved sections with the chosen ``[data]``
    (``choice``, else what the weights come with), checked: the data against the model's
    vocabulary, and a config file's ``[model]`` against the weights'."""
    choice = choice or DataChoice()
    data, file = source.config_data.get("data", {}), source.data_file
    file_config = read_choice(choice)
    if file_config is not None:
        file = Path(str(choice.config_file))
        data = file_config.get("data", {})
    elif file is not None:  # beside exported weights: the tokenizer.json beside replaces its data.tokenizer
        file_config = read_toml(file)
        data = with_run_tokenizer({"data": file_config.get("data", {})}, file.parent)["data"]
    if choice.overrides:
        data = apply_overrides({"data": _for_dataset(data, choice.overrides, host)}, choice.overrides)["data"]
    named = choice_label(file, choice)
    full = model_sections(prefer_recorded(source.config_data, source.state, host), data, host)
    model_table = full.get("model", {})
    free = {k: v for k, v in model_table.items() if k != "vocab_size"} if isinstance(model_table, dict) else {}
    try:  # the model's vocabulary left to follow the data's tokenizer: the vocabulary the data needs
        needs = config_from_dict({**full, "model": free}, validate=False, host=host).to_dict()["model"].get("vocab_size")
        has = weights.to_dict()["model"].get("vocab_size")
        if isinstance(needs, int) and isinstance(has, int) and needs > has:
            raise ConfigError(f"the evaluation tokenizer has {needs} tokens but the model's vocabulary only {has}; "
                              "evaluate with the tokenizer the model was trained with (data.tokenizer)")
        config = config_from_dict(full, validate=False, host=host)
    except ConfigError as exc:
        if named:
            raise ConfigError(f"{named}: {exc}") from exc
        fix = ("the run's own data is read: restore it (its files at their recorded paths)" if choice.other_data
               is None else f"evaluate on other data with {choice.other_data}")
        raise CheckpointError(f"{source.config_where} (the checkpoint's [data]): {exc}; {fix}") from exc
    if file is not None and file_config is not None:
        _check_model(file_config.get("model"), data, weights, str(file), host)
    return config


def _for_dataset(data: dict[str, Any], overrides: tuple[str, ...], host: PluginHost | None) -> dict[str, Any]:
    """``data`` without the keys of its dataset that the one ``--set data.name=...`` switches to does
    not take: a run of the ``text`` dataset evaluated on ``hf`` files keeps its tokenizer, sequence
    length and batch sizes, and leaves ``path`` and ``pattern`` behind."""
    names = [value for parts, value in map(parse_override, overrides) if parts == ["data", "name"]]
    if not names or names[-1] == data.get("name", "text"):
        return data
    keys = dataset_keys(str(names[-1]), host)
    return data if keys is None else {k: v for k, v in data.items() if k in keys}


def _check_model(table: Any, data: Any, weights: Config, where: str, host: PluginHost | None) -> None:
    """A config file's ``[model]`` (when it has one) describes the weights, resolved as a run
    resolves it (presets, a vocabulary following the data's tokenizer): one line naming the first
    key that differs otherwise."""
    if not table:
        return
    try:
        theirs = config_from_dict({"model": table, "data": data, "strategy": {"name": "single"}},
                                  validate=False, host=host).to_dict()["model"]
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    ours = weights.to_dict()["model"]
    written = [k for k in table if k != "name"]  # the keys the file sets first: the likeliest cause
    for key in ["name", *written, *sorted((theirs.keys() | ours.keys()) - {"name", *written})]:
        if theirs.get(key) != ours.get(key):
            raise ConfigError(f"{where}: model.{key} = {theirs.get(key)!r} but the weights have {ours.get(key)!r}; "
                              "its [model] must describe the weights: pass the config they were trained with, or "
                              "one without [model]")
