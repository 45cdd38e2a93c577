"""Assemble the advice (model, machine, estimates, recommendation, costs) and render it.

:func:`advise` returns a JSON-ready dict; :func:`render` prints it as rich tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from deepseek.advise.estimate import (
    STRATEGIES,
    GiB,
    ModelShape,
    TrainSetup,
    activation_bytes,
    estimate_all,
    paper_bytes,
    shape_from_config,
    shape_from_params,
)
from deepseek.advise.hardware import Devices, format_gib, host_memory, parse_size, resolve_devices
from deepseek.advise.recommend import parse_modalities, recommend
from deepseek.advise.tco import load_costs, tco_dict
from deepseek.errors import UsageError, shown_markup

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
GPU_OVERHEAD = GiB
"""CUDA context, cuBLAS/NCCL workspaces and allocator slack per GPU (not in max_memory_allocated)."""
CPU_OVERHEAD = 3 * GiB // 4
"""Python + torch libraries + oneDNN scratch of a CPU training process (~0.6 GiB RSS measured)."""


@dataclass(frozen=True)
class AdviseInputs:
    """Everything ``deepseek advise`` accepts (``None``: detect or use the default)."""

    params: float | None = None
    model: str | None = None
    gpus: int | None = None
    gpu_memory: str | None = None
    host_memory: str | None = None
    modalities: str | None = None
    seq: int | None = None
    batch: int = 8
    precision: str = "auto"
    activation_checkpointing: bool = False
    master_weights: bool = False
    grad_accum: int = 1
    optimizer: str = "adamw"
    headroom: float = 0.10
    overhead: str | None = None
    costs: str | None = None
    cost: tuple[str, ...] = ()
    layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    vocab: int = 256


def resolve_shape(inp: AdviseInputs) -> ModelShape:
    """The model's shape from ``--model`` (a preset, counted analytically) or ``--params``."""
    if (inp.params is None) == (inp.model is None):
        raise UsageError(
            "advise: say which model, with exactly one of --model small|1.3b|tiny or --params 1.3e9"
        )
    if inp.model is not None:
        if any(v is not None for v in (inp.layers, inp.hidden, inp.heads)):
            raise UsageError("--layers/--hidden/--heads: only with --params; a preset has its own shape")
        # Imports torch: GPTConfig lives in deepseek.models.gpt.
        from deepseek.models.presets import preset_config

        return shape_from_config(preset_config(inp.model), source=f"preset {inp.model}")
    if inp.vocab <= 0:
        raise UsageError(f"--vocab: must be a positive integer, got {inp.vocab}")
    return shape_from_params(
        inp.params, layers=inp.layers, hidden=inp.hidden, heads=inp.heads,  # type: ignore[arg-type]
        vocab_size=inp.vocab, seq_len=inp.seq or 2048,
    )


def resolve_optimizer(name: str, plugin_host: Any = None) -> Any:
    """The :class:`~deepseek.training.optimizers.OptimizerBuilder` subclass ``name`` resolves to on
    ``plugin_host`` (default: the process's), for what it declares (``state_bytes``,
    ``supports_master_weights``, ``elementwise``). Loading a class imports its module only: core's optimizers
    import torch when they build one, not before."""
    from deepseek.config.components import load_checked
    from deepseek.plugins.host import get_host

    host = plugin_host or get_host()
    try:
        component = host.resolve("optimizer", name)
    except UsageError as exc:  # unknown (with did-you-mean) or ambiguous
        raise UsageError(f"--optimizer: {exc}") from None
    return load_checked("optimizer", component)


def _setup(inp: AdviseInputs, shape: ModelShape, devices: Devices, optimizer: Any) -> TrainSetup:
    if inp.precision not in PRECISIONS:
        raise UsageError(f"--precision: {inp.precision!r} is not allowed; choose from {', '.join(PRECISIONS)}")
    seq = inp.seq if inp.seq is not None else min(shape.max_seq_len, 2048)
    if seq <= 0 or inp.batch <= 0:
        raise UsageError(f"--seq/--batch: must be positive integers, got seq={seq}, batch={inp.batch}")
    if inp.model is not None and seq > shape.max_seq_len:
        raise UsageError(
            f"--seq: preset {inp.model!r} has max_seq_len={shape.max_seq_len}, got {seq}; use a shorter sequence"
        )
    if inp.grad_accum <= 0:
        raise UsageError(f"--grad-accum: must be a positive integer, got {inp.grad_accum}")
    precision = inp.precision
    if precision == "auto":
        precision = "bf16" if devices.count else "fp32"
    if inp.master_weights and not optimizer.supports_master_weights:
        raise UsageError(f"--master-weights: optimizer {inp.optimizer!r} does not keep fp32 master weights (only an "
                         "optimizer declaring supports_master_weights does, e.g. 'adamw'); pass --optimizer adamw "
                         "or leave out --master-weights")
    if inp.master_weights:
        _check_master_weights(precision, inp.precision, devices)
    return TrainSetup(
        seq_len=seq, micro_batch=inp.batch, precision=precision,  # type: ignore[arg-type]
        activation_checkpointing=inp.activation_checkpointing, gpus=devices.count,
        master_weights=inp.master_weights, grad_accum=inp.grad_accum,
        optimizer=inp.optimizer, optimizer_state_bytes=optimizer.state_bytes,
        optimizer_elementwise=optimizer.elementwise, optimizer_dtensor=optimizer.dtensor,
    )


