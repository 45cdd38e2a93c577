"""Load a :class:`~deepseek.config.schema.Config` from TOML, ``--set`` overrides or plain data.

Order: file (or a saved config) -> ``--set a.b=c`` overrides -> typed sections (unknown keys are
errors with a did-you-mean) -> core's cross-field checks -> the model, dataset, optimizer,
learning-rate schedule and strategy named in ``[model]``, ``[data]``, ``[optimizer]``,
``[lr_schedule]`` and ``[strategy]``, each validating its own keys with its ``Options``
(a model that sets no ``vocab_size`` gets the dataset's ``model_vocab_size``, a tokenizer's; no
``num_classes``, its ``model_num_classes``: ``DATA_SIZES``)
-> the trackers of ``logging.trackers`` with their ``[trackers.<name>]`` options
(:mod:`deepseek.tracking.resolve`) -> the strategy's ``check_config`` -> every plugin's
``deepseek_validate_config`` hook. All of it runs before anything heavy starts; loading a
component's ``Options`` may import torch. Reading and writing the TOML files themselves is
:mod:`deepseek.config.toml_files`'s (``read_toml``, ``dump_config`` and ``write_config`` are
re-exported here).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from deepseek.config.components import (
    build_options,
    fill_component_tables,
    load_checked,
    options_class,
    refuse_other_components_keys,
    resolve_at,
)
from deepseek.config.data_sizes import DATA_SIZES, follow_data_size
from deepseek.config.no_validation import check_no_validation
from deepseek.config.overrides import apply_overrides
from deepseek.config.schema import (
    DATA_COMMON_KEYS,
    OPTIMIZER_COMMON_KEYS,
    SECTIONS,
    Config,
    DataConfig,
    LRScheduleConfig,
    ModelConfig,
    OptimizerConfig,
    StrategyConfig,
)
from deepseek.config.toml_files import MAX_CONFIG_BYTES, dump_config, read_toml, write_config  # noqa: F401 (re-exported)
from deepseek.config.validate import build_dataclass, did_you_mean
from deepseek.errors import ComponentConflictError, ComponentNotFoundError, ConfigError
from deepseek.plugins.calls import class_calls
from deepseek.tracking.resolve import resolve_trackers, tracker_names
from deepseek.training.optimizers import placement_problem

if TYPE_CHECKING:
    from deepseek.plugins.host import PluginHost

_DEFAULT = Config()


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    *,
    base: Mapping[str, Any] | None = None,
    validate: bool = True,
    host: PluginHost | None = None,
) -> Config:
    """Build a validated Config from a TOML file (or ``base`` data, or the defaults) plus
    ``--set`` overrides. ``validate=False`` skips the plugins' ``deepseek_validate_config``."""
    from deepseek.api_args import path as checked_path

    data: dict[str, Any] = dict(base or {}) if path is None else read_toml(checked_path(path, "config path"))
    return config_from_dict(apply_overrides(data, overrides), validate=validate, host=host)


