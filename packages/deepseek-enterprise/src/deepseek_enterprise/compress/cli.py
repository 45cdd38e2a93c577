"""``deepseek compress --checkpoint RUN --method NAME [--set KEY=VALUE] --out DIR``.

Loads the trained model, applies a registered compressor, writes the result as a run folder
(:mod:`.output`) and prints the compressed model against the original, measured in this call on
the same validation batches: parameters, weights on disk, Linear weights as stored, validation
loss/metrics and batch-1 latency p50 (``deepseek bench latency``'s eager timing; with
``--optimize`` also under ``deepseek.optimize``). With ``--max-drop`` it searches recipes
(:mod:`.search`), ``--recovery-steps`` being the step budget of their ``recover`` steps and
``--prefer`` what it keeps within the budget (the smallest weights or the lowest batch-1 latency).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import click

from deepseek.cli.params import MAX_REPEATS, PATH, Device, count
from deepseek.errors import UsageError, shell_quoted, shown, shown_markup
from deepseek_enterprise.cli_params import PATH_ARG
from deepseek_enterprise.compress.search import (
    PREFERENCES,
    create_steps,
    option_table,
    parse_budget,
    parse_recipe,
)

DEFAULT_RECOVERY_STEPS = 100
"""Training steps of a ``recover`` step in a ``--max-drop`` search unless ``--recovery-steps`` says."""

MAX_RECOVERY_STEPS = 2**63 - 1
"""The most ``--recovery-steps``: each recover step's train.max_steps, a TOML (64-bit) integer (2**70 was
refused only inside the search, as every recover recipe's 'not applicable: train.max_steps: ...')."""

MAX_CALIBRATION_BATCHES = 1024
"""The most ``--calibration-batches``: they are read and held in memory at once (10**30 filled the
memory until the process was killed)."""


def compressor_from_cli(host: Any, method: str, settings: tuple[str, ...]) -> Any:
    """The registered compressor ``method`` with its options from ``--set KEY=VALUE``."""
    from deepseek_enterprise.compress.compressor import create_compressor

    return create_compressor(host, method, _method_table(method, settings), where=f"--set ({method})")


def check_method_without_torch(host: Any, method: str, settings: tuple[str, ...]) -> None:
    """What :func:`compressor_from_cli` checks that imports no torch: each ``--set`` a KEY=VALUE,
    the compressor's name, and its options where it declares that it loads without torch
    (:func:`~deepseek_enterprise.compress.compressor.check_without_torch`); the job service runs
    it at submit."""
    from deepseek_enterprise.compress.compressor import check_without_torch

    check_without_torch(host, method, _method_table(method, settings), where=f"--set ({method})")


def _method_table(method: str, settings: tuple[str, ...]) -> dict[str, Any]:
    """The options table of ``--set KEY=VALUE`` (one UsageError line for an item that is not one,
    or a key given twice, as in a ``--recipe`` step)."""

    def malformed(item: str) -> str:
        named = item.partition("=")[0].strip()  # the example keeps a plain key the user gave
        example = named if re.fullmatch(r"[A-Za-z0-9_-]+", named) else "ratio"
        return (f"--set {item!r}: expected KEY=VALUE, an option of compressor {method}, e.g. --set {example}=0.5 "
                "(docs/compress.md)")

    return option_table(settings, malformed, where=f"--set ({method}):")


def _measure(model: Any, config: Any, val: list[Any], latency_runs: int, path: Path | None, optimized: bool,
             host: Any) -> dict[str, Any]:
    from deepseek.training.evaluation import evaluate_in_process
    from deepseek.training.inference import served_calls
    from deepseek_enterprise.compare import p50_ms
    from deepseek_enterprise.compress.compressor import model_figures

    device = next(model.parameters()).device
    calls = served_calls(model, config, host)
    with calls("forward"):  # a plugin model's bug or broken output: its one line
        values = evaluate_in_process(model, val, device=device, model_name=config.model.name)
    return {**model_figures(model), **values,
            "weights_bytes": path.stat().st_size if path is not None and path.is_file() else None,
            "p50_ms": p50_ms(model, val, latency_runs, calls=calls) if latency_runs else None,
            "p50_optimized_ms": p50_ms(model, val, latency_runs, "deepseek.optimize", calls=calls)
            if latency_runs and optimized else None}


