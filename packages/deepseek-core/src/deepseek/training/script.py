"""Training your own ``nn.Module`` on your own torch dataset from a script: :func:`fit` and
:func:`evaluate` (exported as ``deepseek.fit`` / ``deepseek.evaluate``).

There is no second training loop here. :func:`fit` registers the model and the data as the
components ``script`` (model) and ``script`` (dataset) of an in-process plugin on a fresh
:class:`~deepseek.plugins.host.PluginHost` (the process's host is left alone), builds the config
from the arguments, and runs the ordinary :class:`~deepseek.training.trainer.Trainer`: every
strategy, checkpoint layout, resume rule, lifecycle hook and guard applies unchanged.

The model: an ``nn.Module`` *instance*, or a zero-argument callable (a class, a lambda) that
builds one. A callable is called after seeding with ``train.seed`` on every rank, so every rank
and every strategy start from the same weights (as with registered models). An instance was
built by the script before; under several processes its weights are broadcast from rank 0 when
the model is built, so the ranks agree even when the script did not seed. The model follows the
model protocol (``docs/plugins.md``): ``model(**batch)`` returns the loss, or a mapping with
``"loss"`` and scalar metrics; subclass :class:`~deepseek.models.protocol.TrainableModel` to
offer capabilities (activation checkpointing, pipeline stages).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek import api_args
from deepseek.config.components import NoOptions
from deepseek.errors import UsageError
from deepseek.hookspecs import hookimpl
from deepseek.models.protocol import BuildsComponents
from deepseek.plugins import calls
from deepseek.plugins.catalogue import SCRIPT_COMPONENT

if TYPE_CHECKING:
    from torch import nn

    from deepseek.config.schema import Config
    from deepseek.plugins.host import PluginHost
    from deepseek.training.result import TrainResult

SCRIPT_NAME = SCRIPT_COMPONENT
"""Name under which :func:`fit` registers the script's model and dataset (seen in config.toml)."""
SCRIPT_DIST = calls.SCRIPT_DIST
"""Distribution name of that in-process plugin (``deepseek plugins list`` style reports)."""
DEFAULT_BATCH_SIZE = 32
"""Rows per step of :func:`fit` (and :func:`evaluate`) when neither the call nor the config gives one."""


class ScriptModel(BuildsComponents):
    """Model target of a script's model object (see the module docstring)."""

    Options = NoOptions

    def __init__(self, model: Any) -> None:
        from torch import nn

        if not (isinstance(model, nn.Module) or callable(model)):
            raise UsageError(
                f"model: expected a torch.nn.Module or a zero-argument callable building one, got "
                f"{type(model).__name__}"
            )
        if not isinstance(model, nn.Module):
            _check_zero_arguments(model)
        self.model = model

    def __call__(self, options: Any, *, host: Any = None) -> nn.Module:
        from torch import nn

        if isinstance(self.model, nn.Module):
            _check_materialised(self.model)
            _sync_from_rank_zero(self.model)
            return self.model
        built = self.model()
        if not isinstance(built, nn.Module):
            raise UsageError(f"model: the callable returned {type(built).__name__}, not a torch.nn.Module")
        _check_materialised(built)
        return built