def _check_master_weights(precision: str, asked: str, devices: Devices) -> None:
    """``--master-weights`` keeps bf16 parameters, on the one device of a strategy that offers
    them (the rows with :attr:`~deepseek.advise.estimate.StrategySpec.master_weights`)."""
    if precision != "bf16":
        given = f"{precision} (auto on the CPU)" if asked == "auto" else precision
        raise UsageError(f"--master-weights: keeps bf16 parameters, but the precision is {given}; "
                         "pass --precision bf16 or leave out --master-weights")
    if devices.count > 1:
        rows = ", ".join(repr(s.key) for s in STRATEGIES if s.master_weights)
        where = "detected" if devices.source != "user" else "given"
        raise UsageError(f"--master-weights: only strategy {rows} keeps fp32 master weights, on one device, and "
                         f"{devices.count} GPUs were {where}; pass --gpus 1 or leave out --master-weights")


def advise(inp: AdviseInputs, plugin_host: Any = None) -> dict[str, Any]:
    """The whole advice as a JSON-ready dict (sizes in bytes); the strategies realising each
    memory row are what those registered on ``plugin_host`` declare (default: the process's)."""
    from deepseek.advise.engines import row_engines

    if not 0 <= inp.headroom < 1:
        raise UsageError(f"--headroom: a fraction in [0, 1), got {inp.headroom}")
    modalities = parse_modalities(inp.modalities)
    optimizer = resolve_optimizer(inp.optimizer, plugin_host)
    shape = resolve_shape(inp)
    devices = resolve_devices(inp.gpus, inp.gpu_memory)
    if inp.host_memory:
        host: int | None = parse_size(inp.host_memory, option="--host-memory")
    else:  # this machine's RAM only when the advice is for this machine
        host = host_memory() if devices.source != "user" else None
    setup = _setup(inp, shape, devices, optimizer)
    if inp.overhead is not None:
        overhead = parse_size(inp.overhead, option="--overhead", allow_zero=True)
    else:
        overhead = GPU_OVERHEAD if devices.count else CPU_OVERHEAD
    costs = load_costs(inp.costs, inp.cost)
    kw: dict[str, Any] = {"gpu_memory": devices.memory, "headroom": inp.headroom, "overhead": overhead,
                          "host_memory": host, "engines": row_engines(plugin_host)}
    estimates = estimate_all(shape, setup, **kw)
    rec = recommend(shape, setup, modalities, estimates, **kw)
    act = activation_bytes(shape, setup)
    return {
        "model": {**asdict(shape), "layer_params": shape.layer_params},
        "setup": asdict(setup),
        "modalities": list(modalities),
        "device": {"kind": devices.kind, "count": devices.count, "memory": devices.memory,
                   "name": devices.name, "source": devices.source,
                   "usable_memory": int(devices.memory * (1 - inp.headroom)),
                   "headroom": inp.headroom, "host_memory": host},
        "optimizer": {"name": setup.optimizer, "state_bytes": setup.optimizer_state_bytes,
                      "supports_master_weights": optimizer.supports_master_weights,
                      "elementwise": optimizer.elementwise, "dtensor": optimizer.dtensor},
        "bytes_per_param_paper": asdict(paper_bytes(setup.mixed, setup.optimizer_state_bytes)),
        "activations": asdict(act),
        "overhead": overhead,
        "estimates": [e.to_dict() for e in estimates],
        "recommendation": rec.to_dict(),
        "tco": tco_dict(costs),
    }


def _optimizer_parts(report: dict[str, Any]) -> str:
    """How the optimizer's bytes per parameter split: the fp32 master (what is not the optimizer's
    state: none in fp32) and the optimizer's declared state."""
    o = report["optimizer"]
    master = report["bytes_per_param_paper"]["optimizer"] - o["state_bytes"]
    state = f"{o['name']} state {o['state_bytes']:g}"
    return f"(fp32 master {master:g} + {state})" if master else f"({state})"


def _g(n: float) -> str:
    return format_gib(n) if n else "-"


