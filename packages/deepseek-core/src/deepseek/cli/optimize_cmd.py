"""``deepseek optimize`` and ``deepseek export``: the graph optimizer and deployment artifacts.

Nothing here imports torch at module level (``deepseek --help`` stays fast).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from deepseek.cli.params import PATH, Device, NameList, count
from deepseek.dtypes import DTYPE_NAMES
from deepseek.errors import shown, shown_markup
from deepseek.graph.export_trained import DEFAULT_BATCH, FORMATS
from deepseek.graph.export_trained import DEFAULT_SEQ as EXPORT_SEQ


def load_checkpoint_model(checkpoint: str, device: str = "cpu") -> tuple[Any, Any, Any]:
    """The trained model of a run folder, checkpoint folder or ``.safetensors`` export, in eval
    mode on ``device``, its run config, and where its weights and config data come from
    (:func:`~deepseek.training.weights_source.read_source`)."""
    from deepseek.cli.context import command_host
    from deepseek.training.inference import load_trained
    from deepseek.training.weights_source import read_source

    source = read_source(checkpoint)
    model, config, _ = load_trained(source, device, host=command_host())
    return model.eval(), config, source


DEFAULT_SEQ = 128
"""``deepseek optimize``'s example sequence length when ``--seq`` is not given."""


def example_inputs(model: Any, config: Any, source: Any, *, batch: int, seq: int | None,
                   device: str) -> tuple[Any, tuple[Any, ...]]:
    """What ``deepseek optimize`` optimizes and its example inputs. A model with capability
    ``serving`` (the models contract's declaration of what a prediction reads): its
    ``serving_forward`` on the ``serving_inputs`` of the first ``batch`` rows of its run's first
    validation batch. Any other model: the model itself on ``(batch, seq)`` random token ids
    (:func:`~deepseek.graph.export_trained.example_tokens`, which refuses a model that takes
    neither, saying it must declare ``serving``)."""
    from deepseek.arguments import command_line
    from deepseek.cli.context import command_host
    from deepseek.graph.export_trained import example_tokens
    from deepseek.models.capabilities import model_capabilities
    from deepseek.training.inference import served_calls

    name = config.model.name
    if "serving" not in model_capabilities(model):
        with command_line():  # messages name --seq
            return model, (example_tokens(model, batch, seq, device, name=name, command="optimize",
                                          calls=served_calls(model, config, command_host()), default_seq=DEFAULT_SEQ),)
    import torch

    from deepseek.data.batch import batch_rows, head_rows, move_to
    from deepseek.errors import UsageError
    from deepseek.graph.serving import ServingModule, serving_inputs
    from deepseek.training.build import build_dataset
    from deepseek.training.evaluation import validation_set
    from deepseek.training.weights_source import check_data_tokenizer, with_data

    if seq is not None:
        raise UsageError(f"--seq {seq}: model {name!r} is optimized on its run's own inputs (capability 'serving'), "
                         "whose shapes its data gives; leave --seq out (--batch sets the rows)")
    host = command_host()
    data = with_data(source, config, None, host)
    dataset = build_dataset(data, host)
    check_data_tokenizer(source, data, dataset)  # data reading the run's tokenizer.json: the one its check read
    first = validation_set(data, dataset, 1).batches[0]
    held = batch_rows(first)
    if batch > held:
        raise UsageError(f"--batch {batch}: the run's first validation batch, which model {name!r} is optimized on, "
                         f"holds {held} row{'s' if held > 1 else ''} (data.batch_size = {data.data.batch_size}); "
                         f"give --batch {held} or less")
    inputs = serving_inputs(model, move_to(head_rows(first, batch), torch.device(device)), name=name)
    return ServingModule(model).eval(), (inputs,)


def _plan_table(plan: Any, title: str) -> Any:
    from rich.table import Table

    table = Table(title=shown_markup(title))
    for col in ("pass", "status", "what changed", "max rel err"):
        table.add_column(col)
    for r in plan.passes:
        err = "" if r.max_rel_error is None else f"{r.max_rel_error:.2e}"
        detail = "; ".join(r.changes) or (r.error or "")
        if r.ms_with is not None:  # tried by auto: the pipeline timed with and without it
            detail += f" ({r.ms_with:.2f} ms with it, {r.ms_without:.2f} ms without)"
        table.add_row(r.name, r.status, shown_markup(detail), err)
    for c in plan.candidates:
        ms = c.get("median_ms")
        detail = f"{ms:.2f} ms" if ms is not None else shown_markup(c.get("error") or "")
        err = c.get("max_rel_error")
        mark = " (chosen)" if c["name"] == plan.stage else ""
        table.add_row(f"stage {c['name']}{mark}", c["status"], detail, "" if err is None else f"{err:.2e}")
    return table


