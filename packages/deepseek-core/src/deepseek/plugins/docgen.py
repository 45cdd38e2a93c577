"""Generate the hook reference (docs/hooks.md) from :mod:`deepseek.hookspecs`, and the page of
an edition's own hookspecs (docs/hooks-enterprise.md) from its module.

    python -m deepseek.plugins.docgen > docs/hooks.md
    python -m deepseek.plugins.docgen deepseek_enterprise.hookspecs > docs/hooks-enterprise.md

Tests compare each page with :func:`render` / :func:`render_edition`, so they never go stale.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from deepseek import hookspecs
from deepseek.plugins.kinds import hook_kind

PHASES: tuple[tuple[str, str], ...] = (
    ("set-up", "1. Set-up"),
    ("registration", "2. Registration"),
    ("validation", "Validation"),
    ("lifecycle", "3. Training lifecycle"),
)

_LOOKUPS = {
    "model": "`deepseek.create_model` / `deepseek.list_models`",
    "strategy": "`deepseek.create_strategy` / `deepseek.list_strategies`",
    "pass": "`deepseek.create_pass` / `deepseek.list_passes`",
    "encoder": "`deepseek.create_encoder` / `deepseek.list_encoders`",
    "dataset": "`deepseek.create_dataset` / `deepseek.list_datasets`",
    "optimizer": "`deepseek.create_optimizer` / `deepseek.list_optimizers`",
    "lr_schedule": "`deepseek.create_lr_schedule` / `deepseek.list_lr_schedules`",
    "tracker": "`deepseek.create_tracker` / `deepseek.list_trackers`",
    "command": "`deepseek <name>` on the command line",
}


def hook_specs(module: ModuleType = hookspecs) -> list[tuple[str, Callable[..., Any]]]:
    """(name, function) of every hook specification in ``module``, in source order."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    found = [
        (name, fn)
        for name, fn in vars(module).items()
        if inspect.isfunction(fn) and getattr(fn, marker, None) is not None
    ]
    return sorted(found, key=lambda item: inspect.getsourcelines(item[1])[1])


def phase_of(name: str) -> str:
    """The phase a core hook belongs to (see :data:`PHASES`)."""
    if name == "deepseek_add_hookspecs":
        return "set-up"
    if name.startswith(("deepseek_register_", "deepseek_declare_")):
        return "registration"
    if name.startswith("deepseek_validate_"):
        return "validation"
    return "lifecycle"


