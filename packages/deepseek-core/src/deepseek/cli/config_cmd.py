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


@config.command("params")
@config_options
def params(config_file: str | None, overrides: tuple[str, ...], strategy: str | None, precision: str | None,
           resume: str | None, max_steps: int | None, trackers: tuple[str, ...]) -> None:
    """List the model's parameters and the optimizer group each one trains in: the rule of
    [[optimizer.groups]] that takes it, its lr_scale and weight_decay (nothing is allocated)."""
    import torch

    from deepseek.cli.context import command_host
    from deepseek.training.build import build_model
    from deepseek.training.param_groups import (
        check_model_rules,
        group_index,
        group_settings,
        rule_of,
        tied_aliases,
    )

    host = command_host()
    resolved = build_train_config(config_file, overrides, strategy=strategy, precision=precision,
                                  max_steps=max_steps, resume=resume, trackers=trackers, host=host)
    model = build_model(resolved, host=host, create_on=torch.device("meta"))
    named = list(model.named_parameters())
    rules = resolved.optimizer.groups
    settings = group_settings(rules, resolved.optimizer.weight_decay)
    width = max((len(n) for n, _ in named), default=4)
    click.echo(f"{'name':<{width}}  {'shape':<16} {'rule':>4}  {'lr_scale':>8}  weight_decay")
    for name, p in named:
        rule = rule_of(name, rules)
        decay, scale = settings[group_index(name, p.ndim, rules)]
        shape = "x".join(str(d) for d in p.shape) or "scalar"
        trains = "" if p.requires_grad else "  (frozen)"
        click.echo(f"{name:<{width}}  {shape:<16} {'-' if rule is None else rule:>4}  {scale:>8g}  {decay:g}{trains}")
    for alias, name in tied_aliases(model).items():
        click.echo(f"{alias:<{width}}  tied to {name}: trains in its group")
    click.echo(f"{len(named)} parameter tensors, {sum(p.numel() for _, p in named):,} elements; rules are "
               "numbered from 0 in [[optimizer.groups]] order, '-': none takes it")
    check_model_rules(rules, model)  # after the listing, which shows the names to match