def check_recipe(host: Any, recipe: Any, recovery_steps: int | None) -> None:
    """A ``--recipe``'s steps created (:func:`~deepseek_enterprise.compress.search.create_steps`:
    names, options, where its ``recover`` steps stand), then a ``recover`` step without a step
    budget under ``--recovery-steps 0`` (one UsageError line). The job service runs it at submit
    for a recipe whose every step loads without torch."""
    create_steps(host, recipe)
    if recovery_steps == 0 and any(name == "recover" and not opts.get("steps") for name, opts in recipe.steps):
        raise UsageError(f"--recipe {recipe.label!r}: its recover step has no step budget with --recovery-steps 0; "
                         "give --recovery-steps N or 'recover steps=N'")


def compress_arguments(method: str | None, max_drop: str | None, recipes: tuple[str, ...], prefer: str | None,
                       recovery_steps: int | None, settings: tuple[str, ...], latency_runs: int) -> tuple[Any, list[Any]]:
    """``deepseek compress``'s first checks, which load no compressor and read no file: the
    options that go together, the ``--max-drop`` budget and the ``--recipe`` texts parsed (one
    UsageError line for the first thing wrong); the budget (or None) and the recipes. The job
    service runs them at submit."""
    if recipes and max_drop is None:
        raise UsageError("--recipe: recipes are tried by a search; give --max-drop BUDGET with them")
    if (method is None) == (max_drop is None):
        raise UsageError("compress: give --method NAME (one compressor) or --max-drop BUDGET (a search), not both or neither")
    if max_drop is not None and settings:
        raise UsageError("--set: options belong to --method; --max-drop tries its own recipes (see docs/compress.md)")
    if prefer is not None and max_drop is None:
        raise UsageError("--prefer: chooses among the recipes of a --max-drop search; with --method there is one result")
    if prefer == "latency" and not latency_runs:
        raise UsageError("--prefer latency: keeps the fastest recipe, but --latency-runs 0 times none; give "
                         "--latency-runs N (default 20) or --prefer size")
    if recovery_steps is not None and max_drop is None:
        raise UsageError("--recovery-steps: recovery is a step of the --max-drop search; with --method, fine-tune or "
                         "distil the result as docs/compress.md shows")
    budget = parse_budget(max_drop) if max_drop is not None else None
    return budget, [parse_recipe(r) for r in recipes]


def check_json_outside_out(out: str | Path, json_path: str | None) -> None:
    """``--json`` (None or ``-``: not a file) may not name a path inside ``--out``, the run folder
    compress writes whole: written after it, the report replaced the folder's own file of that name
    (``config.toml``, ``compression.json``). Compared resolved (``..`` and links too); one
    UsageError line. The job service checks it at submit."""
    if json_path is None or json_path == "-" or Path(out).resolve() not in Path(json_path).resolve().parents:
        return
    raise UsageError(f"--json: {json_path} is inside --out {out}, the run folder this command writes whole; "
                     f"give a path outside it, e.g. {Path(out).parent / (Path(out).name + '-compression.json')}")


@click.command("compress")
@click.option("--checkpoint", required=True, type=PATH, metavar="PATH", help="Run folder or checkpoint folder of a trained model.")
@click.option("--method", metavar="NAME", help="Registered compressor (deepseek plugins list).")
@click.option("--max-drop", metavar="BUDGET",
              help="Instead of --method: search the recipes, keep the smallest (--prefer latency: the fastest) "
                   "whose validation loss rises at most this much (1%) or whose accuracy falls at most this many "
                   "points (0.5pt).")
@click.option("--recipe", "recipes", multiple=True, metavar="STEPS",
              help="With --max-drop: try these recipes instead of the built-in ones, e.g. "
                   "'prune.ffn ratio=0.5 + quantize.int8' (repeat for several).")
@click.option("--prefer", type=click.Choice(list(PREFERENCES)),
              help="With --max-drop: keep the smallest recipe within the budget (size, the default) or the fastest "
                   "at batch 1 (latency; ties: smaller weights, then smaller drop).")
