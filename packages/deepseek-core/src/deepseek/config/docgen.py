"""docs/config.md: every config key, its type, default and meaning, generated from the schema and
from the ``Options`` of the components core registers (models, datasets, optimizers, learning-rate
schedules, strategies, trackers).

``python -m deepseek.config.docgen > docs/config.md`` (a core-only test keeps the page current).
A key's meaning is the docstring written under its field, or its ``field(metadata={"help": ...})``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from deepseek.config.foreign_keys import markdown_rows
from deepseek.config.load import COMPONENT_SECTIONS
from deepseek.config.schema import SHARED_KEYS, Config
from deepseek.plugins.docgen import markdown_of


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` and its bases (subclasses win)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, [*body[1:], None], strict=True):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(markdown_of(inspect.cleandoc(after.value.value)).split())
    for f in dataclasses.fields(cls):
        if f.metadata.get("help") and f.name not in docs:
            docs[f.name] = str(f.metadata["help"])
    return docs


def type_name(tp: Any) -> str:
    """A short readable form of a field's type."""
    origin = get_origin(tp)
    if origin is Literal:
        return " \\| ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in get_args(tp))
    if origin in (tuple, list):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return "table"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "(required)"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        value = list(value)
    shown = f"`{value!r}`".replace("'", '"') if isinstance(value, (str, list)) else f"`{value}`"
    return shown.replace("|", "\\|")  # a table cell: an escaped pipe (GitHub renders it in code too)


def key_rows(cls: type, *, skip: typing.Iterable[str] = ()) -> list[str]:
    """Markdown table rows ``| key | type | default | meaning |`` of dataclass ``cls``."""
    hints, docs, skipped = get_type_hints(cls), field_docs(cls), set(skip)
    rows = []
    for f in dataclasses.fields(cls):
        if f.name in skipped or not f.init:
            continue
        rows.append(f"| `{f.name}` | {type_name(hints[f.name])} | {_default(f)} | {docs.get(f.name, '')} |")
    return rows


def _table(rows: list[str]) -> list[str]:
    return ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]


def _component_docs(kind: str, host: Any) -> list[str]:
    """One table per component of ``kind`` that deepseek-core registers."""
    from deepseek.config.components import options_class
    from deepseek.plugins.host import CORE_DIST

    out: list[str] = []
    for comp in host.components(kind):
        if comp.dist != CORE_DIST:
            continue
        cls = options_class(comp.load(), kind=kind, name=comp.name)
        out += [f"#### `name = \"{comp.name}\"`", "", comp.description + ".", ""]
        rows = key_rows(cls)
        out += _table(rows) if rows else ["No keys of its own.", ""]
    return out


def _tracker_docs(host: Any) -> list[str]:
    """One table per tracker that deepseek-core registers, headed ``[trackers.<name>]``."""
    from deepseek.config.components import options_class
    from deepseek.plugins.host import CORE_DIST

    out: list[str] = []
    for comp in host.components("tracker"):
        if comp.dist != CORE_DIST:
            continue
        cls = options_class(comp.load(), kind="tracker", name=comp.name)
        out += [f"#### `[trackers.{comp.name}]`", "", comp.description + ".", ""]
        rows = key_rows(cls)
        out += _table(rows) if rows else ["No keys of its own.", ""]
    return out


def _array_tables(section: str, cls: type) -> list[str]:
    """A sub-table of every field of ``cls`` that is a list of tables (``[[optimizer.groups]]``):
    the item's docstring and its keys."""
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        args = typing.get_args(hints.get(f.name))
        item = args[0] if args and typing.get_origin(hints[f.name]) in (tuple, list) else None
        if item is None or not dataclasses.is_dataclass(item):
            continue
        doc = markdown_of(inspect.cleandoc(item.__doc__ or "")).replace("\n", " ")
        out += [f"#### `[[{section}.{f.name}]]`", "", doc, "", *_table(key_rows(item))]
    return out


