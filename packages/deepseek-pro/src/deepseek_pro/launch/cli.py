"""``deepseek launch -n N [--nnodes M --node-rank R --rdzv-endpoint HOST:PORT] -- ARGS``.

Runs ``deepseek ARGS`` in N processes per node under torchrun's elastic agent. For ``train`` the
whole configuration is validated first — the same way ``deepseek train`` loads it, plus the
checks that need the job's size (:mod:`deepseek_pro.launch.checks`) — so an impossible combination
fails with one line and exit code 2 before any process starts. Nothing here imports torch at
module level.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from deepseek.advise.hardware import MAX_GPUS
from deepseek.cli.params import PATH, FiniteFloat, count
from deepseek.errors import UsageError, one_line, shown

if TYPE_CHECKING:
    from deepseek_pro.launch.runner import LaunchResult

_ROOT_VALUE_OPTIONS = frozenset({"--plugins", "--disable-plugins"})
_HELP = frozenset({"-h", "--help"})
PROCESSES_PER_CORE = 4
"""The most processes per node ``-n`` may ask for, per CPU core this launcher may run on: enough to
try a job of several ranks on a small machine (each rank is a Python process with torch
imported), and a typo such as ``-n 100000`` is refused instead of starting processes by the
thousand."""


def split_command(args: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """``[root options], command, [command args]`` of a ``deepseek`` argument list."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in _ROOT_VALUE_OPTIONS else 1
    if i >= len(args):
        return list(args), None, []
    return list(args[:i]), args[i], list(args[i + 1 :])


class Endpoint(click.ParamType):
    """``HOST:PORT`` of node 0 (``[::1]:29500`` for an IPv6 address): a host and a port from 1 to
    65535, checked before the elastic agent (whose own error is an exception) sees it."""

    name = "HOST:PORT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text:  # the default: one node, a local rendezvous
            return text
        host, colon, port = text.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
        name = host[1:-1] if bracketed else host  # the elastic agent's own rule: word characters, '.', '-' (and ':' in [...])
        host_ok = re.fullmatch(r"[\w.:-]+" if bracketed else r"[\w.-]+", name) is not None
        if not (colon and host_ok and port.isdigit() and 1 <= int(port) <= 65535):
            self.fail(f"{text!r} is not HOST:PORT with a port from 1 to 65535; give node 0's address, "
                      "e.g. node0:29500", param, ctx)
        return text


def _check_resolves(endpoint: str) -> None:
    """One line when this node cannot resolve node 0's host: the agent's store retried the name
    until --startup-timeout, with a warning line of torch's per attempt, then failed (exit 1)."""
    import socket

    host = endpoint.rpartition(":")[0].strip("[]")
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"launch: --rdzv-endpoint {endpoint}: this node cannot resolve host {host!r} ({reason}); "
                         "give node 0's address as every node resolves it (its IP address, or a name in DNS "
                         "or /etc/hosts)") from None


def validate_train(
    train_args: list[str], *, world_size: int, nproc_per_node: int, cuda_devices: int, timeout: float,
    host: Any = None,
) -> tuple[list[str], float]:
    """Validate ``deepseek train TRAIN_ARGS`` for a job of ``world_size`` processes; return the
    arguments to run (the collective timeout is set to twice ``timeout`` unless configured) and
    the run's ``train.preempt_grace_s``. Components are looked up on ``host`` (default: the
    process's plugin host)."""
    import dataclasses

    from deepseek.arguments import command_line
    from deepseek.cli.root import split_debug
    from deepseek.cli.train_cmd import build_train_config
    from deepseek.cli.train_cmd import train as train_command
    from deepseek_pro.launch import checks

    # under the root's context (when there is one), as deepseek train itself parses them: a root
    # option among them is refused with where it goes (cli/root.py's root_option_hint)
    outer = click.get_current_context(silent=True)
    ctx = train_command.make_context("train", split_debug(list(train_args))[0],
                                     parent=outer.find_root() if outer is not None else None)
    p = ctx.params
    with command_line():  # messages name --resume, --run-dir, ... as deepseek train's own do
        config = build_train_config(
            p["config_file"], p["overrides"], strategy=p["strategy"], precision=p["precision"],
            max_steps=p["max_steps"], resume=p["resume"], trackers=p["trackers"], host=host,
        )
        checks.check_launch(config, world_size, cuda_devices=cuda_devices, nproc_per_node=nproc_per_node, host=host,
                            resume=p["resume"])
    options = config.strategy.options
    fields = {f.name: f for f in dataclasses.fields(options)} if dataclasses.is_dataclass(options) else {}
    grace = config.train.preempt_grace_s
    if "timeout_s" in fields and options.timeout_s == fields["timeout_s"].default:
        wanted = 2 * timeout
        if wanted != options.timeout_s:
            return [*train_args, "--set", f"strategy.timeout_s={wanted:g}"], grace
    return list(train_args), grace


