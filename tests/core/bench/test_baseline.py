"""``deepseek bench latency|train --against FILE.json``: a saved result read back like user
input, compared row by row, exit 1 on a regression beyond the threshold (timings are not
asserted: the saved numbers are edited to be far better or far worse than any real run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from deepseek.bench.baseline import compare, load_baseline
from deepseek.errors import UsageError

LATENCY = ["bench", "latency", "--model", "tiny", "--seq", "16", "--runs", "20", "--warmup", "1", "--only", "eager"]
TRAIN = ["bench", "train", "--model", "tiny", "--device", "cpu", "--precision", "fp32", "--batch", "2", "--seq", "32",
         "--steps", "2", "--warmup", "1", "--model-option", "n_layers=1", "--model-option", "d_model=32",
         "--model-option", "n_heads=2"]


def deepseek(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepseek", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _edit(path: Path, key: str, factor: float) -> None:
    data = json.loads(path.read_text())
    for row in data["rows"]:
        row[key] *= factor
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("command", "key"), [(LATENCY, "median_ms"), (TRAIN, "tokens_per_s")])
def test_regression_exits_1_and_a_faster_run_passes(tmp_path: Path, command: list[str], key: str,
                                                    deepseek_here: Callable[..., subprocess.CompletedProcess[str]]
                                                    ) -> None:
    """The regression's exit code 1 from a real process; the baseline saved and the faster run in
    this process (tests/core/conftest.py's ``deepseek_here``: the same command, no process start)."""
    out = deepseek_here(*command, "--json", "saved.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    saved = tmp_path / "saved.json"
    # The baseline 100x better than anything this run can do: a regression, exit 1, named.
    _edit(saved, key, 0.01 if key == "median_ms" else 100)
    worse = deepseek(*command, "--against", "saved.json", cwd=tmp_path)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "REGRESSION" in worse.stdout and worse.stderr.strip().splitlines()[-1].startswith("regression: ")
    # 10^4x worse than that: now the run is far better than the baseline.
    _edit(saved, key, 1e4 if key == "median_ms" else 1e-4)
    better = deepseek_here(*command, "--against", "saved.json", cwd=tmp_path)
    assert better.returncode == 0, better.stdout + better.stderr
    assert "REGRESSION" not in better.stdout and " ok " in better.stdout.replace("│", " ")


@pytest.mark.parametrize(("command", "given", "option", "example"), [
    (LATENCY, ["--against", "saved.json"], "--against", "latency.json"),
    (LATENCY, ["--config", "c.toml"], "--config", "latency.json"),
    (TRAIN, ["--against", "saved.json"], "--against", "bench.json"),
], ids=["latency-against", "latency-config", "train-against"])
def test_json_naming_a_file_the_command_reads_is_refused_before_it_runs(tmp_path: Path, command: list[str],
                                                                      given: list[str], option: str,
                                                                      example: str) -> None:
    """--json over the baseline (through a link too) replaced it with the very measurement
    compared with it, regression or not; over --config, the config became JSON."""
    saved = _latency_result() if command is LATENCY else {"settings": {}, "rows": [{"name": "x", "tokens_per_s": 1.0}]}
    (tmp_path / "saved.json").write_text(json.dumps(saved))
    (tmp_path / "c.toml").write_text('[model]\nname = "tiny"\n')
    name = given[1]
    (tmp_path / "link").symlink_to(name)
    before = (tmp_path / name).read_bytes()
    out = deepseek(*command, *given, "--json", "link", cwd=tmp_path)
    assert (out.returncode, out.stderr.strip().splitlines()) == (2, [
        f"error: --json: link is the file {option} gives, which this command reads (writing there would replace "
        f"it); give another path, e.g. {example}"])
    assert "timing" not in out.stdout and (tmp_path / name).read_bytes() == before


def _latency_result(**info: object) -> dict:
    return {"info": {"model": "tiny", "batch": 1, "seq": 16, "mode": "forward", "dtype": "float32", "cpu": "x",
                     "threads": 1, **info},
            "rows": [{"name": "eager", "median_ms": 2.0}, {"name": "deepseek.optimize", "median_ms": 1.0}]}


def test_threshold_is_relative_and_only_shared_rows_count() -> None:
    base = _latency_result()
    now = _latency_result()
    now["rows"] = [{"name": "eager", "median_ms": 2.19}, {"name": "torch.compile", "median_ms": 9.0}]
    (row,) = compare(base, now, kind="latency", path="b.json", max_regression=0.10)
    assert row.name == "eager" and row.change == pytest.approx(0.095) and not row.regressed
    (row,) = compare(base, now, kind="latency", path="b.json", max_regression=0.05)
    assert row.regressed


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("not json", "not JSON"),
    (json.dumps({"rows": []}), "not a 'bench latency' result"),
    (json.dumps({"info": {}, "rows": []}), "holds no rows"),
    (json.dumps({"info": {}, "rows": [{"name": "eager", "median_ms": float("nan")}]}), "rows[0] has no name"),
    (json.dumps({"info": {}, "rows": [{"name": "eager", "median_ms": True}]}), "rows[0] has no name"),
    (json.dumps({"info": {}, "rows": [{"name": "eager", "median_ms": 2.0}, {"name": "x", "median_ms": 1.0},
                                      {"name": "eager", "median_ms": 9.0}]}),  # was: the last one silently won
     "rows[2] repeats variant 'eager' of rows[0]; the file was edited or joined from two results"),
])
def test_a_bad_baseline_file_is_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError) as info:
        load_baseline(str(path), "latency")
    assert message in str(info.value) and str(info.value).startswith(f"--against {path}: ")