@click.option("--recovery-steps", type=count(0, MAX_RECOVERY_STEPS), metavar="N",
              help=f"With --max-drop: training steps of each recover step (pruned candidates distilled from the "
                   f"original; default {DEFAULT_RECOVERY_STEPS}; 0: no recovery).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="A compressor option, e.g. ratio=0.5.")
@click.option("--out", required=True, type=PATH_ARG, help="New run folder for the result.")
@click.option("--device", "--target-device", "device", type=Device(), default="auto", show_default=True,
              help="Where the model is compressed and measured: auto, cpu or cuda[:N].")
@click.option("--calibration-batches", type=count(0, MAX_CALIBRATION_BATCHES), default=4, show_default=True,
              help="Training batches for methods that need data (Taylor scores, calibration); all are held in memory "
                   "at once.")
@click.option("--batches", type=count(), help="Validation batches to compare on (default: data.eval_batches; 8 where that is 0).")
@click.option("--latency-runs", type=count(0, MAX_REPEATS), default=20, show_default=True, help="Timed batch-1 calls (0: none).")
@click.option("--optimize", is_flag=True, help="Also time both models under deepseek.optimize (its search runs per model).")
@click.option("--json", "json_path", type=PATH, metavar="PATH", help="Also write the comparison as JSON.")
def compress(checkpoint: str, method: str | None, max_drop: str | None, recipes: tuple[str, ...], prefer: str | None,
             recovery_steps: int | None, settings: tuple[str, ...], out: Path, device: str, calibration_batches: int, batches: int | None,
             latency_runs: int, optimize: bool, json_path: str | None) -> None:
    """Compress a trained model (quantization, pruning, distillation) into a new run folder; the
    table compares it with the original on the same validation batches."""
    import json

    from deepseek.arguments import command_line
    from deepseek.cli.context import command_host
    from deepseek.devices import use_default_cpu_threads
    from deepseek.paths import check_output, created_note, folders_made, make_folders
    from deepseek.training.build import build_dataset
    from deepseek.training.checkpoint import MODEL_FILE, atomic_write_text
    from deepseek.training.evaluation import batches_named, eval_batch_count
    from deepseek.training.inference import load_trained
    from deepseek.training.weights_source import check_data_tokenizer, read_source

    host = command_host()
    budget, tried_recipes = compress_arguments(method, max_drop, recipes, prefer, recovery_steps, settings,
                                               latency_runs)
    for recipe in tried_recipes:
        check_recipe(host, recipe, recovery_steps)
    compressor = compressor_from_cli(host, method, settings) if method is not None else None
    missing = check_output(out, where="--out", folder=True, host=host)
    to_file = json_path is not None and json_path != "-"
    json_missing = check_output(json_path, where="--json", folder=False, file_name="compression.json",
                                host=host) if to_file else []
    check_json_outside_out(out, json_path)
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"--out: {out} is not empty; give a new folder (nothing is overwritten)")
    use_default_cpu_threads()
    read = read_source(checkpoint)  # resolved and read once: the model, its data's tokenizer check, the
    # weights measured and the teacher of recover steps are of one checkpoint, however its run moves on
    model, config, state = load_trained(read, device, need_data=True, host=host)
    if config.model.name == "quantized":  # torchao's quantized weights take no further compression step
        raise UsageError(f"--checkpoint: {checkpoint} holds a model that deepseek compress already quantized "
                         f"({config.model.options.scheme}); compress the run it came from (the 'source' in its "
                         "compression.json)")
    if compressor is not None:
        from deepseek_enterprise.compress.compressor import check_applies, named_by

        with named_by("--method", method):
            check_applies(compressor, model, config)
    dataset = build_dataset(config, host)
    check_data_tokenizer(read, config, dataset)
    with command_line(), batches_named(batches):  # a --batches past memory: named so, not data.eval_batches
        val = dataset.validation_batches(eval_batch_count(config, batches))  # 8 for a run without validation
    calibration = [next(dataset) for _ in range(calibration_batches)]
    steps = DEFAULT_RECOVERY_STEPS if recovery_steps is None else recovery_steps
    asked_by = ("--recovery-steps" if recovery_steps else "--recipe" if _recovers(tried_recipes) else "")
    unavailable = _unavailable(model, config, read, dataset, asked_by, host) if budget is not None and (steps or asked_by) else ""
    before = _measure(model, config, val, latency_runs, read.origin.weights_file, optimize, host)
    if budget is not None and budget.unit == "pt" and "val_accuracy" not in before:
        raise UsageError(f"--max-drop {budget.text}: {config.model.name!r} reports no validation accuracy; "
                         "give a loss budget such as 1%")
    if compressor is not None:
        from deepseek_enterprise.compress.compressor import StepContext, named_by, run_step

        with named_by("--method", method):
            result, new_config = run_step(host, compressor, model, config, StepContext(calibration))
        report = {"method": method, "options": _plain(compressor.options), "source": str(checkpoint),
                  "loads_with": result.loads_with, "record": result.record}
    else:
        import tempfile

        from deepseek_enterprise.compress.compressor import Recovery

        with tempfile.TemporaryDirectory(prefix="deepseek-compress-") as scratch:
            recovery = Recovery(original=read.origin.path.resolve(), config=config, steps=steps, work_dir=Path(scratch),
                                device=str(next(model.parameters()).device), unavailable=unavailable)
            result, new_config, report = _search(host, budget, tried_recipes, model, config, calibration, val,
                                                 latency_runs, before, recovery, prefer or "size")
        report["source"] = str(checkpoint)
    from deepseek_enterprise.compress.compressor import check_finite, loading_needs

    report["loads_with"] = loads_with = loading_needs(host, result)
    from deepseek_enterprise.compress.output import staged_folder

    # the run folder appears whole, or not at all: neither a half folder nor the empty one made for it
    with folders_made(missing, where="--out"), staged_folder(out) as stage:
        final = _write(stage, state, new_config, result, report)
        after = _measure(result.model, new_config, val, latency_runs, final / MODEL_FILE, optimize, host)
        if compressor is not None:  # a search rejects such recipes itself
            check_finite(compressor, before, after)
        report["original"], report["compressed"] = before, after
        atomic_write_text(stage / "compression.json", json.dumps(report, indent=1, default=str))
    _print(report, out)
    if json_path is not None:
        from deepseek.cli.bench_cmd import write_json

        make_folders(json_missing, where="--json")
        write_json(json_path, report)
    click.echo(f"wrote {shown(out)}{created_note(missing)} (loads with {loads_with}); "
               f"try: deepseek eval --checkpoint {shell_quoted(str(out))}")
    if to_file:
        click.echo(f"wrote {shown(json_path)}{created_note(json_missing)}")


