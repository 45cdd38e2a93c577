"""A user's own DeepSpeed JSON (``strategy.config_path``): read, checked against the run's config,
and its ``"auto"`` values filled in.

The file is passed to DeepSpeed as it is, except for what the trainer owns: the batch keys (set
from the trainer's batches), ``gradient_clipping`` (``train.grad_clip``), and ``"auto"`` values,
the convention of Hugging Face's Trainer, which are filled in from the run's config where the
config has the value (:data:`AUTO_FROM`); an ``"auto"`` anywhere else is refused naming its key.
Where the file states a setting the run's config also states (the ZeRO stage, bf16 or fp16),
the two must agree, so that the run's resolved ``config.toml`` says what ran. A ``scheduler``
is refused: deepseek's ``[lr_schedule]`` sets the learning rate every step. An ``optimizer.type``
DeepSpeed would not build (an unknown name, one in the wrong case, a mup optimizer without mup)
is refused whenever the file is read (:func:`type_problem`): when the config loads, so that every
command and the Python API refuse it in the same line, and again by each later read (a file can
change between the config's load and a worker's start). What needs the run's device and model, a
type with no build for a device that is not a CUDA one or a mup optimizer over parameters without
mup's base shapes, is refused before ``deepseek launch`` starts a worker and by each rank at set-up
(:func:`run_problem`).

Nothing here imports deepspeed, nor torch but to list torch.optim's classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from deepseek.errors import ConfigError
from deepseek.parsing import UnreadableFile, loads_json, read_text

AUTO_FROM: dict[tuple[str, ...], str] = {
    ("train_micro_batch_size_per_gpu",): "the trainer's batches",
    ("gradient_accumulation_steps",): "train.grad_accum",
    ("train_batch_size",): "data.batch_size",
    ("gradient_clipping",): "train.grad_clip",
    ("bf16", "enabled"): "precision.dtype",
    ("fp16", "enabled"): "precision.dtype",
    ("zero_optimization", "stage"): "strategy.stage",
    ("zero_optimization", "reduce_bucket_size"): "strategy.reduce_bucket_size",
    ("zero_optimization", "stage3_prefetch_bucket_size"): "strategy.prefetch_bucket_size",
    ("zero_optimization", "stage3_param_persistence_threshold"): "strategy.param_persistence_threshold",
    ("zero_optimization", "stage3_max_live_parameters"): "strategy.max_live_parameters",
    ("optimizer", "params", "lr"): "[optimizer] / train.lr",
    ("optimizer", "params", "betas"): "[optimizer] betas",
    ("optimizer", "params", "eps"): "[optimizer] eps",
    ("optimizer", "params", "weight_decay"): "[optimizer] weight_decay",
}
"""Keys whose ``"auto"`` the run's config fills in, and where the value comes from."""


def not_a_file(path: str) -> ConfigError:
    """The line for a ``config_path`` that names no file."""
    return ConfigError(f"strategy.config_path: {path!r} is not a file; give a DeepSpeed JSON path")


def read_user_config(path: str, world_size: int) -> dict[str, Any]:
    """A user's DeepSpeed JSON, checked (:func:`check_user_file`), with the batch keys our step
    needs filled in (micro-batch size and accumulation are then set from the trainer's batches).
    Read with :func:`deepseek.parsing.read_text` at every read (the file may change after the
    config loaded): a FIFO or device (a plain read waits for a writer or never ends) and a file
    past 16 MiB are refused in one line, not read."""
    try:
        text = read_text(path)
    except IsADirectoryError as exc:
        raise not_a_file(path) from exc
    except UnreadableFile as exc:
        raise ConfigError(f"strategy.config_path: {path!r}: {exc}; give a DeepSpeed JSON path") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"strategy.config_path: cannot read DeepSpeed JSON {path!r} ({exc}); fix the file") from exc
    cfg = check_user_file(text, path)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        cfg[key] = 1 if cfg.get(key, 1) == "auto" else cfg.get(key, 1)
    cfg["train_batch_size"] = cfg["train_micro_batch_size_per_gpu"] * cfg["gradient_accumulation_steps"] * world_size
    cfg.setdefault("zero_allow_untested_optimizer", True)
    return cfg