def render(host: Any = None) -> str:
    """The whole page."""
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.settings import PluginSettings

    host = host or PluginHost(PluginSettings(autoload=False))
    lines = [
        "# Configuration reference",
        "",
        "<!-- generated by `python -m deepseek.config.docgen > docs/config.md`; do not edit -->",
        "",
        "A config is a TOML file of the tables below; every key has a default, so an empty file (or",
        "none) is the main job. `--set table.key=value` overrides a key from the command line, and",
        "`deepseek config show [FILE] [--set ...]` prints the resolved config with every default",
        "filled in, in a component's nested tables too (the multimodal model's `[model.vision]` or",
        "`[model.fusion_options]`: each is checked by the component it configures and given its",
        "defaults). An unknown table or key,",
        "a wrong type or an out-of-range value is refused with",
        "one line naming `table.key`, with a did-you-mean, exit code 2; several unknown keys of one",
        "table are named in that one line, each with its did-you-mean (`model.vision: unknown keys",
        "img_sz (did you mean 'img_size'?), depthz (did you mean 'depths'?); allowed keys: ...`). The key of `--set` is a TOML",
        "dotted key and its value a TOML literal (else a plain string): quote a part holding a dot,",
        "`--set 'trackers.\"acme.csv\".file=\"steps.csv\"'`. A list of tables is entered by index:",
        "`--set optimizer.groups.0.lr_scale=0.5` changes the first `[[optimizer.groups]]` table the",
        "config gives (an index adds no table: give them in the file, or set the whole list,",
        "`--set 'optimizer.groups=[{match=\"wte.*\", lr_scale=0.1}]'`); errors name a list's items",
        "the same way. A list of values (`optimizer.betas`) takes no index and is set whole. The",
        "overrides apply in order, so the last of two for one key wins. `--set '~table.key'` removes a",
        "key the file gives (the key of another component, when `--set table.name=...` switches to one",
        "that does not take it, or a table such as `model.fusion_options` when `--set model.fusion=...`",
        "does: the refusal names the component that takes the key); a key the config does not have is",
        "refused naming it. An option that",
        "sets a key (`--max-steps`, `--precision`, `--strategy`) and a `--set` of that key together are",
        "refused: give one of them. `--strategy NAME` naming another strategy than the file's starts",
        "`[strategy]` afresh with that strategy's defaults: the file's keys for its own strategy,",
        "`device = \"cpu\"` included, are dropped (`--set strategy.name=NAME` keeps them, and refuses",
        "those the new strategy does not take); naming the file's own strategy keeps its keys.",
        "",
        "`[model]`, `[data]`, `[optimizer]`, `[lr_schedule]` and `[strategy]` name a registered",
        "component (`name`) and hold that component's own keys beside it, validated by its `Options`",
        "(docs/plugins.md, sections 10-12 and 14); the components core registers are listed here, and `deepseek plugins list`",
        "shows every installed one (deepseek-pro's strategies: docs/distributed.md).",
        "",
        "## Names from Hugging Face and Lightning",
        "",
        "A key of a table below written with its Hugging Face or Lightning name (`--set",
        "train.learning_rate=1e-4`), or one of deepseek's keys written in another table (`optimizer.lr`),",
        "is refused with the key to set instead (`train.learning_rate: unknown key (learning_rate of",
        "Hugging Face's TrainingArguments is train.lr here)`), from this table",
        "(`deepseek.config.foreign_keys`):",
        "",
        *markdown_rows(),
        "",
    ]
    for f in dataclasses.fields(Config):
        section_cls = type(getattr(Config(), f.name))
        doc = markdown_of(inspect.cleandoc(section_cls.__doc__ or "").split("\n\n")[0]).replace("\n", " ")
        lines += [f"## `[{f.name}]`", "", doc, ""]
        if f.name in COMPONENT_SECTIONS:
            kind = COMPONENT_SECTIONS[f.name]
            default = next(x.default for x in dataclasses.fields(section_cls) if x.name == "name")
            shared = SHARED_KEYS.get(f.name, ())
            common = key_rows(section_cls, skip=("name", "options")) if shared else []
            lines += _table([f"| `name` | str | `\"{default}\"` | the registered {kind.replace('_', ' ')} |",
                             *common])
            if shared:
                lines += [f"Every {kind} gets {', '.join(f'`{k}`' for k in shared)}; the rest "
                          f"are the {kind}'s own.", ""]
            lines += _array_tables(f.name, section_cls)
            lines += _component_docs(kind, host)
        elif f.name == "trackers":
            lines += ["Core's trackers (docs/tracking.md):", "", *_tracker_docs(host)]
        else:
            lines += _table(key_rows(section_cls))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
