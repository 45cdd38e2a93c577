"""``deepseek compare RUN_A RUN_B``: two trained models on the same evaluation examples (A/B).

Both models see the same validation rows (run A's dataset, or ``--data CONFIG.toml``'s), one row
at a time, so each example gets a loss (and every metric the models report, such as accuracy)
from A and from B. The per-example differences B - A are paired; their mean gets a 95% bootstrap
confidence interval (resampling examples with replacement, seeded) and a two-sided p-value (how
often the resampled mean lands on the other side of zero, doubled); the verdict says whether B
differs from A at the 5% level. Size (parameters, weights on disk) and batch-1 latency (p50,
``deepseek bench latency``'s eager timing on the same rows) are shown side by side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from deepseek.cli.params import PATH, SEED, Device, count
from deepseek.errors import UsageError


@dataclass(frozen=True)
class Paired:
    """One quantity on the shared examples: A's and B's means, the paired difference B - A."""

    name: str
    a: float
    b: float
    diff: float
    low: float
    high: float
    p_value: float
    better: str

    @property
    def verdict(self) -> str:
        if self.p_value >= 0.05:
            return "no significant difference"
        lower_is_better = self.better == "lower"
        b_better = (self.diff < 0) == lower_is_better
        return f"B {'better' if b_better else 'worse'} (p={self.p_value:.3g})"


def per_example(model: Any, batches: list[Any], model_name: str) -> list[dict[str, float]]:
    """Loss and metrics of every row of ``batches``, one forward per row, in order: the means the
    model reports and its whole-set metrics of that row alone (``metrics_from_totals``), which
    leave out what the row does not measure (``accuracy_audio`` of a sample without audio)."""
    import torch
    from torch.utils import _pytree as pytree

    from deepseek.data.batch import batch_rows
    from deepseek.training.evaluation import evaluate_batch
    from deepseek.training.totals import TotalsCapture, offers_whole_set_metrics, whole_set_metrics

    device = next(model.parameters()).device
    offers = offers_whole_set_metrics(model)
    out: list[dict[str, float]] = []
    for batch in batches:
        for i in range(batch_rows(batch)):
            row = pytree.tree_map(lambda t, i=i: t[i:i + 1] if isinstance(t, torch.Tensor) else t, batch)
            with TotalsCapture(model, model_name=model_name, offers=offers) as capture:
                loss, metrics = evaluate_batch(model, row, device=device, model_name=model_name)
            values = {"loss": float(loss), **{k: float(v) for k, v in metrics.items()}}
            if capture.sums:
                whole = whole_set_metrics(model, capture.sums, model_name=model_name,
                                          taken={f"val_{k}" for k in values})
                values.update({k.removeprefix("val_"): v for k, v in whole.items()})
            out.append(values)
    return out


def bootstrap(a: list[float], b: list[float], *, resamples: int, seed: int) -> tuple[float, float, float, float]:
    """Mean of B - A, its 95% percentile interval and the two-sided bootstrap p-value."""
    import numpy as np

    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows = max(1, (1 << 22) // len(d))  # resamples drawn a few million indices at a time: memory stays bounded
    means = np.concatenate([d[rng.integers(0, len(d), size=(min(rows, resamples - start), len(d)))].mean(axis=1)
                            for start in range(0, resamples, rows)])  # the same draws as one (resamples, n) call
    low, high = np.percentile(means, [2.5, 97.5])
    mean = float(d.mean())
    if np.all(d == 0):
        return mean, 0.0, 0.0, 1.0
    p = 2 * min(float((means <= 0).mean()), float((means >= 0).mean()))
    return mean, float(low), float(high), min(1.0, max(p, 1 / resamples))


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


def p50_ms(model: Any, batches: list[Any], runs: int, variant: str = "eager") -> float:
    """Batch-1 latency (median ms) of ``variant`` (a ``deepseek bench latency`` variant:
    ``eager``, ``deepseek.optimize``) on the first validation rows, in the model's own floating
    dtype (a bf16 model is timed in bf16), as bench latency times it."""
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
                         only=[variant], batches=picks)
    return next(r.median_ms for r in result.rows if r.name == variant)


def compare_runs(run_a: str, run_b: str, *, data: str | None, batches: int | None, device: str,
                 resamples: int, seed: int, latency_runs: int, host: Any) -> dict[str, Any]:
    """Everything ``deepseek compare`` prints, as data."""
    from deepseek.config.load import load_config
    from deepseek.models.checks import check_model_data
    from deepseek.training.build import build_dataset
    from deepseek.training.evaluation import eval_batch_count
    from deepseek.training.inference import load_trained
    from deepseek.training.weights_source import DataChoice

    # the runs' own data is read (and must load) only without --data; else --data's is compared on
    own = DataChoice(other_data="--data CONFIG.toml") if data is None else None
    model_a, config_a, state_a = load_trained(run_a, device, host=host, data=own)
    model_b, config_b, state_b = load_trained(run_b, device, host=host, data=own)
    source = load_config(data, host=host) if data is not None else config_a
    n = eval_batch_count(source, batches)  # 8 for data whose eval_batches is 0 (a run without validation)
    dataset = build_dataset(source, host)
    val = dataset.validation_batches(n)
    if not val:
        raise UsageError(f"--data: dataset {source.data.name!r} gave no validation batches to compare on")
    for name, model, config in (("RUN_A", model_a, config_a), ("RUN_B", model_b, config_b)):
        try:  # the rule every run's set-up applies: the batch's keys, then the model's own check_data
            check_model_data(model, val[0], dataset, model_name=config.model.name)
        except UsageError as exc:
            raise UsageError(f"{name}: cannot take these examples: {exc}") from None
    ea = per_example(model_a, val, config_a.model.name)
    eb = per_example(model_b, val, config_b.model.name)
    rows = []
    for key in dict.fromkeys(k for values in ea for k in values):  # each over the examples both measure
        pairs = [(a[key], b[key]) for a, b in zip(ea, eb, strict=True) if key in a and key in b]
        if not pairs:
            continue
        va, vb = [a for a, _ in pairs], [b for _, b in pairs]
        mean, low, high, p = bootstrap(va, vb, resamples=resamples, seed=seed)
        better = "lower" if "loss" in key or "error" in key else "higher"
        rows.append(Paired(key, sum(va) / len(va), sum(vb) / len(vb), mean, low, high, p, better))
    side = {}
    for name, model, run, state in (("A", model_a, run_a, state_a), ("B", model_b, run_b, state_b)):
        side[name] = {"run": run, "model": (config_a if name == "A" else config_b).model.name,
                      "step": state.get("step"), "parameters": sum(p.numel() for p in model.parameters()),
                      "weights_bytes": weights_size(run),
                      "p50_ms": p50_ms(model, val, latency_runs) if latency_runs else None}
    return {"examples": len(ea), "data": data or f"{run_a}'s validation split", "resamples": resamples,
            "seed": seed, "runs": side, "paired": [{**asdict(r), "verdict": r.verdict} for r in rows]}


def print_report(report: dict[str, Any]) -> None:
    """The paired table and the size/latency table."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    a, b = report["runs"]["A"], report["runs"]["B"]
    table = Table(title=f"A = {a['run']} ({a['model']}), B = {b['run']} ({b['model']}): {report['examples']} paired "
                        f"examples of {report['data']}, {report['resamples']:,} bootstrap resamples",
                  title_justify="left")
    for col in ("quantity", "A", "B", "B - A", "95% CI", "p", "verdict"):
        table.add_column(col, justify="left" if col in ("quantity", "verdict") else "right")
    for r in report["paired"]:
        table.add_row(f"{r['name']} ({r['better']} is better)", f"{r['a']:.4f}", f"{r['b']:.4f}", f"{r['diff']:+.4f}",
                      f"[{r['low']:+.4f}, {r['high']:+.4f}]", f"{r['p_value']:.3g}", r["verdict"])
    console.print(table)
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
@click.option("--data", metavar="CONFIG.toml", help="Compare on this config's [data] validation split "
              "(default: RUN_A's).")
@click.option("--batches", type=count(), help="Validation batches (default: the data's eval_batches; 8 where that is 0).")
@click.option("--device", type=Device(), default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--resamples", type=count(100, 1_000_000), default=10_000, show_default=True,
              help="Bootstrap resamples.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--latency-runs", type=count(0), default=20, show_default=True,
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
    missing = check_output(json_path, where="--json", folder=False, file_name="compare.json") if to_file else []
    use_default_cpu_threads()
    report = compare_runs(run_a, run_b, data=data, batches=batches, device=device, resamples=resamples, seed=seed,
                          latency_runs=latency_runs, host=command_host())
    if json_path != "-":
        print_report(report)
    if json_path is not None:
        make_folders(missing, where="--json")
        write_json(json_path, report)
        if to_file:
            click.echo(f"wrote {json_path}{created_note(missing)}")
