"""``deepseek checkpoint``: inspect any checkpoint and export it to the canonical format.

``deepseek checkpoint export SRC DST`` turns a checkpoint written under any strategy and world size
(full or sharded) into a canonical checkpoint folder that deepseek-core alone loads (``deepseek
train --resume DST``, ``deepseek generate --checkpoint DST``). ``deepseek checkpoint info SRC``
prints its layout, step, strategy and world size, after checking every file against the checksum
its commit record holds (a damaged file is one line naming it) and that its weights and optimizer
files parse as safetensors, headers and tensor extents, without reading the tensors; for a sharded
checkpoint also its shard files against ``sharded.json``'s list and each tensor's stored pieces
against its size (one line naming a missing or foreign shard). Nothing here imports torch at module level.
"""

from __future__ import annotations

import json

import click

from deepseek.cli.params import PATH
from deepseek.errors import shown


@click.group("checkpoint")
def checkpoint() -> None:
    """Inspect checkpoints and export them to the canonical format."""


@checkpoint.command("export")
@click.argument("src", type=PATH, metavar="SRC")
@click.argument("dst", type=PATH, metavar="DST")
def export(src: str, dst: str) -> None:
    """Write SRC (a run or checkpoint folder, full or sharded) as a canonical checkpoint DST."""
    from pathlib import Path

    from deepseek.cli.context import command_host
    from deepseek.paths import check_output, created_note
    from deepseek_pro.checkpoint import export_checkpoint

    host = command_host()
    missing = check_output(dst, where="checkpoint export: DST", folder=True, host=host)
    out = export_checkpoint(src, dst, host=host)
    parents = [m for m in missing if m != Path(dst)]
    click.echo(f"exported {shown(src)} -> {shown(out)}{created_note(parents)} (canonical safetensors; loads with "
               "deepseek-core alone)")


@checkpoint.command("info")
@click.argument("src", type=PATH, metavar="SRC")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(src: str, as_json: bool) -> None:
    """Layout (full or sharded), step, strategy, world size and verified checksums of the checkpoint SRC."""
    from deepseek.cli.context import command_host
    from deepseek.training import checkpoint as ckpt
    from deepseek.training.checkpoint import layout_of
    from deepseek.training.checkpoint_lookup import checksum_note
    from deepseek.training.checkpoint_sharded import check_weights_files

    directory = ckpt.resolve_checkpoint(src)
    state = ckpt.read_trainer_state(directory)
    layout = layout_of(directory)
    # the files parse (a sharded one's shards against sharded.json's list, each tensor stored
    # whole): a file rewritten with a matching checksum passes the commit record's check
    check_weights_files(directory, command_host())  # its optimizer's hyper-parameter types, as installed here
    row = {
        "path": str(directory),
        "layout": layout,
        "step": state.get("step"),
        "strategy": state.get("strategy"),
        "world_size": state.get("world_size"),
        "checksums": checksum_note(directory),
    }
    if as_json:
        click.echo(json.dumps(row))
    else:
        click.echo("  ".join(f"{k}: {v}" for k, v in row.items()))
