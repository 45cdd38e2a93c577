"""``deepseek optimize`` and ``deepseek export``: the graph optimizer and deployment artifacts.

Nothing here imports torch at module level (``deepseek --help`` stays fast).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from deepseek.cli.params import PATH, Device, NameList, count
from deepseek.errors import UsageError


def load_checkpoint_model(checkpoint: str, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """The trained model of a run folder, checkpoint folder or ``.safetensors`` export, in eval
    mode on ``device``, and its model config as a dict."""
    import dataclasses

    from deepseek.cli.context import command_host
    from deepseek.training.inference import load_trained

    model, config, _ = load_trained(checkpoint, device, host=command_host())
    info = {"name": config.model.name, **dataclasses.asdict(config.model.options)}
    return model.eval(), info


DEFAULT_SEQ = 128
"""``deepseek optimize``'s example sequence length when ``--seq`` is not given."""


def _example_tokens(model: Any, batch: int, seq: int | None, device: str, *, name: str, command: str) -> Any:
    """A ``(batch, seq)`` tensor of token ids to trace ``model`` with (``seq`` ``None``: 128, or the
    model's ``max_seq_len`` when that is shorter); a model whose forward does
    not take one such tensor (a classifier over features and labels, a multimodal model) is
    refused in one line pointing at the Python API, which takes any example inputs."""
    import inspect

    import torch

    from deepseek.models.checks import parameter_list

    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if params and (not positional or len(required) > 1):
        how = ("a model over a batch of inputs is exported through its capability 'serving' (serving_inputs and "
               "serving_forward: what a deployed model reads and returns), which it does not offer "
               "(docs/interop.md, 'Deployment files')") if command == "export" else (
               "from Python, deepseek.optimize(model, example_inputs, passes=...) takes other positional inputs, "
               "but not keyword ones such as a batch dict (docs/graph-passes.md)")
        raise UsageError(f"{command}: model {name!r} takes forward({parameter_list(params)}), not one tensor of token "
                         f"ids, which this command traces it with; {how}")

    from deepseek.models.declared import token_input_limits

    vocab, max_len = token_input_limits(model)
    if seq is None:
        seq = DEFAULT_SEQ if max_len is None else min(DEFAULT_SEQ, max_len)
    if max_len is not None and seq > max_len:
        raise UsageError(f"--seq {seq} exceeds the model's max_seq_len {max_len}; use --seq <= {max_len}")
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab, (batch, seq), generator=gen).to(device)


def _plan_table(plan: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"deepseek optimize: {plan.signature}")
    for col in ("pass", "status", "what changed", "max rel err"):
        table.add_column(col)
    for r in plan.passes:
        err = "" if r.max_rel_error is None else f"{r.max_rel_error:.2e}"
        detail = "; ".join(r.changes) or (r.error or "")
        if r.ms_with is not None:  # tried by auto: the pipeline timed with and without it
            detail += f" ({r.ms_with:.2f} ms with it, {r.ms_without:.2f} ms without)"
        table.add_row(r.name, r.status, detail, err)
    for c in plan.candidates:
        ms = c.get("median_ms")
        detail = f"{ms:.2f} ms" if ms is not None else (c.get("error") or "")
        err = c.get("max_rel_error")
        mark = " (chosen)" if c["name"] == plan.stage else ""
        table.add_row(f"stage {c['name']}{mark}", c["status"], detail, "" if err is None else f"{err:.2e}")
    return table


@click.command("optimize")
@click.option("--checkpoint", required=True, type=PATH, metavar="RUN", help="Run folder, checkpoint folder or .safetensors.")
@click.option("--batch", type=count(), default=1, show_default=True)
@click.option("--seq", type=count(), default=None,
              help=f"Sequence length of the example input.  [default: {DEFAULT_SEQ}, or the model's max_seq_len when shorter]")
@click.option("--passes", type=NameList(), default="auto", show_default=True, metavar="auto|A,B,...",
              help="'auto' or registered pass names in order (see 'deepseek plugins list').")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8"]), default="fp32", show_default=True)
