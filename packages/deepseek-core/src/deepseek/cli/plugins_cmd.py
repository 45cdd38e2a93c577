"""``deepseek plugins``: list plugin distributions, explain a component lookup, scaffold a plugin.

Nothing here imports torch: listing and lookups read registrations, never lazy targets.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from deepseek.cli.context import command_host
from deepseek.cli.params import PATH
from deepseek.errors import ComponentConflictError, ComponentNotFoundError, shown, shown_markup
from deepseek.plugins.host import CORE_DIST, PluginHost, PluginRecord
from deepseek.plugins.settings import ENV_PREFER

_STATUS_STYLE = {"ok": "green", "disabled": "dim", "blocked": "red", "failed": "red"}


def _records(host: PluginHost) -> list[PluginRecord]:
    return sorted(host.records.values(), key=lambda r: (r.dist != CORE_DIST, r.dist))


@click.group("plugins")
def plugins() -> None:
    """Inspect and scaffold plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of records.")
@click.option("--written-files", "classes", is_flag=True,
              help="Also the files each dataset's and model's runs write (written_files): imports their classes, "
                   "torch with them.")
def list_plugins(as_json: bool, classes: bool) -> None:
    """Plugin distributions: version, edition, components by kind, the other hooks they
    implement, the files those hooks and their commands (with --written-files, their datasets and
    models too) write in run folders, and status."""
    from deepseek.run_files import component_run_files

    host = command_host()
    records = _records(host)
    shared = {r.dist: _shared_names(host, r.dist) for r in records}
    declared = component_run_files(host, classes=classes)
    if as_json:
        click.echo(json.dumps([{**r.as_dict(), "component_run_files": declared[r.dist][0],
                                **({"run_file_problems": declared[r.dist][1]} if classes else {}),
                                "conflicts": shared[r.dist]} for r in records], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    # A distribution's name, version and failure come from its metadata and code: shown as written
    # (shown_markup), never read as rich markup ('x[/]' failed the table with a MarkupError).
    table = Table(title="deepseek plugins", title_justify="left")
    for column in ("distribution", "version", "edition"):
        table.add_column(column, no_wrap=True)
    table.add_column("components", ratio=2)
    table.add_column("status", ratio=3)
    for r in records:
        components = "\n".join(shown_markup(line) for line in (
            [f"{kind}: {', '.join(sorted(names))}" for kind, names in sorted(r.components.items())]
            + ([f"hooks: {', '.join(r.hooks)}"] if r.hooks else [])
            + ([f"run files: {', '.join(r.run_files)}"] if r.run_files else [])
            + [f"run files ({kind} {name}): {', '.join(files)}" for kind, by_name in declared[r.dist][0].items()
               for name, files in by_name.items()]
        ))
        style = _STATUS_STYLE.get(r.status, "")
        status = f"[{style}]{r.status}[/]" + (f"\n{shown_markup(r.reason)}" if r.reason else "")
        status += "".join(f"\n[yellow]skipped {shown_markup(s)}[/]" for s in r.skipped)
        status += "".join(f"\n[yellow]{shown_markup(p)}[/]" for p in declared[r.dist][1])
        for c in shared[r.dist]:
            others = ", ".join(shown_markup(d) for d in c["with"])
            fix = (f"set {ENV_PREFER}" if c["kind"] == "command" else  # a command is never qualified
                   f"qualify it as {r.dist}:{c['name']} or set [plugins] prefer")
            outcome = f"{c['winner']} wins ({c['why']})" if c["winner"] else f"a bare {c['name']!r} fails: {fix}"
            status += (f"\n[yellow]{shown_markup(c['kind'])} {shown_markup(repr(c['name']))} also registered by "
                       f"{others}: {shown_markup(outcome)}[/]")
        table.add_row(shown_markup(r.dist), shown_markup(r.version), shown_markup(r.edition),
                      components or "-", status)
    # Piped output gets a wide table instead of rich's 80-column default.
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def _shared_names(host: PluginHost, dist: str) -> list[dict[str, object]]:
    """The names ``dist`` registers that another distribution registers too, with how each
    resolves now (DESIGN: such a name is an error unless qualified or given precedence)."""
    out: list[dict[str, object]] = []
    for res in host.conflicts():
        dists = [c.dist for c in res.candidates]
        if dist in dists:
            out.append({"kind": res.kind, "name": res.name, "with": [d for d in dists if d != dist],
                        "winner": res.winner.dist if res.winner else None,
                        "why": res.reason if res.winner else None})
    return out


def _kind(host: PluginHost, kind: str) -> str:
    """Accept ``strategy`` or ``strategies`` (the hook's plural)."""
    plural = {
        hook.removeprefix("deepseek_register_"): k for hook, k in host.registration_hooks().items()
    }
    kind = kind.strip().lower()
    kind = plural.get(kind, kind)
    host.check_kind(kind)
    return kind


@plugins.command("which")
@click.argument("kind")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def which(kind: str, name: str, as_json: bool) -> None:
    """Which distribution provides component NAME of KIND, its competitors, and who wins.

    KIND is strategy, pass, encoder, model, command (or a kind a plugin adds). NAME may be
    qualified as DIST:NAME.
    """
    host = command_host()
    kind = _kind(host, kind)
    res = host.explain(kind, name)
    if not res.candidates and res.winner is None:
        raise ComponentNotFoundError(res.reason)
    if as_json:
        payload = {
            "kind": kind,
            "name": name,
            "winner": res.winner.as_dict() if res.winner else None,
            "reason": res.reason,
            "candidates": [c.as_dict() for c in res.candidates],
        }
        click.echo(json.dumps(payload, indent=2))
    elif res.winner is None:
        click.echo(f"{kind} {name}: no candidate wins")
    else:
        w = host.records.get(res.winner.dist)
        edition = f" ({w.edition})" if w else ""
        alias = f" (alias of {res.winner.alias_of!r})" if res.winner.alias_of else ""
        click.echo(f"{kind} {shown(name)} -> {shown(res.winner.qualified_name)}{alias}")
        rows = [
            ("distribution", f"{res.winner.dist} {res.winner.version}{edition}"),
            ("registered in", res.winner.module),
            ("target", res.winner.target_text),
            ("description", res.winner.description or "-"),
            ("aliases", ", ".join(res.winner.aliases) or "-"),
            ("wins because", res.reason),
        ]
        for key, value in rows:  # a plugin's own text (its metadata, description): printable only
            click.echo(f"  {key:<13} {shown(value)}")
    if not as_json:
        click.echo("  candidates")
        for c in res.candidates:
            mark = "*" if c is res.winner else " "
            click.echo(f"   {mark} {shown(c.qualified_name):<32} {shown(c.version):<10} {shown(c.target_text)}")
    if res.winner is None:  # the candidates are printed, the lookup itself fails: exit 2
        raise ComponentConflictError(f"{kind} {name!r}: no candidate wins: {res.reason}")


@plugins.command("new")
@click.argument("name")
@click.option(
    "--dir", "parent", type=PATH, default=".",
    show_default=True, help="Folder in which to create deepseek-NAME/ (created if missing).",
)
def new(name: str, parent: str) -> None:
    """Scaffold deepseek-NAME/: a plugin with a graph pass, a training callback and a test."""
    from deepseek.cli.context import command_host
    from deepseek.paths import created_note
    from deepseek.plugins.install import installer
    from deepseek.plugins.scaffold import scaffold

    target, made = scaffold(name, Path(parent), host=command_host())
    installed = _installed_version(target.name)
    if installed is not None:  # installing the scaffold would replace it
        click.secho(f"warning: a distribution {target.name} {installed} is installed already; installing this "
                    f"scaffold replaces it (pick another name to keep both)", fg="yellow", err=True)
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    shown = str(target) if target.is_absolute() else f"./{target.as_posix()}"
    click.echo(f"created {shown}/{created_note(made)}")
    for f in files:
        click.echo(f"  {f}")
    click.echo("next:")
    click.echo(f"  {installer()} -e {shown}")
    click.echo(f"  pytest {shown}                  # pytest: {installer()} pytest, if it is not installed")
    click.echo("  deepseek plugins list")


def _installed_version(dist: str) -> str | None:
    """The version of the installed distribution ``dist``, or ``None``."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
