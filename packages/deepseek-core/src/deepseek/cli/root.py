"""The ``deepseek`` command: a click group whose sub-commands come from plugins (run through
:func:`deepseek.cli.main.main`, the console entry point, which takes stop signals first).

The plugin host of an invocation lives on the click context (see :mod:`deepseek.cli.context`);
this module keeps no state of its own. Bad input ends with one line on stderr (what, where, how
to fix) and exit code 2: usage errors of click and of deepseek, arguments that are not UTF-8, and
requests too large for the machine's memory; a traceback is shown only with ``--debug`` (before the same line and exit code), which is
accepted anywhere before a ``--``. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import click

from deepseek._version import __version__
from deepseek.arguments import invocation
from deepseek.cli.context import RUNNING_COMMAND, command_host, refuse_options_with_given_host
from deepseek.cli.exits import exit_status, leave_launcher, leave_rank
from deepseek.cli.warning_lines import one_line_warnings
from deepseek.errors import (
    DeepseekError,
    PluginError,
    RankError,
    UsageError,
    clipped_words,
    one_line,
)
from deepseek.plugins.host import CORE_DIST, PluginHost

_PLUGIN_COMMAND = "deepseek.plugin_command"
"""``ctx.meta`` key: the third-party command component being run, and its click command."""


class PluginGroup(click.Group):
    """A click group whose commands are the ``command`` components of the plugin host."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        refuse_options_with_given_host(ctx)
        return rest

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(command_host(ctx).names("command")))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        builtin = super().get_command(ctx, cmd_name)
        if builtin is not None:
            return builtin
        host = command_host(ctx)
        if not host.candidates("command", cmd_name):
            from deepseek.plugins import catalogue

            if catalogue.provider_of("command", cmd_name) is not None:
                raise UsageError(host.explain("command", cmd_name).reason)
            if (owner := catalogue.unloaded_command_owner(cmd_name, host.records)) is not None:
                raise UsageError(owner)
            return None
        component = host.resolve("command", cmd_name)
        command = component.load()
        if not isinstance(command, click.Command):
            raise PluginError(
                f"command {cmd_name!r} from {component.dist} is not a click.Command; register a "
                "click command object"
            )
        from deepseek.plugins.catalogue import EDITIONS

        ctx.meta[RUNNING_COMMAND] = component  # deepseek.cli.context.running_command
        if component.dist not in EDITIONS:  # a third party's command: its bugs are named as its own
            ctx.meta[_PLUGIN_COMMAND] = (component, command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, its own code's exceptions blamed on it (:func:`plugin_command_blamed`)."""
        with plugin_command_blamed(ctx):
            return super().invoke(ctx)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            from deepseek.names import closest
            from deepseek.plugins.catalogue import unloaded_third_party

            close = closest(name, self.list_commands(ctx))
            ctx.fail(f"no such command {name!r}" + (f"; did you mean {close!r}?" if close
                                                     else unloaded_third_party(name, command_host(ctx).records)))
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        host = command_host(ctx)
        rows = []
        for name in self.list_commands(ctx):
            comps = host.candidates("command", name)
            if comps:
                rows.append((name, comps[0].description))
            else:
                cmd = super().get_command(ctx, name)
                rows.append((name, cmd.get_short_help_str() if cmd else ""))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@contextlib.contextmanager
def plugin_command_blamed(ctx: click.Context) -> Iterator[None]:
    """The block, a command line parsed or run under the root context ``ctx``: an exception a
    third-party command's own code raises in it (an option's callback, its own callback; other
    than click's and deepseek's one-line errors) becomes one :class:`PluginError` line naming the
    command, its distribution and the plugin module that registered it, not an internal error.
    Also the service's parse of a job's command line at submit (``jobcheck.check_parsed``)."""
    try:
        yield
    except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except Exception:
        found = ctx.meta.get(_PLUGIN_COMMAND)
        if found is None:
            raise
        component, command = found
        module = getattr(command.callback, "__module__", None) or component.module
        from deepseek.plugins.calls import blamed_on

        with blamed_on(component.label, "its callback", package=module.partition(".")[0]):
            raise


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    host = command_host(ctx)
    click.echo(f"deepseek-core {__version__}")
    for record in sorted(host.records.values(), key=lambda r: r.dist):
        if record.dist == CORE_DIST:
            continue
        status = "" if record.status == "ok" else f" [{record.status}]"
        click.echo(f"{record.dist} {record.version} ({record.edition}){status}")
    ctx.exit(0)


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version", is_flag=True, expose_value=False, callback=_print_version,
    help="Show core's and every plugin distribution's version.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
# The plugin options are eager so that --version sees them wherever they are on the line.
@click.option("--strict-plugins", is_flag=True, is_eager=True, help="Fail when any plugin fails to load.")
@click.option("--plugins", metavar="A,B", is_eager=True, help="Load only these plugin distributions.")
@click.option("--disable-plugins", metavar="A,B", is_eager=True, help="Do not load these plugin distributions.")
@click.option("--no-plugin-autoload", is_flag=True, is_eager=True, help="Load no plugin distributions by default.")
@click.pass_context
def cli(ctx: click.Context, **_: Any) -> None:
    """DeepSeek framework: build, train, optimize and deploy Transformer models."""
    command_host(ctx)


def main(argv: list[str] | None = None, *, host: PluginHost | None = None) -> None:
    """Console entry point: run ``deepseek ARGV`` and exit with its status.

    ``host`` is the plugin host the commands use (sub-commands get it from
    :func:`deepseek.cli.context.command_host`); by default the root options and the environment
    choose it. Warnings show as one line each while the command runs, those for developers
    (:data:`~deepseek.cli.warning_lines.DEVELOPER_WARNINGS`) only where Python was asked for them
    (:func:`~deepseek.cli.warning_lines.asked_for`). As the process's entry
    point (no ``argv``, no ``host``) in a rank of a multi-process job (``RANK`` and
    ``WORLD_SIZE`` set, as torchrun and ``deepseek launch`` set them), the rank leaves through
    :func:`leave_rank`, success included; the process of a launcher
    (:data:`~deepseek.cli.main.LAUNCHER_COMMANDS`) through :func:`leave_launcher`.
    """
    from deepseek.devices import hold_back_cuda_home_note

    hold_back_cuda_home_note()  # torch's note, logged when inductor or DeepSpeed imports its extension builder
    try:
        with one_line_warnings():  # the process's display: the last overlapping call restores it
            _run(list(sys.argv[1:] if argv is None else argv), host)
    except SystemExit as exc:
        code = exit_status(exc.code)
        if argv is None and host is None:
            from deepseek.cli.main import LAUNCHER_COMMANDS, command_name

            if {"RANK", "WORLD_SIZE"} <= os.environ.keys():
                leave_rank(code)
            if command_name(sys.argv[1:]) in LAUNCHER_COMMANDS:
                leave_launcher(code)
        raise


def split_debug(args: list[str]) -> tuple[list[str], bool]:
    """``args`` without ``--debug``, and whether it was given. ``--debug`` is the root's option,
    accepted anywhere before a ``--`` (what follows ``--`` belongs to the command)."""
    end = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:end] if a != "--debug"]
    return head + args[end:], len(head) < end