TorchNames = Callable[[], Sequence[str] | None]
"""Who lists the ``torch.optim`` class names DeepSpeed trains with (:func:`torch_optimizers`, or
the job service's listing of them in a child process, which keeps torch out of the server);
``None`` from it: not known, a type that is not one of DeepSpeed's own is not held against them."""


def check_user_file(text: str, path: str, *, torch_names: TorchNames | None = None) -> dict[str, Any]:
    """The checks of a user's DeepSpeed JSON that need nothing but the file (``text``, read from
    ``path``), in this order, each one line: JSON, an object, ``zero_optimization``'s stage, no
    ``scheduler``, no ``"auto"`` the run cannot fill (:func:`check_auto`), the batch keys whole
    numbers >= 1 (or ``"auto"``), then the optimizer's type (:func:`type_problem`, a type that is
    not one of DeepSpeed's own held against ``torch_names()``, by default :func:`torch_optimizers`).
    The parsed file."""
    try:
        cfg = loads_json(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"strategy.config_path: cannot read DeepSpeed JSON {path!r} ({exc}); fix the file") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"strategy.config_path: {path!r} must hold a JSON object")
    zero = cfg.get("zero_optimization", {})
    stage = zero.get("stage", 0) if isinstance(zero, dict) else None
    if not isinstance(zero, dict) or isinstance(stage, bool) or stage not in (0, 1, 2, 3, "auto"):
        raise ConfigError(f"strategy.config_path: {path!r}: zero_optimization must be an object whose stage is 0, 1, 2 "
                          f"or 3, got {zero!r:.80}; fix the file")
    if "scheduler" in cfg:
        raise ConfigError(f"strategy.config_path: {path!r} has a scheduler, which would set the learning rate against "
                          "deepseek's [lr_schedule] (set every step); remove it from the file and choose the schedule "
                          "in [lr_schedule]")
    check_auto(cfg, path)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        value = cfg.get(key, 1)
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"strategy.config_path: {path!r}: {key} is {value!r}, where a whole number >= 1 (or "
                              "\"auto\") belongs; fix the file")
    problem = type_problem(cfg, path, torch_names=torch_names)
    if problem:
        raise ConfigError(problem)
    return cfg


def check_auto(cfg: dict[str, Any], path: str, at: tuple[str, ...] = ()) -> None:
    """ConfigError naming the first ``"auto"`` in ``cfg`` at a key the run cannot fill in."""
    for key, value in cfg.items():
        here = (*at, str(key))
        if isinstance(value, dict):
            check_auto(value, path, here)
        elif value == "auto" and here not in AUTO_FROM:
            known = ", ".join(".".join(k) for k in AUTO_FROM)
            raise ConfigError(f"strategy.config_path: {path!r}: {'.'.join(here)} is \"auto\", which deepseek cannot "
                              f"fill in (it fills {known}); give the value")


