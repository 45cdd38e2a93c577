"""What one ``deepseek bench train`` run measures with (:class:`BenchSettings`, the command's
options) and the trainer's config our path is built from: the model with its ``--model-option``
keys, the strategy and optimizer with their ``--strategy-option`` / ``--optimizer-option`` keys
read as ``--set`` values."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from deepseek.config.schema import TrainConfig

GRAD_CLIP: float = next(f.default for f in fields(TrainConfig) if f.name == "grad_clip")
"""``--grad-clip``'s default: the trainer's (``train.grad_clip``, from the config schema)."""


@dataclass
class BenchSettings:
    """Everything one ``bench train`` run measures with."""

    model: str = "small"
    precision: str = "bf16"
    batch: int = 8
    seq: int = 2048
    steps: int = 20
    warmup: int = 5
    strategy: str = "single"
    strategy_options: tuple[str, ...] = ()
    optimizer: str = "adamw"
    optimizer_options: tuple[str, ...] = ()
    compile: bool = False
    compile_scope: str = "blocks"
    compile_mode: str = "default"
    attention: str = "auto"
    activation_checkpointing: bool = False
    init_device: str = "cpu"
    grad_accum: int = 1
    log_every: int | None = None
    fp32_residual: bool = True
    master_weights: bool = False
    model_options: tuple[str, ...] = ()
    profile: bool = False
    device: str = "auto"
    lr: float = 3e-4
    grad_clip: float = GRAD_CLIP
    seed: int = 1337
    baseline: bool = False
    baseline_variants: tuple[str, ...] = ("eager", "compile")
    peak_tflops: float | None = None


_EXAMPLES = {"model": "n_layers=32", "strategy": "stage=3", "optimizer": "weight_decay=0"}
"""An example of each ``--SECTION-option`` (as its help gives)."""


def _option(section: str, item: str) -> tuple[str, Any]:
    """One ``--SECTION-option KEY=VALUE`` read as ``--set`` reads its value; a malformed item is one
    line naming that option."""
    from deepseek.config.overrides import parse_option

    option = f"--{section}-option"
    return parse_option(item, f"{option} {item!r}: expected KEY=VALUE, a key of [{section}], e.g. {option} "
                              f"{_EXAMPLES[section]}")


def component_table(section: str, name: str, items: tuple[str, ...]) -> dict[str, Any]:
    """The ``[section]`` table of component ``name`` with its ``--SECTION-option KEY=VALUE`` items."""
    table: dict[str, Any] = {"name": name}
    for item in items:
        key, value = _option(section, item)
        table[key] = value
    return table


def component_label(name: str, items: tuple[str, ...]) -> str:
    return f"{name}({','.join(items)})" if items else name


def bench_config(s: BenchSettings, host: Any) -> Any:
    from deepseek.config.load import config_from_dict

    strategy = component_table("strategy", s.strategy, s.strategy_options)
    if is_single(s.strategy, host):  # --device is single's device; a --strategy-option device=... is kept
        given = strategy.setdefault("device", s.device)
        if s.device != "auto" and given != s.device:
            from deepseek.errors import UsageError

            raise UsageError(f"--strategy-option device: {given!r} contradicts --device {s.device}; give single's "
                             f"device once")
    ranks = int(os.environ.get("WORLD_SIZE", "1"))  # --batch is per device: the global batch spans ranks
    return config_from_dict({
        "model": {"name": s.model, **model_overrides(s)},
        "data": {"seq_len": s.seq, "batch_size": s.batch * s.grad_accum * ranks},
        "train": {"seed": s.seed, "lr": s.lr, "compile": s.compile and s.compile_mode == "default",
                  "compile_scope": s.compile_scope,
                  "activation_checkpointing": s.activation_checkpointing, "grad_clip": s.grad_clip,
                  "grad_accum": s.grad_accum, "init_device": s.init_device, "attention": s.attention},
        "precision": {"dtype": s.precision, "fp32_residual": s.fp32_residual, "master_weights": s.master_weights},
        "strategy": strategy, "optimizer": component_table("optimizer", s.optimizer, s.optimizer_options),
    }, validate=False, host=host)


def is_single(name: str, host: Any) -> bool:
    """Whether strategy ``name`` is core's ``single``, by what it resolves to on ``host`` (default:
    the process's host): ``single``, ``deepseek-core:single`` or an alias of it. A name that
    resolves to nothing is the config's one line (``strategy.name: unknown strategy ...``)."""
    from deepseek.config.components import resolve_at
    from deepseek.plugins.host import get_host
    from deepseek.training.single import SingleDeviceStrategy

    return resolve_at(host or get_host(), "strategy", name, "strategy.name").load() is SingleDeviceStrategy


def planned_device(s: BenchSettings, host: Any) -> Any:
    """The device our path will compute on, known before its strategy is set up, by the rule the
    set-up follows: ``single``'s ``[strategy] device`` (``--device``, or the
    ``--strategy-option device=...`` that gives it) resolved as ``single`` resolves it; another
    strategy's declared device type (``device_type``; none declared: CUDA when available). What
    ``bench train`` checks ``--attention`` and a ``--against`` baseline against."""
    import torch

    from deepseek.devices import resolve_device
    from deepseek.plugins.calls import class_calls
    from deepseek.plugins.host import get_host
    from deepseek.training.strategy_rules import checked_device_type

    cfg = bench_config(s, host)
    if is_single(s.strategy, host):
        return resolve_device(cfg.strategy.options.device)
    component = (host or get_host()).resolve("strategy", cfg.strategy.name)
    with class_calls(component, "device_type"):  # a plugin's bad answer: one line naming it
        kind = checked_device_type(component.load(), cfg.strategy.options)
    return torch.device(kind or ("cuda" if torch.cuda.is_available() else "cpu"))


def model_context(model: str, model_options: tuple[str, ...], host: Any) -> int:
    """``max_seq_len`` of the model ``--model`` and ``--model-option`` describe (2048 for a model
    without one)."""
    from deepseek.config.load import config_from_dict

    overrides = model_overrides(BenchSettings(model=model, model_options=model_options))
    options = config_from_dict({"model": {"name": model, **overrides}}, validate=False, host=host).model.options
    return int(getattr(options, "max_seq_len", None) or 2048)


def model_overrides(s: BenchSettings) -> dict[str, Any]:
    from deepseek.errors import UsageError

    out: dict[str, Any] = {}
    for item in s.model_options:
        key, value = _option("model", item)
        if key in ("name", "preset"):
            raise UsageError(f"--model-option {item!r}: pick the model with --model, not --model-option")
        out[key] = value
    return out
