"""docs/plugins.md section 2's ``pyproject.toml`` is a whole file that builds the scaffold's layout:
it held only ``[project]`` name, dependencies and the entry point, so ``pip install .`` of a plugin
written from it failed (``project must contain ['version']``; no build backend, no package
folder). Its build settings, version, dependencies and entry point are those of the file
``deepseek plugins new`` writes, which the scaffold's own tests build and install."""

from __future__ import annotations

import re
from pathlib import Path

from deepseek.parsing import loads_toml
from deepseek.plugins.scaffold import render

REPO = Path(__file__).resolve().parents[3]
BLOCK = re.compile(r"<!-- test: entry-point-pyproject -->\n```toml\n(.*?)\n```", re.S)


def test_the_pages_pyproject_is_the_scaffolds_minus_its_extras() -> None:
    found = BLOCK.search((REPO / "docs" / "plugins.md").read_text(encoding="utf-8"))
    assert found, "docs/plugins.md lost its 'entry-point-pyproject' block"
    page = loads_toml(found.group(1))
    scaffold = loads_toml(render("acme")["pyproject.toml"])
    assert page["build-system"] == scaffold["build-system"]
    for key in ("name", "version", "requires-python", "dependencies", "entry-points"):
        assert page["project"][key] == scaffold["project"][key], key
    assert page["tool"]["hatch"] == scaffold["tool"]["hatch"]
