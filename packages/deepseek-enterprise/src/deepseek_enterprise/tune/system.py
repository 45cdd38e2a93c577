"""``system`` tuner: each trial is a short ``deepseek bench train`` of the trial's config in its
own process (under ``deepseek launch -n N`` where the strategy needs it); the objective is
throughput, ``tokens_per_s`` or ``samples_per_s``, summed over the data-parallel ranks.

Before a trial runs, the advisor's memory model (``deepseek advise``) estimates its peak per
device through the row its strategy realises (:meth:`Strategy.memory_row`); a trial that cannot
fit is skipped and recorded as pruned with the estimate, so no trial is spent discovering an
out-of-memory the arithmetic already predicts. A trial that still runs out of memory fails;
the study goes on.

The config's ``data.batch_size`` is the global batch: a trial's micro-batch per device is
``batch_size / (train.grad_accum x processes)``, so searching ``train.grad_accum`` and the
strategy at a fixed batch size compares set-ups that train the same model the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from deepseek.errors import ConfigError
from deepseek.parsing import loads_json, read_text
from deepseek_enterprise.tune.limits import field_check
from deepseek_enterprise.tune.process import deepseek_argv, plugin_env, run_child, tail
from deepseek_enterprise.tune.training import needs_launcher
from deepseek_enterprise.tune.tuner import (
    Direction,
    TrialFailed,
    TrialRun,
    Tuner,
)


def _fraction(value: float) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


def _size(value: str) -> str | None:
    if not value:
        return None
    from deepseek.advise.hardware import parse_size
    from deepseek.errors import UsageError

    try:
        parse_size(value, option="tuner.device_memory")
    except UsageError:
        return "must be a size such as 80GiB or 141e9"
    return None


@dataclass(frozen=True)
class SystemTunerOptions:
    """``[tuner]`` keys of the ``system`` tuner."""

    nproc: int = field(default=2, metadata={"check": field_check("nproc")})
    """Processes (devices) for a strategy that needs a launcher (``deepseek launch -n``)."""
    steps: int = field(default=10, metadata={"check": field_check("steps")})
    """Measured steps of each trial's ``bench train``."""
    warmup: int = field(default=3, metadata={"check": field_check("warmup")})
    """Warm-up steps before measuring (compilation included)."""
    device_memory: str = field(default="", metadata={"check": _size})
    """Memory per device the advisor checks against (``80GiB``); empty: this machine's GPU, or
    its RAM on a CPU-only machine."""
    headroom: float = field(default=0.10, metadata={"check": _fraction})
    """Fraction of the device memory kept free for allocator fragmentation (as ``advise``)."""
    trial_timeout_s: float = field(default=0.0, metadata={"check": field_check("trial_timeout_s")})
    """Stop a trial running longer than this many seconds and record it failed (0: no limit)."""


@dataclass(frozen=True)
class Fit:
    """The advisor's verdict on one trial: the row, the estimate and the usable memory."""

    row: str | None
    total: int = 0
    usable: int = 0
    host: int = 0
    host_memory: int | None = None

    @property
    def fits(self) -> bool:
        return self.row is None or (self.total <= self.usable and
                                    (self.host_memory is None or self.host <= self.host_memory))


def _world(config: Any, host: Any, nproc: int) -> int:
    return nproc if needs_launcher(config, host) else 1


def micro_batch(config: Any, world: int) -> int | None:
    """Rows per device per micro-step, or None when the batch does not divide."""
    per = config.train.grad_accum * world
    return config.data.batch_size // per if config.data.batch_size % per == 0 else None