# Everything from the command on (after ``--``, or from the first word that is not an option) is
# the workers' ``deepseek`` arguments, root options included (``-- --plugins pro train``: the
# workers' own on top of the launcher's). Before it only launch's options are taken: a root option
# there (``launch -n 2 --plugins pro -- train``) is refused like one after any command, with
# where it goes (cli/root.py's root_option_hint), where it reached the workers alone, unseen by
# the launcher's checks of the job.
@click.command("launch", context_settings={"allow_interspersed_args": False})
@click.option("-n", "--nproc-per-node", type=count(), default=1, show_default=True,
              help="Processes per node (one per GPU on CUDA).")
@click.option("--nnodes", type=count(1, MAX_GPUS), default=1, show_default=True,
              help="Number of nodes (at most 2^20, the most GPUs deepseek advise models).")
@click.option("--node-rank", type=count(0), default=0, show_default=True,
              help="This node's index (0 hosts the rendezvous).")
@click.option("--rdzv-endpoint", type=Endpoint(), default="", metavar="HOST:PORT",
              help="Address of node 0 (required with --nnodes > 1).")
@click.option("--rdzv-id", default="", metavar="ID",
              help="Job id, the same on every node (default: 'deepseek-job' on several nodes, random on one).")
@click.option("--timeout", type=FiniteFloat(min=1, max=3.5 * 24 * 3600), default=300.0, show_default=True, metavar="SECONDS",
              help="A rank that makes no progress (no finished step) for this long is reported as hung "
                   "and the job is stopped; collectives time out after twice this.")
@click.option("--startup-timeout", type=FiniteFloat(min=1, max=7 * 24 * 3600), default=900.0, show_default=True,
              metavar="SECONDS", help="The same limit until the first step is done (imports, set-up, compile).")
@click.option("--log-dir", default=None, type=PATH, metavar="DIR",
              help="Where each rank's stdout/stderr are kept (default: a temp folder).")
