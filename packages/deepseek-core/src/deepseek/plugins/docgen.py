"""Generate the hook reference (docs/hooks.md) from :mod:`deepseek.hookspecs`.

    python -m deepseek.plugins.docgen > docs/hooks.md

A test compares docs/hooks.md with :func:`render`, so the page never goes stale.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from deepseek import hookspecs

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
    if name.startswith("deepseek_register_"):
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


def _signature(name: str, fn: Callable[..., Any]) -> str:
    sig = inspect.signature(fn)
    params = ", ".join(
        f"{p.name}: {p.annotation}" if p.annotation is not inspect.Parameter.empty else p.name
        for p in sig.parameters.values()
    )
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
        "register(name: str, target: Any, *, aliases: Sequence[str] = (), description: str = \"\") -> None",
        "```",
        "",
        markdown_of(inspect.getdoc(hookspecs.RegisterFn) or ""),
        "",
        "| registration hook | component kind |",
        "|---|---|",
        *(f"| `{hook}` | `{kind}` |" for hook, kind in hookspecs.REGISTRATION_HOOKS.items()),
        "",
        "A plugin that adds a hookspec of its own named `deepseek_register_<kinds>` whose only "
        "argument is `register` gets the same callback; the kind is the singular of `<kinds>` "
        "(the enterprise edition adds `compressor` and `tuner` this way).",
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


def main() -> None:
    """Print the hook reference to stdout."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
