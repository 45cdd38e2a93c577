"""``deepseek compress`` and ``deepseek compare`` name the user's run folders in their tables'
titles, which rich reads as markup: a folder named ``x[/]`` ended the command with a
``MarkupError`` (compress: after the compressed run was written), and ``a[bold]b`` lost its
``[bold]``."""

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


def test_compare_title_names_both_runs_and_the_data(capsys: pytest.CaptureFixture[str]) -> None:
    """``deepseek compare``'s title quoted RUN_A, RUN_B and --data as markup too."""
    from deepseek_enterprise.compare import print_report

    side = {"model": "tiny", "parameters": 1000, "weights_bytes": 4000, "p50_ms": None}
    report = {"runs": {"A": {**side, "run": "runs/a[bold]b"}, "B": {**side, "run": "runs/x[/]"}}, "examples": 32,
              "data": "data/[red]d.toml", "resamples": 100, "paired": [], "not_compared": []}
    print_report(report)
    printed = " ".join(capsys.readouterr().out.split())
    assert "A = runs/a[bold]b (tiny), B = runs/x[/] (tiny): 32 paired examples of data/[red]d.toml," in printed
