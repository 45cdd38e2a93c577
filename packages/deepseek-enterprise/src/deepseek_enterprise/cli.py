"""``deepseek multimodal``: the fusion study (train, test, table) and the evaluation of a trained
multimodal classifier (``eval``) of the enterprise edition.

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
    from deepseek_enterprise.study import check_row, table

    rows = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path}: not UTF-8 text (byte {exc.start}); pass results.jsonl files of 'study'") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{n}: not a results line ({exc.msg}); pass results.jsonl files of 'study'") from None
            problem = check_row(row)
            if problem:
                raise UsageError(f"{path}:{n}: {problem}; pass results.jsonl files of 'study'")
            rows.append(row)
    if not rows:
        raise UsageError(f"{', '.join(map(str, files))}: no results lines; pass results.jsonl files of 'study'")
    click.echo(table(rows))


@multimodal.command("eval")
@click.option("--checkpoint", required=True, metavar="PATH", help="Run folder or checkpoint folder.")
@click.option("--split", type=click.Choice(["val", "test"]), default="val", show_default=True,
              help="Which held-out split to read (test: only for final figures).")
@click.option("--missing", default="", metavar="NAMES", help="Modalities to hide, comma-separated (e.g. audio,text).")
@click.option("--confusion", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PNG",
              help="Also draw the confusion matrix to this PNG file.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_command(checkpoint: str, split: str, missing: str, confusion: Path | None, device: str, as_json: bool) -> None:
    """Accuracy of a trained multimodal classifier on a split, per modality, with a confusion matrix."""
    import re

    from deepseek.cli.context import command_host
    from deepseek.training.single import pick_device
    from deepseek_enterprise.report import format_report, plot_confusion, split_report

    names = tuple(m.strip() for m in missing.split(",")) if missing.strip() else ()
    if any(not m for m in names):
        raise UsageError(f"--missing: {missing!r} has an empty name; give names like audio,text")
    if not re.match(r"^(auto|cpu|cuda(:\d+)?)$", device):
        raise UsageError(f"--device: {device!r} is not allowed; use auto, cpu, cuda or cuda:N")
    if confusion is not None and (confusion.suffix.lower() != ".png" or not confusion.parent.resolve().is_dir()):
        raise UsageError(f"--confusion: {confusion} must be a .png file in an existing folder")
    report = split_report(checkpoint, split=split, missing=names, device=pick_device(device, where="--device"),
                          host=command_host())
    if confusion is not None:
        plot_confusion(report, confusion)
    click.echo(json.dumps(report) if as_json else format_report(report))