def _recovers(recipes: list[Any]) -> bool:
    return any(name == "recover" for recipe in recipes for name, _ in recipe.steps)


def _unavailable(model: Any, config: Any, read: Any, dataset: Any, asked_by: str, host: Any) -> str:
    """Why ``recover`` steps cannot train on the original ``read`` (``""``: they can); a one-line
    error instead when recovery was asked for explicitly (``asked_by``: the option that asked)."""
    from deepseek_enterprise.compress.recover import training_unavailable

    reason = training_unavailable(model, config, read, dataset, host)
    if reason and asked_by:
        raise UsageError(f"{asked_by}: {reason}; or search without recovery (--recovery-steps 0, no recover step)")
    return reason


def _search(host: Any, budget: Any, recipes: list[Any], model: Any, config: Any, calibration: list[Any],
            val: list[Any], latency_runs: int, before: dict[str, Any], recovery: Any,
            prefer: str) -> tuple[Any, Any, dict[str, Any]]:
    """Run the recipe search (``recipes``, or the built-in ones), keeping by ``prefer`` (``size``
    or ``latency``); print every recipe tried; a one-line error when none fits."""
    from deepseek_enterprise.compress.search import default_recipes, search, state_bytes

    def measure(m: Any, c: Any) -> dict[str, Any]:
        return {**_measure(m, c, val, latency_runs, None, False, host), "weights_bytes": state_bytes(m)}

    device = next(model.parameters()).device
    original = {**before, "weights_bytes": state_bytes(model)}
    best, tried = search(host, budget, recipes or default_recipes(device, recovery.steps), model, config, calibration,
                         original, measure, progress=_progress(), recovery=recovery, prefer=prefer)
    _print_search(tried, original, budget)
    if best is None:
        measured = [t for t in tried if t.drop is not None and math.isfinite(t.drop)]
        ran = [t for t in tried if t.figures]  # evaluated, to no finite drop (a NaN loss, no accuracy)
        if not measured and ran:
            why = [(t.recipe.label, t.verdict.removeprefix("rejected: ")) for t in ran]
            what = (f"the only recipe that ran, {why[0][0]}, {why[0][1].removeprefix('it ')}" if len(why) == 1 else
                    "the recipes that ran give no drop to judge: " + ", ".join(f"{r} ({w})" for r, w in why))
            raise UsageError(f"--max-drop {budget.text}: no recipe stays within it: {what}; nothing was written "
                             "(try other recipes or step options with --recipe, docs/compress.md; a compressor "
                             "whose model evaluates to NaN is a bug to report to its authors)")
        if not measured:  # nothing ran to a loss: the budget was never the reason
            raise UsageError(f"--max-drop {budget.text}: no recipe could run on this model (the table says why for "
                             "each); nothing was written (give recipes that apply: --recipe, docs/compress.md)")
        closest = min(measured, key=lambda t: t.drop).recipe.label if measured else None
        near = f"; the closest was {closest} ({min(t.drop for t in measured):+.2f}{budget.unit})" if closest else ""
        raise UsageError(f"--max-drop {budget.text}: no recipe stays within it{near}; nothing was written "
                         "(raise the budget or --recovery-steps: see docs/compress.md)")
    result, new_config = best.result
    report = {"method": "search", "max_drop": budget.text, "prefer": prefer, "recipe": best.recipe.label,
              "options": {"steps": [[n, o] for n, o in best.recipe.steps]}, "loads_with": result.loads_with,
              "record": best.records, "candidates": [t.row() for t in tried]}
    return result, new_config, report


