"""The text codec of a run's dataset, found from the run folder (:meth:`Dataset.text_codec`).

A run records its dataset's registered name and ``[data]`` options in its checkpoint's
``trainer.json`` (and ``config.toml``). ``deepseek generate`` (and every user of
:func:`deepseek.training.inference.trained_tokenizer`) resolves that name on the plugin host,
reads the recorded options as a config's ``[data]`` table is read (validated like user input: a
bad value is the checkpoint's fault, named with its file), and asks the class for its codec
(:func:`deepseek.data.codec.dataset_codec`): the data's files are not read, so the run's data
need not exist where the model is used. A dataset class that keeps the default (``None``) leaves
the tokenizer to the run folder's ``tokenizer.json`` (or bytes). A run whose dataset gave a codec
records so (``trainer.json``'s ``text_codec: true``, :func:`gives_codec`): read where that
dataset's plugin is not installed, or where the installed one gives no codec for the run's
options, it is refused in one line naming the distribution to install, instead of its token ids
being read as bytes; a run without the field (none, or written before it)
falls back to the run's tokenizer as before."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.errors import ComponentConflictError, ComponentNotFoundError, ConfigError, UsageError

if TYPE_CHECKING:
    from deepseek.data.dataset import Dataset
    from deepseek.data.tokenizer import Tokenizer
    from deepseek.plugins.host import PluginHost


def declares_codec(cls: type[Dataset]) -> bool:
    """Whether dataset class ``cls`` overrides :meth:`Dataset.text_codec` (the default gives none)."""
    from deepseek.data.dataset import Dataset

    return next(c for c in cls.__mro__ if "text_codec" in vars(c)) is not Dataset


def gives_codec(dataset: Dataset, options: Any) -> bool:
    """Whether a run's ``dataset`` (created from ``options``, ``None`` for its class's defaults)
    gives a text codec: what its checkpoints record as ``text_codec``."""
    from deepseek.data.codec import dataset_codec

    cls = type(dataset)
    return declares_codec(cls) and dataset_codec(cls, options if options is not None else cls.Options(),
                                                 dataset.label) is not None


def recorded_codec(directory: Path, state: dict[str, Any], host: PluginHost | None) -> Tokenizer | None:
    """The checked codec of the dataset the checkpoint ``directory`` (its ``trainer.json`` read
    as ``state``) was trained on, or ``None`` when that dataset declares none or is not
    registered on ``host`` (default: the process's). A name several installed plugins register
    resolves as the run's config did (its ``[plugins] prefer``) and then to the distribution the
    checkpoint records (:func:`~deepseek.training.provenance.prefer_recorded`); still ambiguous,
    it is refused in one line naming the candidates (which one's codec reads the ids is unknown)."""
    from deepseek.config.load import config_from_dict
    from deepseek.data.codec import dataset_codec
    from deepseek.data.dataset import Dataset
    from deepseek.plugins.calls import blames
    from deepseek.plugins.host import get_host
    from deepseek.training.provenance import prefer_recorded
    from deepseek.training.weights_source import model_sections, unreadable_config

    config = state.get("config")
    table = config.get("data") if isinstance(config, dict) else None
    name = table.get("name", "text") if isinstance(table, dict) else None
    if not isinstance(name, str):
        return None  # no readable [data]: the tokenizer's own checks say what is wrong
    assert isinstance(config, dict)
    data = prefer_recorded(config, state, host)
    lookups = (host or get_host()).with_preference(_saved_prefer(data))
    try:
        component = lookups.resolve("dataset", name)
        cls = component.load()
    except ComponentNotFoundError as exc:
        if state.get("text_codec") is True:  # its token ids are the codec's: bytes would read them wrong
            from deepseek.training.provenance import missing_component

            raise UsageError(f"{directory / 'trainer.json'}: the run's dataset {name!r} gave the text codec of its "
                             f"token ids (Dataset.text_codec); {missing_component(exc, state) or exc}") from None
        return None
    except ComponentConflictError:
        raise UsageError(_ambiguous(directory, name, lookups, state)) from None
    if not isinstance(cls, type) or not issubclass(cls, Dataset):
        return None  # not a dataset: loading the run's data says so
    if not declares_codec(cls):
        if state.get("text_codec") is True:  # its token ids are the codec's: bytes would read them wrong
            raise UsageError(_codec_gone(directory, name, component, state))
        return None  # the default: the run's tokenizer (its options are not read, nor its tokenizer file)
    try:
        options = config_from_dict(model_sections(data, table, host), validate=False, host=host).data.options
    except ConfigError as exc:
        raise unreadable_config(exc, directory / "trainer.json", state) from exc
    codec = dataset_codec(cls, options if options is not None else cls.Options(), component.label if blames(component) else None)
    if codec is None and state.get("text_codec") is True:
        raise UsageError(_codec_gone(directory, name, component, state))
    return codec


def _codec_gone(directory: Path, name: str, component: Any, state: dict[str, Any]) -> str:
    """The line refusing a run whose dataset gave a text codec (``text_codec: true``) when the
    installed ``component`` of that name gives none for the run's options: its ids would be read
    as the run's tokenizer's (bytes)."""
    from deepseek.training.provenance import trained_with

    trained = trained_with(state, "dataset", name)
    then = f" ({trained['distribution']} {trained['version']})" if trained is not None else ""
    return (f"{directory / 'trainer.json'}: the run's dataset {name!r}{then} gave the text codec of its token ids "
            f"(Dataset.text_codec), and the installed one from {component.dist} {component.version} gives none for "
            "the run's options; install the version the run was trained with")


def _saved_prefer(data: dict[str, Any]) -> list[str]:
    """The ``[plugins] prefer`` of a checkpoint's config (its distribution names; anything else
    in it is left to loading the config, which names the damage)."""
    plugins = data.get("plugins")
    prefer = plugins.get("prefer") if isinstance(plugins, dict) else None
    return [d for d in prefer if isinstance(d, str)] if isinstance(prefer, list) else []


def _ambiguous(directory: Path, name: str, lookups: Any, state: dict[str, Any]) -> str:
    """The line refusing a run whose dataset name several installed plugins register, none of
    them preferred by the run's config or recorded by its checkpoint."""
    from deepseek.training.provenance import ambiguity_note

    candidates = lookups.explain("dataset", name).candidates
    who = ", ".join(f"{c.dist} {c.version}" for c in candidates)
    return (f"{directory / 'trainer.json'}: the run's dataset {name!r} is registered by several installed plugins "
            f"({who}) and {ambiguity_note('dataset', name, state, candidates[0].dist)}")
