"""What ``deepseek compress`` is pointed at is checked before anything is written: a ``--json``
path that is a folder (it was an internal error after the compressed run had been written) and a
run that compress already quantized (torchao's weights take no further step: it was an internal
error) are one line, exit 2, with no output run folder made."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
from _compresshelpers import CONFIG
from _inprocess import deepseek_here


def test_a_json_path_that_is_a_folder_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "reports").mkdir()
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "compress", "--checkpoint", "run", "--method", "quantize.int8",
                                 "--out", "small", "--json", "reports")
    assert code == 2, err
    assert err.splitlines() == ["error: --json: reports is a folder; give a file path, e.g. reports/compression.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]


@pytest.mark.parametrize("method", [["--method", "quantize.int8"], ["--method", "prune.ffn"],
                                    ["--max-drop", "5%", "--recovery-steps", "0"]])
def test_a_quantized_run_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: list[str]) -> None:
    (tmp_path / "c.toml").write_text(tomli_w.dumps({**CONFIG, "train": {**CONFIG["train"], "max_steps": 2}}))
    assert deepseek_here(monkeypatch, tmp_path, "train", "c.toml", "--run-dir", "run", "--quiet")[0] == 0
    made = deepseek_here(monkeypatch, tmp_path, "compress", "--checkpoint", "run", "--method", "quantize.int8",
                         "--out", "q", "--latency-runs", "0", "--device", "cpu")
    assert made[0] == 0, made[1]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "compress", "--checkpoint", "q", *method, "--out", "qq",
                                 "--latency-runs", "0", "--device", "cpu")
    assert code == 2, err
    assert err.splitlines() == ["error: --checkpoint: q holds a model that deepseek compress already quantized (int8); "
                                "compress the run it came from (the 'source' in its compression.json)"]
    assert not (tmp_path / "qq").exists()
    # resumed: was "optimizer state file is missing; the checkpoint is incomplete"; the model declares that it does
    # not train (TrainableModel.not_trainable), which the trainer reads when it builds the model, before the
    # checkpoint's missing optimizer state
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "--resume", "q", "--max-steps", "4")
    assert code == 2 and err.splitlines() == [
        "error: model 'quantized' does not train: torchao's quantized weights take no gradient step; train or "
        "fine-tune the source run its compression.json names, then compress it again"], err


def test_a_killed_compress_leaves_no_half_run_folder_and_the_retry_works(tmp_path: Path) -> None:
    """A SIGKILL while the result was written left checkpoints/ without compression.json: the
    retry was refused ('not empty') and deepseek eval took the half folder. The folder is filled
    beside --out and renamed onto it whole."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from _compresshelpers import deepseek_cli, train_tiny

    work = train_tiny(tmp_path, {**CONFIG, "train": {**CONFIG["train"], "max_steps": 2}})
    args = ["compress", "--checkpoint", "run", "--method", "prune.ffn", "--set", "ratio=0.5", "--out", "pruned",
            "--latency-runs", "200"]
    proc = subprocess.Popen([sys.executable, "-m", "deepseek", *args], cwd=work, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not any(work.glob(".pruned.partial-*/checkpoints/step-*/model.safetensors")):
        assert proc.poll() is None and time.monotonic() < deadline, "compress ended before its result was staged"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # while it measures the staged result
    proc.wait()
    assert not (work / "pruned").exists() or not any((work / "pruned").iterdir())
    assert deepseek_cli("eval", "--checkpoint", "pruned", cwd=work).returncode == 2
    retry = deepseek_cli(*args[:-1], "5", cwd=work)
    assert retry.returncode == 0, retry.stderr
    assert (work / "pruned" / "compression.json").is_file() and not list(work.glob(".pruned.partial-*"))
    assert deepseek_cli("eval", "--checkpoint", "pruned", cwd=work).returncode == 0


@pytest.mark.parametrize("report", ["small/config.toml", "small/compression.json", "small/sub/report.json"])
def test_a_json_path_inside_the_out_folder_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, report: str
) -> None:
    """--json was written after the run folder, into it: 'small/config.toml' replaced the written
    run's config with the JSON report (and 'small/compression.json' its record), exit 0."""
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "compress", "--checkpoint", "run", "--method", "quantize.int8",
                                 "--out", "small", "--json", report)
    assert code == 2, err
    assert err.splitlines() == [f"error: --json: {report} is inside --out small, the run folder this command writes "
                                "whole; give a path outside it, e.g. small-compression.json"]
    assert list(tmp_path.iterdir()) == []


def test_a_json_path_reaching_the_out_folder_through_dot_dot_is_refused(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """'sub/../small/config.toml' (sub a folder) is small/config.toml: refused as that path is."""
    (tmp_path / "sub").mkdir()
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "compress", "--checkpoint", "run", "--method", "quantize.int8",
                                 "--out", "small", "--json", "sub/../small/config.toml")
    assert code == 2, err
    assert err.splitlines() == ["error: --json: sub/../small/config.toml is inside --out small, the run folder this "
                                "command writes whole; give a path outside it, e.g. small-compression.json"]
    assert list(tmp_path.iterdir()) == [tmp_path / "sub"]


def test_an_out_folder_inside_a_runs_checkpoints_is_refused_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--out run/checkpoints/new` was taken: the compressed run was written among the checkpoints
    that run prunes (and `deepseek eval run` would have resolved it as one)."""
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "config.toml").write_text(tomli_w.dumps(CONFIG))
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "compress", "--checkpoint", "run", "--method", "quantize.int8",
                                 "--out", "run/checkpoints/new")
    assert code == 2, err
    assert err.splitlines() == [f"error: --out: run/checkpoints/new is a place of the run folder {tmp_path / 'run'}'s "
                                "own files (its training writes them, and deletes a pruned checkpoint's folder); give a "
                                f"folder outside the run, e.g. {tmp_path / 'run-new'}"]
    assert list((tmp_path / "run" / "checkpoints").iterdir()) == []


def test_a_json_report_over_a_compressed_runs_compression_json_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """compress declares the compression.json it writes in its --out run (register(...,
    declares={"run_files": [...]})): the run's own, as its config.toml. `compare --json
    RUN/compression.json` replaced it; refused in one line, the file unchanged, before any work."""
    run = tmp_path / "small"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text(tomli_w.dumps(CONFIG))
    (run / "compression.json").write_text('{"method": "quantize.int8"}')
    for argv, suggested in ((["compare", "a", "b"], "compare.json"),
                            (["bench", "latency", "--model", "tiny"], "latency.json"),
                            (["compress", "--checkpoint", "a", "--method", "quantize.int8", "--out", "c"],
                             "compression-2.json")):
        code, err, _ = deepseek_here(monkeypatch, tmp_path, *argv, "--json", "small/compression.json")
        assert (code, err.splitlines()) == (2, [
            f"error: --json: small/compression.json is a file of the run folder {run} (written by its training or the "
            f"command that made it); give another path, e.g. {run / suggested}"]), argv
    assert (run / "compression.json").read_text() == '{"method": "quantize.int8"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small"]
