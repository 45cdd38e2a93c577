"""timm-style lookups over everything registered: ``create_x`` and ``list_x``."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from deepseek.api_args import real, whole
from deepseek.errors import UsageError
from deepseek.plugins.host import get_host


def _list(kind: str, pattern: str | None) -> list[str]:
    if pattern is not None and not isinstance(pattern, str):
        raise UsageError(f"pattern: expected a glob such as 'gpt*' (a str) or None, got {pattern!r:.60}")
    names = get_host().names(kind)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def list_strategies(pattern: str | None = None) -> list[str]:
    """Names of registered parallelism strategies (aliases included), optionally filtered by glob."""
    return _list("strategy", pattern)


def create_strategy(name: str, /, *, precision: Any = None, **options: Any) -> Any:
    """The strategy registered as ``name`` (``dist:name`` picks one distribution's), not yet set
    up, with its ``[strategy]`` keys as keyword arguments (validated by its ``Options``; errors
    name ``strategy.<key>``), computing in ``precision``: a
    :class:`~deepseek.training.mixed_precision.Precision` or a ``precision.dtype`` name
    (default ``"auto"``)."""
    from deepseek.config.components import build_options, load_checked
    from deepseek.plugins.calls import created
    from deepseek.training.mixed_precision import Precision

    host = get_host()
    component = host.resolve("strategy", name)
    keys = build_options(load_checked("strategy", component), options, kind="strategy", name=name, path="strategy")
    if not isinstance(precision, Precision):
        precision = Precision("auto" if precision is None else precision)
    return created(component, keys, precision=precision, host=host)


def list_passes(pattern: str | None = None) -> list[str]:
    """Names of registered graph-optimizer passes."""
    return _list("pass", pattern)


def create_pass(name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Instantiate the graph pass registered as ``name``."""
    return get_host().create("pass", name, *args, **kwargs)


def list_encoders(pattern: str | None = None) -> list[str]:
    """Names of registered modality encoders."""
    return _list("encoder", pattern)


def create_encoder(name: str, /, *, device: Any = None, **options: Any) -> Any:
    """Build the encoder registered as ``name`` with its keys as keyword arguments (validated by
    its ``Options``; errors name ``encoder.<name>.<key>``), held to the encoder contract
    (:func:`deepseek.models.encoder.check_encoder`)."""
    from deepseek.models.factory import instantiate_model

    device = _device(device)
    component = get_host().resolve("encoder", name)
    return instantiate_model(component.load(), options, name=name, device=device, kind="encoder",
                             path=f"encoder.{name}", label=component.label)


def _device(device: Any) -> Any:
    """``create_model``'s and ``create_encoder``'s ``device``: ``None`` (the current default
    device), ``"meta"`` (no memory), or a device this machine has (one line naming ``device``
    otherwise, not the model's ``__init__`` blamed for torch's error)."""
    from deepseek.api_args import device as checked

    if device is None or str(device) == "meta":
        return device
    return checked(device, "device")


def list_models(pattern: str | None = None) -> list[str]:
    """Names of registered models."""
    return _list("model", pattern)


def create_model(name: str, /, *, device: Any = None, **options: Any) -> Any:
    """Build the model registered as ``name`` with its ``[model]`` keys as keyword arguments
    (validated by the model's ``Options``), on ``device`` (``"meta"``: no memory) or the
    current default device."""
    from deepseek.models.factory import registered_model

    return registered_model(get_host(), name, options, device=_device(device))


def list_datasets(pattern: str | None = None) -> list[str]:
    """Names of registered datasets."""
    return _list("dataset", pattern)


def create_dataset(name: str, /, *, batch_size: int, seed: int = 0, **options: Any) -> Any:
    """The dataset registered as ``name`` with its ``[data]`` keys as keyword arguments (validated
    by its ``Options``; errors name ``data.<key>``), as a run creates it: global batches of
    ``batch_size`` rows, shuffled from ``seed``."""
    from deepseek.config.components import build_options
    from deepseek.plugins.calls import created

    whole(batch_size, "batch_size", minimum=1)
    if whole(seed, "seed") >= 2**32:
        raise UsageError(f"seed: must be from 0 to 4294967295 (as train.seed), got {seed}")
    component = get_host().resolve("dataset", name)
    keys = build_options(component.load(), options, kind="dataset", name=name, path="data")
    from deepseek.data.codec import dataset_codec
    from deepseek.data.dataset import labelled

    dataset = labelled(created(component, keys, batch_size=batch_size, seed=seed), component.label)
    dataset_codec(type(dataset), dataset.options, component.label)  # its text codec, if any, checked when created
    return dataset


def list_trackers(pattern: str | None = None) -> list[str]:
    """Names of registered experiment trackers."""
    return _list("tracker", pattern)


def create_tracker(name: str, /, **options: Any) -> Any:
    """The experiment tracker registered as ``name`` with its ``[trackers.<name>]`` keys as keyword
    arguments (validated by its ``Options``; errors name ``trackers.<name>.<key>``), not started."""
    from deepseek.tracking.resolve import build_tracker

    return build_tracker(get_host(), name, options)


def list_optimizers(pattern: str | None = None) -> list[str]:
    """Names of registered optimizers."""
    return _list("optimizer", pattern)


def create_optimizer(name: str, /, params: Any, *, lr: float, **keys: Any) -> Any:
    """A ``torch.optim.Optimizer`` from the optimizer registered as ``name`` over ``params`` (a
    model's ``named_parameters()`` or ``parameters()``: weight decay on the matrices only, as in
    training; or parameter groups) at learning rate ``lr``; ``keys`` are ``[optimizer]`` keys, the
    shared ones (``weight_decay``, ``betas``, ``groups``: its rules need named parameters) and its
    own, validated as in a config (errors name ``optimizer.<key>``). Each group's ``lr`` is ``lr``
    times its ``lr_scale`` at the start; a loop that changes the rate sets it the same way."""
    from deepseek.config.load import config_from_dict
    from deepseek.training.build import optimizer_factory

    config = config_from_dict({"optimizer": {"name": name, **keys}, "train": {"lr": lr}}, validate=False,
                              host=get_host())
    try:
        items = list(params.items() if isinstance(params, Mapping) else params)
    except TypeError:
        raise UsageError(f"params: expected the parameters to optimize (model.named_parameters() or "
                         f"model.parameters()), got {type(params).__name__}") from None
    if config.optimizer.groups:
        _check_named(items, config.optimizer.groups)
    return optimizer_factory(config, host=get_host())(items)


def _check_named(items: list[Any], rules: Any) -> None:
    """``create_optimizer``'s ``groups``: the parameters must come with names, and every rule must
    take one of them (as ``[[optimizer.groups]]`` in a run)."""
    from deepseek.errors import UsageError
    from deepseek.training.param_groups import check_group_rules, is_named

    if not items or not is_named(items):
        got = "no parameters" if not items else "parameter groups" if isinstance(items[0], dict) else "unnamed parameters"
        raise UsageError(f"create_optimizer: groups= matches parameter names, and params holds {got}; pass "
                         "model.named_parameters()")
    check_group_rules(rules, [n for n, _ in items])


def list_lr_schedules(pattern: str | None = None) -> list[str]:
    """Names of registered learning-rate schedules."""
    return _list("lr_schedule", pattern)


def create_lr_schedule(name: str, /, *, lr: float, min_lr: float = 0.0, warmup_steps: int = 0,
                       decay_steps: int, **options: Any) -> Any:
    """The learning-rate schedule registered as ``name`` (``schedule.lr_at(step)``), its own keys
    as keyword arguments (validated by its ``Options``; errors name ``lr_schedule.<key>``)."""
    from deepseek.config.components import build_options, load_checked
    from deepseek.config.field_checks import learning_rate
    from deepseek.plugins.calls import created

    problem = learning_rate(real(lr, "lr"))  # train.lr's one rule: a config and this call take the same rates
    if problem:
        raise UsageError(f"lr: {problem}, got {lr!r}")
    if real(min_lr, "min_lr", low=0.0) > lr:
        raise UsageError(f"min_lr: {min_lr} is above lr {lr}; the floor of the decay must be at most the peak rate")
    whole(warmup_steps, "warmup_steps")
    whole(decay_steps, "decay_steps")
    component = get_host().resolve("lr_schedule", name)
    opts = build_options(load_checked("lr_schedule", component), options, kind="lr_schedule", name=name,
                         path="lr_schedule")
    return created(component, opts, lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, decay_steps=decay_steps)


def list_components(kind: str, pattern: str | None = None) -> list[str]:
    """Names of registered components of any kind, including kinds that plugins add
    (``list_components("compressor")``)."""
    get_host().check_kind(kind)
    return _list(kind, pattern)


def create_component(kind: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Create the component ``name`` of any kind (``dist:name`` picks one distribution's)."""
    return get_host().create(kind, name, *args, **kwargs)
