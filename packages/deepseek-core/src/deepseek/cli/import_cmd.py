"""``deepseek import-hf``: a Hugging Face GPT-2 folder as deepseek weights and a config that
trains from them (docs/interop.md). Nothing here imports torch at module level."""

from __future__ import annotations

from pathlib import Path

import click

from deepseek.cli.params import PATH


@click.command("import-hf")
@click.argument("path", type=PATH, metavar="PATH")
@click.option("--out", required=True, type=PATH, metavar="DIR",
              help="New folder for model.safetensors, config.toml (and tokenizer.json).")
def import_hf(path: str, out: str) -> None:
    """Import a local Hugging Face GPT-2 folder (config.json + model.safetensors)."""
    from deepseek.cli.context import command_host
    from deepseek.errors import shell_quoted, shown
    from deepseek.interop.hf_import import import_hf as run_import
    from deepseek.paths import created_note

    target = Path(out)
    created, notes = run_import(Path(path), target, host=command_host())
    click.echo(f"wrote {shown(target)}{created_note(created)}: model.safetensors (for --checkpoint and train.init_from) and config.toml; "
               f"train from it with: deepseek train {shell_quoted(str(target / 'config.toml'))}")
    for note in notes:
        click.echo(note)