def config_from_dict(
    data: Mapping[str, Any], *, validate: bool = True, host: PluginHost | None = None
) -> Config:
    """Build and check a Config from plain data (what a TOML file or ``Config.to_dict`` gives).

    Components are resolved on ``host`` (default: the process's host) with the config's own
    ``[plugins] prefer`` applied to these lookups only; the host is not changed."""
    from deepseek.api_args import host as checked_host

    host = checked_host(host)
    sections, data_section, data_table, optimizer_section, optimizer_table = _plain_sections(data)
    lookups = _run_host(host, sections["plugins"].prefer)
    _warn_unknown_preferred(lookups, sections["plugins"].prefer)
    model_table = _model_table(dict(data.get("model", {})))
    sets = {key for key in DATA_SIZES if key in model_table}
    model_name, model_options, _ = _component(lookups, "model", model_table, default=COMPONENT_DEFAULTS["model"])
    data_name, data_options, data_cls = _component(lookups, "dataset", data_table, default=data_section.name,
                                                   section="data", known=("name", *DATA_COMMON_KEYS))
    for key, (declared, what, instead) in DATA_SIZES.items():
        with class_calls(lookups.resolve("dataset", data_name), declared):
            size = getattr(data_cls, declared)(data_options)
        model_options = follow_data_size(model_options, key, size, explicit=key in sets,
                                          what=what.format(size=size, data=data_name), instead=instead)
    optimizer_table["name"] = optimizer_section.name
    optimizer_name, optimizer_options, optimizer_cls = _component(
        lookups, "optimizer", optimizer_table, default="adamw", known=("name", *OPTIMIZER_COMMON_KEYS))
    with class_calls(lookups.resolve("optimizer", optimizer_name), "check_config"):
        optimizer_cls.check_config(optimizer_options, optimizer_section)
    schedule_name, schedule_options, schedule_cls = _component(
        lookups, "lr_schedule", dict(data.get("lr_schedule", {})), default=COMPONENT_DEFAULTS["lr_schedule"])
    with class_calls(lookups.resolve("lr_schedule", schedule_name), "check_config"):
        schedule_cls.check_config(schedule_options, sections["train"])
    strategy_table = dict(data.get("strategy", {}))
    strategy_name, strategy_options, strategy_cls = _component(lookups, "strategy", strategy_table,
                                                               default=COMPONENT_DEFAULTS["strategy"])
    sections["logging"], trackers = resolve_trackers(lookups, sections["logging"], data.get("trackers", {}))
    config = Config(
        **sections,
        trackers=trackers,
        model=ModelConfig(name=model_name, options=model_options),
        data=dataclasses.replace(data_section, name=data_name, options=data_options),
        strategy=StrategyConfig(name=strategy_name, options=strategy_options),
        optimizer=dataclasses.replace(optimizer_section, name=optimizer_name, options=optimizer_options),
        lr_schedule=LRScheduleConfig(name=schedule_name, options=schedule_options),
    )
    if config.precision.master_weights and not optimizer_cls.supports_master_weights:
        raise ConfigError(f"precision.master_weights: optimizer {optimizer_name!r} does not keep fp32 master weights "
                          "(only an optimizer declaring supports_master_weights does, e.g. 'adamw'); "
                          "use optimizer.name = \"adamw\" or set master_weights = false")
    problem = placement_problem(optimizer_cls, optimizer_name, strategy_cls, strategy_name, lookups)
    if problem:
        raise ConfigError(problem)
    if config.precision.master_weights and not strategy_cls.supports_master_weights:
        raise ConfigError(f"precision.master_weights: strategy {strategy_name!r} keeps its own parameter dtypes "
                          "and does not offer fp32 master weights; use strategy 'single' or master_weights = false")
    with class_calls(lookups.resolve("strategy", strategy_name), "check_config"):
        strategy_cls.check_config(config)
    if validate:
        lookups.hook.deepseek_validate_config(config=config, host=lookups)
    return config


COMPONENT_SECTIONS: dict[str, str] = {"model": "model", "data": "dataset", "optimizer": "optimizer",
                                      "lr_schedule": "lr_schedule", "strategy": "strategy"}
"""Config sections that name a registered component -> the component kind."""

COMPONENT_DEFAULTS: dict[str, str] = {"model": "tiny", "lr_schedule": "cosine", "strategy": "single"}
"""A section's component where it names none (``[data]``'s, ``[optimizer]``'s: their plain ``name``)."""


def check_plain_sections(data: Mapping[str, Any]) -> None:
    """The checks of :func:`config_from_dict` that load no component and read no file: the
    section names, every key and value of the plain sections (``[train]``, ``[precision]``,
    ``[logging]``, ...) with their types and ranges, the keys ``[data]`` and ``[optimizer]`` share
    across components, and core's cross-field checks. What a model, dataset, optimizer, schedule
    or strategy checks of its own keys (a dataset: its files) is left to :func:`config_from_dict`."""
    _plain_sections(data)


def _plain_sections(data: Mapping[str, Any]) -> tuple[dict[str, Any], DataConfig, dict[str, Any], OptimizerConfig,
                                                      dict[str, Any]]:
    """:func:`check_plain_sections`' checks; the plain sections, and ``[data]`` and ``[optimizer]``
    as their shared part and the rest of their table (the component's keys)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a table, got {type(data).__name__}")
    for key, value in data.items():
        if key not in SECTIONS:
            raise ConfigError(
                f"{key}: unknown config section{did_you_mean(key, SECTIONS)}; "
                f"allowed sections: {', '.join(SECTIONS)}"
            )
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a [{key}] table, got {value!r}")
    sections: dict[str, Any] = {}
    for name in SECTIONS:
        if name not in COMPONENT_SECTIONS and name != "trackers":
            sections[name] = build_dataclass(type(getattr(_DEFAULT, name)), dict(data.get(name, {})), path=name)
    sections["train"] = resolve_train(sections["train"])
    data_table = dict(data.get("data", {}))
    common = {k: data_table.pop(k) for k in DATA_COMMON_KEYS if k in data_table}
    data_section = build_dataclass(DataConfig, {"name": data_table.pop("name", "text"), **common}, path="data")
    optimizer_table = dict(data.get("optimizer", {}))
    shared = {k: optimizer_table.pop(k) for k in OPTIMIZER_COMMON_KEYS if k in optimizer_table}
    optimizer_section = build_dataclass(OptimizerConfig, {"name": optimizer_table.pop("name", "adamw"), **shared},
                                        path="optimizer")
    # Cheap cross-field checks first; loading the components imports torch.
    check_config(Config(**sections, data=data_section, optimizer=optimizer_section))
    return sections, data_section, data_table, optimizer_section, optimizer_table


def check_component_names(data: Mapping[str, Any], host: PluginHost | None = None) -> None:
    """The checks of :func:`config_from_dict` that find each component the config names (its model,
    dataset, optimizer, learning-rate schedule and strategy, the defaults for those it leaves out;
    then its trackers, :func:`~deepseek.tracking.resolve.tracker_names`) on ``host`` with the
    config's ``[plugins] prefer``, loading none of them: ``SECTION.name: ...`` (``logging.trackers:
    ...``) for a name that no loaded plugin provides (one of a distribution that is disabled or not
    installed says which and why) or that several do. Starts with :func:`check_plain_sections`'
    checks. Each component's own keys are left to :func:`config_from_dict`."""
    sections, data_section, _, optimizer_section, _ = _plain_sections(data)
    lookups = _run_host(host, sections["plugins"].prefer)
    for section, name in _component_names(data, data_section, optimizer_section).items():
        _found(lookups, COMPONENT_SECTIONS[section], name, section)
    tracker_names(lookups, sections["logging"], data.get("trackers", {}))


