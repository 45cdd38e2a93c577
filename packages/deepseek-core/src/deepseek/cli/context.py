"""The plugin host of one ``deepseek`` invocation, kept on the click context.

The root command's context holds the host in ``ctx.obj``: the one given to
``deepseek.cli.main.main(host=...)``, or else one chosen by the root options (``--plugins``,
``--disable-plugins``, ``--no-plugin-autoload``, ``--strict-plugins``) on top of the
environment; without those options it is the process's host (:func:`get_host`). Commands ask for
it with :func:`command_host`, never through a module global. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from deepseek.errors import UsageError
from deepseek.plugins.host import PluginHost, get_host
from deepseek.plugins.records import Component
from deepseek.plugins.settings import PluginSettings

RUNNING_COMMAND = "deepseek.command"
"""``ctx.meta`` key: the registration (:class:`~deepseek.plugins.records.Component`) of the
command the root group resolved for this invocation (:func:`running_command`)."""

PLUGIN_OPTIONS = ("plugins", "disable_plugins", "no_plugin_autoload", "strict_plugins")
"""Parameter names of the root options that choose the plugins."""


def command_host(ctx: click.Context | None = None) -> PluginHost:
    """The plugin host of the running ``deepseek`` command (``None``: the current context).

    Built on first use from the root command's options and stored on the root context, so every
    command of one invocation sees the same host.
    """
    root = (ctx or click.get_current_context()).find_root()
    if root.obj is None:
        root.obj = host_for_options(root.params)
    if not isinstance(root.obj, PluginHost):
        raise TypeError(
            f"the deepseek command's context object must be a PluginHost, got "
            f"{type(root.obj).__name__}"
        )
    return root.obj


def running_command(ctx: click.Context | None = None) -> Component:
    """The registration of the running ``deepseek`` command (``None``: the current context), as
    its host holds it: what a command passes to name a file it declares and writes again
    (``check_output(..., replaces=OwnRunFile(running_command(), "pack.json"))``,
    :class:`deepseek.run_files.OwnRunFile`)."""
    component = (ctx or click.get_current_context()).find_root().meta.get(RUNNING_COMMAND)
    if not isinstance(component, Component):
        raise TypeError("running_command(): no deepseek command is running in this click context; call it in a "
                        "command's callback run through deepseek.cli.main.main")
    return component


def host_for_options(params: Mapping[str, Any]) -> PluginHost:
    """The host the root options ask for: the process's host when none is given."""
    options = {k: params[k] for k in PLUGIN_OPTIONS if params.get(k)}
    if not options:
        return get_host()
    return PluginHost(PluginSettings.from_env().with_cli_options(**options))


def refuse_options_with_given_host(ctx: click.Context) -> None:
    """Plugin options cannot apply to a host handed to ``main(host=...)``: say so."""
    given = [f"--{k.replace('_', '-')}" for k in PLUGIN_OPTIONS if ctx.params.get(k)]
    if ctx.obj is not None and given:
        raise UsageError(
            f"{', '.join(given)}: the plugins are those of the host given to "
            "deepseek.cli.main.main(host=...); drop the option or build that host with "
            "PluginSettings to match"
        )
