"""A job's command line checked at submit, in the server's process, by the command it will run.

The job runs ``deepseek COMMAND [config.toml] ARGS`` (:func:`job_argv`) in its workspace. At
submit, before the job is queued, :func:`check_command`:

- parses that command line with the registered command itself, as ``deepseek`` parses it and
  without running it (:func:`.jobparse.parsed`): the server's plugin host resolves the command (one that
  no loaded plugin provides, or whose plugin code does not load, is refused with the line the
  CLI prints for it), each group resolves its sub-command (``bench latency``) and every level
  parses its own options (click's ``resolve_command`` and ``make_context``): an unknown command
  or option, a missing value, a value of the wrong type, a path with a name over 255 bytes
  (:func:`jobpaths.check_path_names`) is refused with the line ``deepseek COMMAND`` would print;
  a help, where click shows one (not a help option's name as a value or after ``--``), is accepted,
  and so is an option that ends the command line with exit code 0 as it is parsed (a plugin's
  ``--version``: ``ctx.exit()``, ``sys.exit()``); another code, an abort or a ClickException is refused;
- for ``train``, ``tune``, ``compress``, ``eval`` and ``bench latency``: that command's own checks
  of its config and files, read as the job will find them (:mod:`.commandchecks`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import click

from deepseek.errors import DeepseekError
from deepseek_enterprise.service import jobparse, jobpaths
from deepseek_enterprise.service.commandchecks import AtStart, Workspace, own_checks

CONFIG_COMMANDS = ("train", "tune")
"""The commands that get the job's ``config.toml`` as their CONFIG argument."""


class JobRefused(ValueError):
    """The job's command would refuse its arguments or config (one line: the command's own)."""


def job_argv(command: str, has_config: bool, args: list[str]) -> list[str]:
    """The arguments after ``deepseek`` the job runs with: the command, ``config.toml`` when it
    has a config and the command takes one, then its own arguments."""
    return [command, *(["config.toml"] if has_config and command in CONFIG_COMMANDS else []), *args]


def check_command(command: str, args: list[str], config: dict[str, Any] | None, host: Any,
                  files: Mapping[str, str] | None = None, at_start: AtStart = jobpaths.at_start) -> click.Command | None:
    """Refuse (:class:`JobRefused`) what ``deepseek COMMAND`` would refuse before reading a file
    of the job's workspace (module docstring); ``config`` is the job's parsed config.toml,
    ``files`` the job's further files (name: text), ``at_start`` the server's executor's
    :meth:`~deepseek_enterprise.service.executor_base.Executor.at_start`; its command (:func:`check_parsed`)."""
    ws = Workspace(config, files or {}, at_start)
    # by the command resolved: another plugin's command of the same name is only parsed
    return check_parsed(job_argv(command, config is not None, args), host,
                        lambda ctx: own_checks().get(ctx.command, lambda *_: None)(ctx.params, ws, host))


def check_parsed(argv: list[str], host: Any, check: Callable[[click.Context], None]) -> click.Command | None:
    """``deepseek ARGV`` parsed as ``deepseek`` parses it, nothing run (:func:`.jobparse.parsed`), its paths'
    names checked, ``check(ctx)`` on its command's context (also ``studycheck``'s child): that command
    (None: a help where click shows one, or an option whose callback exits 0 as it is parsed, ``ctx.exit()``
    or ``sys.exit()``, which succeed), or :class:`JobRefused` with the line ``deepseek`` would print (for an
    option that exits otherwise or aborts as it is parsed, a line saying so: the job's own is the option's)."""
    from deepseek.arguments import invocation
    from deepseek.cli.exits import exit_status
    from deepseek.cli.params import RUNS_ELSEWHERE
    from deepseek.cli.root import (
        cli,
        click_error_line,
        plugin_command_blamed,
        split_debug,
        usage_line,
    )

    argv, _ = split_debug(argv)  # `--debug` is taken anywhere before a `--`
    root = click.Context(cli, info_name="deepseek", obj=host, **cli.context_settings)  # as `deepseek` makes it
    root.meta[RUNS_ELSEWHERE] = True  # the job's devices are not the server's: `--device cuda` is checked when it runs
    try:
        # as the command runs: its lines' wording, a third-party command's own exceptions its one line
        with invocation(), root, contextlib.ExitStack() as contexts, plugin_command_blamed(root):
            ctx = jobparse.parsed(root, argv, contexts)
            jobpaths.check_path_names(ctx)  # a name too long: the job could neither make nor read the path
            if ctx is not None:
                check(ctx)
            return None if ctx is None else ctx.command
    except jobparse.HelpShown:
        return None  # where click shows a help (`tune --help`, `bench`): the job prints it and succeeds
    except (click.exceptions.Exit, SystemExit) as exc:  # an option's callback ended the parse (`ctx.exit()`, `sys.exit()`)
        code = exc.exit_code if isinstance(exc, click.exceptions.Exit) else exit_status(exc.code)
        if code == 0:
            return None  # as a help (a plugin command's `--version`): the job prints what it prints and succeeds
        raise JobRefused(f"an option of 'deepseek {argv[0]}' ends the job with exit code {code} as its "
                         f"command line is parsed, before the command runs (see 'deepseek {argv[0]} --help')") from None
    except click.Abort:  # the job prints `aborted` and exits 130
        raise JobRefused(f"an option of 'deepseek {argv[0]}' aborts the job as its command line is parsed, "
                         f"before the command runs (see 'deepseek {argv[0]} --help')") from None
    except click.UsageError as exc:
        raise JobRefused(usage_line(exc)) from None
    except click.ClickException as exc:  # a plugin command's own one-line error (`click.ClickException`)
        raise JobRefused(click_error_line(exc)) from None
    except (DeepseekError, jobpaths.PathRefused) as exc:  # a UsageError; a PluginError: its plugin does not load
        raise JobRefused(str(exc)) from None
