"""``deepseek compare RUN_A RUN_B``: two trained models on the same evaluation examples (A/B).

Both models see the same validation rows (run A's dataset, or ``--data CONFIG.toml``'s), one row
at a time, so each example gets a loss (and every metric the models report, such as accuracy)
from A and from B. The per-example differences B - A are paired; their mean gets a 95% bootstrap
confidence interval (resampling examples with replacement, seeded) and a two-sided p-value (how
often the resampled mean lands on the other side of zero, doubled); the verdict says whether B
differs from A at the 5% level. A whole-set metric (``metrics_from_totals``: F1, accuracy over the
samples that have a modality) is not a mean over rows: each example's totals are kept, and A's and
B's value come from the totals summed over all the examples and, in each resample, over the
resampled ones (:mod:`deepseek_enterprise.paired_bootstrap`). A metric measured only over several
rows of a batch (in-batch retrieval) is measured on no single example: the report names it under
``not_compared``. Size (parameters, weights on disk)
and batch-1 latency (p50, ``deepseek bench latency``'s eager timing on the same rows) are shown
side by side.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from deepseek.cli.params import MAX_REPEATS, PATH, SEED, Device, count
from deepseek.errors import UsageError, shown, shown_markup

if TYPE_CHECKING:
    from deepseek_enterprise.paired_bootstrap import Estimate, Metrics


@dataclass(frozen=True)
class Paired:
    """One quantity on the shared examples: its name, which way is better, and its paired
    bootstrap :class:`~deepseek_enterprise.paired_bootstrap.Estimate` (A's and B's values, B - A,
    the interval, the p-value and the resamples that measured it)."""

    name: str
    better: str
    estimate: Estimate

    @property
    def verdict(self) -> str:
        e = self.estimate
        if e.p_value >= 0.05:
            return "no significant difference"
        lower_is_better = self.better == "lower"
        b_better = (e.diff < 0) == lower_is_better
        return f"B {'better' if b_better else 'worse'} (p={e.p_value:.3g})"

    def row(self) -> dict[str, Any]:
        """The report's row: name, a, b, diff, low, high, p_value, better, resamples, verdict."""
        e = self.estimate
        return {"name": self.name, "a": e.a, "b": e.b, "diff": e.diff, "low": e.low, "high": e.high,
                "p_value": e.p_value, "better": self.better, "resamples": e.resamples, "verdict": self.verdict}


@dataclass(frozen=True)
class Examples:
    """One model on every example: each one's loss and mean metrics, and each one's totals (its
    forward's ``"totals"``, float64, one row per example: ``(examples, *shape)``; zeros for an
    example whose forward returned none; empty for a model without whole-set metrics)."""

    values: list[dict[str, float]]
    totals: dict[str, Any]


def per_example(model: Any, batches: list[Any], model_name: str, label: str | None = None) -> Examples:
    """Loss, metrics and totals of every row of ``batches``, one forward per row, in order. What
    the model's own code raises is one line naming it (``label``: its registration's, or ``None``)."""
    import torch
    from torch.utils import _pytree as pytree

    from deepseek.data.batch import batch_rows
    from deepseek.plugins.calls import model_calls
    from deepseek.training.evaluation import evaluate_batch
    from deepseek.training.totals import TotalsCapture, offers_whole_set_metrics

    device = next(model.parameters()).device
    capture = TotalsCapture(model, model_name=model_name, offers=offers_whole_set_metrics(model))
    values: list[dict[str, float]] = []
    each: list[dict[str, torch.Tensor]] = []
    with capture, model_calls(model, label):
        for batch in batches:
            for i in range(batch_rows(batch)):
                row = pytree.tree_map(lambda t, i=i: t[i:i + 1] if isinstance(t, torch.Tensor) else t, batch)
                seen = capture.batches
                loss, metrics = evaluate_batch(model, row, device=device)
                values.append({"loss": float(loss), **{k: float(v) for k, v in metrics.items()}})
                each.append(capture.latest if capture.batches > seen else {})
    totals = {name: torch.stack([t.get(name, torch.zeros_like(s)) for t in each])
              for name, s in capture.sums.items()}
    return Examples(values, totals)


