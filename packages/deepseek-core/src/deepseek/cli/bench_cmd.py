"""``deepseek bench``: benchmarks that print a table and write JSON (never timed tests).

``latency`` lives here; ``train`` is loaded lazily from :mod:`deepseek.bench.train` so that
``deepseek bench --help`` works (and imports no torch) whatever that module does.
Nothing here imports torch at module level.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from deepseek import durable
from deepseek.bench.baseline import load_baseline
from deepseek.cli.params import MAX_REPEATS, MAX_THREADS, PATH, Device, NameList, count
from deepseek.dtypes import TORCH_NAMES
from deepseek.errors import UsageError, shown
from deepseek.paths import usual_mode, write_target

_LAZY: dict[str, tuple[str, str]] = {
    "train": ("deepseek.bench.train:train_command", "training throughput and MFU, side by side with plain PyTorch"),
}


class LazyGroup(click.Group):
    """A group whose listed sub-commands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_LAZY))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in _LAZY:
            return command
        module_name, _, attr = _LAZY[cmd_name][0].partition(":")
        try:
            loaded = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UsageError(f"bench {cmd_name}: not available in this installation ({exc})") from exc
        if not isinstance(loaded, click.Command):
            raise UsageError(f"bench {cmd_name}: {_LAZY[cmd_name][0]} is not a click command")
        return loaded

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in _LAZY:
                rows.append((name, _LAZY[name][1]))
            else:
                cmd = super().get_command(ctx, name)
                rows.append((name, cmd.get_short_help_str() if cmd else ""))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group("bench", cls=LazyGroup)
