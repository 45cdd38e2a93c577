"""``deepspeed``: DeepSpeed ZeRO stage 1/2/3 with optimizer and parameter CPU offload.

The DeepSpeed config is generated from our typed config (:func:`build_ds_config`); users write
DeepSpeed JSON only when they want to (``config_path``, passed through). The engine owns what it
owns: the step is the base class's accumulation loop with the engine's parts plugged in (every
micro-batch runs ``engine(**batch)`` and ``engine.backward(loss)``, which divides by the
accumulation steps, with the accumulation boundary set on the last one; DeepSpeed's own mixed
precision instead of autocast), then ``engine.step()``, which clips to ``train.grad_clip`` (set in
the DeepSpeed config at set-up) and skips on fp16 overflow; the step reports the norm DeepSpeed
measured before clipping and whether the step was applied. Micro-batch size and accumulation
steps are read off the batches the trainer hands in. The engine leaves buffers to each rank
(ZeRO partitions parameters only): the base class broadcasts rank 0's after each step's forwards.

Optimizer: ``optimizer = "torch"`` (default) hands DeepSpeed the optimizer the run's registered
``[optimizer]`` builds (our optimizer factory). ZeRO then runs it on flat fp32 partitions of
concatenated parameters, so only an optimizer that declares itself ``elementwise``
(:class:`~deepseek.training.optimizers.OptimizerBuilder`: adamw, sgd, lion) is accepted, when the
config loads; its update then equals the unsharded one exactly and losses match ``single`` up to
the summation order of the gradient reduction. With ``optimizer_offload`` it runs on the CPU
copies (``zero_force_ds_cpu_optimizer = false``). ``optimizer = "deepspeed"`` lets DeepSpeed build
its own AdamW (FusedAdam on GPU, DeepSpeedCPUAdam with offload: faster, JIT-built ops) from the
same hyper-parameters (so it needs ``optimizer.name = "adamw"``); its numerics differ slightly
from torch's.

Checkpoints are the canonical full format, gathered with DeepSpeed's ``safe_get_full_*`` helpers
(ZeRO-3 too) and written by rank 0; loading scatters them back (``safe_set_full_*``) into state
the builder creates first (``OptimizerBuilder.initial_state``; without it, no resume here); both
directions are in :mod:`.deepspeed_state`. The fp16 loss scale is not carried over. ``deepcompile``
hands the model to DeepCompile at set-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from deepseek.errors import CheckpointError, ConfigError, UsageError
from deepseek.training import checkpoint as ckpt
from deepseek.training.optimizers import GroupedOptimizerFactory, OptimizerBuilder
from deepseek.training.strategy import OptimizerFactory, StepResult, StepSettings
from deepseek_pro.strategies import deepspeed_internals as internals
from deepseek_pro.strategies import deepspeed_state as state_io
from deepseek_pro.strategies.base import DistributedStrategy
from deepseek_pro.strategies.deepspeed_config import (
    RESUMABLE_OWN_OPTIMIZERS,
    DeepSpeedOptions,
    apply_cuda_arch_sanitizer,
    build_ds_config,
    deepcompile_needs_cuda,
    not_resumable,
    own_not_resumable,
    sanitize_cuda_arch_list,
)
from deepseek_pro.strategies.deepspeed_units import chosen_gather_unit, gather_blocks_whole
from deepseek_pro.strategies.deepspeed_user import (
    check_agreement,
    read_user_config,
    run_problem,
    user_ds_config,
)
from deepseek_pro.strategies.twin import materialize, meta_twin

__all__ = ["DeepSpeedOptions", "DeepSpeedStrategy", "apply_cuda_arch_sanitizer", "build_ds_config", "sanitize_cuda_arch_list"]

_FP16_ON_CPU = ("precision.dtype: DeepSpeed has no fp16 on the CPU; use precision.dtype = 'bf16' or 'fp32' here "
                "(fp16 works on CUDA devices)")


class DeepSpeedStrategy(DistributedStrategy):
    """DeepSpeed's engine over all ranks (``dp_size = world_size``)."""

    optimizer_parameters = "flat"
    name: ClassVar[str] = "deepspeed"
    Options: ClassVar[type] = DeepSpeedOptions
    replicates_buffers: ClassVar[bool] = True
    steps_every_parameter: ClassVar[bool] = True  # ZeRO's flat partitions: a zero where no gradient came

    @classmethod
    def memory_row(cls, options: Any) -> str | None:
        """Stages 1 and 2 (with or without optimizer offload); the advisor's ZeRO-3 rows model FSDP2's buffers,
        not DeepSpeed stage 3's, so stage 3 has none."""
        if options.stage == 3 or options.config_path:
            return None
        return f"zero{options.stage}" + ("+offload" if options.offload_optimizer else "")

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        super().__init__(options, precision=precision, host=host)
        self.engine: Any = None
        self.ds_config: dict[str, Any] = {}
        self._template: Any = None
        self._group_names: list[list[str]] = []
        self._group_settings: list[dict[str, Any]] = []
        self._aliases: dict[str, str] = {}
        self._shape: tuple[int, int] = (1, 1)
        self._builder: OptimizerBuilder | None = None
        self._gather_unit: str | None = None
        self._fastpath: bool | None = None  # torch's fused-kernel switch as setup_environment found it

    @classmethod
    def check_config(cls, config: Any) -> None:
        """DeepSpeed's engine applies every bf16/fp32 step it is given: no skipping. Its own
        optimizer is AdamW. (ZeRO runs a client optimizer on flat partitions,
        ``optimizer_parameters = "flat"``: core refuses one that is not ``elementwise``.)"""
        from deepseek.errors import ConfigError

        if config.train.on_nonfinite == "skip":
            raise ConfigError(
                "train.on_nonfinite: 'skip' cannot be used with strategy 'deepspeed' (its engine applies "
                "every step it runs); use 'stop', or a strategy such as ddp or fsdp"
            )
        name = config.optimizer.name
        if config.strategy.options.deepcompile and not (config.train.compile and config.train.compile_scope == "model"):
            raise ConfigError(
                "strategy.deepcompile: DeepCompile compiles the whole model, so it needs train.compile = true and "
                f"train.compile_scope = \"model\" (got compile = {str(config.train.compile).lower()}, compile_scope = "
                f"{config.train.compile_scope!r}); set both, or deepcompile = false")
        if config.strategy.options.config_path:  # the file against the config, before any worker starts
            o, dtype = config.strategy.options, config.precision.dtype
            check_agreement(read_user_config(o.config_path, 1), o.config_path, stage=o.stage, dtype=dtype)
        if config.strategy.options.optimizer == "deepspeed":
            if name != "adamw":
                raise ConfigError(f"strategy.optimizer: 'deepspeed' builds DeepSpeed's own AdamW, but optimizer.name "
                                  f"is {name!r}; use strategy.optimizer = \"torch\" or optimizer.name = \"adamw\"")

    @classmethod
    def check_launch(cls, config: Any, world_size: int, model: Any) -> None:
        """DeepCompile, fp16 and some of DeepSpeed's own optimizers (a ``config_path`` file's Lamb)
        need the CUDA devices the launched processes would train on, and a file's mup optimizer a
        model with mup's base shapes (:func:`.run_problem`; each rank checks again at set-up, on its
        own device and model); ``gather_unit = "block"`` needs a model with blocks."""
        o = config.strategy.options
        chosen_gather_unit(model, o)
        on_cpu = cls.resolved_device_type(o, cuda_available=torch.cuda.is_available()) == "cpu"
        if o.deepcompile and on_cpu:
            raise UsageError(deepcompile_needs_cuda("cpu"))
        if config.precision.dtype == "fp16" and on_cpu:
            raise UsageError(_FP16_ON_CPU)
        if o.config_path:
            problem = run_problem(read_user_config(o.config_path, 1), o.config_path, "cpu" if on_cpu else "cuda", model)
            if problem:
                raise ConfigError(problem)

    def setup_environment(self) -> None:
        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        apply_cuda_arch_sanitizer()
        super().setup_environment()
        if self.options.deepcompile and self.device.type != "cuda":
            self.teardown()
            raise UsageError(deepcompile_needs_cuda(self.device.type))
        if self.precision.name == "fp16" and self.device.type != "cuda":
            self.teardown()
            raise UsageError(_FP16_ON_CPU)
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        # DeepSpeed's 16-bit weights are flat-buffer views at any offset: torch's fused MHA/encoder-layer inference
        # kernels fail on them on CUDA ("misaligned address"). Off for the run; a second call keeps the first's value.
        self._fastpath = torch.backends.mha.get_fastpath_enabled() if self._fastpath is None else self._fastpath
        torch.backends.mha.set_fastpath_enabled(False)

    def teardown(self) -> None:
        owned = self._owns_group
        if self._fastpath is not None:
            torch.backends.mha.set_fastpath_enabled(self._fastpath)
            self._fastpath = None
        super().teardown()
        if owned and "deepspeed" in sys.modules:  # the groups it cached died with the process group
            internals.forget_process_groups()

    def release_engine(self) -> None:  # the engine is self.model; its ZeRO hooks kept it alive for ever: destroy()
        if self.engine is not None:
            self.engine.destroy()
        super().release_engine()
        self.engine = None

    def setup(self, model: Any, optimizer_factory: OptimizerFactory, settings: StepSettings) -> None:
        import deepspeed

        if self.device.type == "cpu":
            internals.skip_shm_comm_build()
        o = self.options
        from deepseek_pro.checkpoint import tied_aliases

        self._aliases = tied_aliases(model)
        self._template = meta_twin(model)
        # the trainer's factory says which optimizer it builds; another callable does not
        self._builder = optimizer_factory.builder if isinstance(optimizer_factory, GroupedOptimizerFactory) else None
        names = {id(p): n for n, p in model.named_parameters()}
        optimizer = optimizer_factory(model.named_parameters())
        self._group_names = [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]
        self._group_settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        model = model.to(self.device)
        self._gather_unit = gather_blocks_whole(model, o)
        kwargs: dict[str, Any] = {}
        if o.config_path:
            self.ds_config = user_ds_config(o, world_size=self.world_size, precision=self.precision.name,
                                            group=optimizer.param_groups[0], grad_clip=settings.grad_clip)
            problem = run_problem(self.ds_config, o.config_path, self.device.type, model)
            if problem:  # as deepseek launch refused it; a worker started without it says so too
                raise ConfigError(problem)
        else:
            params = None
            if o.optimizer == "deepspeed":
                g = optimizer.param_groups[0]
                params = {k: g[k] for k in ("lr", "betas", "eps", "weight_decay") if k in g}
                params["betas"] = list(params.get("betas", (0.9, 0.999)))
            self.ds_config = build_ds_config(
                o, precision=self.precision.name, world_size=self.world_size,
                on_cuda=self.device.type == "cuda", optimizer_params=params,
                init_scale=self.precision.init_scale, growth_interval=self.precision.growth_interval,
                grad_clip=settings.grad_clip,
            )
        if "optimizer" in self.ds_config:
            kwargs["model_parameters"] = [{k: v for k, v in g.items() if k in ("params", "weight_decay", "lr_scale")}
                                          for g in optimizer.param_groups]
        else:
            kwargs["optimizer"] = optimizer
        try:
            self.engine, self.optimizer, _, _ = deepspeed.initialize(
                model=model, config=self.ds_config, dist_init_required=False, **kwargs
            )
        except Exception as exc:  # DeepSpeed's pydantic check of a user's JSON: several lines of it
            if type(exc).__name__ != "ValidationError" or not o.config_path:
                raise
            first = " ".join(str(exc).split("\n", 2)[1:2]) or str(exc).splitlines()[0]
            raise ConfigError(f"strategy.config_path: DeepSpeed refuses {o.config_path!r}: {first.strip()}; fix the "
                              "file") from None
        if o.deepcompile:
            # The engine compiles the module with its own backend, replacing the plain
            # torch.compile that train.compile put on the model (compiled lazily: never ran).
            self.engine.compile(backend="inductor")
        self.model = self.engine

    def resolved_options(self) -> dict[str, Any]:
        """``gather_unit = "auto"`` as chosen for the model at stage 3."""
        if self.options.gather_unit == "auto" and self._gather_unit is not None:
            return {"gather_unit": self._gather_unit}
        return {}

    # ------------------------------------------------------------------ the step

    def _fit_batches(self, micro: int, accum: int) -> None:
        if (micro, accum) != self._shape:
            self.engine.set_train_micro_batch_size(micro)
            self.engine.set_train_batch_size(micro * accum * self.world_size)
            self._shape = (micro, accum)

    def train_step(self, micro_batches: Sequence[Any]) -> StepResult:
        """The base class's accumulation loop on the engine's parts, then ``engine.step()``,
        which clips and applies (or, on fp16 overflow, skips) the update."""
        from deepseek.data.batch import batch_rows

        assert self.engine is not None, "call setup() first"
        self._fit_batches(batch_rows(micro_batches[0]), len(micro_batches))
        loss, metrics = self.forward_backward(micro_batches)
        self.engine.step()
        norm, stepped = self.engine.get_global_grad_norm(), bool(self.engine.was_step_applied())
        self.engine.zero_grad()
        # ZeRO-3 keeps the norm on the device: reading it here would stall the host every step
        return StepResult(loss, float("nan") if norm is None else norm if torch.is_tensor(norm) else float(norm),
                          stepped, metrics)

    @contextlib.contextmanager
    def accumulation(self, *, is_last: bool) -> Iterator[None]:
        self.engine.set_gradient_accumulation_boundary(is_last)
        yield

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """DeepSpeed runs its own mixed precision (the ``bf16`` / ``fp16`` config sections)."""
        return contextlib.nullcontext()

    def _engine_inputs(self, batch: Any) -> Any:
        """``batch`` with its float tensors in the 16-bit type of the weights under bf16 or fp16 (as FSDP's
        mixed precision casts inputs; integers and bools as they are): nothing autocasts here, so float
        inputs (images, audio features) otherwise met 16-bit weights with fp32 inputs in a first layer."""
        if self.precision.name not in ("bf16", "fp16"):
            return batch
        from torch.utils import _pytree as pytree

        dtype = self.precision.dtype
        return pytree.tree_map(lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t,
                               batch)

    def to_device(self, batch: Any) -> Any:
        return self._engine_inputs(super().to_device(batch))

    def backward(self, loss: torch.Tensor, weight: float) -> None:
        """``engine.backward`` divides by the accumulation steps: the loss goes in scaled so that
        this leaves ``weight`` (the micro-batch's share; the plain loss for equal rows)."""
        scale = weight * self._shape[1]
        self.engine.backward(loss if abs(scale - 1.0) < 1e-12 else loss * scale)

    def evaluate(self, batch: Any, weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Under DeepCompile the forward runs eagerly on gathered weights: its compiled graph is for training (a
        no-grad graph compiled beside it broke the next backward's reduction in DeepSpeed 0.19.8). Float inputs
        go in as the weights' type (``_engine_inputs``)."""
        batch = self._engine_inputs(batch)
        if not self.options.deepcompile:
            return super().evaluate(batch, weight)
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self.engine.module.parameters())), \
                torch.compiler.set_stance("force_eager"):
            return super().evaluate(batch, weight)

    def weights_finite(self) -> bool:
        """The fp32 master partitions (ZeRO keeps the module's own weights partitioned or in 16 bit) finite on
        every rank; ZeRO-3's partition padding is not weights and is skipped."""
        return self.all_ranks(internals.masters_finite(self.engine.optimizer, self.engine.module))

    def step_metrics(self) -> dict[str, float]:
        fp16 = self.precision.name == "fp16" and hasattr(self.engine.optimizer, "cur_scale")
        return {"loss_scale": float(self.engine.optimizer.cur_scale)} if fp16 else {}

    # ------------------------------------------------------------------ full weights and checkpoints

    def _named_params(self) -> list[tuple[str, Any]]:
        return list(self.engine.module.named_parameters())

    def full_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model state dict, named optimizer state) with full fp32 tensors on CPU on every rank.
        A collective: call it on every rank."""
        return state_io.gather_full_state(self)

    def unwrapped_model(self) -> Any:
        """A plain CPU copy with the full fp32 weights (a collective: call it on every rank)."""
        model, _ = self.full_state()
        plain = materialize(self._template, "cpu")
        plain.load_state_dict(model)
        return plain

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        model, optim = self.full_state()
        if self.is_global_zero:
            directory = Path(directory)
            ckpt.save_model_state(directory / ckpt.MODEL_FILE, model)
            ckpt.save_optimizer_state(directory / ckpt.OPTIMIZER_FILE, optim)
            ckpt.write_trainer_state(directory, {**trainer_state, "layout": "full"})
        self.barrier()

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        from deepseek_pro import checkpoint as pro_ckpt

        directory = Path(directory)
        self._check_resumable()
        problem = None
        try:
            state = ckpt.read_trainer_state(directory)
            model, optim = ckpt.read_full_state(directory, self.host)
            live = self._template.state_dict()
            ckpt.check_model_fit(model, {k: tuple(v.shape) for k, v in live.items()}, directory,
                                 {k: v.dtype for k, v in live.items()})  # integers would be cast: truncated values
            ckpt.check_group_members(optim["param_groups"], self._group_names, directory / ckpt.OPTIMIZER_FILE)
            ckpt.check_state_fit(optim["state"], {n: tuple(v.shape) for n, v in live.items()},
                                 directory / ckpt.OPTIMIZER_FILE, None if self._own_optimizer() else self._builder)
        except CheckpointError as exc:
            problem = str(exc)
        # Every rank reads the files; agree on failure so that no rank waits in a collective.
        pro_ckpt.raise_if_any(self, problem)
        state_io.scatter_full_state(self, model, optim)
        return state

    def _own_optimizer(self) -> bool:
        """DeepSpeed built the optimizer (``strategy.optimizer = "deepspeed"`` or the user's JSON names one), not ours."""
        return "optimizer" in self.ds_config

    @classmethod
    def check_resume(cls, config: Any, optimizer: Any) -> None:
        """ZeRO loads optimizer state into partitions it creates first, from the builder's
        ``initial_state``: a builder that keeps the base class's (which says nothing) cannot
        resume here. When DeepSpeed builds its own optimizer, the state is the Adam family's
        (:func:`.deepspeed_state.own_initial_state`): a ``config_path`` file naming another
        ``optimizer.type`` cannot resume either."""
        from deepseek.training.optimizers import OptimizerBuilder

        o = config.strategy.options
        own = o.config_path and read_user_config(o.config_path, 1).get("optimizer")
        if isinstance(own, dict) and str(own.get("type", "")).lower() not in RESUMABLE_OWN_OPTIMIZERS:
            raise UsageError(own_not_resumable(str(own.get("type"))))
        if not (own or o.optimizer == "deepspeed") and type(optimizer).initial_state is OptimizerBuilder.initial_state:
            raise UsageError(not_resumable(config.optimizer.name))

    def _check_resumable(self) -> None:
        """Our builder, or for DeepSpeed's own optimizer :func:`.deepspeed_state.own_initial_state`,
        must state the optimizer's state before a first step (every rank raises alike, before
        reading the checkpoint or writing anything); ``deepseek launch`` checked the config already
        (:meth:`check_resume`), this checks the optimizer that was built."""
        inner, flats = internals.flat_masters(self.engine.optimizer)
        if self._own_optimizer():
            if flats and state_io.own_initial_state(inner, flats[0]) is None:
                raise UsageError(own_not_resumable(type(inner).__name__))
            return
        if self._builder is None or (flats and self._builder.initial_state(flats[0]) is None):
            raise UsageError(not_resumable(self._builder.config.name if self._builder is not None else "(a custom optimizer factory)"))
