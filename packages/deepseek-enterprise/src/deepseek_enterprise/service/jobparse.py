"""A job's command line parsed as ``deepseek`` parses it, nothing run and nothing printed
(:func:`parsed`), for the checks at submit (``jobcheck.check_parsed``, also in ``studycheck``'s child).

A help is click's own decision: the command line asks for one where click would show one (a help
option parsed as an option on some level, which is eager: before the other values are converted;
a command or group given no arguments that shows its help then), not wherever a help option's
name appears (``tune --out --help`` runs its study in the folder ``--help``; after ``--`` it is an argument;
``train --bogus --help`` is refused for ``--bogus``). Where click would format the help to print
it, the parse's contexts raise :class:`HelpShown` instead, so the server's outputs get nothing;
where an option would prompt for its value, they abort as the job does on its empty stdin, so the
server's own stdin is never read (an option's callback still runs: what it prints, the server prints).
"""

from __future__ import annotations

import contextlib
from typing import Any

import click


class HelpShown(click.exceptions.Exit):  # noqa: N818 - what happened, not an error: the job prints its help and succeeds
    """The command line asks for a help where click shows one: the job prints it and exits 0 (click's
    ``Exit(0)``: no third-party command's error, whatever code asked for the help)."""


def parsed(root: click.Context, args: list[str], contexts: contextlib.ExitStack) -> click.Context | None:
    """The context of the command ``args`` runs, parsed as ``deepseek`` parses it and nothing run:
    each group resolves its sub-command (click's ``resolve_command``; at the root the plugin
    host's lookup, with its one-line errors) and parses its own options (:func:`_context`), down
    to the command. ``None`` when there is nothing more to check here: a group that runs without
    a sub-command given none, or a chained group (none of the job commands is one; checked when
    the job runs). :class:`HelpShown` where a level shows its help."""
    ctx, group = root, root.command
    while isinstance(group, click.Group) and not group.chain:
        name, command, rest = group.resolve_command(ctx, args)
        assert command is not None  # resolve_command fails when there is none
        sub = contexts.enter_context(_context(command, name, rest, ctx))
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


def _context(command: click.Command, name: str | None, args: list[str], parent: click.Context) -> click.Context:
    """``command.make_context(name, args, parent=parent)`` as click makes it (a context of the
    command's ``context_class`` with its ``context_settings``, its parse in that context's scope),
    but of a subclass whose help is :class:`HelpShown`: click's help option calls ``get_help`` to
    print it, and so does a command given no arguments that shows its help (``NoArgsIsHelpError``)."""
    ctx = _without_help(command.context_class)(command, info_name=name, parent=parent, **command.context_settings)
    with ctx.scope(cleanup=False):
        if args:  # (none: click shows the help of a command that asks for it before it parses)
            # the options the command line gives, as the command's own parser reads them (it
            # raises what the parse below would raise first); a copy: the parser consumes its list
            ctx.given = frozenset(command.make_parser(ctx).parse_args(args=list(args))[0])
        command.parse_args(ctx, args)
    return ctx


def _without_help(context_class: type[click.Context]) -> type[click.Context]:
    """``context_class`` whose ``get_help`` raises :class:`HelpShown`, and in which an option that
    would prompt (click's ``prompt=``, ``confirmation_option``: its value not given; or given
    bare, with no value, where it may be: ``prompt_required=False``) aborts without reading: the
    job's stdin is empty, so its prompt aborts it (``aborted``, exit 130), where the server's
    parse would read the server's own stdin (a terminal: the request waits)."""

    class WithoutHelp(context_class):  # type: ignore[misc,valid-type]
        given: frozenset[str] = frozenset()
        """The names of the options the command line gives (set by :func:`_context`)."""

        def get_help(self) -> str:
            raise HelpShown

        def lookup_default(self, name: str, call: bool = True) -> Any:
            # click looks here for a value the command line and the environment did not give,
            # before it prompts for one (prompt_required, or required); and, for an option the
            # command line gives, only as it prompts for the value that was not given with it
            param = next((p for p in self.command.params if p.name == name), None)
            if (isinstance(param, click.Option) and param.prompt is not None
                    and (param.required or param.prompt_required or name in self.given)):
                raise click.Abort
            return super().lookup_default(name, call=call)

    return WithoutHelp