def check_agreement(cfg: dict[str, Any], path: str, *, stage: int, dtype: str | None) -> None:
    """ConfigError where the file states a ZeRO stage or a bf16/fp16 setting other than the run's
    config (``dtype``: ``precision.dtype``, ``"auto"`` before it is resolved: then only an fp16 the
    file enables is known to disagree; ``None``: not checked). A setting
    the file leaves out is the run's (as ``"auto"``)."""
    file_stage = cfg.get("zero_optimization", {}).get("stage", "auto")
    if file_stage != "auto" and file_stage != stage:
        raise ConfigError(f"strategy.config_path: {path!r} sets zero_optimization.stage = {file_stage}, and "
                          f"strategy.stage is {stage}; set strategy.stage = {file_stage} (or \"auto\" in the file), so "
                          "that the run's config says what it runs")
    if dtype is None:
        return
    for name in ("bf16", "fp16"):
        table = cfg.get(name)
        enabled = table.get("enabled", "auto") if isinstance(table, dict) else "auto"
        if dtype == "auto":  # not resolved yet; it is bf16 on a GPU that has it, else fp32, never fp16
            if name == "fp16" and enabled not in ("auto", False):
                raise ConfigError(f"strategy.config_path: {path!r} enables fp16, and precision.dtype is 'auto' (bf16 "
                                  "on a GPU that has it, else fp32, never fp16); set precision.dtype = \"fp16\" (or "
                                  "fp16.enabled = \"auto\" in the file), so that the run's config says what it runs")
            continue
        if enabled != "auto" and bool(enabled) != (dtype == name):
            state = "enables" if enabled else "disables"
            raise ConfigError(f"strategy.config_path: {path!r} {state} {name}, and precision.dtype is {dtype!r}; set "
                              f"precision.dtype = \"{name if enabled else 'fp32'}\" (or {name}.enabled = \"auto\" in "
                              "the file), so that the run's config says what it runs")


OWN_OPTIMIZERS: dict[str, str] = {
    "adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad", "lamb": "Lamb", "lion": "Lion", "muon": "Muon",
    "muadam": "MuAdam", "muadamw": "MuAdamW", "musgd": "MuSGD",
}
"""DeepSpeed 0.19.8's own ``optimizer.type`` values (``deepspeed.runtime.config.DEEPSPEED_OPTIMIZERS``,
keyed in lower case: DeepSpeed lower-cases a type whose lower case is one of them), with the
spelling its docs use. Any other type must be a ``torch.optim`` attribute spelled exactly as torch
does (DeepSpeed asserts ``getattr(torch.optim, type)`` and calls it with the parameter groups)."""

NEEDS_MUP = ("muadam", "muadamw", "musgd")
"""Own types DeepSpeed builds from the ``mup`` package: without it installed, its
``_configure_basic_optimizer`` logs "Install mup" and fails with an UnboundLocalError; with it
(mup 1.0.0), mup's optimizer asserts that every parameter has the ``infshape`` that
``mup.set_base_shapes`` gives it."""

TORCH_NOT_BUILT: dict[str, str] = {
    "Optimizer": "torch's base class, which takes no learning rate",
    "LBFGS": "torch's LBFGS, which takes no parameter groups (and steps with a closure)",
    "SparseAdam": "torch's SparseAdam, which steps sparse gradients only",
}
"""``torch.optim`` classes DeepSpeed finds but cannot train a model with (each tried with DeepSpeed
0.19.8 on its CPU accelerator: a TypeError or ValueError at ``deepspeed.initialize``, a
RuntimeError at the first step)."""

NOT_ON_CPU: dict[str, str] = {"lamb": "FusedLamb", "lion": "FusedLion"}
"""Own types whose class, in DeepSpeed 0.19.8 on its CPU accelerator, is an op with no CPU build
("This op had not been implemented on CPU backend" at ``deepspeed.initialize``); ``lion`` runs as
DeepSpeedCPULion where ``zero_optimization.offload_optimizer`` is on. Tried here: Adam, AdamW
(FusedAdam, or DeepSpeedCPUAdam with offload), Adagrad, Muon and torch.optim class names (SGD,
RMSprop, NAdam, Adafactor) run."""

_INSTEAD = "or remove optimizer from the file and choose the run's [optimizer]"


def torch_optimizers() -> list[str]:
    """The ``torch.optim`` class names DeepSpeed trains with: not :data:`TORCH_NOT_BUILT`, nor a
    name whose lower case is one of its own (``Adam``, ``Muon``: it builds its own for those)."""
    import torch

    return sorted(n for n in dir(torch.optim) if n not in TORCH_NOT_BUILT and n.lower() not in OWN_OPTIMIZERS
                  and isinstance(getattr(torch.optim, n), type) and issubclass(getattr(torch.optim, n), torch.optim.Optimizer))