def render(report: dict[str, Any], console: Any = None) -> None:
    """Print ``report`` (from :func:`advise`) as rich tables."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=132)
    m, s, d = report["model"], report["setup"], report["device"]
    where = f"{d['count']} x {d['name']}, {format_gib(d['memory'])} GiB each" if d["count"] else (
        f"CPU, {format_gib(d['memory'])} GiB")
    o = report["optimizer"]
    extras = f", optimizer {o['name']} ({o['state_bytes']:g} B state/param)"
    extras += ", fp32 master weights" if s["master_weights"] else ""
    if s["grad_accum"] > 1:
        extras += f", {s['grad_accum']} micro-batches per step"
    console.print(
        f"[bold]Model[/] {m['source']}: {m['n_params'] / 1e9:.3f}B parameters, {m['n_layers']} layers x "
        f"{m['d_model']} hidden, {m['n_heads']} heads, vocab {m['vocab_size']}\n"
        f"[bold]Run[/] {s['precision']}, micro-batch {s['micro_batch']} x seq {s['seq_len']} per GPU, "
        f"activation checkpointing {'on' if s['activation_checkpointing'] else 'off'}{extras}\n"
        f"[bold]Machine[/] {where} ({d['source']}); usable "
        f"{format_gib(d['usable_memory'])} GiB after {d['headroom']:.0%} headroom"
    )
    table = Table(title="Memory per device (GiB); host = RAM for offload, all GPUs together", title_justify="left")
    for col in ("strategy", "runs as", "weights", "grads", "optim", "activ", "buffers", "overhead",
                "total", "host", "fits"):
        table.add_column(col, justify="left" if col in ("strategy", "runs as", "fits") else "right",
                         no_wrap=True)
    for e in report["estimates"]:
        # a third-party edition is its distribution's name, from that distribution's metadata
        runs_as = f"{shown_markup(e['edition'])}: {e['engine']}" if e["engine"] else "not offered"
        if e["engine"] and not e["applicable"]:
            runs_as += " *"
        fits = "[green]yes[/]" if e["fits"] else ("[red]no (host)[/]" if not e["host_fits"] else "[red]no[/]")
        table.add_row(e["label"], runs_as, _g(e["weights"]), _g(e["gradients"]), _g(e["optimizer"]),
                      _g(e["activations"]), _g(e["buffers"]), _g(e["overhead"]), format_gib(e["total"]),
                      _g(e["host"]), fits)
    console.print(table)
    bpp = report["bytes_per_param_paper"]
    console.print(
        f"[dim]bytes/parameter (ZeRO paper, {o['name']}): weights {bpp['weights']:g} + grads "
        f"{bpp['gradients']:g} + optimizer {bpp['optimizer']:g} {_optimizer_parts(report)}; autocast "
        f"strategies keep fp32 grads. total counts the larger of grads and activations where grads are "
        f"freed between steps (single, fsdp), or the optimizer step when it is larger (fsdp's foreach "
        f"step holds 4 B/param more, as AdamW's does). * needs more than one GPU"
        f"{'' if o['elementwise'] else ' or, for DeepSpeed, an elementwise optimizer (' + o['name'] + ' is not)'}. "
        "Formulas: docs/advise.md[/]"
    )
    if s["master_weights"]:
        console.print(
            f"[dim]master weights: bf16 weights 2 + bf16 grads 2 + optimizer {bpp['optimizer']:g} "
            f"{_optimizer_parts(report)}"
            f"{' + 4 (fp32 gradient sum of the micro-batches)' if s['grad_accum'] > 1 else ''} B/param; "
            "only the rows whose strategy offers them are shown[/]"
        )
    r = report["recommendation"]
    strategy = f"{r['strategy']} (strategy {r['engine']!r})" if r["strategy"] else "none fits"
    install = "(installed)" if r.get("installed") else r["install"]
    console.print(f"\n[bold]Recommendation[/]: edition [bold cyan]{r['edition']}[/], {strategy}   [dim]{install}[/]")
    for line in r["reasons"] + r["suggestions"]:
        console.print(f"  - {line}")
    for line in r["seed_notes"]:
        console.print(f"  [dim]{line}[/]")
    t = report["tco"]
    ttable = Table(title=f"{t['years']}-year cost ({t['currency']}); source: {shown_markup(t['source'])}", title_justify="left")
    for col in ("edition", "hardware", "labour", "total", "per year", f"benefit to justify ({t['upgrade_factor']:g}x)"):
        ttable.add_column(col, justify="left" if col == "edition" else "right")
    for row in t["rows"]:
        mark = " <" if row["edition"] == r["edition"] else ""
        ttable.add_row(row["edition"] + mark, f"{row['hardware']:,.0f}", f"{row['labor']:,.0f}",
                       f"{row['total']:,.0f}", f"{row['per_year']:,.0f}", f"{row['break_even_benefit']:,.0f}")
    console.print(ttable)