def _component_names(data: Mapping[str, Any], data_section: DataConfig, optimizer_section: OptimizerConfig
                     ) -> dict[str, Any]:
    """Section -> the component name config ``data`` gives it, or the default where it gives none."""
    model = data.get("model", {})
    return {"model": model["name"] if "name" in model else model.get("preset", COMPONENT_DEFAULTS["model"]),
            "data": data_section.name, "optimizer": optimizer_section.name,
            **{s: data.get(s, {}).get("name", COMPONENT_DEFAULTS[s]) for s in ("lr_schedule", "strategy")}}


def file_free_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """What ``config_from_dict(data).to_dict()`` holds that no component decides: every key of the
    plain sections, ``[data]``'s and ``[optimizer]``'s shared keys, and each component section's
    ``name`` (its default where ``data`` gives none), typed and defaulted as the loader does
    (``train.lr = 1`` is ``1.0``). A component's own keys are left out: its ``Options`` type and
    default them. Checked as :func:`check_plain_sections` checks; loads no component."""
    sections, data_section, _, optimizer_section, _ = _plain_sections(data)
    out = Config(**sections, data=data_section, optimizer=optimizer_section).to_dict()
    for section, name in _component_names(data, data_section, optimizer_section).items():
        out[section] = {**out[section], "name": name}
    return out


def _found(lookups: PluginHost, kind: str, name: Any, section: str) -> tuple[Any, Any]:
    """``(resolution, component)`` of ``[section]``'s ``kind`` ``name``; ``SECTION.name: ...`` for none or several."""
    component = resolve_at(lookups, kind, name, f"{section}.name")
    return lookups.explain(kind, name), component


def _run_host(host: PluginHost | None, prefer: tuple[str, ...]) -> PluginHost:
    from deepseek.plugins.host import get_host

    return (host or get_host()).with_preference(prefer)


def _model_table(table: dict[str, Any]) -> dict[str, Any]:
    """``[model]`` with the deprecated ``preset`` key read as ``name``."""
    if "preset" not in table:
        return table
    if "name" in table:
        raise ConfigError(
            "model.preset: give the model as model.name only (model.preset is its old spelling); "
            "remove model.preset"
        )
    warnings.warn(
        f"model.preset is deprecated; write model.name = {table['preset']!r} instead",
        DeprecatedConfigWarning, stacklevel=4,
    )
    table["name"] = table.pop("preset")
    return table


class DeprecatedConfigWarning(FutureWarning):
    """A config key that still works under an old spelling; the message names the new one."""


def _component(
    lookups: PluginHost, kind: str, table: dict[str, Any], *, default: str, section: str | None = None,
    known: tuple[str, ...] = ("name",),
) -> tuple[str, Any, Any]:
    """``(name as recorded, validated options, loaded target)`` of a component section.

    The recorded name is qualified (``dist:name``) when several distributions register the
    name, so that a later ``generate`` / ``eval`` / ``--resume`` of the run picks the same one."""
    section = section or kind
    name = table.pop("name", default)
    resolution, component = _found(lookups, kind, name, section)
    target = load_checked(kind, component)
    if kind == "strategy" and "compression" in table:
        _check_compression(lookups, name, target, table["compression"])
    refuse_other_components_keys(lookups, kind, name, target, table, path=section, name_key=f"{section}.name",
                                 known=known)
    options = fill_component_tables(build_options(target, table, kind=kind, name=name, path=section, known=known),
                                    lookups, path=section)
    recorded = component.qualified_name if len(resolution.candidates) > 1 and ":" not in name else name
    return recorded, options, target