class SystemTuner(Tuner):
    """Strategy, micro-batch (through ``train.grad_accum``), activation checkpointing, compile,
    residual dtype, DDP bucket size, DeepSpeed stage/offload/buckets...: judged by throughput."""

    Options: ClassVar[type] = SystemTunerOptions
    objectives: ClassVar[tuple[str, ...]] = ("tokens_per_s", "samples_per_s")

    def direction(self, objective: str) -> Direction:
        return "maximize"

    def check_config(self, config: Any) -> None:
        from deepseek.models.gpt import GPTConfig

        if not isinstance(config.model.options, GPTConfig):
            raise ConfigError(f"model.name: the system tuner measures GPT models with bench train; "
                              f"{config.model.name!r} is not one (use a GPT preset such as small or 1.3b)")
        self.sequence_length(config)

    def sequence_length(self, config: Any) -> int:
        """Tokens per row of the config's data (its dataset's ``Dataset.sequence_length``), which
        ``bench train`` measures at; data without token sequences is refused (``ConfigError``)."""
        from deepseek.data.dataset import checked_sequence_length
        from deepseek.training.build import run_host

        component = run_host(config, self.host).resolve("dataset", config.data.name)
        length = checked_sequence_length(component.load(), config.data.options, component.label)
        if length is None:
            raise ConfigError(f"data.name: the system tuner needs token sequences; {config.data.name!r} declares no "
                              f"sequence length (Dataset.sequence_length answers None); use token data such as "
                              f"'text' with data.seq_len")
        return length

    def declared_device(self, config: Any) -> str | None:
        """The device the config's strategy declares (``StrategyRules.device_type``: ``"cpu"``,
        ``"cuda"``, or ``None`` where it picks at set-up); what it raises is one line naming it."""
        from deepseek.plugins.calls import class_calls
        from deepseek.training.build import run_host
        from deepseek.training.strategy_rules import checked_device_type

        component = run_host(config, self.host).resolve("strategy", config.strategy.name)
        with class_calls(component, "device_type"):
            return checked_device_type(component.load(), config.strategy.options)

    def fit(self, config: Any) -> Fit:
        """The advisor's estimate for this config (``row`` None: no row models its strategy)."""
        from deepseek.advise.estimate import (
            STRATEGIES,
            TrainSetup,
            estimate_strategy,
            shape_from_config,
        )
        from deepseek.advise.hardware import detect_devices, host_memory, parse_size
        from deepseek.advise.report import CPU_OVERHEAD, GPU_OVERHEAD
        from deepseek.training.build import run_host
        from deepseek.training.strategy_rules import checked_memory_row

        component = run_host(config, self.host).resolve("strategy", config.strategy.name)
        row = checked_memory_row(component, config.strategy.options)  # a plugin's bug: one line naming it
        spec = next((s for s in STRATEGIES if s.key == row), None)
        if spec is None:
            return Fit(None)
        o = self.options
        world = _world(config, self.host, o.nproc)
        devices = detect_devices(keep_cuda_idle=True)
        memory = parse_size(o.device_memory, option="tuner.device_memory") if o.device_memory else devices.memory
        on_gpu = devices.count > 0 and self.declared_device(config) != "cpu"
        precision = config.precision.dtype if config.precision.dtype != "auto" else ("bf16" if on_gpu else "fp32")
        setup = TrainSetup(seq_len=self.sequence_length(config), micro_batch=micro_batch(config, world) or 1,
                           precision=precision, activation_checkpointing=config.train.activation_checkpointing,
                           gpus=world, fp32_residual=config.precision.fp32_residual,
                           master_weights=config.precision.master_weights, grad_accum=config.train.grad_accum,
                           **_optimizer_facts(config, self.host))
        shape = shape_from_config(config.model.options, source=config.model.name)
        usable = int(memory * (1 - o.headroom))
        est = estimate_strategy(spec, shape, setup, overhead=GPU_OVERHEAD if on_gpu else CPU_OVERHEAD,
                                usable_gpu=usable)
        return Fit(row, est.total, usable, est.host, host_memory())

    def skip_reason(self, config: Any) -> str | None:
        from deepseek.advise.hardware import format_gib

        world = _world(config, self.host, self.options.nproc)
        if micro_batch(config, world) is None:
            return (f"data.batch_size={config.data.batch_size} does not divide into train.grad_accum="
                    f"{config.train.grad_accum} x {world} process(es)")
        fit = self.fit(config)
        if fit.fits:
            return None
        if fit.total > fit.usable:
            return (f"advisor: {fit.row} needs {format_gib(fit.total)} GiB per device, "
                    f"{format_gib(fit.usable)} GiB usable")
        return (f"advisor: {fit.row} needs {format_gib(fit.host)} GiB of host memory, "
                f"{format_gib(fit.host_memory or 0)} GiB here")

    def bench_args(self, config: Any, out: str) -> list[str]:
        """``bench train`` options that measure this config."""
        from deepseek.config.components import options_dict
        from deepseek.config.toml_files import toml_value

        o = self.options
        world = _world(config, self.host, o.nproc)
        t = config.train
        args = ["bench", "train", "--model", config.model.name, "--seq", str(self.sequence_length(config)),
                "--batch", str(micro_batch(config, world)), "--grad-accum", str(t.grad_accum),
                "--steps", str(o.steps), "--warmup", str(o.warmup), "--strategy", config.strategy.name,
                "--precision", config.precision.dtype, "--lr", repr(t.lr), "--grad-clip", repr(t.grad_clip),
                "--seed", str(t.seed),
                "--compile" if t.compile else "--no-compile",
                "--activation-checkpointing" if t.activation_checkpointing else "--no-activation-checkpointing",
                "--fp32-residual" if config.precision.fp32_residual else "--no-fp32-residual",
                "--master-weights" if config.precision.master_weights else "--no-master-weights",
                "--init-device", t.init_device, "--attention", t.attention, "--compile-scope", t.compile_scope,
                "--json", out]
        optimizer = dict(config.to_dict()["optimizer"])  # its own keys and the shared ones (groups too)
        args += ["--optimizer", optimizer.pop("name")]
        for key, value in optimizer.items():
            args += ["--optimizer-option", f"{key}={toml_value(value)}"]
        for key, value in options_dict(config.model.options).items():
            args += ["--model-option", f"{key}={toml_value(value)}"]
        for key, value in options_dict(config.strategy.options).items():
            args += ["--strategy-option", f"{key}={toml_value(value)}"]
        if self.declared_device(config) == "cpu":  # the strategy's own rule, whatever its key is named
            args += ["--device", "cpu"]
        if needs_launcher(config, self.host):
            args = ["launch", "-n", str(o.nproc), "--", *args]
        return args

    def bench_env(self, config: Any) -> dict[str, str | None]:
        """The environment of ``bench train``'s child: the study's plugin settings
        (:func:`plugin_env`) with the config's ``[plugins] prefer`` after their own precedence in
        ``DEEPSEEK_PLUGIN_PREFER``, so the child, which reads no config file, resolves the
        strategy's and model's names as the trial's config does."""
        from deepseek.plugins.settings import ENV_PREFER
        from deepseek.training.build import run_host

        return {**plugin_env(self.host), ENV_PREFER: ",".join(run_host(config, self.host).preference()) or None}

    def run(self, trial: TrialRun) -> float:
        from deepseek.advise.hardware import format_gib

        fit = self.fit(trial.config)
        if fit.row is not None:
            trial.attrs["advisor_gib"] = round(fit.total / 1024**3, 2)
        out = trial.folder / "bench.json"
        log = trial.folder / "bench.log"
        argv = deepseek_argv(self.bench_args(trial.config, str(out)))
        code, stopped = run_child(argv, log, env=self.bench_env(trial.config),
                                  timeout=self.options.trial_timeout_s or None)
        if stopped:
            raise TrialFailed(f"ran past tuner.trial_timeout_s = {self.options.trial_timeout_s:g} s; stopped")
        if code != 0:
            said = tail(log)
            oom = "out of memory" in said.lower()
            raise TrialFailed(("out of memory: " if oom else f"bench train exited with {code}: ")
                              + (said or "no output") + f" (log: {log})")
        tokens = read_bench(out, trial.attrs)
        if fit.row is not None and "peak_gib" in trial.attrs:
            trial.attrs["advisor"] = f"{fit.row} {format_gib(fit.total)} GiB est."
        if trial.objective == "samples_per_s":
            return tokens / self.sequence_length(trial.config)
        return tokens


