"""A path with a character that does not print (a line break, an ESC sequence) is written as
``$'...'`` (deepseek.errors.shown) in the progress lines of ``multimodal study``, ``tune`` and
``compress``: they printed it raw, splitting the line or handing the terminal the sequence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _inprocess import deepseek_here

ODD = "r\nx\x1b[2J"
"""A folder name holding a line break and an ESC sequence (clear the screen)."""
SHOWN = "$'r\\nx\\x1b[2J'"


def test_the_study_names_a_run_it_trains_again_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deepseek_enterprise.study_folder import take_up

    run_dir = tmp_path / ODD
    run_dir.mkdir()  # a run folder without a checkpoint: trained again from the start
    assert take_up(run_dir, 5, {}) == "train"
    err = capsys.readouterr().err
    assert err == f"training $'{tmp_path}/r\\nx\\x1b[2J' again from the start (no checkpoint to resume)\n"
    assert not run_dir.exists()


def test_the_study_names_its_folder_and_a_cut_results_line_escaped(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from deepseek_enterprise.study_folder import settings_of, start_folder

    out = tmp_path / ODD
    out.mkdir()
    settings = settings_of(2, 8, 0.002, "cpu", "joint", 16, None)
    (out / "study.json").write_text(json.dumps(settings))
    (out / "results.jsonl").write_text('{"task": "redundant", "con')  # the study was stopped as it wrote it
    with start_folder(out, settings) as done:
        assert done == {}
    err = capsys.readouterr().err
    assert err.startswith(f"$'{tmp_path}/r\\nx\\x1b[2J/results.jsonl':1: a results line cut short ")
    assert len(err.splitlines()) == 1 and "\x1b" not in err


def test_tune_names_its_folder_and_best_toml_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c.toml").write_text("[train]\nmax_steps = 2\n")
    (tmp_path / "space.toml").write_text('[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n')
    code, err, out = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                   "--trials", "1", "--out", ODD)
    assert code == 0, err
    assert "\x1b" not in out + err
    lines = out.splitlines()
    assert lines[0] == (f"study s: tuner training, val_loss, 1 parameter(s), folder {SHOWN} (created folder "
                        f"{SHOWN})")
    assert lines[-1].endswith("; wrote $'r\\nx\\x1b[2J/best.toml', run it with: deepseek train "
                              "$'r\\nx\\x1b[2J/best.toml'")
    assert (tmp_path / ODD / "best.toml").is_file()


def test_compress_names_the_checkpoint_and_its_output_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    from deepseek_enterprise.compress.cli import _print

    figures = {"parameters": 10, "weights_bytes": 2**20, "linear_weight_bytes": 2**19, "val_loss": 2.0,
               "p50_ms": None, "p50_optimized_ms": None}
    report = {"max_drop": "1%", "prefer": "size", "recipe": "quantize.int8", "source": f"runs/{ODD}",
              "original": figures, "compressed": figures}
    _print(report, Path(f"out/{ODD}"))
    printed = capsys.readouterr().out
    assert "\x1b" not in printed
    title = " ".join(line.strip() for line in printed.split("┏")[0].splitlines())  # rich wraps it at a space
    assert title == "search 1% (prefer size): quantize.int8: $'runs/r\\nx\\x1b[2J' -> $'out/r\\nx\\x1b[2J'"