def whole_set(model: Any, examples: Examples, model_name: str, label: str | None) -> Metrics:
    """``model``'s whole-set metrics of summed totals, by name (without ``val_``): its
    ``metrics_from_totals``, checked as an evaluation checks it; what its own code raises there
    is one line naming it."""
    from deepseek.plugins.calls import model_calls
    from deepseek.training.totals import whole_set_metrics

    means = {f"val_{k}" for k in examples.values[0]}

    def metrics(sums: Any) -> dict[str, float]:
        with model_calls(model, label, "metrics_from_totals"):
            values = whole_set_metrics(model, sums, model_name=model_name, taken=means)
        return {k.removeprefix("val_"): v for k, v in values.items()}

    return metrics


def better(key: str) -> str:
    """Which way is better for a quantity: ``lower`` for a loss or an error, else ``higher``."""
    return "lower" if "loss" in key or "error" in key else "higher"


def model_label(config: Any, host: Any) -> str | None:
    """The label naming the run's model in a line blaming its code (``None``: a script's model,
    whose errors pass as they are)."""
    from deepseek.plugins.calls import blames
    from deepseek.training.build import run_host

    component = run_host(config, host).resolve("model", config.model.name)
    return component.label if blames(component) else None


def weights_size(path: str) -> int:
    """Bytes of the model weights a run/checkpoint folder (or exported file) holds: its
    ``model.safetensors``, or its sharded ``model/`` folder (the optimizer state not counted)."""
    from deepseek.training.checkpoint import MODEL_FILE, resolve_checkpoint

    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    folder = resolve_checkpoint(p)
    if (folder / MODEL_FILE).is_file():
        return (folder / MODEL_FILE).stat().st_size
    return sum(f.stat().st_size for f in (folder / "model").rglob("*") if f.is_file())


def p50_ms(model: Any, batches: list[Any], runs: int, variant: str = "eager", calls: Any = None) -> float | None:
    """Batch-1 latency (median ms) of ``variant`` (a ``deepseek bench latency`` variant:
    ``eager``, ``deepseek.optimize``) on the first validation rows, in the model's own floating
    dtype (a bf16 model is timed in bf16), as bench latency times it, in ``calls``, the model's
    block (``served_calls``: what a plugin model raises is its one line); None where the variant
    failed for a reason not the model's (run_latency left it out), with a warning that says why."""
    from torch.utils import _pytree as pytree

    from deepseek.bench.latency import run_latency
    from deepseek.data.batch import batch_rows, concat_rows
    from deepseek.dtypes import TORCH_NAMES, torch_dtype

    joined = concat_rows(batches)
    picks = [pytree.tree_map(lambda t, i=i: t[i:i + 1], joined) for i in range(min(4, batch_rows(joined)))]
    params = list(model.parameters())
    floating = next((p.dtype for p in params if p.is_floating_point()), None)
    dtype = next((name for name in TORCH_NAMES if torch_dtype(name) == floating), "float32")
    result = run_latency(model, batch=1, device=params[0].device, dtype=dtype, runs=runs, warmup=2,
                         only=[variant], batches=picks, calls=calls)
    if variant in result.failed:
        warnings.warn(f"batch-1 latency under {variant}: not timed, it failed on its own ({result.failed[variant]})",
                      stacklevel=2)
    return next((r.median_ms for r in result.rows if r.name == variant), None)


