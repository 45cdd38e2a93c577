"""``deepseek compress`` names its source run and output folder in its table's title, which rich
reads as markup: a folder named ``x[/]`` ended the command with a ``MarkupError`` after the
compressed run was written, and ``a[bold]b`` lost its ``[bold]``."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepseek_enterprise.compress.cli import _print

SIDE = {"parameters": 1000, "weights_bytes": 4000, "linear_weight_bytes": 2000, "p50_ms": None,
        "p50_optimized_ms": None}


@pytest.mark.parametrize(("source", "out"), [("runs/a[bold]b", "out/c[/]"), ("runs/x[/]", "out/[red]y")])
def test_compress_title_names_both_folders(source: str, out: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = {"original": SIDE, "compressed": {**SIDE, "linear_weight_bytes": 500}, "method": "int8",
              "options": {}, "source": source}
    _print(report, Path(out))
    printed = " ".join(capsys.readouterr().out.split())
    assert f"int8 {{}}: {source} -> {out}" in printed
    assert "0.250x" in printed