def type_problem(cfg: dict[str, Any], path: str, *, torch_names: TorchNames | None = None) -> str | None:
    """The one line refusing the file's ``optimizer`` where DeepSpeed would fail on it with its own
    error on every rank, whatever the device: no ``type`` string, a type it does not build
    (:data:`OWN_OPTIMIZERS`, a ``torch.optim`` class as torch spells it, not one of
    :data:`TORCH_NOT_BUILT`), a mup type without the ``mup`` package (:data:`NEEDS_MUP`); ``None``
    where DeepSpeed builds it (or the file has no ``optimizer``; a type that is not one of its own
    where ``torch_names()``, by default :func:`torch_optimizers`, gives ``None``).
    :func:`check_user_file` raises it."""
    if "optimizer" not in cfg:
        return None
    optimizer = cfg["optimizer"]
    kind = optimizer.get("type") if isinstance(optimizer, dict) else None
    if not isinstance(kind, str):
        return (f"strategy.config_path: {path!r}: optimizer is {optimizer!r:.80}, which needs a \"type\" string "
                f"naming the optimizer DeepSpeed builds; give one (\"AdamW\", \"SGD\", ...), {_INSTEAD}")
    import importlib.util

    own = kind.lower()
    if own in NEEDS_MUP and importlib.util.find_spec("mup") is None:
        return (f"strategy.config_path: {path!r}: optimizer.type {kind!r} is DeepSpeed's {OWN_OPTIMIZERS[own]} "
                "from the mup package, which is not installed; install mup (its optimizers need "
                f"mup.set_base_shapes on the model), use \"Adam\", \"AdamW\" or \"SGD\", {_INSTEAD}")
    if own in OWN_OPTIMIZERS:
        return None
    names = (torch_names or torch_optimizers)()
    return None if names is None else _torch_type_problem(kind, path, list(names))


def run_problem(cfg: dict[str, Any], path: str, device: str, model: Any) -> str | None:
    """The one line refusing the file's ``optimizer`` (one :func:`type_problem` passed) for a run on
    ``device`` (``"cuda"`` or another device type) of ``model`` (its real or meta-device parameters):
    a type with no build for a device that is not a CUDA one (:data:`NOT_ON_CPU`), or a mup type
    (:data:`NEEDS_MUP`) with a trainable parameter that has no ``infshape`` (``mup.set_base_shapes``
    was not called on the model: mup's optimizer asserts on it on every rank); ``None`` where it runs."""
    kind = cfg.get("optimizer", {}).get("type")
    own = kind.lower() if isinstance(kind, str) else None
    if own in NEEDS_MUP:
        bare = next((n for n, p in model.named_parameters() if p.requires_grad and not hasattr(p, "infshape")), None)
        if bare is not None:
            return (f"strategy.config_path: {path!r}: optimizer.type {kind!r} is DeepSpeed's {OWN_OPTIMIZERS[own]} "
                    f"from the mup package, which needs mup.set_base_shapes on the model, and parameter {bare!r} has "
                    "no base shape (deepseek's own models do not set them); call mup.set_base_shapes in the model's "
                    f"__init__, use \"Adam\", \"AdamW\" or \"SGD\", {_INSTEAD}")
        return None
    if device == "cuda" or own not in NOT_ON_CPU:
        return None
    offload = cfg.get("zero_optimization", {}).get("offload_optimizer")
    if own == "lion" and isinstance(offload, dict) and offload.get("device") in ("cpu", "nvme"):
        return None
    also = (", keep \"Lion\" with zero_optimization.offload_optimizer.device = \"cpu\" (DeepSpeedCPULion)"
            if own == "lion" else "")
    return (f"strategy.config_path: {path!r}: optimizer.type {kind!r} is DeepSpeed's {NOT_ON_CPU[own]}, "
            f"which has no build for this run's device {device!r} (it runs on CUDA devices); here use "
            "optimizer.type \"Adam\", \"AdamW\", \"Adagrad\" or a torch.optim class (\"SGD\")"
            f"{also}, or remove optimizer from the file and choose the run's [optimizer] (optimizer.name = "
            "\"lion\" runs everywhere)")


