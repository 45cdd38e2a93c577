"""The text codec of a run's dataset, found from the run folder (:meth:`Dataset.text_codec`).

A run records its dataset's registered name and ``[data]`` options in its checkpoint's
``trainer.json`` (and ``config.toml``). ``deepseek generate`` (and every user of
:func:`deepseek.training.inference.trained_tokenizer`) resolves that name on the plugin host,
reads the recorded options as a config's ``[data]`` table is read (validated like user input: a
bad value is the checkpoint's fault, named with its file), and asks the class for its codec
(:func:`deepseek.data.codec.dataset_codec`): the data's files are not read, so the run's data
need not exist where the model is used. A dataset class that keeps the default (``None``) leaves
the tokenizer to the run folder's ``tokenizer.json`` (or bytes), as does a run whose dataset
plugin is not installed here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.errors import ComponentConflictError, ComponentNotFoundError, ConfigError

if TYPE_CHECKING:
    from deepseek.data.tokenizer import Tokenizer
    from deepseek.plugins.host import PluginHost


def recorded_codec(directory: Path, state: dict[str, Any], host: PluginHost | None) -> Tokenizer | None:
    """The checked codec of the dataset the checkpoint ``directory`` (its ``trainer.json`` read
    as ``state``) was trained on, or ``None`` when that dataset declares none or is not
    registered on ``host`` (default: the process's)."""
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
    try:
        component = (host or get_host()).resolve("dataset", name)
        cls = component.load()
    except (ComponentNotFoundError, ComponentConflictError):
        return None
    if not isinstance(cls, type) or not issubclass(cls, Dataset):
        return None  # not a dataset: loading the run's data says so
    if next(c for c in cls.__mro__ if "text_codec" in vars(c)) is Dataset:
        return None  # the default: the run's tokenizer (its options are not read, nor its tokenizer file)
    assert isinstance(config, dict)
    try:
        data = prefer_recorded(config, state, host)
        options = config_from_dict(model_sections(data, table, host), validate=False, host=host).data.options
    except ConfigError as exc:
        raise unreadable_config(exc, directory / "trainer.json", state) from exc
    return dataset_codec(cls, options if options is not None else cls.Options(), component.label if blames(component) else None)
