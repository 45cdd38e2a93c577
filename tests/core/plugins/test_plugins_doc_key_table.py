"""docs/plugins.md section 10: a plugin's ``Options`` keys are documented by the docstrings under
their fields, which only core's generated config.md showed; nothing told a plugin author where
users would read them (found writing an outside plugin from the docs, h310). The page's block
prints the key table of a plugin's ``Options`` with ``deepseek.config.docgen.key_rows``; run here
as written, on a stand-in ``deepseek_acme.models``."""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BLOCK = re.compile(r"<!-- test: options-key-table -->\n```python\n(.*?)\n```", re.S)


@dataclass(frozen=True)
class MLPOptions:
    features: int = 16
    """Input features per row."""
    hidden: int = field(default=64, metadata={"help": "Hidden width."})
    num_classes: int | None = None


def test_the_pages_block_prints_the_plugins_key_table(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    found = BLOCK.search((REPO / "docs" / "plugins.md").read_text(encoding="utf-8"))
    assert found, "docs/plugins.md lost its 'options-key-table' block"
    package = types.ModuleType("deepseek_acme")
    package.__path__ = []
    models = types.ModuleType("deepseek_acme.models")
    models.MLP = type("MLP", (), {"Options": MLPOptions})
    monkeypatch.setitem(sys.modules, "deepseek_acme", package)
    monkeypatch.setitem(sys.modules, "deepseek_acme.models", models)
    exec(compile(found.group(1), "plugins.md:options-key-table", "exec"), {})  # noqa: S102
    assert capsys.readouterr().out.splitlines() == [
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        "| `features` | int | `16` | Input features per row. |",
        "| `hidden` | int | `64` | Hidden width. |",
        "| `num_classes` | int \\| none | unset |  |",
    ]