def _progress() -> Any:
    """A line per recipe on stderr when it is a terminal (a log or a pipe gets the tables only)."""
    import sys

    return (lambda line: click.echo(line, err=True)) if sys.stderr.isatty() else None


def _print_search(tried: list[Any], original: dict[str, Any], budget: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"recipes tried (budget {budget.text}; original val_loss {original['val_loss']:.4f}, "
                        f"{_mib(original['weights_bytes'])})", title_justify="left")
    for col in ("recipe", "val_loss", f"drop ({budget.measures})", "weights", "p50 batch 1", "verdict"):
        table.add_column(col, justify="left" if col in ("recipe", "verdict") else "right")
    for t in tried:
        f = t.figures
        table.add_row(shown_markup(t.recipe.label), f"{f['val_loss']:.4f}" if f else "-",
                      f"{t.drop:+.2f}{budget.unit}" if t.drop is not None else "-", _mib(f.get("weights_bytes")),
                      _ms(f.get("p50_ms")), shown_markup(t.verdict))
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)


def _write(out: Path, state: dict[str, Any], config: Any, result: Any, report: dict[str, Any]) -> Path:
    from deepseek_enterprise.compress.output import write_run

    return write_run(out, source_state=state, config=config, compressed=result, report=report)


def _plain(options: Any) -> dict[str, Any]:
    from deepseek.config.components import options_dict

    return options_dict(options)


def _print(report: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    a, b = report["original"], report["compressed"]
    what = (f"search {report['max_drop']} (prefer {report['prefer']}): {report['recipe']}" if "recipe" in report             else f"{report['method']} {report['options']}")
    table = Table(title=f"{shown_markup(what)}: {shown_markup(report['source'])} -> {shown_markup(out)}", title_justify="left")
    for col in ("", "original", "compressed", "compressed vs original"):
        table.add_column(col, justify="left" if not col else "right")

    def ratio(x: Any, y: Any) -> str:
        return f"{y / x:.3f}x" if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x else "-"

    table.add_row("parameters", f"{a['parameters']:,}", f"{b['parameters']:,}", ratio(a["parameters"], b["parameters"]))
    table.add_row("weights on disk", _mib(a["weights_bytes"]), _mib(b["weights_bytes"]),
                  ratio(a["weights_bytes"], b["weights_bytes"]))
    table.add_row("Linear weights", _mib(a["linear_weight_bytes"]), _mib(b["linear_weight_bytes"]),
                  ratio(a["linear_weight_bytes"], b["linear_weight_bytes"]))
    for key in [k for k in a if k.startswith("val_") and k in b]:
        table.add_row(key, f"{a[key]:.4f}", f"{b[key]:.4f}", _change(key, a[key], b[key]))
    for key, row in (("p50_ms", "p50 batch 1 (eager)"), ("p50_optimized_ms", "p50 batch 1 (deepseek.optimize)")):
        if a[key] is not None or b[key] is not None:  # timed; a side whose variant failed has no figure
            table.add_row(row, _ms(a[key]), _ms(b[key]), ratio(a[key], b[key]))
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    console.print(table)


def _change(key: str, before: float, after: float) -> str:
    """A validation value's change, its unit named: relative (``+1.23% rel``, the unit of a
    ``--max-drop N%`` budget on val_loss), and for val_accuracy first in points (``-0.80pt``, the
    unit of an ``Npt`` budget; -0.80pt of 0.90 is -0.89% rel)."""
    from deepseek_enterprise.compress.search import ACCURACY, points_change, relative_change

    relative = f"{relative_change(before, after):+.2f}% rel" if before else "-"
    return f"{points_change(before, after):+.2f}pt ({relative})" if key == ACCURACY else relative


def _mib(n: Any) -> str:
    return f"{n / 2**20:.2f} MiB" if isinstance(n, (int, float)) else "-"


def _ms(p50: Any) -> str:
    """A batch-1 p50, or "-" where there is none (not timed, or its variant failed on its own)."""
    return f"{p50:.2f} ms" if isinstance(p50, (int, float)) else "-"
