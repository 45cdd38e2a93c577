"""``deepseek multimodal``: the fusion study (train, test, table) of the enterprise edition.

Nothing here imports torch at module level (``deepseek --help`` stays fast).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from deepseek.errors import UsageError


@click.group("multimodal")
def multimodal() -> None:
    """Multimodal fusion: the study behind BENCHMARKS.md's fusion tables."""


@multimodal.command("study")
@click.option("--task", "tasks", multiple=True, type=click.Choice(["redundant", "complementary"]),
              help="Tasks to run (repeatable; default both).")
@click.option("--seed", "seeds", multiple=True, type=click.IntRange(min=0), help="Seeds (repeatable; default 0 1 2).")
@click.option("--config", "configs", multiple=True,
              type=click.Choice(["vision", "audio", "text", "late", "concat", "cross_attention"]),
              help="Models to train (repeatable; default all).")
@click.option("--steps", type=click.IntRange(min=1), default=1500, show_default=True, help="Optimizer steps per run.")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True, max=1.0), default=2e-3, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for runs and results.jsonl.")
def study(tasks: tuple[str, ...], seeds: tuple[int, ...], configs: tuple[str, ...], steps: int, batch: int,
          lr: float, device: str, out: Path) -> None:
    """Train every model per task and seed, test each once on the held-out split, print the tables."""
    from deepseek.cli.context import command_host
    from deepseek_enterprise.study import CONFIGS, run_study, table

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file; give a folder")
    rows = run_study(list(tasks or ("redundant", "complementary")), list(seeds or (0, 1, 2)),
                     list(configs or CONFIGS), steps, batch=batch, lr=lr, device=device, out=out, host=command_host())
    click.echo(table(rows))


@multimodal.command("table")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
def table_command(files: tuple[Path, ...]) -> None:
    """Merge results.jsonl files of studies into the tables."""
    from deepseek_enterprise.study import table

    rows = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{n}: not a results line ({exc.msg}); pass results.jsonl files of 'study'") from exc
    click.echo(table(rows))