@click.option("--no-watchdog", is_flag=True, help="Do not watch for hung ranks.")
@click.option("--verbose", is_flag=True, help="Show the elastic agent's own log.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def launch(
    nproc_per_node: int,
    nnodes: int,
    node_rank: int,
    rdzv_endpoint: str,
    rdzv_id: str,
    timeout: float,
    startup_timeout: float,
    log_dir: str | None,
    no_watchdog: bool,
    verbose: bool,
    args: tuple[str, ...],
) -> None:
    """Run `deepseek ARGS` on N processes per node (wraps torchrun's elastic agent).

    Example: deepseek launch -n 2 -- train config.toml --strategy fsdp
    """
    from deepseek.training.preemption import early_signals

    # A stop request before the workers start (torch's import, the config checks take seconds) is
    # recorded, not a death by the signal: run() then starts no worker and the job ends with 75.
    early = click.get_current_context().with_resource(early_signals())
    root, command, rest = split_command(args)
    if command is None:
        raise UsageError("launch: nothing to run; usage: deepseek launch -n 2 -- train [CONFIG.toml] [--strategy S]")
    root_ctx = click.get_current_context().find_root()
    if isinstance(root_ctx.command, click.Group):  # a misspelt command: one line before any process starts
        try:
            root_ctx.command.resolve_command(root_ctx, [command])
        except click.UsageError as exc:
            raise UsageError(f"launch: {exc.format_message()} (see 'deepseek --help')") from None
    import os

    from deepseek_pro.launch.env import ENV_LAUNCHER_PID

    if os.environ.get(ENV_LAUNCHER_PID) and os.environ.get("RANK"):  # a worker of a launch starting one
        raise UsageError(f"launch: this process is rank {os.environ['RANK']} of a job 'deepseek launch' started "
                         f"already; run the command itself here (deepseek {command} ...), not another launch")
    if rdzv_id and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", rdzv_id):
        raise UsageError(f"launch: --rdzv-id {rdzv_id!r}: use letters, digits, '.', '_' or '-' (it names the "
                         "job's log folders), starting with a letter or digit")
    if nnodes > 1 and not rdzv_endpoint:
        raise UsageError(f"launch: --nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (node 0's address)")
    if node_rank >= nnodes:
        raise UsageError(f"launch: --node-rank {node_rank} must be below --nnodes {nnodes}")
    if rdzv_endpoint:
        _check_resolves(rdzv_endpoint)
    from deepseek.devices import available_cores

    most = PROCESSES_PER_CORE * available_cores()
    if nproc_per_node > most:
        raise UsageError(
            f"launch: -n {nproc_per_node} processes per node, more than this machine runs ({available_cores()} "
            f"CPU core(s), at most {PROCESSES_PER_CORE} processes a core); use -n {most} or fewer"
        )
    from deepseek.config.schema import TrainConfig

    if log_dir is not None:
        from deepseek.cli.context import command_host
        from deepseek.paths import check_output

        check_output(log_dir, where="launch: --log-dir", folder=True, host=command_host())
    grace = TrainConfig.preempt_grace_s
    if command == "train" and not _HELP.intersection(rest):
        import torch

        from deepseek.cli.context import command_host

        cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
        rest, grace = validate_train(
            rest, world_size=nnodes * nproc_per_node, nproc_per_node=nproc_per_node, cuda_devices=cuda,
            timeout=timeout, host=command_host(),
        )
    from deepseek.cli.context import command_host
    from deepseek_pro.launch.runner import LaunchSpec, run

    # the root's --debug reaches the workers as their own: a rank's error shows its traceback in the
    # rank's log (and rank 0's on the console); the plugin options reach them as DEEPSEEK_* variables
    debug = ["--debug"] if root_ctx.params.get("debug") and "--debug" not in root else []
    spec = LaunchSpec(
        args=(*debug, *root, command, *rest), nproc_per_node=nproc_per_node, nnodes=nnodes, node_rank=node_rank,
        rdzv_endpoint=rdzv_endpoint, rdzv_id=rdzv_id, timeout=timeout, startup_timeout=startup_timeout,
        log_dir=log_dir, watchdog=not no_watchdog and command == "train", verbose=verbose, stop_grace=grace,
        plugin_env=command_host().settings.as_env(),  # the launcher's --plugins / --disable-plugins reach the workers
    )
    result = run(spec, early=early)
    echo_result(result)
    if result.exit_code:
        click.get_current_context().exit(result.exit_code)


def echo_result(result: LaunchResult) -> None:
    """Print how a job that did not succeed ended on stderr: the failed rank's log tail, then its
    line, last, as torchrun's summary ends with the root cause: the last line a user reads names
    the rank that failed and what it said, after the lines the other ranks printed on the console
    (rank 0's ``lost its connection to another rank``). Both quote what the ranks wrote, so each
    line goes through :func:`~deepseek.errors.one_line`: an ESC or a carriage return a worker
    printed is written as its escape instead of reaching the terminal."""
    from deepseek.training.preemption import EXIT_PREEMPTED

    if result.exit_code == EXIT_PREEMPTED:  # stopped on request, resumable: no error
        if not result.shown:  # else rank 0's own line, on the console already, ends the job's output
            click.echo(one_line(result.message), err=True)
    elif result.exit_code and not result.shown:
        if result.tail and result.exit_code != 2:  # bad input: the one error line says it all
            where = shown(result.log_path) if result.log_path else "its log (removed with the launcher's temp folder; keep logs with --log-dir)"
            click.echo(f"last lines of {where}:", err=True)
            for line in result.tail:
                click.echo(f"  | {one_line(line)}", err=True)
        click.secho(f"error: {one_line(result.message)}", fg="red", err=True)
