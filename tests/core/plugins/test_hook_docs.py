"""docs/hooks.md is generated from the hookspecs and current; every hook is documented and tested."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from deepseek import hookspecs
from deepseek.plugins.docgen import hook_specs, render

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve()


def test_hooks_md_is_current() -> None:
    page = (REPO / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert page == render(), "docs/hooks.md is stale: run python -m deepseek.plugins.docgen > docs/hooks.md"


def test_every_hook_is_documented() -> None:
    specs = hook_specs()
    assert len(specs) >= 11
    for name, fn in specs:
        assert name.startswith("deepseek_"), name
        doc = inspect.getdoc(fn) or ""
        assert len(doc.split()) >= 5, f"hook {name} has no real docstring"
        assert f"### `{name}`" in render()


def test_every_hook_has_a_test() -> None:
    referenced: set[str] = set()
    for path in HERE.parent.glob("*.py"):
        if path != HERE:
            referenced |= set(re.findall(r"\bdeepseek_[a-z_]+\b", path.read_text(encoding="utf-8")))
    missing = sorted({name for name, _ in hook_specs()} - referenced)
    assert not missing, f"hooks without a test in tests/core/plugins: {missing}"


def test_registration_hooks_take_only_register() -> None:
    specs = dict(hook_specs())
    assert set(hookspecs.REGISTRATION_HOOKS) == {n for n in specs if n.startswith("deepseek_register_")}
    for name in hookspecs.REGISTRATION_HOOKS:
        assert list(inspect.signature(specs[name]).parameters) == ["register"], name


def test_generator_turns_rest_into_markdown() -> None:
    page = render()
    assert not re.search(r"(?<!`)``(?!`)", page), "reST double backticks left"
    assert ":class:" not in page and ":func:" not in page
    assert "```toml\n[project.entry-points.deepseek]" in page
    assert page.count("```") % 2 == 0