PEAK_BYTES_MAX = 2**50
"""The largest peak memory a bench result may give (1 PiB; no device has that much)."""
TOKENS_PER_S_MAX = 10**11
"""The most tokens per second a bench result may give per rank: at 6 FLOPs per parameter and token,
a 100k-parameter model at 10^11 tokens/s needs 6x10^16 FLOP/s, sixty times an H100's dense bf16 peak."""
MFU_MAX = 10.0
"""The largest MFU a bench result may give. Above 1 only if the peak table under-states the device
(a device it lacks, measured against another's peak), which it does by a small factor; ten times
the peak is a wrong figure, not a fast run."""
DP_SIZE_MAX = 2**20
"""The most data-parallel ranks a bench result may give (a million; the largest clusters have about 10^5 GPUs):
the trial's throughput is the rank's times this."""


def read_bench(out: Path, attrs: dict[str, Any]) -> float:
    """The tokens per second of ``bench train``'s result ``out`` summed over its data-parallel
    ranks; its peak memory (GiB) and MFU go into ``attrs``. A file that does not read, or a figure
    no bench gives (not a number, negative, a peak past :data:`PEAK_BYTES_MAX`), fails the trial
    naming the file and the field: it was taken as it came (a NaN throughput was the objective; a
    throughput past :data:`TOKENS_PER_S_MAX`, an MFU past :data:`MFU_MAX` or ranks past
    :data:`DP_SIZE_MAX` would have led the study to a trial that measured nothing)."""
    import math

    def number(v: Any, low: float, high: float = math.inf, whole: bool = False) -> bool:
        kind = int if whole else (int, float)
        return isinstance(v, kind) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high

    try:
        result = loads_json(read_text(out))
        row, dp = result["rows"][0], result["device"]["dp_size"]
        figures = {"device.dp_size": (dp, number(dp, 1, DP_SIZE_MAX, whole=True), "a whole number from 1 to 2^20"),
                   "tokens_per_s": (row["tokens_per_s"], number(row["tokens_per_s"], 0, TOKENS_PER_S_MAX),
                                    "a number from 0 to 10^11 (per rank)"),
                   "peak_memory_bytes": (row["peak_memory_bytes"], number(row["peak_memory_bytes"], 0, PEAK_BYTES_MAX,
                                                                          whole=True), "a whole number from 0 to 2^50"),
                   "mfu": (row.get("mfu"), row.get("mfu") is None or number(row["mfu"], 0, MFU_MAX),
                           "a number from 0 to 10 (above 1 only where the peak table is wrong)")}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise TrialFailed(f"{out}: no readable bench result ({exc})") from None
    bad = next((f"{k} {v!r} is not {what}" for k, (v, good, what) in figures.items() if not good), None)
    if bad is not None:
        raise TrialFailed(f"{out}: no readable bench result ({bad})")
    attrs["peak_gib"] = round(row["peak_memory_bytes"] / 1024**3, 2)
    if row.get("mfu") is not None:
        attrs["mfu"] = round(float(row["mfu"]), 4)
    return float(row["tokens_per_s"]) * dp


def _optimizer_facts(config: Any, host: Any) -> dict[str, Any]:
    """What the advisor's estimate needs of the run's ``[optimizer]``: its name and declarations."""
    from deepseek.training.build import create_optimizer_builder

    builder = create_optimizer_builder(config, host)
    return {"optimizer": config.optimizer.name, "optimizer_state_bytes": builder.state_bytes,
            "optimizer_elementwise": builder.elementwise, "optimizer_dtensor": builder.dtensor}