@click.option("--device", type=Device(allow_auto=False), default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--no-cache", is_flag=True, help="Search again even if a decision is cached.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def optimize(checkpoint: str, batch: int, seq: int | None, passes: tuple[str, ...], precision: str, device: str,
             no_cache: bool, as_json: bool) -> None:
    """Optimize a trained model for (batch, seq) token inputs and report what each pass did."""
    import warnings

    import deepseek
    from deepseek.cli.context import command_host

    model, info = load_checkpoint_model(checkpoint, device)
    x = _example_tokens(model, batch, seq, device, name=info["name"], command="optimize")
    spec: Any = passes[0] if passes in (("auto",), ("none",)) else list(passes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = deepseek.optimize(model, x, spec, precision=precision, cache=not no_cache, host=command_host()).plan
    assert plan is not None
    dropped = [str(w.message) for w in caught if "optimizer:" in str(w.message)]
    if as_json:
        click.echo(json.dumps({"checkpoint": checkpoint, "model": info, **plan.as_dict(), "warnings": dropped},
                              default=str, indent=1))
        return
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(_plan_table(plan))
    for message in dropped:
        console.print(f"[yellow]warning: {message}[/yellow]")
    eager, best = plan.timing("eager"), plan.timing(plan.stage)
    speed = f", {eager / best:.2f}x eager" if eager and best else ""
    hit = " (cached decision)" if plan.cache_hit else ""
    console.print(f"pipeline: {' -> '.join(plan.pipeline)}{hit}; max relative error "
                  f"{plan.max_rel_error:.2e} (tolerance {plan.tolerance:g}){speed}")


@click.command("export")
@click.option("--checkpoint", required=True, type=PATH, metavar="RUN", help="Run folder, checkpoint folder or .safetensors.")
@click.option("--format", "fmt", type=click.Choice(["pt2", "onnx", "hf"]), default="pt2", show_default=True,
              help="pt2 (torch.export), onnx, or hf: a Hugging Face GPT2LMHeadModel folder (docs/interop.md).")
@click.option("--out", type=PATH, metavar="PATH", help="Output file (default: model.pt2 / model.onnx beside the run); "
              "for hf a new folder (default: hf/ in the run folder).")
@click.option("--batch", type=count(), default=2, show_default=True,
              help="Batch of the example input. Batch and seq stay dynamic unless --static: the file takes any "
                   "batch and seq from 1, and is traced at 2 or more (torch.export fixes a dimension traced at 1).")
@click.option("--seq", type=count(), default=16, show_default=True)
@click.option("--static", is_flag=True, help="Fix the example's shape instead of dynamic batch/seq.")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
              help="hf only: the weights' dtype  [default: fp32]")
def export(checkpoint: str, fmt: str, out: str | None, batch: int, seq: int, static: bool, dtype: str | None) -> None:
    """Export a trained model for deployment (torch.export .pt2, ONNX, or a Hugging Face GPT-2 folder)."""
    if fmt == "hf":
        _export_hf(checkpoint, out, dtype or "fp32")
        return
    if dtype is not None:
        raise UsageError(f"--dtype applies to --format hf only; leave it out for --format {fmt}")
    from deepseek.graph.export import export_model, missing_onnx_packages, token_dims

    if fmt == "onnx" and missing_onnx_packages():
        missing = ", ".join(missing_onnx_packages())
        raise UsageError(f"export --format onnx needs {missing}; install with: pip install 'deepseek-core[onnx]'")
    from deepseek.paths import check_output, created_note, folders_made

    src = Path(checkpoint)
    target = Path(out) if out else (src if src.is_dir() else src.parent) / f"model.{fmt}"
    missing = check_output(target, where="--out", folder=False, file_name=f"model.{fmt}")
    if target.suffix != f".{fmt}":  # an existing file is replaced: only one of this format's
        raise UsageError(f"--out: {target} does not end in .{fmt}; name the {fmt} file like model.{fmt} "
                         f"(an existing .{fmt} file is replaced)")
    from deepseek.cli.context import command_host
    from deepseek.models.protocol import model_capabilities
    from deepseek.training.inference import load_trained
    from deepseek.training.weights_source import read_source, with_data

    host, source = command_host(), read_source(checkpoint)
    model, config, _ = load_trained(source, "cpu", host=host)
    info = {"name": config.model.name, **dataclasses.asdict(config.model.options)}
    serving = "serving" in model_capabilities(model)
    if not static:  # torch.export specializes dims of size 0/1: trace dynamic dims at >= 2
        raised = [f"--{name} {value}" for name, value in (("batch", batch), ("seq", seq))
                  if value < 2 and (name == "batch" or not serving)]  # a serving model has no seq
        if raised:
            dims = "batch" if serving else "batch and seq"
            click.echo(f"note: {' and '.join(raised)} traced as 2 (torch.export fixes a dimension traced at 1); the "
                       f"file takes any {dims} from 1 (--static fixes the shape instead)", err=True)
        batch, seq = max(batch, 2), max(seq, 2)
    if serving:  # a model over a batch of inputs: traced on its run's data
        from deepseek.graph.serving import export_serving

        given = click.get_current_context().get_parameter_source("batch") is not click.core.ParameterSource.DEFAULT
        example = _example_batch(with_data(source, config, None, host), host, batch, static=static, given=given)
        with folders_made(missing, where="--out"):  # a refused export leaves no folder behind
            path = export_serving(model, example, target, name=info["name"], fmt=fmt, static=static,
                                  metadata={"model": info, "checkpoint": str(checkpoint)})
    else:
        x = _example_tokens(model, batch, seq, "cpu", name=info["name"], command="export")
        dims = None if static else [token_dims(info.get("max_seq_len"))]
        with folders_made(missing, where="--out"):
            path = export_model(model, (x,), target, fmt=fmt, dynamic=dims,
                                metadata={"model": info, "checkpoint": str(checkpoint)})
    size = path.stat().st_size / 2**20
    click.echo(f"wrote {path} ({fmt}, {size:.1f} MiB){created_note(missing)}; load it with "
               "deepseek.graph.export.load_exported")


def _example_batch(config: Any, host: Any, rows: int, *, static: bool, given: bool) -> Any:
    """The first ``rows`` rows of the first validation batch of ``config``'s data (the run's own: a
    model with capability ``serving`` is traced on real inputs of the shapes it trained on). A
    dynamic export takes fewer when the batch holds fewer (its rows stay free), and so does a
    ``--static`` one without ``--batch`` (``given``); ``--static --batch N`` (the file's rows are N)
    refuses fewer in one line, as does a dynamic export from a batch of one row."""
    from deepseek.data.batch import batch_rows, head_rows
    from deepseek.training.build import build_dataset
    from deepseek.training.evaluation import validation_set

    first = validation_set(config, build_dataset(config, host), 1).batches[0]
    held = batch_rows(first)
    where = (f"the run's first validation batch holds {held} row{'s' if held > 1 else ''} "
             f"(data.batch_size = {config.data.batch_size})")
    if static and given and rows > held:
        raise UsageError(f"--batch {rows}: {where}, and a --static export fixes the rows to those traced; give "
                         f"--batch {held} or less, or leave out --static (the rows stay dynamic)")
    if not static and held < 2:
        raise UsageError(f"export: {where}; a dynamic export traces at least 2 rows (torch.export fixes a "
                         "dimension of size 1): export --static, which fixes the rows to 1")
    return head_rows(first, min(rows, held))


def _export_hf(checkpoint: str, out: str | None, dtype: str) -> None:
    from deepseek.cli.context import command_host
    from deepseek.interop.hf_folder import default_export_folder, export_hf
    from deepseek.paths import created_note

    path = Path(out) if out else default_export_folder(Path(checkpoint))
    created, notes = export_hf(checkpoint, path, dtype, host=command_host())
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    click.echo(f"wrote {path} (Hugging Face GPT-2, {dtype}, {size:.1f} MiB){created_note(created)}; load it with "
               f"transformers.GPT2LMHeadModel.from_pretrained({str(path)!r})")
    for note in notes:
        click.echo(note)