def _warn_unknown_preferred(lookups: PluginHost, prefer: Iterable[str]) -> None:
    """A ``[plugins] prefer`` entry that names no installed plugin distribution (a typo, or an
    edition this machine lacks) is a warning with a did-you-mean: it wins no conflict here."""
    from deepseek.names import meant_distribution
    from deepseek.plugins.records import PluginWarning
    from deepseek.plugins.settings import same_dist

    installed = sorted(lookups.records)
    for wanted in prefer:
        if not any(same_dist(wanted, dist) for dist in installed):
            warnings.warn(f"plugins.prefer: distribution {wanted!r} is not installed"
                          f"{meant_distribution(wanted, installed)}; installed: {', '.join(installed)}",
                          PluginWarning, stacklevel=3)


def dataset_keys(name: str, host: PluginHost | None = None) -> frozenset[str] | None:
    """The keys a ``[data]`` table of dataset ``name`` takes: ``name``, the common keys and its
    ``Options`` fields (``None`` when no dataset of that name is registered: loading the config
    then says so)."""
    try:
        component = _run_host(host, ()).resolve("dataset", name)
    except (ComponentNotFoundError, ComponentConflictError):
        return None
    cls = options_class(load_checked("dataset", component), kind="dataset", name=name)
    return frozenset(("name", *DATA_COMMON_KEYS, *(f.name for f in dataclasses.fields(cls))))


def _check_compression(lookups: PluginHost, name: str, cls: Any, method: Any) -> None:
    """``strategy.compression`` on a strategy that cannot apply it: the one rule
    (:func:`deepseek.training.grad_compression.compression_problem`), naming the strategies that can."""
    from deepseek.training.grad_compression import compression_problem
    from deepseek.training.strategy import Strategy

    offered, seen = [], set()
    for other in lookups.names("strategy"):
        try:
            other_cls = lookups.resolve("strategy", other).load()
        except Exception:  # noqa: BLE001  (a broken or ambiguous plugin must not hide this message)
            continue
        if isinstance(other_cls, type) and issubclass(other_cls, Strategy) and other_cls.supports_compression \
                and other_cls not in seen:
            seen.add(other_cls)
            offered.append(f"{other} ({', '.join(other_cls.supports_compression)})")
    problem = compression_problem(name, cls, method, offered)
    if problem:
        raise ConfigError(problem)


DEFAULT_MIN_LR = 1e-4
"""The largest default ``train.min_lr`` (``lr / 20`` below it)."""
DEFAULT_WARMUP_STEPS = 30
"""The largest default ``train.warmup_steps`` (a tenth of ``max_steps`` below it)."""


def resolve_train(train: Any) -> Any:
    """``[train]`` with the keys whose default follows other keys filled in: ``min_lr`` (``lr /
    20``, at most :data:`DEFAULT_MIN_LR`: a fine-tuning rate of 1e-5 gets 5e-7, where a fixed
    1e-4 was refused as above ``lr``) and ``warmup_steps`` (``max_steps // 10``, at most
    :data:`DEFAULT_WARMUP_STEPS`: a 20-step run warms up for 2 steps, not for 30 it never
    reaches)."""
    filled: dict[str, Any] = {}
    if train.min_lr is None:
        filled["min_lr"] = min(DEFAULT_MIN_LR, train.lr / 20)
    if train.warmup_steps is None:
        filled["warmup_steps"] = min(DEFAULT_WARMUP_STEPS, train.max_steps // 10)
    return dataclasses.replace(train, **filled) if filled else train


def check_config(config: Config) -> None:
    """Core's cross-field checks (one ConfigError naming the fields and the fix)."""
    t, d = config.train, config.data
    if d.batch_size % t.grad_accum:
        raise ConfigError(
            f"train.grad_accum: data.batch_size={d.batch_size} is not divisible by "
            f"train.grad_accum={t.grad_accum}; make the batch a multiple of grad_accum"
        )
    if t.min_lr > t.lr:
        raise ConfigError(f"train.min_lr: {t.min_lr} is above train.lr={t.lr}; set min_lr <= lr")
    p = config.precision
    if p.master_weights:
        if p.dtype not in ("bf16", "auto"):
            raise ConfigError(f"precision.master_weights: keeps bf16 parameters, but precision.dtype is {p.dtype!r}; "
                              "set precision.dtype = \"bf16\" or master_weights = false")
    check_no_validation(config)  # data.eval_batches = 0: settings that follow evaluations
