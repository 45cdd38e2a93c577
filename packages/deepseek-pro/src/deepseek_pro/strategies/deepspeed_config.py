"""DeepSpeed configuration for the ``deepspeed`` strategy: its options, the config generated from
our typed config (a user's own JSON: :mod:`deepseek_pro.strategies.deepspeed_user`), and the
``TORCH_CUDA_ARCH_LIST`` sanitizer.

Nothing here imports torch or deepspeed.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deepseek.errors import ConfigError
from deepseek_pro.strategies.base import DistributedOptions

log = logging.getLogger(__name__)
_ARCH_RE = re.compile(r"^(\d+\.\d+)[a-z]?(\+PTX)?\Z")


def sanitize_cuda_arch_list(value: str) -> str:
    """``TORCH_CUDA_ARCH_LIST`` without arch-specific suffixes (``9.0a`` -> ``9.0``,
    ``9.0a+PTX`` -> ``9.0+PTX``) and duplicates, which DeepSpeed's op builder cannot parse."""
    out: list[str] = []
    for entry in re.split(r"[;,\s]+", value.strip()):
        if not entry:
            continue
        m = _ARCH_RE.match(entry)
        clean = f"{m.group(1)}{m.group(2) or ''}" if m else entry
        if clean not in out:
            out.append(clean)
    return ";".join(out)


def apply_cuda_arch_sanitizer(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Rewrite ``TORCH_CUDA_ARCH_LIST`` in ``environ`` (default ``os.environ``) if DeepSpeed would
    choke on it; returns the new value when something changed, else ``None``."""
    env = os.environ if environ is None else environ
    old = env.get("TORCH_CUDA_ARCH_LIST")
    if not old:
        return None
    new = sanitize_cuda_arch_list(old)
    if new == old:
        return None
    env["TORCH_CUDA_ARCH_LIST"] = new
    log.warning("TORCH_CUDA_ARCH_LIST=%r rewritten to %r for DeepSpeed's op builder", old, new)
    return new


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be > 0"


def _non_negative(value: int) -> str | None:
    return None if value >= 0 else "must be >= 0"


@dataclass(frozen=True)
class DeepSpeedOptions(DistributedOptions):
    """``[strategy]`` keys of ``deepspeed``."""

    stage: Literal[1, 2, 3] = 2
    """ZeRO stage: 1 shards optimizer state, 2 also gradients, 3 also parameters."""
    offload_optimizer: bool = False
    """Keep optimizer state (and run the optimizer) on the CPU."""
    offload_params: bool = False
    """Keep sharded parameters on the CPU between uses (stage 3 only)."""
    optimizer: Literal["torch", "deepspeed"] = "torch"
    """``torch``: our AdamW/SGD (exact parity); ``deepspeed``: DeepSpeed's fused/CPU Adam."""
    config_path: str = ""
    """A DeepSpeed JSON config to use as is instead of the generated one."""
    reduce_bucket_size: int = field(default=500_000_000, metadata={"check": _positive})
    """Elements per gradient reduce bucket (``zero_optimization.reduce_bucket_size``)."""
    prefetch_bucket_size: int = field(default=50_000_000, metadata={"check": _positive})
    """Stage 3: elements of parameters all-gathered ahead of use (``stage3_prefetch_bucket_size``)."""
    param_persistence_threshold: int = field(default=100_000, metadata={"check": _non_negative})
    """Stage 3: parameters with fewer elements stay gathered (``stage3_param_persistence_threshold``)."""
    max_live_parameters: int = field(default=1_000_000_000, metadata={"check": _positive})
    """Stage 3: gathered elements allowed at once (``stage3_max_live_parameters``)."""
    gather_unit: Literal["auto", "block", "module"] = "auto"
    """Stage 3: what one gather fetches. ``block``: each of the model's blocks whole
    (``block_modules``, FSDP2's units), as a DeepSpeed leaf module: one gather and one pair of
    hooks per block; ``module``: DeepSpeed's default, every submodule with its own hooks;
    ``auto``: ``block`` for a model that offers blocks (not under ``deepcompile``, whose graph
    does the gathering), else ``module``; the run's config.toml records the choice."""
    deepcompile: bool = False
    """Compile the whole model with DeepCompile, DeepSpeed's compiler integration, which puts ZeRO's
    gathers and reductions into the compiled graph instead of per-submodule hooks (CUDA only; needs
    ``train.compile = true`` with ``train.compile_scope = "model"``)."""

    def __post_init__(self) -> None:
        if self.offload_params and self.stage != 3:
            raise ConfigError(
                f"strategy.offload_params: parameter offload needs ZeRO stage 3, got stage = {self.stage}; "
                "set stage = 3 or offload_params = false"
            )
        if self.gather_unit == "block" and self.deepcompile:
            raise ConfigError("strategy.gather_unit: 'block' marks DeepSpeed leaf modules for its hooks, which "
                              "deepcompile replaces by its compiled graph; set gather_unit = \"auto\" or deepcompile = false")
        if self.config_path:  # read now, so that launch refuses it before any worker starts
            from deepseek_pro.strategies.deepspeed_user import not_a_file, read_user_config

            if not Path(self.config_path).is_file():
                raise not_a_file(self.config_path)
            read_user_config(self.config_path, 1)
            # recorded as an absolute path, as the run's other paths: a resume from elsewhere finds it
            object.__setattr__(self, "config_path", str(Path(self.config_path).resolve()))


def build_ds_config(
    options: DeepSpeedOptions,
    *,
    precision: str,
    world_size: int,
    on_cuda: bool,
    optimizer_params: dict[str, Any] | None = None,
    init_scale: float = 2.0**16,
    growth_interval: int = 2000,
    grad_clip: float = 0.0,
) -> dict[str, Any]:
    """The DeepSpeed config for ``options``, clipping to ``grad_clip`` inside ``engine.step()``;
    micro-batch size and accumulation start at neutral values and are set from the trainer's
    batches."""
    zero: dict[str, Any] = {"stage": options.stage, "contiguous_gradients": True, "overlap_comm": on_cuda,
                            "reduce_bucket_size": options.reduce_bucket_size}
    if options.stage == 3:
        # Otherwise ZeRO-3 replaces torch.nn.functional.linear process-wide, for good.
        zero["memory_efficient_linear"] = False
        zero["stage3_prefetch_bucket_size"] = options.prefetch_bucket_size
        zero["stage3_param_persistence_threshold"] = options.param_persistence_threshold
        zero["stage3_max_live_parameters"] = options.max_live_parameters
    if options.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_cuda}
    if options.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": on_cuda}
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "train_batch_size": world_size,
        "gradient_clipping": max(float(grad_clip), 0.0),
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    if options.deepcompile:
        cfg["compile"] = {"deepcompile": True}
    if precision == "bf16":
        cfg["bf16"] = {"enabled": True}
    elif precision == "fp16":
        cfg["fp16"] = {
            "enabled": True,
            "loss_scale": 0,
            "initial_scale_power": int(round(math.log2(init_scale))),
            "loss_scale_window": growth_interval,
        }
    if optimizer_params is not None:
        cfg["optimizer"] = {"type": "AdamW", "params": optimizer_params}
    return cfg