def compare_runs(run_a: str, run_b: str, *, data: str | None, batches: int | None, device: str,
                 resamples: int, seed: int, latency_runs: int, host: Any) -> dict[str, Any]:
    """Everything ``deepseek compare`` prints, as data."""
    from deepseek.arguments import command_line
    from deepseek.config.load import load_config
    from deepseek.models.checks import check_model_data
    from deepseek.training.build import build_dataset
    from deepseek.training.evaluation import batches_named, eval_batch_count
    from deepseek.training.inference import load_trained, served_calls
    from deepseek.training.weights_source import DataChoice, check_data_tokenizer, read_source
    from deepseek_enterprise.paired_bootstrap import Estimate, bootstrap, whole_set_bootstrap

    # the runs' own data is read (and must load) only without --data; else --data's is compared on
    own = DataChoice(other_data="--data CONFIG.toml") if data is None else None
    read_a, read_b = read_source(run_a), read_source(run_b)  # read once: the tokenizers checked are those held to
    model_a, config_a, state_a = load_trained(read_a, device, host=host, data=own)
    model_b, config_b, state_b = load_trained(read_b, device, host=host, data=own)
    source = load_config(data, host=host) if data is not None else config_a
    n = eval_batch_count(source, batches)  # 8 for data whose eval_batches is 0 (a run without validation)
    dataset = build_dataset(source, host)
    for read in (read_a, read_b):  # data reading a run's own tokenizer.json: the one its check read
        check_data_tokenizer(read, source, dataset)
    with command_line(), batches_named(batches):  # a --batches past memory: named so, not data.eval_batches
        val = dataset.validation_batches(n)
    if not val:
        raise UsageError(f"--data: dataset {source.data.name!r} gave no validation batches to compare on")
    for name, model, config in (("RUN_A", model_a, config_a), ("RUN_B", model_b, config_b)):
        try:  # the rule every run's set-up applies: the batch's keys, then the model's own check_data
            check_model_data(model, val[0], dataset, model_name=config.model.name,
                             calls=served_calls(model, config, host))
        except UsageError as exc:
            raise UsageError(f"{name}: cannot take these examples: {exc}") from None
    labels = [model_label(config, host) for config in (config_a, config_b)]
    ea = per_example(model_a, val, config_a.model.name, labels[0])
    eb = per_example(model_b, val, config_b.model.name, labels[1])
    rows = []
    for key in dict.fromkeys(k for values in ea.values for k in values):  # each over the examples both measure
        pairs = [(a[key], b[key]) for a, b in zip(ea.values, eb.values, strict=True) if key in a and key in b]
        if not pairs:
            continue
        va, vb = [a for a, _ in pairs], [b for _, b in pairs]
        mean, low, high, p = bootstrap(va, vb, resamples=resamples, seed=seed)
        rows.append(Paired(key, better(key), Estimate(sum(va) / len(va), sum(vb) / len(vb), mean, low, high, p,
                                                      resamples)))
    if ea.totals and eb.totals:  # whole-set metrics: from the totals summed over the (resampled) examples
        found = whole_set_bootstrap(whole_set(model_a, ea, config_a.model.name, labels[0]), ea.totals,
                                    whole_set(model_b, eb, config_b.model.name, labels[1]), eb.totals,
                                    resamples=resamples, seed=seed)
        rows += [Paired(key, better(key), e) for key, e in found.items()]
    paired = {r.name for r in rows}
    not_compared = sorted({k.removeprefix("val_") for model, config, label in
                           ((model_a, config_a, labels[0]), (model_b, config_b, labels[1]))
                           for k in batched(model, val, config.model.name, label)} - paired)
    side = {}
    for name, model, run, state, config in (("A", model_a, run_a, state_a, config_a),
                                            ("B", model_b, run_b, state_b, config_b)):
        side[name] = {"run": run, "model": config.model.name,
                      "step": state.get("step"), "parameters": sum(p.numel() for p in model.parameters()),
                      "weights_bytes": weights_size(run),
                      "p50_ms": p50_ms(model, val, latency_runs, calls=served_calls(model, config, host))
                      if latency_runs else None}
    return {"examples": len(ea.values), "data": data or f"{run_a}'s validation split", "resamples": resamples,
            "seed": seed, "runs": side, "paired": [r.row() for r in rows],
            "not_compared": not_compared}


def batched(model: Any, batches: list[Any], model_name: str, label: str | None) -> dict[str, float]:
    """What ``deepseek eval`` reports of ``model`` on ``batches`` as they are (``val_<name>``): the
    metrics it measures over a batch's rows, against which :func:`compare_runs` names those that no
    single example measures (in-batch retrieval needs a batch)."""
    from deepseek.plugins.calls import model_calls
    from deepseek.training.evaluation import evaluate_in_process

    with model_calls(model, label):
        return evaluate_in_process(model, batches, device=next(model.parameters()).device, model_name=model_name)


