"""A path the user gave, printed in a rich table's title, is printed as named: rich reads a title
as markup, so a run folder named ``a[bold]b`` lost its ``[bold]`` (and styled the rest) and one
named ``x[/]`` ended the command with a ``MarkupError`` traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepseek.bench.baseline import Comparison, report
from deepseek.errors import shown, shown_markup

NAMES = ["runs/a[bold]b", "runs/x[/]", "runs/[red]y[/red]", "ends\\"]


@pytest.mark.parametrize("name", NAMES)
def test_shown_markup_renders_back_to_the_name(name: str) -> None:
    from rich.text import Text

    assert Text.from_markup(shown_markup(name)).plain == name
    assert Text.from_markup(shown_markup(f"{name}\n")).plain == shown(f"{name}\n")  # one line, as shown


@pytest.mark.parametrize("name", NAMES)
def test_against_title_names_the_path(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{name}/saved.json"
    code = report([Comparison("eager", 10.0, 10.0, 0.0, False)], kind="latency", path=path, max_regression=0.1)
    assert code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"against {path} (median_ms" in out


@pytest.mark.parametrize("name", ["c[bold]x.toml", "c[/].toml"])
def test_advise_cost_file_in_the_title(tmp_path: Path, name: str) -> None:
    (tmp_path / name).parent.mkdir(exist_ok=True)  # c[/].toml: the file ].toml in the folder c[
    (tmp_path / name).write_text("years = 4\n")
    out = subprocess.run([sys.executable, "-m", "deepseek", "advise", "--params", "1e8", "--gpus", "0",
                          "--costs", name], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert "4-year cost" in out.stdout
    assert any(line.rstrip().endswith(f"overridden by {name}") for line in out.stdout.splitlines()), out.stdout