def test_another_measurement_is_refused_naming_the_difference() -> None:
    with pytest.raises(UsageError, match=r"measured seq = 16, this run 32; compare like with like"):
        compare(_latency_result(), _latency_result(seq=32), kind="latency", path="b.json", max_regression=0.1)
    now = _latency_result()
    now["rows"] = [{"name": "torch.compile", "median_ms": 1.0}]
    with pytest.raises(UsageError, match="no variant in common"):
        compare(_latency_result(), now, kind="latency", path="b.json", max_regression=0.1)


def test_cli_bad_baseline_exits_2_before_measuring(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text("{}")
    out = deepseek(*LATENCY, "--against", "b.json", cwd=tmp_path)
    assert out.returncode == 2 and "not a 'bench latency' result" in out.stderr
    assert "timing" not in out.stderr  # refused before any variant ran


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--seq", "32", "measured seq = 16, this run 32"),
    ("--batch", "2", "measured batch = 1, this run 2"),
    ("--model", "small", "measured model = 'tiny', this run 'small'"),
])
def test_cli_another_measurement_is_refused_before_timing(tmp_path: Path, option: str, value: str,
                                                          message: str) -> None:
    """A baseline of another --seq (model, batch...) was refused only after every variant was
    timed; now before, and no --json is written."""
    (tmp_path / "b.json").write_text(json.dumps(_latency_result()))
    out = deepseek(*LATENCY, option, value, "--against", "b.json", "--json", "out.json", cwd=tmp_path)
    assert (out.returncode, out.stderr.strip().splitlines()) == (2, [
        f"error: --against b.json: {message}; compare like with like (the same options and machine), or save a "
        "new baseline"])
    assert "timing" not in out.stderr and not (tmp_path / "out.json").exists()


def _train_result(**settings: object) -> dict:
    """A saved 'bench train' result of exactly what TRAIN measures, with ``settings`` changed."""
    from dataclasses import replace

    from deepseek.bench._train_config import BenchSettings
    from deepseek.bench.train import planned_facts

    planned = BenchSettings(model="tiny", device="cpu", precision="fp32", batch=2, seq=32, steps=2, warmup=1,
                            model_options=("n_layers=1", "d_model=32", "n_heads=2"))
    facts = json.loads(json.dumps(planned_facts(replace(planned, **settings)), default=str))
    return {**facts, "rows": [{"name": "x", "tokens_per_s": 1.0}]}


@pytest.mark.parametrize(("setting", "message"), [
    ({"seq": 16}, "measured seq = 16, this run 32"),
    ({"batch": 4}, "measured batch = 4, this run 2"),
    ({"model": "small"}, "measured model = 'small', this run 'tiny'"),
    ({"precision": "bf16"}, "measured precision = 'bf16', this run 'fp32'"),
])
def test_cli_train_another_measurement_is_refused_before_timing(tmp_path: Path, setting: dict[str, object],
                                                                message: str) -> None:
    """bench train learnt of a baseline of another seq (model, batch, precision) only after every
    step was timed and its --json written; now before the model is built: one line, exit 2."""
    (tmp_path / "b.json").write_text(json.dumps(_train_result(**setting)))
    out = deepseek(*TRAIN, "--against", "b.json", "--json", "out.json", cwd=tmp_path)
    assert (out.returncode, out.stderr.strip().splitlines()) == (2, [
        f"error: --against b.json: {message}; compare like with like (the same options and machine), or save a "
        "new baseline"])
    assert "bench train:" not in out.stdout and not (tmp_path / "out.json").exists()


def test_train_planned_facts_are_what_the_run_reports(tmp_path: Path) -> None:
    """The facts checked before timing are the ones the result records: a baseline saved by the
    same options is never refused by the early check."""
    out = deepseek(*TRAIN, "--json", "saved.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    saved = json.loads((tmp_path / "saved.json").read_text())
    from deepseek.bench.baseline import _facts

    assert _facts("train", saved) == _facts("train", _train_result())


def test_a_baseline_path_with_a_line_break_and_an_escape_is_shown_escaped(tmp_path: Path) -> None:
    """The table's title and the regression line printed the --against path raw: a line break
    split the line, an ESC sequence reached the terminal."""
    folder = "b\nx\x1b[2J"
    (tmp_path / folder).mkdir()
    saved = f"{folder}/saved.json"
    out = deepseek(*LATENCY, "--json", saved, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    _edit(tmp_path / saved, "median_ms", 0.01)
    worse = deepseek(*LATENCY, "--against", saved, cwd=tmp_path)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "\x1b" not in worse.stdout + worse.stderr
    assert "against $'b\\nx\\x1b[2J/saved.json' (median_ms" in worse.stdout
    last = worse.stderr.strip().splitlines()[-1]
    assert last.startswith("regression: eager ") and " against $'b\\nx\\x1b[2J/saved.json' (allowed 10%)" in last