@click.command("optimize")
@click.option("--checkpoint", required=True, type=PATH, metavar="RUN", help="Run folder, checkpoint folder or .safetensors.")
@click.option("--batch", type=count(), default=1, show_default=True)
@click.option("--seq", type=count(), default=None,
              help=f"Sequence length of the example token ids (not for a model with capability 'serving', optimized on "
                   f"its run's own inputs).  [default: {DEFAULT_SEQ}, or the model's max_seq_len when shorter]")
@click.option("--passes", type=NameList(), default="auto", show_default=True, metavar="auto|A,B,...",
              help="'auto' or registered pass names in order (see 'deepseek plugins list').")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8"]), default="fp32", show_default=True)
@click.option("--device", type=Device(allow_auto=False), default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--no-cache", is_flag=True, help="Search again even if a decision is cached.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def optimize(checkpoint: str, batch: int, seq: int | None, passes: tuple[str, ...], precision: str, device: str,
             no_cache: bool, as_json: bool) -> None:
    """Optimize a trained model and report what each pass did: a token model for (batch, seq)
    random token ids, a model with capability 'serving' for its run's own inputs (batch rows)."""
    import warnings

    import deepseek
    from deepseek.cli.context import command_host

    model, config, source = load_checkpoint_model(checkpoint, device)
    info = {"name": config.model.name, **dataclasses.asdict(config.model.options)}
    module, args = example_inputs(model, config, source, batch=batch, seq=seq, device=device)
    spec: Any = passes[0] if passes in (("auto",), ("none",)) else list(passes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = deepseek.optimize(module, args, spec, precision=precision, cache=not no_cache, host=command_host()).plan
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
    from deepseek.graph.verify import describe_inputs

    console.print(_plan_table(plan, f"deepseek optimize: {config.model.name}, inputs {describe_inputs(args)}"))
    for message in dropped:
        console.print(f"warning: {message}", style="yellow", markup=False)  # a pass's own words, not markup
    eager, best = plan.timing("eager"), plan.timing(plan.stage)
    speed = f", {eager / best:.2f}x eager" if eager and best else ""
    hit = " (cached decision)" if plan.cache_hit else ""
    console.print(f"pipeline: {' -> '.join(plan.pipeline)}{hit}; max relative error "
                  f"{plan.max_rel_error:.2e} (tolerance {plan.tolerance:g}){speed}")


@click.command("export")
@click.option("--checkpoint", required=True, type=PATH, metavar="RUN", help="Run folder, checkpoint folder or .safetensors.")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="pt2", show_default=True,
              help="pt2 (torch.export), onnx, or hf: a Hugging Face GPT2LMHeadModel folder (docs/interop.md).")
@click.option("--out", type=PATH, metavar="PATH", help="Output file (default: model.pt2 / model.onnx in the run folder); "
              "for hf a new folder (default: hf/ in the run folder).")
@click.option("--batch", type=count(), default=None,
              help="Batch of the example input. Batch and seq stay dynamic unless --static: the file takes any "
                   "batch and seq from 1, and is traced at 2 or more (torch.export fixes a dimension traced at 1).  "
                   f"[default: {DEFAULT_BATCH}]")
@click.option("--seq", type=count(), default=EXPORT_SEQ, show_default=True)
@click.option("--static", is_flag=True, help="Fix the example's shape instead of dynamic batch/seq.")
@click.option("--dtype", type=click.Choice(list(DTYPE_NAMES)), default=None,
              help="hf only: the weights' dtype  [default: fp32]")
def export(checkpoint: str, fmt: str, out: str | None, batch: int | None, seq: int, static: bool,
           dtype: str | None) -> None:
    """Export a trained model for deployment (torch.export .pt2, ONNX, or a Hugging Face GPT-2 folder)."""
    from deepseek.arguments import command_line
    from deepseek.cli.context import command_host
    from deepseek.graph.export_trained import export_trained
    from deepseek.paths import created_note

    with command_line():  # messages name --out, --batch, ... (deepseek.export names its keywords)
        done = export_trained(checkpoint, out, fmt=fmt, batch=batch, seq=seq, static=static, dtype=dtype,
                              host=command_host())
    if fmt == "hf":
        size = sum(f.stat().st_size for f in done.path.iterdir()) / 2**20
        click.echo(f"wrote {shown(done.path)} (Hugging Face GPT-2, {dtype or 'fp32'}, {size:.1f} MiB)"
                   f"{created_note(done.created)}; load it with "
                   f"transformers.GPT2LMHeadModel.from_pretrained({str(done.path)!r})")
        for note in done.notes:
            click.echo(note.text)
        return
    for note in done.notes:
        click.echo(f"note: {note.text}", err=True)
    size = done.path.stat().st_size / 2**20
    click.echo(f"wrote {shown(done.path)} ({fmt}, {size:.1f} MiB){created_note(done.created)}; load it with "
               "deepseek.graph.export.load_exported")
