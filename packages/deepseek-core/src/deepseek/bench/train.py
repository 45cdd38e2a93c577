"""``deepseek bench train``: training throughput and MFU of our training path, side by side
with a plain PyTorch loop of the same model (eager and ``torch.compile``) in the same process.

Our path is exactly the trainer's: the :class:`~deepseek.training.engine.StepEngine` the trainer
uses sets up the strategy, builds, checks and prepares the model and runs each optimizer step
(the strategy's ``train_step``); the loss and gradient norm are read from the device every
``--log-every`` steps, as the trainer's ``logging.every_n_steps`` does. Only the data differ: a
few fixed random token batches instead of the corpus. The plain loop is what a user would write:
autocast, ``loss.backward()``, ``clip_grad_norm_`` (``--grad-clip``, ``train.grad_clip``'s
default; 0: none), AdamW (``fused=True`` on CUDA), no host sync.

Timing: warm-up steps (compilation included) are excluded; each measured step is bracketed by
CUDA events (no extra host sync; one ``synchronize`` at the end) or ``perf_counter`` on CPU;
the mean step time (the steps that read the loss included) gives tokens/s and MFU; the median
is kept too. On CUDA one more untimed read window runs under
``torch.cuda.set_sync_debug_mode("warn")`` to count the host syncs per step. Tokens/s are
per device (``batch * seq`` per step). MFU uses the PaLM formula, ``GPT.flops_per_token``:
``6 N + 12 L d T`` FLOPs per token, ``N`` = parameters without the position table (the tied
token table stays in, it is the LM head's matmul weight), divided by the device's dense peak.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import click

from deepseek.bench._train_config import (
    GRAD_CLIP,
    BenchSettings,
    bench_config,
    component_label,
    model_context,
    model_overrides,
    planned_device,
)
from deepseek.bench._train_measure import make_row, measure, peak_tflops, tf32
from deepseek.cli.bench_cmd import baseline_options, check_baseline
from deepseek.cli.params import MAX_REPEATS, PATH, SEED, Device, FiniteFloat, NameList, count
from deepseek.errors import shown
from deepseek.training.metrics import read_interval, read_scalars


def _compile(model: Any, s: BenchSettings, *, whole: bool) -> Any:
    """Compile in place with a ``--compile-mode`` other than the default (not a config key; the
    default mode compiles through the config's ``train.compile`` and ``compile_scope``)."""
    kwargs = {} if s.compile_mode == "default" else {"mode": s.compile_mode}
    if whole:
        model.compile(**kwargs)
    else:
        for block in model.blocks:
            block.compile(**kwargs)
    return model


def _batches(s: BenchSettings, vocab: int, rows: int, pin: bool) -> list[dict[str, Any]]:
    """A few fixed random token batches on the host (pinned for CUDA), cycled through."""
    import torch

    gen = torch.Generator().manual_seed(s.seed)
    out = []
    for _ in range(4):
        tokens = torch.randint(0, vocab, (rows, s.seq + 1), generator=gen)
        x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
        out.append({"input_ids": x.pin_memory(), "targets": y.pin_memory()} if pin else {"input_ids": x, "targets": y})
    return out


def _ours(s: BenchSettings, host: Any) -> tuple[Callable[[int], Any], Any, Any, Callable[[], None]]:
    """Our training path: the trainer's step engine on a registered strategy."""
    from deepseek.training.engine import StepEngine

    cfg = bench_config(s, host)
    engine = StepEngine(cfg, host=host, command="bench train")
    strategy = engine.strategy
    model = None
    try:
        engine.setup_environment()
        model = engine.build_model()
        if s.compile and not cfg.train.compile:
            _compile(model, s, whole=s.compile_scope == "model")
        engine.setup_model(model)
        batches = _batches(s, model.config.vocab_size, cfg.data.batch_size, strategy.device.type == "cuda")
        every = read_interval(s.log_every, strategy.device.type)
    except BaseException:
        model = None
        _abandon(strategy)
        raise
    pending: list[Any] = []

    def step(i: int) -> Any:
        result = engine.step(batches[i % len(batches)], s.lr)
        pending.extend((result.loss, result.grad_norm))
        if (i + 1) % every == 0:  # the trainer's read of the window's losses and norms
            read_scalars(pending)
            pending.clear()
        return result.loss

    return step, strategy, model, strategy.teardown


def _plain(s: BenchSettings, precision: str, device: Any, compiled: bool, host: Any) -> tuple[Callable[[int], Any], Any]:
    """A plain PyTorch loop over the same model, seeded the same way."""
    import torch

    from deepseek.models.factory import registered_model
    from deepseek.plugins.host import get_host

    torch.manual_seed(s.seed)
    model = registered_model(host or get_host(), s.model, model_overrides(s)).float().to(device)
    model.set_activation_checkpointing(s.activation_checkpointing)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=s.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda" or None)
    fwd = torch.compile(model, **({} if s.compile_mode == "default" else {"mode": s.compile_mode})) if compiled else model
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    batches = _batches(s, model.config.vocab_size, s.batch * s.grad_accum, device.type == "cuda")

    def step(i: int) -> Any:
        batch = batches[i % len(batches)]
        x = batch["input_ids"].to(device, non_blocking=True)
        y = batch["targets"].to(device, non_blocking=True)
        total = torch.zeros((), device=device)
        for xm, ym in zip(x.split(s.batch), y.split(s.batch), strict=True):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = fwd(xm, ym) / s.grad_accum
            (scaler.scale(loss) if scaler is not None else loss).backward()
            total += loss.detach().float()
        if scaler is not None:
            scaler.unscale_(opt)
        if s.grad_clip:  # 0: no clipping
            torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    return step, model


def _variants(names: tuple[str, ...]) -> list[str]:
    from deepseek.errors import UsageError

    if any(v not in ("eager", "compile") for v in names):
        raise UsageError(f"--baseline-variants: {','.join(names)!r}; give eager, compile or eager,compile")
    return list(dict.fromkeys(names))


def _abandon(strategy: Any) -> None:
    """Tear ``strategy`` down after a failure, as the trainer does: the wrapped model first (the
    order rule of :func:`run_bench`), the teardown's own error suppressed so the original one is
    raised (a process group, deepspeed's switch of torch's fused attention kernels, given back)."""
    strategy.model = strategy.optimizer = None
    _release()
    with contextlib.suppress(Exception):
        strategy.teardown()


def _release() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with contextlib.suppress(Exception):
        torch._dynamo.reset()


def device_name(device: Any) -> str:
    """How a result names the device it measured on (``CPU`` for any CPU)."""
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def planned_facts(s: BenchSettings, host: Any = None) -> dict[str, Any]:
    """What a result of :func:`run_bench` with ``s`` will say it measured (its ``settings`` and
    the device's ``name``), known before anything is built: a ``--against`` baseline of something
    else is refused with it before the model is built or a step timed."""
    from deepseek.training.mixed_precision import resolved_name

    device = planned_device(s, host)
    return {"device": {"name": device_name(device)},
            "settings": {**asdict(s), "precision": resolved_name(s.precision, device)}}


def run_bench(s: BenchSettings, host: Any = None) -> dict[str, Any]:
    """Measure our path (and with ``baseline`` the plain loop, eager and compiled); components
    come from ``host`` (default: the process's plugin host)."""
    import torch

    from deepseek.training.attention import attention_kernel

    with tf32(), attention_kernel(s.attention, planned_device(s, host), where="--attention"):
        step, strategy, model, teardown = _ours(s, host)
        try:
            device = strategy.device
            precision = strategy.precision.name
            cfg = model.config
            # From a meta-device twin: under ZeRO-3 the live parameters are partitioned (numel 0).
            from deepseek.models.gpt import GPT

            with torch.device("meta"):
                flops = int(GPT(cfg).flops_per_token(s.seq))
            name = device_name(device)
            peak = s.peak_tflops or (peak_tflops(name, precision) if device.type == "cuda" else None)
            kind = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "process peak RSS (VmHWM)"
            tokens = s.batch * s.seq * s.grad_accum
            ours = f"deepseek {component_label(s.strategy, s.strategy_options)}"
            ours += f" + compile ({s.compile_scope})" if s.compile else ""
            ours += f", {component_label(s.optimizer, s.optimizer_options)}"
            every = read_interval(s.log_every, device.type)
            ours += f", read every {every}"
            # On the CPU, syncs are counted from what our path does: one read per window.
            rows = [make_row(ours, "deepseek", s.compile, s, measure(step, s, device, 1 / every, window=every),
                             flops, tokens, peak, kind)]
            dp_size, world = strategy.dp_size, strategy.world_size
            profiled = None
            if s.profile and device.type == "cuda":
                from deepseek.bench._profile import profile_steps

                profiled = profile_steps(step, s.warmup + s.steps + 1, 3, rows[0].mean_step_s)
            del step, model
            # The wrapped model (a DDP reducer, FSDP hooks) goes before its process group does: a
            # reducer destroyed after destroy_process_group can abort the process at exit.
            strategy.model = strategy.optimizer = None
            _release()
            if s.baseline and world == 1:
                for compiled in [v == "compile" for v in _variants(s.baseline_variants)]:
                    plain, plain_model = _plain(s, precision, device, compiled, host)
                    label = "plain PyTorch + torch.compile" if compiled else "plain PyTorch eager"
                    rows.append(make_row(label, "plain", compiled, s, measure(plain, s, device, 0),
                                     flops, tokens, peak, kind))
                    del plain, plain_model
                    _release()
        except BaseException:  # a model that fails in a step, the plain loop's build: nothing left held
            step = model = None  # noqa: F841 (the traceback keeps this frame: its model goes first)
            _abandon(strategy)
            raise
        teardown()
    return {
        "device": {"type": device.type, "name": name, "peak_tflops": peak, "torch": torch.__version__,
                   "dp_size": dp_size, "world_size": world},
        "model": {"name": s.model, **cfg.to_dict(), "flops_per_token": flops,
                  "flops_formula": "6*N + 12*L*d*T (PaLM), N = parameters without the position table"},
        "settings": {**asdict(s), "precision": precision, "tokens_per_step": tokens},
        "rows": [asdict(r) for r in rows],
        **({"profile": profiled} if profiled else {}),
    }


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    d, st = result["device"], result["settings"]
    title = (f"bench train: {result['model']['name']} {st['precision']} batch {st['batch']} x seq {st['seq']}, "
             f"{st['steps']} steps after {st['warmup']} warm-up, on {d['name']} (peak "
             f"{d['peak_tflops'] or 'n/a'} TFLOP/s)")
    table = Table(title=title, title_justify="left")
    for col in ("variant", "mean step ms", "tokens/s", "TFLOP/s", "MFU", "peak memory GiB", "loss first->last"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in result["rows"]:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        table.add_row(r["name"], f"{r['mean_step_s'] * 1e3:.1f}", f"{r['tokens_per_s']:,.0f}",
                      f"{r['tflops']:.2f}", mfu, f"{r['peak_memory_bytes'] / 1024**3:.2f}",
                      f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}")
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    console.print(table)
    if "profile" in result:
        from deepseek.bench._profile import print_profile

        print_profile(result["profile"])
    console.print(f"[dim]memory: {result['rows'][0]['memory_kind']}; FLOPs/token {result['model']['flops_per_token']:,} "
                  f"({result['model']['flops_formula']})[/]")


@click.command("train")
@click.option("--model", default="small", show_default=True, help="GPT preset: tiny, small, 1.3b.")
@click.option("--precision", type=click.Choice(["bf16", "fp16", "fp32", "auto"]), default="bf16", show_default=True)
@click.option("--batch", type=count(), default=8, show_default=True, help="Micro-batch per device.")
@click.option("--seq", type=count(), default=None, help="Sequence length (default 2048, or the model's max_seq_len "
              "when shorter: 128 for tiny).")
@click.option("--steps", type=count(1, MAX_REPEATS), default=20, show_default=True, help="Measured steps.")
@click.option("--warmup", type=count(0, MAX_REPEATS), default=5, show_default=True,
              help="Warm-up steps (not measured).")
@click.option("--strategy", default="single", show_default=True, help="Registered strategy for our path.")
@click.option("--strategy-option", "strategy_options", multiple=True, metavar="KEY=VALUE",
              help="A [strategy] key for our path, e.g. stage=3 (repeatable).")
@click.option("--optimizer", default="adamw", show_default=True, help="Registered optimizer for our path.")
@click.option("--optimizer-option", "optimizer_options", multiple=True, metavar="KEY=VALUE",
              help="An [optimizer] key for our path, e.g. weight_decay=0 (repeatable).")
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True,
              help="torch.compile our path (the trainer's train.compile).")
@click.option("--compile-scope", type=click.Choice(["blocks", "model"]), default="blocks", show_default=True,
              help="Compile each block (trainer) or the whole model, for our path.")
@click.option("--compile-mode", type=click.Choice(["default", "reduce-overhead", "max-autotune",
                                                   "max-autotune-no-cudagraphs"]), default="default",
              show_default=True)
@click.option("--attention", type=click.Choice(["auto", "flash", "efficient", "cudnn", "math", "fa4"]), default="auto",
              show_default=True, help="Force one scaled_dot_product_attention kernel (fa4: the flash-attn-4 "
              "package's FlashAttention-4, through torch's activate_flash_attention_impl).")
@click.option("--activation-checkpointing/--no-activation-checkpointing", default=False, show_default=True)
@click.option("--init-device", type=click.Choice(["cpu", "device"]), default="cpu", show_default=True,
              help="train.init_device: create the weights on the CPU or directly on the device.")
@click.option("--grad-accum", type=count(), default=1, show_default=True,
              help="Micro-batches per optimizer step (each --batch rows), for both paths.")
@click.option("--log-every", type=count(), help="Read the loss every N steps (logging.every_n_steps; "
              "default: 1 on the CPU, 10 on CUDA).")
@click.option("--fp32-residual/--no-fp32-residual", default=True, show_default=True,
              help="Our path's precision.fp32_residual (false: residual stream in bf16).")
@click.option("--master-weights/--no-master-weights", default=False, show_default=True,
              help="Our path: bf16 parameters, fp32 master weights in the optimizer (precision.master_weights).")
@click.option("--model-option", "model_options", multiple=True, metavar="KEY=VALUE",
              help="A [model] key for our path, e.g. n_layers=32 (repeatable).")
@click.option("--profile/--no-profile", default=False, show_default=True,
              help="On CUDA, profile 3 more steps of our path: GPU time per kernel category.")
@click.option("--baseline/--no-baseline", default=False, show_default=True,
              help="Also run a plain PyTorch loop (eager and torch.compile) in the same process.")
@click.option("--baseline-variants", type=NameList(), default="eager,compile", show_default=True,
              help="Which plain loops --baseline runs: eager, compile or both.")
@click.option("--device", type=Device(), default="auto", show_default=True,
              help="auto, cpu or cuda[:N]; single's device unless --strategy-option device=... gives it.")
@click.option("--peak-tflops", type=FiniteFloat(min=0, min_open=True),
              help="Peak TFLOP/s for MFU when the device is not known.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=3e-4, show_default=True)
@click.option("--grad-clip", type=FiniteFloat(min=0), default=GRAD_CLIP, show_default=True,
              help="Clip the global gradient norm to this, in both paths (train.grad_clip); 0: no clipping.")
@click.option("--seed", type=SEED, default=1337, show_default=True)
@click.option("--json", "json_path", type=PATH, metavar="PATH", help="Write results here.")
@baseline_options
def train_command(compile_: bool, json_path: str | None, against: str | None, max_regression: float,
                  **options: Any) -> int | None:
    """Training throughput, peak memory and MFU of our path vs a plain PyTorch loop."""
    from deepseek.bench.baseline import load_baseline
    from deepseek.paths import check_output, created_note, make_folders

    saved = load_baseline(against, "train") if against is not None else None
    from deepseek.cli.context import command_host

    if options["seq"] is None:  # the longest rows up to 2048 that the model takes
        options["seq"] = min(2048, model_context(options["model"], options["model_options"], command_host()))
    s = BenchSettings(compile=compile_, **options)
    _variants(s.baseline_variants)
    to_file = json_path is not None and str(json_path) != "-"
    missing = check_output(json_path, where="--json", folder=False, file_name="bench.json",
                           reads=(("--against", against),), host=command_host()) if to_file else []
    if saved is not None and against is not None:  # a baseline of something else: refused before timing
        from deepseek.bench.baseline import check_same

        check_same(saved, planned_facts(s, command_host()), kind="train", path=against)
    result = run_bench(s, command_host())
    if result["device"]["world_size"] > 1 and int(os.environ.get("RANK", "0")) != 0:
        return
    _print(result)
    if json_path is not None:
        from deepseek.cli.bench_cmd import write_json

        make_folders(missing, where="--json")
        write_json(str(json_path), result)
        click.echo(f"wrote {shown(json_path)}{created_note(missing)}")
    return check_baseline(saved, result, "train", against, max_regression)


if __name__ == "__main__":
    train_command()
