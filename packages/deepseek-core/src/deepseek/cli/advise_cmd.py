"""``deepseek advise``: memory per strategy, the edition and strategy to use, and 3-year costs.

Imports no torch unless it must detect GPUs (and torch is installed) or read a preset's shape.
"""

from __future__ import annotations

import json
import math
import re

import click

from deepseek.cli.params import PATH, FiniteFloat, count
from deepseek.errors import UsageError

_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbt]?)\s*$", re.IGNORECASE)
_SCALE = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
MAX_PARAMS = 1e15
"""The largest parameter count the advisor takes (a thousand times today's largest models)."""


MAX_BATCH = 1 << 20
"""The largest micro-batch (and accumulation count) the advisor takes: beyond it every figure is
thousands of times any GPU's memory."""
MAX_SEQ = 1 << 24
"""The longest sequence the advisor takes (16,777,216 tokens)."""


def parse_count(text: str) -> float:
    """``1.3e9``, ``1.3B``, ``350M``, ``125k`` -> a positive number of parameters."""
    m = _COUNT.match(text)
    if not m:
        raise UsageError(
            f"--params: cannot read {text!r}; give a positive parameter count such as 1.3e9, 1.3B or 350M"
        )
    value = float(m.group(1)) * _SCALE[m.group(2).lower()]
    if not math.isfinite(value) or value > MAX_PARAMS:
        raise UsageError(
            f"--params: {text!r} is beyond what the advisor models (at most {MAX_PARAMS:.0e}); give a "
            "parameter count such as 1.3e9"
        )
    if value < 1:
        raise UsageError(f"--params: need at least one parameter, got {text!r}")
    return value


@click.command("advise")
@click.option("--params", metavar="N", help="Parameter count: 1.3e9, 1.3B, 350M (or use --model).")
@click.option("--model", metavar="PRESET", help="A GPT preset (tiny, small, 1.3b), counted analytically.")
@click.option("--gpus", type=count(0), help="Number of GPUs (default: detected; 0 = CPU).")
@click.option("--gpu-memory", metavar="SIZE", help="Memory per GPU, e.g. 80GiB (default: detected).")
@click.option("--host-memory", metavar="SIZE", help="Host RAM for offload (default: this machine's, when detected).")
@click.option("--modalities", default="text", show_default=True, help="Comma list of text, vision, speech.")
@click.option("--seq", type=count(1, MAX_SEQ), help="Sequence length (default: the preset's, at most 2048).")
@click.option("--batch", type=count(1, MAX_BATCH), default=8, show_default=True, help="Micro-batch per GPU.")
@click.option("--precision", default="auto", show_default=True,
              help="bf16, fp16 or fp32 (auto: bf16 on GPU, fp32 on CPU).")
@click.option("--activation-checkpointing/--no-activation-checkpointing", default=False, show_default=True,
              help="Recompute each block's activations in backward.")
@click.option("--master-weights/--no-master-weights", default=False, show_default=True,
              help="bf16 parameters with fp32 master weights in the optimizer (precision.master_weights; "
                   "strategy single, bf16).")
@click.option("--optimizer", default="adamw", show_default=True, metavar="NAME",
              help="Registered optimizer ([optimizer] name); its declared state bytes per parameter "
                   "size the optimizer column (see 'deepseek plugins list').")
@click.option("--grad-accum", type=count(1, MAX_BATCH), default=1, show_default=True,
              help="Micro-batches per optimizer step (train.grad_accum).")
@click.option("--headroom", type=FiniteFloat(0, 1, max_open=True), default=0.10, show_default=True,
              help="Fraction of GPU memory kept free (fragmentation).")
@click.option("--overhead", metavar="SIZE", help="CUDA context etc. per GPU (default 1GiB; CPU 0.75GiB).")
@click.option("--layers", type=count(), help="With --params: number of layers (default: GPT-3-like).")
@click.option("--hidden", type=count(), help="With --params: hidden size.")
@click.option("--heads", type=count(), help="With --params: attention heads.")
@click.option("--vocab", type=count(), default=256, show_default=True, help="With --params: vocabulary size.")
@click.option("--costs", type=PATH, metavar="FILE", help="TOML file of edition costs (defaults: the seed's table).")
@click.option("--cost", multiple=True, metavar="EDITION.FIELD=V", help="Override one cost, e.g. pro.labor=150000.")
@click.option("--json", "as_json", is_flag=True, help="Print the advice as JSON.")
def advise(as_json: bool, params: str | None, **options: object) -> None:
    """Estimate training memory per strategy (single, DDP, ZeRO-1/2/3, +/- CPU offload), say which
    fit, recommend an edition and strategy, and show the seed's 3-year cost table."""
    from deepseek.advise.report import AdviseInputs, render
    from deepseek.advise.report import advise as build

    count = parse_count(params) if params is not None else None
    precision = str(options.pop("precision")).lower()
    from deepseek.cli.context import command_host

    report = build(AdviseInputs(params=count, precision=precision, **options), command_host())  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        render(report)