def bench() -> None:
    """Benchmarks measured side by side with the peers (table + JSON)."""


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically ('-' prints it)."""
    text = json.dumps(data, indent=1, default=str)
    if path == "-":
        click.echo(text)
        return
    target = write_target(path)  # through a link, never replacing it
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        usual_mode(fd)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        durable.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _table(result: Any) -> Any:
    from rich.table import Table

    info = result.info
    where = info.get("gpu") or f"{info['cpu']} ({info['threads']} threads)"
    shape = f"batch {info['batch']}" + (f" x seq {info['seq']}" if info.get("seq") is not None else " (validation rows)")
    title = f"{info['model']} {info['mode']} {shape} {info['dtype']} on {where}, torch {info['torch']}"
    table = Table(title=title)
    for col, justify in (("variant", "left"), ("median ms", "right"), ("p10-p90 ms", "right"),
                         ("speedup vs eager", "right"), ("max rel err", "right"), ("top-1 agree", "right"),
                         ("setup s", "right"), ("peak MiB", "right"),
                         ("note", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in result.rows:
        speedup = "-" if r.speedup_vs_eager is None else f"{r.speedup_vs_eager:.2f}x"  # no eager row to compare
        table.add_row(r.name, f"{r.median_ms:.1f}", f"{r.p10_ms:.1f}-{r.p90_ms:.1f}", speedup,
                      f"{r.max_rel_error:.1e}", "" if r.top1_agreement is None else f"{r.top1_agreement:.1%}",
                      f"{r.setup_s:.0f}", "" if r.peak_mib is None else f"{r.peak_mib:.0f}", r.note)
    return table


def _from_config(path: str, rows: int) -> tuple[Any, list[Any], str]:
    """The model of a train config (seeded, on the CPU) and 4 batches of ``rows`` validation rows."""
    from deepseek.cli.context import command_host
    from deepseek.config.load import load_config
    from deepseek.data.batch import batch_rows, concat_rows
    from deepseek.training.build import build_dataset, build_model

    host = command_host()
    config = load_config(path, host=host)
    model = build_model(config, host=host)
    dataset = build_dataset(config, host=host)
    from deepseek.data.dataset import checked_validation_batches
    from deepseek.models.checks import check_model_data
    from deepseek.training.evaluation import eval_batch_count

    val = checked_validation_batches(dataset, eval_batch_count(config))
    if not val:
        raise UsageError(f"--config {path}: dataset {config.data.name!r} gave no validation batches to time on")
    from deepseek.training.inference import served_calls

    # the trainer's check: can this model take these batches (its check_data in the model's block)
    check_model_data(model, val[0], dataset, model_name=config.model.name, calls=served_calls(model, config, host))
    joined = concat_rows(val)
    have = batch_rows(joined)
    if have < rows:
        raise UsageError(f"--batch {rows}: the validation batches of {config.data.name!r} ({path}) hold {have} rows; "
                         f"use --batch {have} or less, or raise data.eval_batches")
    from torch.utils import _pytree as pytree

    picks = [pytree.tree_map(lambda t, i=i: t[i * rows:(i + 1) * rows], joined) for i in range(min(4, have // rows))]
    return model, picks, config.model.name


def baseline_options(command: Any) -> Any:
    """``--against FILE.json --max-regression PERCENT`` of ``bench latency`` and ``bench train``
    (``bench train --baseline`` already names its plain-PyTorch comparison)."""
    from deepseek.cli.params import PATH, FiniteFloat

    command = click.option("--max-regression", type=FiniteFloat(min=0), default=10.0, show_default=True,
                           metavar="PERCENT", help="With --against: how much worse a variant may be, in percent.")(command)
    return click.option("--against", "against", type=PATH, metavar="FILE.json",
                        help="A saved --json result of this command: compare, exit 1 on a regression.")(command)


def check_baseline(saved: dict[str, Any] | None, result: dict[str, Any], kind: str, path: str | None,
                   max_regression: float, failed: dict[str, str] | None = None) -> int:
    """Compare with the saved result (when given) and print it; the command's exit code. ``failed``:
    the variants left out of ``result`` for their own failure (a regression where the baseline has them)."""
    if saved is None or path is None:
        return 0
    from deepseek.bench.baseline import compare, report

    found = compare(saved, result, kind=kind, path=path, max_regression=max_regression / 100, failed=failed)
    return report(found, kind=kind, path=path, max_regression=max_regression / 100)


def latency_arguments(host: Any, model_name: str, device: str, dtype: str, mode: str, config_path: str | None,
                      only: tuple[str, ...] | None, reduced: bool) -> None:
    """``bench latency``'s checks of its arguments that build no model, import no torch and read
    no file (one UsageError line for the first thing wrong): ``--dtype float16`` only on a GPU,
    ``--mode decode`` only on ``--model`` (a GPT's cached step), ``--model`` a model registered
    on ``host`` (found by name, its code not loaded), and each ``--only`` a variant timed on that
    device in that mode (:mod:`deepseek.bench.variants`). The command runs them before it builds
    the model; the job service runs them at submit."""
    from deepseek.bench.variants import check_only

    if dtype == "float16" and not device.startswith("cuda"):
        raise UsageError("--dtype float16 is for GPUs; use float32 or bfloat16 on CPU")
    if config_path is not None and mode == "decode":
        raise UsageError("--mode decode times a GPT's cached step; with --config use --mode forward")
    if config_path is None:
        host.resolve("model", model_name)
    check_only(only, device.partition(":")[0], mode, mode == "decode", reduced)


def progress_printer(console: Any) -> Any:
    """``bench latency``'s progress line on ``console``, dimmed: printed as written, not read as
    rich markup (a line quotes a variant's error, which may hold ``[...]``)."""
    return lambda line: console.print(line, style="dim", markup=False)


@bench.command("latency")
@click.option("--model", "model_name", default="small", show_default=True, help="Registered model name.")
@click.option("--batch", type=count(), default=1, show_default=True)
@click.option("--seq", type=count(), default=128, show_default=True,
              help="Tokens per sequence (decode: prompt length before the timed step).")
@click.option("--device", type=Device(allow_auto=False), default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--dtype", type=click.Choice(list(TORCH_NAMES)), default="float32", show_default=True)
@click.option("--mode", type=click.Choice(["forward", "decode"]), default="forward", show_default=True,
              help="forward: logits of batch x seq (prefill); decode: one KV-cached step.")
@click.option("--runs", type=count(20, MAX_REPEATS), default=20, show_default=True, help="Timed calls per variant.")
@click.option("--warmup", type=count(1, MAX_REPEATS), default=3, show_default=True)
@click.option("--threads", type=count(1, MAX_THREADS), default=None, help="torch.set_num_threads (default: all).")
@click.option("--only", type=NameList(), metavar="A,B", help="Only these variants (eager is always run).")
@click.option("--no-cache", is_flag=True, help="deepseek.optimize searches again instead of reusing its decision.")
@click.option("--reduced", is_flag=True, help="Also time deepseek.optimize's opt-in bf16 and int8 paths.")
@click.option("--json", "json_path", type=PATH, metavar="PATH", help="Write rows and device info as JSON ('-': stdout).")
@click.option("--config", "config_path", type=PATH, metavar="FILE.toml",
              help="Time the [model] of a train config on rows of its [data] validation batches (any model: "
                   "multimodal, a plugin's classifier, ...) instead of --model on token ids; seeded weights, or a "
                   "trained run's with train.init_from = RUN in the config.")
@baseline_options
def latency(model_name: str, batch: int, seq: int, device: str, dtype: str, mode: str, runs: int, warmup: int,
            threads: int | None, only: tuple[str, ...] | None, no_cache: bool, reduced: bool,
            json_path: str | None, config_path: str | None, against: str | None, max_regression: float) -> int:
    """Inference latency: eager vs torch.compile variants vs deepseek.optimize, same inputs.

    With --config, the model and inputs come from a train config: its model (seeded, or with the
    weights its train.init_from names: a trained run) on --batch rows of its dataset's validation
    batches; on CUDA, peak memory per variant."""
    import torch

    from deepseek.bench.kept import kept_threads_and_rng
    from deepseek.bench.latency import run_latency
    from deepseek.cli.context import command_host
    from deepseek.models.capabilities import model_capabilities
    from deepseek.models.factory import registered_model
    from deepseek.paths import check_output, created_note, make_folders

    to_file = json_path is not None and json_path != "-"
    missing = check_output(json_path, where="--json", folder=False, file_name="latency.json",
                           reads=(("--config", config_path), ("--against", against)),
                           host=command_host()) if to_file else []
    saved = load_baseline(against, "latency") if against is not None else None
    latency_arguments(command_host(), model_name, device, dtype, mode, config_path, only, reduced)
    with kept_threads_and_rng(device):  # an in-process caller gets its thread count and RNG back
        if threads is not None:
            torch.set_num_threads(threads)
        torch.manual_seed(0)
        batches = None
        if config_path is None:  # the token ids alone past this machine's memory: one line, not a failed allocation
            from deepseek.data.loader import check_fits_memory

            check_fits_memory(batch * (seq + (mode == "decode")), ("--batch", f"--batch {batch}"), ("--seq", f"--seq {seq}"))
            with torch.device("cpu"):
                model = registered_model(command_host(), model_name)  # the command's host: a plugin given to main(host=)
        else:
            model, batches, model_name = _from_config(config_path, batch)
        if mode == "decode" and "cached_decoding" not in model_capabilities(model):
            raise UsageError(f"--mode decode: model {model_name!r} has no KV-cache decoding (capability cached_decoding: "
                             "new_cache, forward_cached, decode_window); use --mode forward")
        from deepseek.models.declared import token_input_limits
        from deepseek.plugins.calls import model_blame

        calls = model_blame(command_host().resolve("model", model_name), model)
        max_len = token_input_limits(model, calls=calls)[1]
        if batches is None and max_len is not None and seq + (mode == "decode") > max_len:
            raise UsageError(f"--seq {seq}: the model {model_name!r} takes at most {max_len} positions")
        from deepseek.bench.latency import device_info

        # What this run measures, as its result's info will say: a baseline of something else is
        # refused now, before anything is timed or written.
        facts = {"model": model_name, **({"config": config_path, "seq": None} if config_path is not None else {})}
        if saved is not None and against is not None:
            from deepseek.bench.baseline import check_same

            check_same(saved, {"info": {**device_info(torch.device(device)), "batch": batch, "seq": seq, "mode": mode,
                                        "dtype": dtype, **facts}}, kind="latency", path=against)
        from rich.console import Console

        console = Console(stderr=True)
        result = run_latency(
            model, batch=batch, seq=seq, device=device, dtype=dtype, mode=mode, runs=runs, warmup=warmup,
            optimize_kwargs={"cache": not no_cache},
            only=list(only) if only else None,
            reduced=reduced,
            progress=progress_printer(console),
            batches=batches,
            calls=calls,
        )
        result.info.update(facts)
        result.info["command"] = "deepseek bench latency " + " ".join(
            f"--{k} {v}" for k, v in (("config", config_path) if config_path else ("model", model_name), ("batch", batch),
                                      *((("seq", seq),) if config_path is None else ()), ("device", device),
                                      ("dtype", dtype), ("mode", mode), ("runs", runs))
        )
        out = Console()
        if not out.is_terminal:
            out = Console(width=160)
        out.print(_table(result))
        if json_path:
            make_folders(missing, where="--json")
            write_json(json_path, result.as_dict())
            if to_file:
                click.echo(f"wrote {shown(json_path)}{created_note(missing)}")
        return check_baseline(saved, result.as_dict(), "latency", against, max_regression, failed=result.failed)

