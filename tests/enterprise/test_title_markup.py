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


def test_compress_search_table_prints_recipes_and_verdicts_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    """The recipe column is built from the ``--recipe`` options, the verdict from a failure's
    message: ``[/]`` in either ended the search table with a MarkupError, ``[bold]`` vanished."""
    from deepseek_enterprise.compress.cli import _print_search
    from deepseek_enterprise.compress.search import Budget, Recipe, Tried

    tried = Tried(Recipe((("int8", {"skip": "x[/]"}),)))
    tried.verdict = "failed: no layer [bold]y"
    _print_search([tried], {"val_loss": 2.0, "weights_bytes": 4000}, Budget(1.0, "%"))
    printed = " ".join(capsys.readouterr().out.split())
    assert "int8 skip=x[/]" in printed
    assert "failed: no layer [bold]y" in printed


def test_tune_table_prints_the_search_spaces_values_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    """The tune table's parameter cells (a choice from the user's search space), columns and
    notes are the user's text, not markup."""
    import optuna
    from rich.console import Console

    from deepseek_enterprise.tune.report import print_table

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", direction="minimize")
    study.enqueue_trial({"model.act[bold]": "x[/]"})

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_categorical("model.act[bold]", ["x[/]", "[red]y"])
        trial.set_user_attr("note", "saw [bold]z")
        return 1.5

    study.optimize(objective, n_trials=1)
    print_table(study, "val_loss", Console(width=200))
    printed = " ".join(capsys.readouterr().out.split())
    assert "model.act[bold]" in printed
    assert "x[/]" in printed
    assert "saw [bold]z" in printed