def _check_zero_arguments(build: Callable[..., Any]) -> None:
    """``build`` (``fit``'s ``model=`` callable) can be called with no arguments, or one line
    saying how to pass the options it requires (a class whose ``__init__`` takes them)."""
    import inspect

    try:
        signature = inspect.signature(build)
    except (TypeError, ValueError):  # a builtin without a signature: called as it is
        return
    try:
        signature.bind()
    except TypeError:
        needed = [p.name for p in signature.parameters.values()
                  if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        label = getattr(build, "__qualname__", type(build).__name__)
        raise UsageError(f"model: {label} needs the argument(s) {', '.join(needed)}, and fit calls it with none; pass "
                         f"lambda: {label}(...) with them, or an instance") from None


def _check_materialised(model: nn.Module) -> None:
    """The script's model holds values: one on the ``meta`` device (shapes only) is one line."""
    meta = next((n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta), None)
    if meta is not None:
        raise UsageError(f"model: {type(model).__name__}'s {meta!r} is on the meta device (a shape without values); "
                         "build the model on the CPU, or give it weights first (to_empty(device='cpu') and "
                         "load_state_dict)")


def _sync_from_rank_zero(model: nn.Module) -> None:
    """Under several processes, give every rank rank 0's parameters and buffers."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    state = [model.state_dict() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(state, src=0)
    model.load_state_dict(state[0])  # type: ignore[arg-type]


def script_dataset(data: Any, val: Any, wrap: Mapping[str, Any]) -> type:
    """Dataset target of a script's data: a :class:`~deepseek.data.dataset.Dataset` subclass as it
    is, or a torch dataset bound into a subclass of :class:`~deepseek.data.torch_data.TorchData`
    (created as ``cls(options, batch_size=, seed=)`` like every registered dataset)."""
    from deepseek.data.dataset import Dataset
    from deepseek.data.torch_data import TorchData, check_options, check_source

    if isinstance(data, type) and issubclass(data, Dataset):
        if val is not None or wrap:
            raise UsageError("val_data/names/collate_fn: a deepseek Dataset class brings its own validation "
                             "batches and collation; pass only data=")
        return data
    if isinstance(data, Dataset):
        raise UsageError(f"data: pass the deepseek Dataset class ({type(data).__name__}), not an instance: "
                         "every rank creates it with the run's batch_size and seed")
    check_source(data, "data")
    if val is not None:
        check_source(val, "val_data")
    check_options(**{k: v for k, v in wrap.items() if k != "validation"})
    bound = dict(wrap)

    class ScriptData(TorchData):
        """The script's torch dataset (registered by deepseek.fit)."""

        def __init__(self, options: Any, *, batch_size: int, seed: int) -> None:
            super().__init__(data, batch_size=batch_size, seed=seed, val=val, **bound)

    return ScriptData


class _ScriptPlugin:
    def __init__(self, model: ScriptModel, data: type) -> None:
        self.model, self.data = model, data

    @hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register(SCRIPT_NAME, self.model, description="the model object of a training script (deepseek.fit)")

    @hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register(SCRIPT_NAME, self.data, description="the data object of a training script (deepseek.fit)")


def script_host(model: Any, data: Any, *, val_data: Any = None, wrap: Mapping[str, Any] | None = None,
                host: PluginHost | None = None) -> PluginHost:
    """A new host with ``host``'s settings and plugins, those registered in-process included
    (default: the process's host), plus the script's model and data registered as ``script``."""
    from deepseek.errors import PluginError
    from deepseek.plugins.host import get_host

    fresh = (api_args.host(host) or get_host()).derived()
    record = fresh.register_plugin(_ScriptPlugin(ScriptModel(model), script_dataset(data, val_data, wrap or {})),
                                   dist=SCRIPT_DIST, name="script")
    if record.status != "ok":
        raise PluginError(f"deepseek.fit: registering the script's model and data failed: {record.reason}")
    return fresh


def config_data(config: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """``config`` of :func:`fit` as plain data: a TOML file read, a mapping's sections copied."""
    from deepseek.config.load import read_toml

    if config is None:
        return {}
    if isinstance(config, (str, Path)):
        return read_toml(Path(config))
    if isinstance(config, Mapping):
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in config.items()}
    raise UsageError(f"config: expected a TOML file path or a mapping of sections, got {type(config).__name__}")


def validation_off(data: Mapping[str, Any]) -> bool:
    """Whether the config data of :func:`fit` (:func:`config_data`) turns validation off:
    ``data.eval_batches = 0`` (a value the config then refuses, a bool, is not taken for it)."""
    table = data.get("data")
    count = table.get("eval_batches") if isinstance(table, Mapping) else None
    return type(count) is int and count == 0


def script_config(config: str | Path | Mapping[str, Any] | None, *, batch_size: int | None, strategy: str | None,
                  host: PluginHost, data_options: bool = False, epochs: tuple[int, int | None] | None = None) -> Config:
    """The run's config: ``config`` (a TOML file or a mapping of sections), with ``[model]`` and
    ``[data]`` naming the script's objects, ``data.batch_size`` (``batch_size``, else the
    config's, else :data:`DEFAULT_BATCH_SIZE`; the two disagreeing is refused) and the strategy by
    name. ``data_options``: the data is a Dataset class whose own keys ``[data]`` may set.
    ``epochs``: ``(max_epochs, training rows per epoch)``: see :func:`epoch_settings`."""
    from deepseek.config.load import config_from_dict

    data = config_data(config)
    for section in ("model", "data"):
        table = data.get(section) or {}
        keep = ("name", "batch_size", "eval_batches")
        extra = sorted(k for k in table if k not in keep and not (section == "data" and data_options))
        if table.get("name", SCRIPT_NAME) != SCRIPT_NAME or extra:
            raise UsageError(
                f"config: [{section}] comes from the script's objects in deepseek.fit; leave "
                f"{section}.name{' and ' + ', '.join(f'{section}.{k}' for k in extra) if extra else ''} out"
            )
    stated = (data.get("data") or {}).get("batch_size")
    if batch_size is not None and stated is not None and stated != batch_size:
        raise UsageError(f"batch_size: fit(batch_size={batch_size}) and the config's [data] batch_size = {stated!r} "
                         "differ; give the batch size in one of them")
    data["model"] = {"name": SCRIPT_NAME}
    data["data"] = {**(data.get("data") or {}), "name": SCRIPT_NAME,
                    "batch_size": batch_size if batch_size is not None else stated if stated is not None
                    else DEFAULT_BATCH_SIZE}
    if strategy is not None:
        data["strategy"] = {**(data.get("strategy") or {}), "name": strategy}
    if epochs is not None:
        epoch_settings(data, *epochs)
    return config_from_dict(data, host=host)


def epoch_settings(data: dict[str, Any], max_epochs: int, rows: int | None) -> None:
    """Set the run's length in epochs of ``rows`` training samples (Lightning's ``max_epochs``):
    ``train.max_steps`` covers ``max_epochs * rows`` samples, and, unless the config sets them,
    the run evaluates (``train.eval_interval``, unless ``data.eval_batches = 0`` turns validation
    off) and checkpoints (``checkpoint.interval``) once per epoch. Batches run on across epoch ends (every batch is full), so an epoch is
    ``rows / data.batch_size`` steps, rounded up."""
    import math

    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise UsageError(f"max_epochs: must be a positive integer, got {max_epochs!r}")
    if rows is None:
        raise UsageError("max_epochs: the data is an IterableDataset (or a deepseek Dataset class), whose length is "
                         "not known; give the run's length as config train.max_steps instead")
    train = data.setdefault("train", {})
    if "max_steps" in train:
        raise UsageError(f"max_epochs: and the config's train.max_steps = {train['max_steps']!r} both set the run's "
                         "length; give one of them")
    size = data["data"]["batch_size"]
    per_epoch = math.ceil(rows / size)
    train["max_steps"] = math.ceil(max_epochs * rows / size)
    if not validation_off(data):
        train.setdefault("eval_interval", per_epoch)
    data.setdefault("checkpoint", {}).setdefault("interval", per_epoch)


def fit(
    model: nn.Module | Callable[[], nn.Module],
    data: Any,
    *,
    val_data: Any = None,
    batch_size: int | None = None,
    strategy: str | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    names: Sequence[str] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    shuffle: bool = True,
    val_fraction: float = 0.1,
    max_epochs: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    quiet: bool = False,
    host: PluginHost | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with the ordinary trainer and return its
    :class:`~deepseek.training.result.TrainResult`.

    ``data``/``val_data``: torch datasets (map-style or iterable; see
    :mod:`deepseek.data.torch_data` for order, splits and resume; ``names``, ``collate_fn``,
    ``shuffle``, ``val_fraction``, ``num_workers`` and ``pin_memory`` are its options), or ``data`` a
    :class:`~deepseek.data.dataset.Dataset` subclass (its own keys in ``config["data"]``).
    ``config["data"]["eval_batches"] = 0`` trains without validation: nothing is held out of
    ``data``, ``val_data`` is not needed (nor read), and the result has no ``val_*`` values.
    ``strategy``: a registered strategy by name (``single``; with deepseek-pro ``ddp``, ``fsdp``,
    ``deepspeed``, ... under ``deepseek launch -n N -- run script.py``). ``config``: the rest of
    the run's settings, a TOML file or ``{"train": {"max_steps": 100, "lr": 1e-3}, ...}``.
    ``batch_size``: rows per step (default: ``config``'s ``[data] batch_size``, else
    :data:`DEFAULT_BATCH_SIZE`). ``max_epochs``: the run's length in passes over a map-style
    ``data`` (:func:`epoch_settings`), instead of ``train.max_steps``. ``run_dir``/``resume``: as ``deepseek train --run-dir`` / ``--resume`` (a run folder or
    checkpoint). ``host``: whose settings and plugins to use (default: the process's)."""
    from deepseek.training.checkpoint import list_checkpoints
    from deepseek.training.trainer import Trainer

    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise UsageError(f"batch_size: must be a positive integer, got {batch_size!r}")
    run_dir = None if run_dir is None else api_args.path(run_dir, "run_dir")
    resume = None if resume is None else api_args.path(resume, "resume")
    quiet = api_args.flag(quiet, "quiet")
    from deepseek.data.dataset import Dataset

    own_class = isinstance(data, type) and issubclass(data, Dataset)
    settings = config_data(config)  # data.eval_batches = 0 (validation off): nothing held out, no val_data needed
    validation = not validation_off(settings)
    wrap = {} if own_class else {"names": names, "collate_fn": collate_fn, "shuffle": shuffle, "validation": validation,
                                 "val_fraction": val_fraction, "num_workers": num_workers, "pin_memory": pin_memory}
    lookups = script_host(model, data, val_data=val_data, wrap=wrap, host=host)  # registers only: nothing runs yet
    if run_dir is not None:  # a file in the way, a run's own place, an unwritable folder: named as fit's argument
        from deepseek.paths import check_output

        check_output(run_dir, where="run_dir", folder=True, host=lookups)  # the run's host: its plugins' run files
    if run_dir is not None and resume is None and list_checkpoints(Path(run_dir) / "checkpoints"):
        raise UsageError(f"run_dir: {str(run_dir)!r} already holds a run (a second run of the script?); continue it "
                         f"with resume={str(run_dir)!r}, or give another run_dir")
    from deepseek.data.torch_data import training_rows

    epochs = None if max_epochs is None else (max_epochs, None if own_class else training_rows(
        data, val_data, val_fraction, validation))
    cfg = script_config(settings, batch_size=batch_size, strategy=strategy, host=lookups, data_options=own_class,
                        epochs=epochs)
    from deepseek.errors import RunComplete

    try:
        return Trainer(cfg, run_dir=run_dir, resume=resume, quiet=quiet, host=lookups).fit()
    except RunComplete as done:  # a requeued script finding its run done: said, and the run's result
        from deepseek.data.tokenizer import run_folder_of
        from deepseek.training.run_folder import edited_length_note

        run = run_dir if run_dir is not None else run_folder_of(Path(done.checkpoint))
        # its config.toml edited to train longer: said, as deepseek train says it, in the call's words
        return finished_result(done, edited_length_note(run, cfg.to_dict(), resume=resume))


class RunCompleteWarning(UserWarning):
    """``deepseek.fit(resume=...)`` of a run with nothing left to train: it returned that run's result."""


def finished_result(done: Any, note: str = "") -> TrainResult:
    """The result of a complete run that ``fit`` was asked to resume (:class:`~deepseek.errors.RunComplete`
    ``done``): nothing trained in this call (``losses`` empty, ``resumed_at`` its step), the values
    of its last step and evaluation as its checkpoint recorded them; warns with ``done``'s line and
    ``note`` (:func:`~deepseek.training.run_folder.edited_length_note`)."""
    import os
    import warnings

    from deepseek.data.tokenizer import run_folder_of
    from deepseek.training.checkpoint import read_trainer_state
    from deepseek.training.result import TrainResult
    from deepseek.training.run_state import best_as_of

    warnings.warn(f"{done}{note}", RunCompleteWarning, stacklevel=3)
    directory = Path(done.checkpoint)
    state = read_trainer_state(directory)  # read and checked when the resume was refused
    metrics = {k: v for k, v in (state.get("metrics") or {}).items() if isinstance(v, (int, float))}
    monitor = state.get("monitor")
    return TrainResult(run_folder_of(directory), done.step, metrics, checkpoint=directory,
                       is_global_zero=os.environ.get("RANK", "0") == "0",
                       val_metrics={k: v for k, v in metrics.items() if k.startswith("val_")},
                       monitor=monitor if isinstance(monitor, dict) else {}, ended_early=done.ended_early,
                       resumed_at=done.step, best_checkpoint=best_as_of(directory, done.step))