def markdown_of(doc: str) -> str:
    """reST-flavoured docstring text -> Markdown (roles, double backticks, literal blocks)."""
    doc = re.sub(r":(?:func|class|data|mod|meth|attr|exc):`~?([^`]+)`", r"`\1`", doc)
    doc = doc.replace("``", "`")
    out: list[str] = []
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            out.append(line.rstrip()[:-1])
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i][4:])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            first = next((b for b in block if b.strip() and not b.startswith("#")), "")
            lang = "toml" if first.startswith("[") else "python"
            out += ["", f"```{lang}", *block, "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out).strip()


def _annotation(a: Any) -> str:
    """An annotation as source text (a string annotation as is, a class by its name)."""
    return a if isinstance(a, str) else getattr(a, "__name__", None) or repr(a)


def _parameter(p: inspect.Parameter) -> str:
    text = p.name if p.annotation is inspect.Parameter.empty else f"{p.name}: {_annotation(p.annotation)}"
    return text if p.default is inspect.Parameter.empty else f"{text} = {p.default!r}"


def _signature(name: str, fn: Callable[..., Any]) -> str:
    sig = inspect.signature(fn)
    params = ", ".join(_parameter(p) for p in sig.parameters.values())
    ret = sig.return_annotation
    return f"def {name}({params}) -> {'None' if ret is inspect.Signature.empty else ret}"


def _hook_section(name: str, fn: Callable[..., Any]) -> list[str]:
    opts = getattr(fn, f"{hookspecs.PROJECT_NAME}_spec", {}) or {}
    lines = [f"### `{name}`", "", "```python", "@hookimpl", _signature(name, fn), "```", ""]
    flags = [flag for flag in ("firstresult", "historic") if opts.get(flag)]
    kind = hookspecs.REGISTRATION_HOOKS.get(name)
    if kind is not None:
        lines += [f"Component kind: `{kind}`; looked up with {_LOOKUPS.get(kind, '`PluginHost.create`')}.", ""]
    if flags:
        lines += [f"Flags: {', '.join(flags)}.", ""]
    lines += [markdown_of(inspect.getdoc(fn) or ""), ""]
    return lines


def render(module: ModuleType = hookspecs) -> str:
    """The whole hook reference page as Markdown."""
    specs = hook_specs(module)
    lines = [
        "# Hook reference",
        "",
        "<!-- Generated from deepseek/hookspecs.py by `python -m deepseek.plugins.docgen > "
        "docs/hooks.md`; do not edit by hand. -->",
        "",
        markdown_of(inspect.getdoc(module) or ""),
        "",
        "See also the plugin authoring guide, [plugins.md](plugins.md).",
        "",
        "## The `register` callback",
        "",
        "```python",
        register_signature(),
        "```",
        "",
        markdown_of(inspect.getdoc(hookspecs.RegisterFn) or ""),
        "",
        "| registration hook | component kind |",
        "|---|---|",
        *(f"| `{hook}` | `{kind}` |" for hook, kind in hookspecs.REGISTRATION_HOOKS.items()),
        "",
        "A plugin that adds a hookspec of its own named `deepseek_register_<kinds>` whose only "
        "argument is `register` gets the same callback; the kind is the singular of `<kinds>` (the word as "
        "written where English reads it two ways, such as `cookies`; a name "
        "that tells none, such as `caches`, is refused undeclared: [plugins.md](plugins.md#7-hookspecs-of-your-own)), or "
        "the one its spec declares with `@deepseek.plugins.registrar.registers_kind(kind)` (the enterprise edition adds `fusion`, `compressor`, `tuner` and `executor` this way: "
        "[hooks-enterprise.md](hooks-enterprise.md)).",
        "",
    ]
    for phase, title in PHASES:
        members = [(n, f) for n, f in specs if phase_of(n) == phase]
        if not members:
            continue
        lines += [f"## {title}", ""]
        for name, fn in members:
            lines += _hook_section(name, fn)
    return "\n".join(lines).rstrip() + "\n"


def register_signature() -> str:
    """``register(...)``'s signature, read from :class:`~deepseek.hookspecs.RegisterFn`."""
    params = list(inspect.signature(hookspecs.RegisterFn.__call__).parameters.values())[1:]  # without self
    parts = [_parameter(p) for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keyword = [_parameter(p) for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return f"register({', '.join([*parts, *(['*', *keyword] if keyword else [])])}) -> None"


def render_edition(module: ModuleType) -> str:
    """The page of the hookspecs an edition adds (``deepseek_add_hookspecs``), as Markdown."""
    specs = hook_specs(module)
    title = (inspect.getdoc(module) or module.__name__).split("\n\n")[0].rstrip(".")
    lines = [
        f"# {title}",
        "",
        f"<!-- Generated from {module.__name__} by `python -m deepseek.plugins.docgen {module.__name__} > "
        "docs/<page>.md`; do not edit by hand. -->",
        "",
        "These hooks exist only while the edition that adds them is loaded. Each registration hook "
        "gets the same `register` callback as core's ([hooks.md](hooks.md#the-register-callback)); "
        "the component kind is the singular of the hook's last word, or the one its spec declares "
        "(`registers_kind`). A plugin that implements "
        "them and should still load without that edition marks its implementation "
        "`@hookimpl(optionalhook=True)` and, to load where the edition is not installed, declares "
        "the edition as an optional extra rather than in `dependencies` "
        "([plugins.md](plugins.md#7-hookspecs-of-your-own)).",
        "",
        "| registration hook | component kind |",
        "|---|---|",
        *(f"| `{name}` | `{hook_kind(name, fn)}` |" for name, fn in specs if name.startswith("deepseek_register_")),
        "",
    ]
    for name, fn in specs:
        lines += _hook_section(name, fn)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    """Print the hook reference (or, given a hookspec module's name, that edition's page)."""
    import importlib

    args = sys.argv[1:] if argv is None else argv
    sys.stdout.write(render_edition(importlib.import_module(args[0])) if args else render())


if __name__ == "__main__":
    main()