def _torch_type_problem(kind: str, path: str, names: list[str]) -> str | None:
    """The line refusing ``kind``, not one of DeepSpeed's own types, where it is not one of
    ``names``, the torch.optim classes DeepSpeed trains with (``None`` where it is)."""
    import difflib

    if kind in names:
        return None
    if kind in TORCH_NOT_BUILT:
        return (f"strategy.config_path: {path!r}: optimizer.type {kind!r} is {TORCH_NOT_BUILT[kind]}: DeepSpeed "
                f"cannot train with it; use another torch.optim class ({', '.join(names)}), {_INSTEAD}")
    spelled = {n.lower(): n for n in [*OWN_OPTIMIZERS.values(), *names]}
    close = spelled.get(kind.lower()) or next(iter(difflib.get_close_matches(kind.lower(), spelled, 1)), None)
    hint = f"did you mean {spelled.get(close, close)!r}? " if close else ""
    return (f"strategy.config_path: {path!r}: optimizer.type {kind!r} is neither one of DeepSpeed's own optimizers "
            f"({', '.join(OWN_OPTIMIZERS.values())}; any case) nor a torch.optim class spelled as torch spells it "
            f"({', '.join(names)}); {hint}fix optimizer.type, {_INSTEAD}")


def fill_auto(cfg: dict[str, Any], values: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """``cfg`` with each ``"auto"`` at a key of ``values`` replaced by its value there (the run's
    own: precision, optimizer hyper-parameters, ZeRO options); the ZeRO stage and the bf16/fp16
    switches the file leaves out are the run's as well."""
    cfg.setdefault("zero_optimization", {}).setdefault("stage", "auto")
    for name in ("bf16", "fp16"):
        if values.get((name, "enabled")) and not isinstance(cfg.get(name), dict):
            cfg[name] = {"enabled": "auto"}
    for keys, value in values.items():
        node: Any = cfg
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(keys[-1]) == "auto":
            node[keys[-1]] = value
    return cfg


def user_ds_config(options: Any, *, world_size: int, precision: str, group: dict[str, Any],
                   grad_clip: float) -> dict[str, Any]:
    """The DeepSpeed config of ``options.config_path`` for a run: read (:func:`read_user_config`),
    checked against the run's stage and ``precision`` (:func:`check_agreement`), its ``"auto"``
    values filled from the run's ZeRO options, precision and optimizer ``group`` (hyper-parameters
    of the first parameter group), clipping at ``grad_clip`` inside ``engine.step()``."""
    path = options.config_path
    cfg = read_user_config(path, world_size)
    check_agreement(cfg, path, stage=options.stage, dtype=precision)
    values: dict[tuple[str, ...], Any] = {
        ("bf16", "enabled"): precision == "bf16",
        ("fp16", "enabled"): precision == "fp16",
        ("zero_optimization", "stage"): options.stage,
        ("zero_optimization", "reduce_bucket_size"): options.reduce_bucket_size,
        ("zero_optimization", "stage3_prefetch_bucket_size"): options.prefetch_bucket_size,
        ("zero_optimization", "stage3_param_persistence_threshold"): options.param_persistence_threshold,
        ("zero_optimization", "stage3_max_live_parameters"): options.max_live_parameters,
    }
    for key in ("lr", "betas", "eps", "weight_decay"):
        if key in group:
            values["optimizer", "params", key] = list(group[key]) if isinstance(group[key], tuple) else group[key]
    fill_auto(cfg, values)
    for key in ("lr", "betas", "eps", "weight_decay"):  # "auto" for a value this optimizer does not have
        if cfg.get("optimizer", {}).get("params", {}).get(key) == "auto":
            raise ConfigError(f"strategy.config_path: {path!r}: optimizer.params.{key} is \"auto\", and the run's "
                              f"optimizer has no {key}; give the value")
    cfg["gradient_clipping"] = max(float(grad_clip), 0.0)
    if options.deepcompile:
        cfg.setdefault("compile", {})["deepcompile"] = True
    return cfg
