"""A job's command line checked at submit, in the server's process, by the command it will run.

The job runs ``deepseek COMMAND [config.toml] ARGS`` (:func:`job_argv`) in its workspace. At
submit, before the job is queued, :func:`check_command`:

- parses that command line with the registered command itself, as ``deepseek`` parses it and
  without running it (:func:`_parsed`): the server's plugin host resolves the command (one that
  no loaded plugin provides, or whose plugin code does not load, is refused with the line the
  CLI prints for it), each group resolves its sub-command (``bench latency``) and every level
  parses its own options (click's ``resolve_command`` and ``make_context``): an unknown
  command or option, a missing value, a value of the wrong type is refused with the line
  ``deepseek COMMAND`` would print;
- for ``train`` with the job's config (or none): builds the config table ``deepseek train`` would validate (the job's config
  with its ``--strategy``, ``--precision``, ``--max-steps``, ``--tracker`` and ``--set``
  applied, :func:`deepseek.cli.train_options.train_config_data`) and runs the config loader's
  checks that read no file (:func:`deepseek.config.load.check_plain_sections`: sections, keys
  with the did-you-mean, types, ranges, cross-field checks).

What needs the job's workspace is checked when the job runs: a model's, dataset's, optimizer's,
schedule's or strategy's own keys (a dataset reads its files to check them), and the config of a
``--resume`` job (the checkpoint's config and settings take part) and a config file among the
job's files (``train cfg.txt``): only their command line is checked here.
"""

from __future__ import annotations

import contextlib
from typing import Any

import click

from deepseek.errors import DeepseekError

CONFIG_COMMANDS = ("train", "tune")
"""The commands that get the job's ``config.toml`` as their CONFIG argument."""


class JobRefused(ValueError):
    """The job's command would refuse its arguments or config (one line: the command's own)."""


def job_argv(command: str, has_config: bool, args: list[str]) -> list[str]:
    """The arguments after ``deepseek`` the job runs with: the command, ``config.toml`` when it
    has a config and the command takes one, then its own arguments."""
    return [command, *(["config.toml"] if has_config and command in CONFIG_COMMANDS else []), *args]


def check_command(command: str, args: list[str], config: dict[str, Any] | None, host: Any) -> None:
    """Refuse (:class:`JobRefused`) what ``deepseek COMMAND`` would refuse before reading a file
    of the job's workspace (module docstring); ``config`` is the job's parsed config.toml."""
    from deepseek.cli.params import RUNS_ELSEWHERE
    from deepseek.cli.root import cli, usage_line

    argv = job_argv(command, config is not None, args)
    root = click.Context(cli, info_name="deepseek", obj=host, **cli.context_settings)  # as `deepseek` makes it
    root.meta[RUNS_ELSEWHERE] = True  # the job's devices are not the server's: `--device cuda` is checked when it runs
    if any(a in root.help_option_names for a in argv[1:]):
        return  # the job prints its help and succeeds: nothing to refuse
    try:
        with root, contextlib.ExitStack() as contexts:
            ctx = _parsed(root, argv, contexts)
            if ctx is not None and command == "train":
                _check_train(ctx.params, config)
    except click.exceptions.NoArgsIsHelpError:
        return  # a group given no sub-command (`bench`): the job prints the group's help and succeeds
    except click.UsageError as exc:
        raise JobRefused(usage_line(exc)) from None
    except DeepseekError as exc:  # a UsageError; a PluginError: the command's plugin code does not load
        raise JobRefused(str(exc)) from None


def _parsed(root: click.Context, args: list[str], contexts: contextlib.ExitStack) -> click.Context | None:
    """The context of the command ``args`` runs, parsed as ``deepseek`` parses it and nothing run:
    each group resolves its sub-command (click's ``resolve_command``; at the root the plugin
    host's lookup, with its one-line errors) and parses its own options, down to the command.
    ``None`` when there is nothing more to check here: a group that runs without a sub-command
    given none, or a chained group (none of the job commands is one; checked when the job runs)."""
    ctx, group = root, root.command
    while isinstance(group, click.Group) and not group.chain:
        name, command, rest = group.resolve_command(ctx, args)
        assert command is not None  # resolve_command fails when there is none
        sub = contexts.enter_context(command.make_context(name, rest, parent=ctx))
        if not isinstance(command, click.Group):
            return sub
        # What the group left for its sub-command, as click's Group.invoke takes it back
        args = [*sub._protected_args, *sub.args]  # noqa: SLF001 - click's own split of the rest
        if not args:
            if command.invoke_without_command:
                return None
            sub.fail("Missing command.")  # as click's Group.invoke
        ctx, group = sub, command
    return None


def _check_train(params: dict[str, Any], config: dict[str, Any] | None) -> None:
    from deepseek.cli.train_options import train_config_data
    from deepseek.config.load import check_plain_sections

    if params["resume"] is not None:
        return  # the checkpoint's config and recorded settings take part: checked when the job runs
    if config is None and params["config_file"] is not None:
        return  # a config among the job's files (``train cfg.txt``): read in its workspace when the job runs
    data = train_config_data(dict(config or {}), params["overrides"], strategy=params["strategy"],
                             precision=params["precision"], max_steps=params["max_steps"],
                             trackers=params["trackers"])
    check_plain_sections(data)
