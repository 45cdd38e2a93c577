"""``deepseek config show``: the resolved config, every default filled in, as TOML.

Nothing here imports torch at module level (``deepseek --help`` stays fast).
"""

from __future__ import annotations

import click


@click.group("config")
def config() -> None:
    """Inspect configs (the reference of every key: docs/config.md)."""


@config.command("show")
@click.argument("config_file", required=False, metavar="[CONFIG.toml]")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set train.lr=1e-3 (repeatable).")
@click.option("--strategy", metavar="NAME", help="Parallelism strategy, as for 'deepseek train'.")
@click.option("--precision", metavar="P", help="auto, fp32, bf16 or fp16.")
@click.option("--max-steps", type=int, metavar="N", help="Total optimizer steps (train.max_steps).")
def show(config_file: str | None, overrides: tuple[str, ...], strategy: str | None, precision: str | None,
         max_steps: int | None) -> None:
    """Print the config 'deepseek train' would run with these arguments, defaults included."""
    from deepseek.cli.context import command_host
    from deepseek.cli.train_cmd import build_train_config
    from deepseek.config.load import dump_config

    resolved = build_train_config(config_file, overrides, strategy=strategy, precision=precision,
                                  max_steps=max_steps, host=command_host())
    click.echo(dump_config(resolved), nl=False)