def print_report(report: dict[str, Any]) -> None:
    """The paired table and the size/latency table."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    a, b = report["runs"]["A"], report["runs"]["B"]
    table = Table(title=f"A = {shown_markup(a['run'])} ({a['model']}), B = {shown_markup(b['run'])} ({b['model']}): "
                        f"{report['examples']} paired examples of {shown_markup(report['data'])}, {report['resamples']:,} bootstrap resamples",
                  title_justify="left")
    for col in ("quantity", "A", "B", "B - A", "95% CI", "p", "verdict"):
        table.add_column(col, justify="left" if col in ("quantity", "verdict") else "right")
    for r in report["paired"]:
        ci = f"[{r['low']:+.4f}, {r['high']:+.4f}]" if r["resamples"] else "-"
        if 0 < r["resamples"] < report["resamples"]:  # a whole-set metric some resamples did not measure
            ci += f" ({r['resamples']:,} resamples)"
        table.add_row(f"{r['name']} ({r['better']} is better)", f"{r['a']:.4f}", f"{r['b']:.4f}", f"{r['diff']:+.4f}",
                      ci, f"{r['p_value']:.3g}", r["verdict"])
    console.print(table)
    if report["not_compared"]:
        console.print(f"not compared (measured over a batch's rows, on no single example; deepseek eval reports "
                      f"them): {', '.join(report['not_compared'])}", soft_wrap=True)
    sizes = Table(title="size and latency", title_justify="left")
    for col in ("", "parameters", "weights on disk", "p50 batch 1 (eager)"):
        sizes.add_column(col, justify="left" if not col else "right")
    for name, side in (("A", a), ("B", b)):
        lat = f"{side['p50_ms']:.2f} ms" if side["p50_ms"] is not None else "-"
        sizes.add_row(name, f"{side['parameters']:,}", f"{side['weights_bytes'] / 2**20:.2f} MiB", lat)
    if a["p50_ms"] and b["p50_ms"]:
        sizes.add_row("B / A", f"{b['parameters'] / a['parameters']:.3f}x",
                      f"{b['weights_bytes'] / max(a['weights_bytes'], 1):.3f}x", f"{b['p50_ms'] / a['p50_ms']:.3f}x")
    console.print(sizes)


@click.command("compare")
@click.argument("run_a", type=PATH, metavar="RUN_A")
@click.argument("run_b", type=PATH, metavar="RUN_B")
@click.option("--data", type=PATH, metavar="CONFIG.toml", help="Compare on this config's [data] validation split "
              "(default: RUN_A's).")
@click.option("--batches", type=count(), help="Validation batches (default: the data's eval_batches; 8 where that is 0).")
@click.option("--device", type=Device(), default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--resamples", type=count(100, 1_000_000), default=10_000, show_default=True,
              help="Bootstrap resamples.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--latency-runs", type=count(0, MAX_REPEATS), default=20, show_default=True,
              help="Timed batch-1 calls per model (0: no latency).")
@click.option("--json", "json_path", type=PATH, metavar="PATH", help="Write the report as JSON ('-': stdout).")
def compare(run_a: str, run_b: str, data: str | None, batches: int | None, device: str, resamples: int, seed: int,
            latency_runs: int, json_path: str | None) -> None:
    """A/B: two trained models on the same examples; paired differences with a bootstrap confidence
    interval and a significance verdict, size and latency side by side."""
    from deepseek.cli.bench_cmd import write_json
    from deepseek.cli.context import command_host
    from deepseek.devices import use_default_cpu_threads
    from deepseek.paths import check_output, created_note, make_folders

    to_file = json_path is not None and json_path != "-"
    missing = check_output(json_path, where="--json", folder=False, file_name="compare.json",
                           reads=(("--data", data),), host=command_host()) if to_file else []
    use_default_cpu_threads()
    report = compare_runs(run_a, run_b, data=data, batches=batches, device=device, resamples=resamples, seed=seed,
                          latency_runs=latency_runs, host=command_host())
    if json_path != "-":
        print_report(report)
    if json_path is not None:
        make_folders(missing, where="--json")
        write_json(json_path, report)
        if to_file:
            click.echo(f"wrote {shown(json_path)}{created_note(missing)}")