def root_option_hint(exc: click.UsageError) -> str:
    """What to add to a sub-command's ``no such option`` error when the option is one of the
    root's (``deepseek train --plugins pro``): it belongs before the command, where the plugin
    host is chosen (only ``--debug`` is taken anywhere, :func:`split_debug`). Empty otherwise."""
    ctx = exc.ctx
    if not isinstance(exc, click.NoSuchOption) or ctx is None or ctx.parent is None:
        return ""
    name = exc.option_name
    if not any(name in param.opts for param in cli.params):
        return ""
    command = ctx.command_path.partition(" ")[2]  # the words after the root's own name
    return (f"; {name} is an option of deepseek itself: give it before the command "
            f"(deepseek {name}{'' if name in _ROOT_FLAGS else ' ...'} {command} ...)")


_ROOT_FLAGS = ("--version", "--debug", "--strict-plugins", "--no-plugin-autoload")
"""The root's options that take no value (for :func:`root_option_hint`'s example)."""


def undecodable_argument(args: list[str]) -> str | None:
    """The one-line error for the first argument that is not valid UTF-8 (``None`` when all are).

    Python hands undecodable bytes over as lone surrogates; deepseek writes arguments into configs,
    JSON and file names, which must be UTF-8, so such bytes are refused here, for every command."""
    for i, arg in enumerate(args):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as exc:
            shown = arg.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            before = args[i - 1] if i and args[i - 1].startswith("-") else None
            where = f"the value of {before}" if before else f"argument {i + 1}"
            return (
                f"{where} ('{shown}') is not valid UTF-8 text (character {exc.start + 1}); "
                "deepseek reads arguments as UTF-8: pass UTF-8 text, or rename the file"
            )
    return None


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says memory ran out (Python's, torch's CPU allocator or a GPU's): what was
    asked for is too large for this machine, a one-line error rather than an internal one."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
    )