def not_resumable(name: str) -> str:
    return (f"--resume: optimizer {name!r} does not state its state before a first step "
            "(OptimizerBuilder.initial_state), which strategy 'deepspeed' needs to load optimizer "
            "state into ZeRO partitions; resume with strategy 'ddp' or 'fsdp' (same checkpoint)")


RESUMABLE_OWN_OPTIMIZERS = ("adam", "adamw")
"""The ``optimizer.type`` values (DeepSpeed reads them case-insensitively) of a ``config_path``
file whose optimizer a run under ``deepspeed`` can resume: DeepSpeed builds torch's, its
FusedAdam or its DeepSpeedCPUAdam for them, whose state before a first step is known
(:func:`~deepseek_pro.strategies.deepspeed_state.own_initial_state`)."""


def own_not_resumable(name: str) -> str:
    return (f"--resume: DeepSpeed's own optimizer {name!r} (the optimizer of strategy.config_path) keeps state "
            "that strategy 'deepspeed' cannot load into ZeRO partitions before a first step (only Adam and AdamW "
            "are resumable); a run that must resume needs optimizer.type \"AdamW\" or \"Adam\" in the file, or "
            "no optimizer there (the run's [optimizer] then runs)")


def deepcompile_needs_cuda(device: str) -> str:
    return (f"strategy.deepcompile: DeepCompile runs on CUDA devices only, and this run's device is {device!r}; "
            "set strategy.deepcompile = false here (train.compile still compiles the model)")
