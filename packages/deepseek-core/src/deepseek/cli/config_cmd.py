"""``deepseek config show``: the resolved config, every default filled in, as TOML.

Nothing here imports torch at module level (``deepseek --help`` stays fast).
"""

from __future__ import annotations

import click

from deepseek.cli.train_cmd import build_train_config, config_options


@click.group("config")
def config() -> None:
    """Inspect configs (the reference of every key: docs/config.md)."""


@config.command("show")
@config_options
def show(config_file: str | None, overrides: tuple[str, ...], strategy: str | None, precision: str | None,
         resume: str | None, max_steps: int | None, trackers: tuple[str, ...]) -> None:
    """Print the config 'deepseek train' would run with these arguments, defaults included."""
    from deepseek.cli.context import command_host
    from deepseek.config.load import dump_config

    resolved = build_train_config(config_file, overrides, strategy=strategy, precision=precision,
                                  max_steps=max_steps, resume=resume, trackers=trackers, host=command_host())
    click.echo(dump_config(resolved), nl=False)