def usage_line(exc: click.UsageError) -> str:
    """The one line a command line click refuses is told with (after ``error: ``): click's
    message, quoting the argument, and the command whose ``--help`` to read."""
    where = exc.ctx.command_path if exc.ctx is not None else "deepseek"
    message = clipped_words(" ".join(exc.format_message().split()))
    hint = root_option_hint(exc)
    message = f"{message.rstrip('.')}{hint}" if hint else message
    return f"{message} (see '{where} --help')"


def click_error_line(exc: click.ClickException) -> str:
    """The one line of a click error that is not a usage error (its exit code is its own)."""
    return clipped_words(" ".join(exc.format_message().split()))


def _run(args: list[str], host: PluginHost | None) -> None:
    bad = undecodable_argument(args)
    if bad is not None:
        click.secho(f"error: {bad}", fg="red", err=True)
        sys.exit(2)
    args, debug = split_debug(args)
    args = ["--debug", *args] if debug else args
    debug = debug or os.environ.get("DEEPSEEK_DEBUG") == "1"
    try:
        with invocation():  # errors name --debug for their traceback
            rv = cli.main(args=args, prog_name="deepseek", standalone_mode=False, obj=host)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.secho("aborted", fg="red", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message())
        sys.exit(0)
    except click.UsageError as exc:
        if debug:  # the traceback, then the same line and exit code as without --debug
            traceback.print_exc()
        click.secho(f"error: {usage_line(exc)}", fg="red", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.secho(f"error: {click_error_line(exc)}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except UsageError as exc:
        if debug:  # the traceback, then the same line and exit code as without --debug
            traceback.print_exc()
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except DeepseekError as exc:
        if debug:  # the traceback, then the same line and exit code as without --debug
            traceback.print_exc()
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.secho("interrupted", fg="red", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:  # the traceback, then the same line and exit code as without --debug
            traceback.print_exc()
        from deepseek.extras import missing_dependency

        if (missing := missing_dependency(exc)) is not None:  # the environment, not the program
            click.secho(f"error: {missing}", fg="red", err=True)
            sys.exit(2)
        if out_of_memory(exc):
            click.secho(
                f"error: out of memory ({' '.join(str(exc).split())[:160]}); ask for "
                "less at once: a smaller --batch, --seq, --batches or data.batch_size, or a smaller model",
                fg="red", err=True,
            )
            sys.exit(2)
        from deepseek.paths import out_of_space

        if out_of_space(exc):  # the disk, not the program: where, and what to do
            where = getattr(exc, "filename", None)
            click.secho(f"error: {one_line(os.fsdecode(where)) + ': ' if where else ''}the disk is full "
                        f"({' '.join(str(exc).split())[:160]}); free space there or write somewhere else",
                        fg="red", err=True)
            sys.exit(2)
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:  # a path the user gave, or made of it
            name = os.fsdecode(exc.filename) if exc.filename is not None else ""
            shown = name if len(name) <= 80 else f"{name[:50]}...{name[-20:]}"
            click.secho(f"error: {one_line(shown)}: the path is too long for the file system (a name over 255 bytes or a "
                        "path over 4,096); give a shorter path", fg="red", err=True)
            sys.exit(2)
        from deepseek.training.launcher_env import peer_lost

        if peer_lost(exc):  # another rank failed first: the launcher's line names it
            click.secho(f"error: rank {os.environ.get('RANK', '?')} lost its connection to another rank "
                        f"({' '.join(str(exc).split())[-120:]}); the launcher names the rank that failed",
                        fg="red", err=True)
            sys.exit(1)
        click.secho(
            f"internal error: {exc.type_name if isinstance(exc, RankError) else type(exc).__name__}: "
            f"{one_line(str(exc))} (run with --debug for the traceback)",
            fg="red", err=True,
        )
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
