"""Building what a run needs from its config: model, optimizer factory, schedule, dataset, precision.

The model is built on the CPU in fp32 right after seeding, before any strategy moves or shards it,
so every strategy starts from the same weights. Components are resolved on the run's plugin host
with the config's ``[plugins] prefer`` (:meth:`deepseek.plugins.host.PluginHost.with_preference`).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepseek.config.schema import Config
from deepseek.training.mixed_precision import Precision
from deepseek.training.strategy import Strategy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from deepseek.data.dataset import Dataset
    from deepseek.plugins.host import PluginHost
    from deepseek.training.optimizers import OptimizerBuilder
    from deepseek.training.schedule import LRSchedule
    from deepseek.training.strategy import OptimizerFactory


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's generators (CPU and CUDA)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_host(config: Config, host: PluginHost | None = None) -> PluginHost:
    """The lookups of this run: ``host`` (default: the process's) with the config's precedence."""
    from deepseek.plugins.host import get_host

    return (host or get_host()).with_preference(config.plugins.prefer)


def needed_capabilities(
    config: Config, strategy_cls: Any = None, host: PluginHost | None = None
) -> dict[str, tuple[str, str]]:
    """Model capabilities this config asks for: capability -> (the setting, how to do without;
    for a strategy's needs, the registered strategies on ``host`` of the same kind (one process
    or a launcher's several) that need no model capability)."""
    needed: dict[str, tuple[str, str]] = {}
    if config.train.activation_checkpointing:
        needed["activation_checkpointing"] = ("train.activation_checkpointing = true", "set it to false")
    if not config.precision.fp32_residual:
        needed["residual_dtype"] = ("precision.fp32_residual = false", "set it to true")
    if strategy_cls is not None:
        required = strategy_cls.required_capabilities(config)
        if required:
            others = strategies_where(host, lambda cls: cls.needs_launcher == strategy_cls.needs_launcher
                                      and not cls.required_capabilities(config))
            instead = f"use another strategy ({', '.join(others)})" if others else "use another strategy"
            for capability, reason in required.items():
                needed[capability] = (reason, instead)
    return needed


def build_model(
    config: Config,
    *,
    host: PluginHost | None = None,
    device: torch.device | None = None,
    strategy_cls: Any = None,
    create_on: torch.device | None = None,
) -> nn.Module:
    """The ``[model]`` component with its options, seeded with ``train.seed``, in fp32: on the
    CPU, or on ``device`` when ``train.init_device = "device"``, or on ``create_on`` when given
    (``meta``: shapes only). Capabilities the config (and ``strategy_cls``) asks for are checked
    here."""
    from deepseek.models.capabilities import require_capabilities
    from deepseek.models.factory import instantiate_model

    seed_everything(config.train.seed)
    where = device if device is not None and config.train.init_device == "device" else torch.device("cpu")
    where = create_on if create_on is not None else where
    lookups = run_host(config, host)
    from deepseek.plugins.calls import blames

    component = lookups.resolve("model", config.model.name)
    model = instantiate_model(component.load(), config.model.options, name=config.model.name, device=where,
                              host=lookups, label=component.label if blames(component) else None).float()
    require_capabilities(model, needed_capabilities(config, strategy_cls, host), model_name=config.model.name)
    if config.train.init_from and where.type != "meta":
        load_initial_weights(model, config.train.init_from, host=lookups)
    return model


def load_initial_weights(model: nn.Module, source: str, *, host: PluginHost | None = None) -> None:
    """``train.init_from``: copy a run's, checkpoint's or exported file's model weights, or a
    Hugging Face GPT-2 folder's (docs/interop.md), into ``model`` (checked against its shapes,
    one line naming the mismatch). ``host``: the run's plugin host, on which a sharded
    checkpoint's ``sharded.json`` groups are checked (default: the process's)."""
    from pathlib import Path

    from deepseek.interop.hf_import import is_gpt2_folder, load_gpt2_into
    from deepseek.training.checkpoint import load_into_model, resolve_checkpoint

    path = Path(source)
    if is_gpt2_folder(path):
        load_gpt2_into(model, path)
        return
    load_into_model(model, path if path.is_file() else resolve_checkpoint(path), host)


def prepare_model(model: nn.Module, config: Config) -> nn.Module:
    """Apply activation checkpointing, the residual dtype and ``torch.compile`` (per block when the
    model offers blocks and ``train.compile_scope`` is ``blocks``, else the whole model; in place:
    parameter names do not change) before the strategy wraps the
    model, as torchtitan orders them. The capabilities were checked by :func:`build_model`."""
    from deepseek.models.capabilities import model_capabilities

    if config.train.activation_checkpointing:
        model.set_activation_checkpointing(True)  # type: ignore[operator]
    if not config.precision.fp32_residual:
        model.set_fp32_residual(False)  # type: ignore[operator]
    if config.train.compile:
        if config.train.compile_scope == "blocks" and "blocks" in model_capabilities(model):
            for block in model.block_modules():  # type: ignore[operator]
                block.compile()
        else:
            model.compile()
    return model


def build_precision(config: Config) -> Precision:
    """The ``[precision]`` section as a :class:`Precision` (``auto`` resolves on ``bind``)."""
    p = config.precision
    return Precision(p.dtype, init_scale=p.init_scale, growth_interval=p.growth_interval)


def optimizer_factory(config: Config, *, host: PluginHost | None = None,
                      names: Mapping[int, str] | None = None) -> OptimizerFactory:
    """The run's optimizer factory: the registered ``[optimizer]`` (an
    :class:`~deepseek.training.optimizers.OptimizerBuilder`, resolved on ``host``) over the
    parameters a strategy hands in, at ``train.lr``, with weight decay on matrices (``ndim >= 2``)
    only.

    Parameter groups handed in (dicts) are used as they are. Group order is fixed (decay, then
    no decay; both always present) so optimizer checkpoints line up across strategies. With
    ``precision.master_weights`` the builder keeps fp32 masters of bf16 parameters (AdamW:
    :class:`~deepseek.training.master_weights.MasterWeightAdamW`) and adds ``train.grad_accum``
    micro-batches' gradients in fp32. ``names`` (``id -> name`` of the model's parameters) names
    the plain parameters a strategy may pass, for ``[[optimizer.groups]]``.
    """
    from deepseek.training.optimizers import GroupedOptimizerFactory

    t = config.train
    builder = create_optimizer_builder(config, host)
    return GroupedOptimizerFactory(builder, lr=t.lr, weight_decay=config.optimizer.weight_decay,
                                   master_weights=config.precision.master_weights, accumulation=t.grad_accum,
                                   label=builder.label, rules=config.optimizer.groups, names=dict(names or {}))


def create_optimizer_builder(config: Config, host: PluginHost | None = None) -> OptimizerBuilder:
    """The ``[optimizer]`` component of ``config``, created from its validated options (its
    ``label`` names the component and its distribution)."""
    from deepseek.config.components import load_checked
    from deepseek.plugins.calls import class_calls

    component = run_host(config, host).resolve("optimizer", config.optimizer.name)
    cls = load_checked("optimizer", component)
    with class_calls(component, "__init__"):  # a plugin's bug: one line naming it; core's keep their traceback
        builder = cls(config.optimizer.options, config.optimizer)
    builder.label = component.label
    return builder


def build_schedule(config: Config, host: PluginHost | None = None) -> LRSchedule:
    """The ``[lr_schedule]`` component with ``[train]``'s numbers (``decay_steps`` defaults to
    ``max_steps``)."""
    from deepseek.config.components import load_checked

    t = config.train
    component = run_host(config, host).resolve("lr_schedule", config.lr_schedule.name)
    from deepseek.plugins.calls import class_calls

    cls = load_checked("lr_schedule", component)
    with class_calls(component, "__init__"):  # a plugin's bug: one line naming it; core's keep their traceback
        schedule = cls(config.lr_schedule.options, lr=t.lr, min_lr=t.min_lr, warmup_steps=t.warmup_steps,
                       decay_steps=t.decay_steps or t.max_steps)
    schedule.label = component.label
    return schedule


def build_dataset(config: Config, host: PluginHost | None = None) -> Dataset:
    """The ``[data]`` component: global batches of ``data.batch_size`` rows, seeded with
    ``train.seed``; its ``validation_batches`` are the fixed evaluation set."""
    component = run_host(config, host).resolve("dataset", config.data.name)
    cls = component.load()
    options = config.data.options if config.data.options is not None else cls.Options()
    from deepseek.plugins.calls import blames, class_calls

    label = component.label if blames(component) else None
    with class_calls(component, "__init__"):  # a plugin's bug: one line naming it; core's keep their traceback
        dataset = cls(options, batch_size=config.data.batch_size, seed=config.train.seed)
    from deepseek.data.codec import dataset_codec
    from deepseek.data.dataset import labelled

    dataset_codec(cls, options, label)  # its text codec, if any, checked when created (generate uses it)
    return labelled(dataset, label)


def strategies_where(host: Any, keep: Any) -> list[str]:
    """Names of the registered strategies (one name per class, aliases left out) whose class
    passes ``keep``; a plugin that fails to load is left out."""
    from deepseek.plugins.host import get_host

    lookups = host or get_host()
    names, seen = [], set()
    for comp in lookups.components("strategy"):
        try:
            cls = comp.load()
        except Exception:  # noqa: BLE001 - a hint never fails on a broken plugin
            continue
        if isinstance(cls, type) and issubclass(cls, Strategy) and cls not in seen and keep(cls):
            seen.add(cls)
            names.append(comp.name)
    return names
