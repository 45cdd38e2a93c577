"""``deepseek train`` / ``eval`` / ``generate`` through real subprocesses (``python -m deepseek``);
the bad-input table and the warm-up resume run in this process, two of the table's rows through a
real process too.

Every kind of bad input must end with exactly one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_cli import invoke

from deepseek.plugins.host import PluginHost
from deepseek.training.metrics import read_metrics

SMALL = [
    "--set", "model.d_model=32", "--set", "model.n_heads=2", "--set", "model.n_layers=2",
    "--set", "model.max_seq_len=32", "--set", "data.seq_len=32", "--set", "data.batch_size=8",
    "--set", "data.eval_batches=2", "--set", "data.shuffle_buffer=64", "--set", "train.warmup_steps=1",
    "--set", "strategy.device=\"cpu\"", "--precision", "fp32",
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    env["DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # core only, whatever else is installed
    env["OMP_NUM_THREADS"] = "1"  # tiny models; avoids OpenMP stalls on shared cores
    return env


def deepseek(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deepseek", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step run made by the real command line."""
    cwd = tmp_path_factory.mktemp("cli")
    proc = deepseek("train", *SMALL, "--max-steps", "4", "--run-dir", "runs/demo", "--quiet", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "run folder: runs/demo" in proc.stdout
    assert "validation loss" in proc.stdout
    return cwd / "runs" / "demo"


def test_train_writes_the_run_folder(trained_run: Path) -> None:
    names = sorted(p.name for p in trained_run.iterdir())
    assert names == [".lock", "checkpoints", "config.toml", "loss.png", "metrics.jsonl"]
    assert (trained_run / "checkpoints" / "step-4" / "model.safetensors").is_file()
    assert "max_steps = 4" in (trained_run / "config.toml").read_text()


def test_generate_produces_text_from_a_trained_run(trained_run: Path) -> None:
    proc = deepseek("generate", "--checkpoint", str(trained_run), "def ", "--max-new-tokens", "40",
                    "--seed", "1", "--device", "cpu", cwd=trained_run.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("def ")
    assert len(proc.stdout.rstrip("\n")) > len("def ") + 10
    again = deepseek("generate", "--checkpoint", str(trained_run), "def ", "--max-new-tokens", "40",
                     "--seed", "1", "--device", "cpu", cwd=trained_run.parent)
    assert again.stdout == proc.stdout  # seeded sampling is reproducible


def test_eval_reports_the_validation_loss(trained_run: Path) -> None:
    proc = deepseek("eval", "--checkpoint", str(trained_run), "--json", "--device", "cpu", cwd=trained_run.parent)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    last_val = read_metrics(trained_run / "metrics.jsonl")
    expected = [r["val_loss"] for r in last_val if "val_loss" in r][-1]
    assert result["step"] == 4
    assert result["val_loss"] == pytest.approx(expected, rel=1e-5)
    # byte tokens: one byte per predicted token, so bits per byte is the loss in bits, exactly
    assert result["val_bits_per_byte"] == pytest.approx(result["val_loss"] / math.log(2), rel=1e-12)
    rows = [r for r in last_val if "val_loss" in r]
    assert len(rows) == 2 and all(r["val_bits_per_byte"] == pytest.approx(r["val_loss"] / math.log(2), rel=1e-12)
                                  for r in rows)
    text = deepseek("eval", "--checkpoint", str(trained_run), "--device", "cpu", cwd=trained_run.parent)
    assert text.returncode == 0, text.stderr
    assert result["val_perplexity"] == pytest.approx(math.exp(result["val_loss"]), rel=1e-12)
    assert text.stdout == (f"val_loss {result['val_loss']:.4f}, val_bits_per_byte {result['val_bits_per_byte']:.4f}, "
                           f"val_perplexity {result['val_perplexity']:.4f} (step 4, model tiny)\n"
                           "2 batches, 16 samples, 512 tokens\n")
    assert (result["batches"], result["samples"], result["tokens"]) == (2, 16, 512)  # data.eval_batches x 8 x 32


def _corrupt_run(root: Path) -> Path:
    run = root / "corrupt"
    step = run / "checkpoints" / "step-3"
    step.mkdir(parents=True)
    (step / "trainer.json").write_text('{"format": "deepseek-checkpoint", "step": 3, "conf')
    (step / "model.safetensors").write_bytes(b"")  # a checkpoint without a commit record holds its weights
    (run / "checkpoints" / "latest").write_text("step-3\n")
    return run


BAD_INPUTS = [
    ("unknown key", ["--set", "train.lrr=1e-3"], "train.lrr: unknown key (did you mean 'lr'?)"),
    ("unknown section", ["--set", "trian.lr=1e-3"], "did you mean 'train'?"),
    ("wrong type", ["--set", "train.max_steps=ten"], "train.max_steps: expected an integer"),
    ("negative lr", ["--set", "train.lr=-1e-3"], "train.lr: must be > 0"),
    ("unknown strategy", ["--strategy", "warp"], "strategy.name: unknown strategy 'warp'"),
    ("strategy option", ["--set", "strategy.devcie=cpu"], "did you mean 'device'?"),
    ("unknown precision", ["--precision", "fp8"], "precision.dtype: 'fp8'"),
    ("missing data path", ["--set", "data.path=no/such/dir"], "data.path: 'no/such/dir' does not exist"),
    ("missing config file", ["nope.toml"], "nope.toml: config file not found"),
    ("malformed TOML", ["bad.toml"], "bad.toml: not valid TOML"),
    ("bad --set syntax", ["--set", "trainlr"], "--set 'trainlr': expected SECTION.KEY=VALUE"),
    ("unknown model", ["--set", "model.name=tinny"], "model.name: unknown model 'tinny'; did you mean 'tiny'?"),
    ("corrupt checkpoint", ["--resume", "corrupt"], "trainer.json: trainer state is corrupt"),
    ("missing checkpoint", ["--resume", "no-such-run"], "no-such-run: no such checkpoint or run folder, so there is "
     "nothing to resume (a run killed or stopped before it made its folder leaves none); run the same command "
     "without --resume to start the run"),
    ("max-steps not a number", ["--max-steps", "many"], "'many' is not a valid integer"),
    ("max-steps zero", ["--max-steps", "0"], "train.max_steps: must be >= 1"),
    ("batch vs accumulation", ["--set", "train.grad_accum=3"], "not divisible by train.grad_accum=3"),
    ("unknown option", ["--stratgy", "single"], "--stratgy"),
]


def _check_refused(what: str, expected: str, code: int, stdout: str, stderr: str, cwd: Path) -> None:
    assert code == 2, (what, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, (what, stderr)
    assert lines[0].startswith("error: ") and expected in lines[0], (what, lines[0])
    assert not (cwd / "runs").exists()  # nothing started, nothing half-written


def _bad_input_folder(tmp_path: Path) -> Path:
    (tmp_path / "bad.toml").write_text("[train]\nlr = = 3\n")
    _corrupt_run(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("what", "args", "expected"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, core_host: PluginHost,
                                          one_thread: None, what: str, args: list[str], expected: str) -> None:
    """In this process (each refusal comes before any heavy work; a process start costs seconds):
    the same CLI and environment as :func:`deepseek`'s, core's plugins only."""
    monkeypatch.chdir(_bad_input_folder(tmp_path))
    for key in [k for k in os.environ if k.startswith("DEEPSEEK_")]:
        monkeypatch.delenv(key)
    outcome = invoke(["train", *args], core_host)
    _check_refused(what, expected, outcome.code, outcome.stdout, outcome.stderr, tmp_path)


REAL_PROCESS_BAD_INPUTS = [b for b in BAD_INPUTS if b[0] in ("missing data path", "unknown option")]


@pytest.mark.parametrize(("what", "args", "expected"), REAL_PROCESS_BAD_INPUTS,
                         ids=[b[0] for b in REAL_PROCESS_BAD_INPUTS])
def test_bad_input_from_a_real_process_is_one_line_and_exit_2(tmp_path: Path, what: str, args: list[str],
                                                             expected: str) -> None:
    """The process's own exit code and stderr, for a refusal of the configuration and of click."""
    proc = deepseek("train", *args, cwd=_bad_input_folder(tmp_path))
    _check_refused(what, expected, proc.returncode, proc.stdout, proc.stderr, tmp_path)


def test_corrupt_weights_for_resume_is_one_line(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    weights = run / "checkpoints" / "step-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    proc = deepseek("train", "--resume", str(run), "--max-steps", "6", "--quiet", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.safetensors" in lines[0] and "corrupt or truncated" in lines[0]


def test_train_command_module_does_not_import_torch() -> None:
    code = "import sys, deepseek.cli.train_cmd; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=_env()).returncode == 0


def test_config_show_prints_the_resolved_config_that_loads_back(tmp_path: Path) -> None:
    from deepseek.config.load import load_config

    config = tmp_path / "run.toml"
    config.write_text('[model]\nname = "small"\nn_layers = 2\n[train]\nlr = 1e-3\n')
    out = deepseek("config", "show", str(config), "--set", "data.batch_size=8", "--max-steps", "7", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    shown = tmp_path / "shown.toml"
    shown.write_text(out.stdout)
    resolved = load_config(shown)
    assert (resolved.model.name, resolved.model.options.n_layers, resolved.model.options.d_model) == ("small", 2, 768)
    assert (resolved.train.lr, resolved.train.max_steps, resolved.data.batch_size) == (1e-3, 7, 8)
    assert 'device = "auto"' in out.stdout and "seq_len = 128" in out.stdout  # defaults filled in
    bad = deepseek("config", "show", "--set", "train.lrr=1", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: train.lrr: unknown key (did you mean 'lr'?); allowed keys: "
                                 "activation_checkpointing, attention, compile, compile_scope, decay_steps, ")
    assert bad.stderr.count("\n") == 1


def test_a_resumed_runs_summary_says_which_steps_its_time_covers(trained_run: Path, tmp_path: Path) -> None:
    """The step and sample counts are the run's; the seconds are this session's, said as such."""
    import shutil

    run = tmp_path / "demo"
    shutil.copytree(trained_run, run)
    proc = deepseek("train", "--resume", str(run), "--max-steps", "6", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("6 steps, ")]
    assert line.startswith("6 steps, 1,536 tokens (steps 5-6 after resuming at step 4: ") and line.endswith(" s)"), line


def test_a_config_file_resuming_with_more_steps_keeps_the_recorded_warm_up(
        tmp_path: Path, deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """warmup_steps defaults to max_steps // 10: resumed with --max-steps 40 and the same config
    file, the run's warm-up moved from 2 to 4 steps mid-run; the recorded value is kept. (In this
    process: tests/core/conftest.py's ``deepseek_here``.)"""
    (tmp_path / "c.toml").write_text('[model]\nname = "tiny"\nd_model = 32\nn_heads = 2\nn_layers = 2\n'
                                     '[data]\nbatch_size = 8\nseq_len = 32\n[train]\neval_interval = 0\n'
                                     '[strategy]\ndevice = "cpu"\n')
    assert deepseek_here("train", "c.toml", "--max-steps", "20", "--run-dir", "r", "--quiet", cwd=tmp_path).returncode == 0
    proc = deepseek_here("train", "c.toml", "--max-steps", "40", "--resume", "r", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "with config changes: train.max_steps 20 -> 40\n" in proc.stderr, proc.stderr
    written = (tmp_path / "r" / "config.toml").read_text()
    assert "warmup_steps = 2\n" in written and "min_lr = 0.0001\n" in written
    # set on the command line, it is this command's value
    proc = deepseek_here("train", "c.toml", "--max-steps", "41", "--resume", "r", "--set", "train.warmup_steps=3",
                         "--quiet", cwd=tmp_path)
    assert proc.returncode == 0 and "train.warmup_steps 2 -> 3" in proc.stderr, proc.stderr


def test_a_resume_that_changes_the_config_says_each_change(trained_run: Path, tmp_path: Path) -> None:
    """Options given with --resume apply (a demanding user's lr change, a longer run), and the run
    says every setting it changed from the checkpoint's config: on stderr and above the tables of
    the config.toml it rewrites."""
    import shutil

    from deepseek.config.load import load_config

    run = tmp_path / "demo"
    shutil.copytree(trained_run, run)
    proc = deepseek("train", "--resume", str(run), "--max-steps", "6", "--set", "train.lr=0.0005", "--quiet",
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    at = run / "checkpoints" / "step-4"
    assert (f"resumed from {at} at step 4, with config changes: train.lr 0.002 -> 0.0005; train.max_steps 4 -> 6"
            in proc.stderr), proc.stderr
    written = (run / "config.toml").read_text(encoding="utf-8").splitlines()
    assert written[:2] == [f"# resumed from {at} at step 4, changing train.lr 0.002 -> 0.0005",
                           f"# resumed from {at} at step 4, changing train.max_steps 4 -> 6"]
    assert load_config(run / "config.toml").train.lr == 0.0005
