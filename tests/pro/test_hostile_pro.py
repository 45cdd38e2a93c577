"""Hostile inputs to deepseek-pro's commands, ``launch`` and ``checkpoint``: numbers, paths and
corrupt checkpoints are refused with one line, exit 2, before any process starts and with nothing
written (the same verdict as core's tests: tests/core/cli/hostile_cli.py)."""

from __future__ import annotations

import json
import shutil
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "cli"))
from hostile_cli import TINY, Hostile, invoke  # noqa: E402

from deepseek.config.load import load_config  # noqa: E402
from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.plugins.settings import PluginSettings  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pro_host() -> PluginHost:
    """Core and deepseek-pro, whatever the environment says."""
    return PluginHost(PluginSettings(autoload=False, allow=frozenset({"deepseek-pro"})))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, pro_host: PluginHost) -> Path:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = tmp_path_factory.mktemp("pro-hostile") / "run"
        done = invoke(["train", *TINY, "--run-dir", str(path)], pro_host)
    finally:
        torch.set_num_threads(threads)
    assert done.code == 0, done.stderr
    return path


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pro_host: PluginHost, run: Path) -> Hostile:
    work = tmp_path / "work"
    work.mkdir()
    (work / "afile").write_text("x\n")
    (work / "adir").mkdir()
    (work / "stage9.json").write_text('{"zero_optimization": {"stage": 9}}')
    (work / "broken.json").write_text("{x")
    shutil.copytree(run, work / "run")
    step = work / "run" / "checkpoints" / "step-1"
    shutil.copytree(step, work / "negative-step")
    state = json.loads((step / "trainer.json").read_text())
    (work / "negative-step" / "trainer.json").write_text(json.dumps({**state, "step": -3}))
    # An edit made on purpose: the commit record lists the new size, so the content check is what refuses it.
    record = work / "negative-step" / "commit.json"
    body = json.loads(record.read_text())
    body["files"]["trainer.json"] = (work / "negative-step" / "trainer.json").stat().st_size
    body["crc32"]["trainer.json"] = f"{zlib.crc32((work / 'negative-step' / 'trainer.json').read_bytes()):08x}"
    record.write_text(json.dumps(body))
    monkeypatch.chdir(work)
    return Hostile(pro_host, work, [run])


CASES: list[tuple[str, list[str], list[str]]] = [
    ("launch n zero", ["launch", "-n", "0", "--", "train"], ["-n"]),
    ("launch n nan", ["launch", "-n", "nan", "--", "train"], ["-n"]),
    ("launch n beyond the machine", ["launch", "-n", "100000", "--", "plugins", "list"],
     ["-n 100000", "CPU core", "or fewer"]),  # started processes by the hundred until killed
    ("launch nnodes zero", ["launch", "--nnodes", "0", "--", "train"], ["--nnodes"]),
    # was taken: 'data.batch_size: 16 rows must split evenly over 10**30 data-parallel rank(s)'
    ("launch nnodes huge", ["launch", "--nnodes", str(10**30), "--rdzv-endpoint", "127.0.0.1:29555", "--", "train",
                            "--strategy", "ddp"], ["--nnodes", "<=1048576"]),
    ("launch node rank negative", ["launch", "--node-rank", "-1", "--", "train"], ["--node-rank"]),
    ("launch node rank too high", ["launch", "--node-rank", "1", "--", "train"], ["--node-rank 1"]),
    *[(f"launch timeout {v}", ["launch", "--timeout", v, "--", "train"], ["--timeout"])
      for v in ("nan", "inf", "-inf", "0", "-5", "soon", "1e999")],
    ("launch startup timeout inf", ["launch", "--startup-timeout", "inf", "--", "train"], ["--startup-timeout"]),
    ("launch log dir is a file", ["launch", "--log-dir", "afile", "--", "train"], ["--log-dir", "afile is a file"]),
    ("launch log dir below a file", ["launch", "--log-dir", "afile/logs", "--", "train"], ["--log-dir"]),
    ("launch nothing to run", ["launch", "-n", "2"], ["nothing to run"]),
    # a root option between launch and its --: it reached the workers alone (deepseek --plugins
    # pro -- plugins list on every rank), unseen by the launcher's checks of the job; now refused
    # as after any command, saying where it goes
    ("launch root option before its --", ["launch", "-n", "2", "--plugins", "deepseek-pro", "--", "plugins", "list"],
     ["No such option '--plugins'; --plugins is an option of deepseek itself: give it before the command "
      "(deepseek --plugins ... launch ...)"]),
    # after the --, among train's own: the launcher's check of the job said "No such option
    # '--plugins'. (see 'train --help')", without where it goes
    ("launch root option among train's", ["launch", "-n", "2", "--", "train", "--plugins", "deepseek-pro"],
     ["No such option '--plugins'; --plugins is an option of deepseek itself: give it before the command "
      "(deepseek --plugins ... train ...) (see 'deepseek train --help')"]),
    ("launch root flag before its --", ["launch", "-n", "2", "--no-plugin-autoload", "plugins", "list"],
     ["--no-plugin-autoload is an option of deepseek itself: give it before the command "
      "(deepseek --no-plugin-autoload launch ...)"]),
    ("launch misspelt command", ["launch", "-n", "2", "--", "trian", "--set", "model.name=tiny"],
     ["launch: no such command 'trian'; did you mean 'train'?"]),  # was one line per rank, then the launcher's
    ("launch nodes without endpoint", ["launch", "--nnodes", "2", "--", "train"], ["--rdzv-endpoint"]),
    # a DeepSpeed JSON is read before any worker starts (it failed in rank 0, several lines of pydantic)
    ("launch deepspeed json stage 9", ["launch", "-n", "2", "--", "train", "--strategy", "deepspeed", "--set",
                                       'strategy.config_path="stage9.json"'],
     ["strategy.config_path: 'stage9.json': zero_optimization must be an object whose stage is 0, 1, 2 or 3"]),
    ("launch deepspeed json broken", ["launch", "-n", "2", "--", "train", "--strategy", "deepspeed", "--set",
                                      'strategy.config_path="broken.json"'],
     ["strategy.config_path: cannot read DeepSpeed JSON 'broken.json'"]),
    # the id names the log folders: '../..' put them outside --log-dir
    ("launch rdzv id a path", ["launch", "-n", "2", "--rdzv-id", "../../escape", "--", "train"],
     ["launch: --rdzv-id '../../escape': use letters, digits"]),
    # past a week a collective's timeout overflowed a C int in the ranks (internal error)
    ("launch timeout huge", ["launch", "-n", "2", "--timeout", "1e308", "--", "train"], ["--timeout", "<= 302400"]),
    ("launch train timeout_s huge", ["launch", "-n", "2", "--", "train", "--strategy", "ddp", "--set",
                                     "strategy.timeout_s=1e308"], ["strategy.timeout_s: must be at most 604800"]),
    ("launch train unknown key", ["launch", "-n", "2", "--", "train", "--set", "train.lrr=1"], ["train.lrr"]),
    ("launch train max steps nan", ["launch", "-n", "2", "--", "train", "--max-steps", "nan"], ["--max-steps"]),
    ("launch train debug and a bad key", ["launch", "-n", "2", "--", "train", "--debug", "--set", "train.lrr=1"],
     ["train.lrr"]),
    ("launch single on two", ["launch", "-n", "2", "--", "train", "--strategy", "single"], ["trains in one process"]),
    ("launch train config not UTF-8", ["launch", "-n", "2", "--", "train", "--run-dir", "\udcff"], ["not valid UTF-8"]),
    ("launch train resume corrupt", ["launch", "-n", "2", "--", "train", "--resume", "negative-step"], ["step is a number (-3)"]),
    ("export src missing", ["checkpoint", "export", "no/run", "out"], ["no/run"]),
    ("export src a file", ["checkpoint", "export", "afile", "out"], ["afile: is a file"]),
    ("export src empty", ["checkpoint", "export", "adir", "out"], ["contains no complete checkpoint"]),
    ("export src corrupt", ["checkpoint", "export", "negative-step", "out"], ["trainer.json", "step"]),
    ("export dst exists", ["checkpoint", "export", "run", "adir"], ["adir: already exists"]),
    ("export dst a file", ["checkpoint", "export", "run", "afile"], ["afile is a file"]),
    ("export dst below a file", ["checkpoint", "export", "run", "afile/out"], ["afile is a file"]),
    # into what it reads: a step-N there would be taken for one of the run's own (was accepted); refused by
    # core's rule for every folder output inside a run's checkpoints/ (deepseek.run_files.run_owning)
    ("export dst in the run's checkpoints", ["checkpoint", "export", "run", "run/checkpoints/step-99"],
     ["checkpoint export: DST: run/checkpoints/step-99 is a place of the run folder ", "/run's own files",
      "give a folder outside the run, e.g. ", "/run-step-99"]),
    ("export dst in the source checkpoint", ["checkpoint", "export", "run", "run/checkpoints/step-1/copy"],
     ["checkpoint export: DST: run/checkpoints/step-1/copy is a place of the run folder ", "/run's own files",
      "/run-copy"]),
    ("info src missing", ["checkpoint", "info", "no/run"], ["no/run"]),
    ("info src a file", ["checkpoint", "info", "afile"], ["afile: is a file"]),
    ("info src corrupt", ["checkpoint", "info", "negative-step"], ["step is a number (-3)"]),
    *[(f"launch endpoint {e}", ["launch", "--nnodes", "2", "--rdzv-endpoint", e, "--", "plugins", "list"],
       ["--rdzv-endpoint", "HOST:PORT", "port from 1 to 65535"])  # were torch's ValueError, exit 1
      for e in ("nohost", "host:99999", "host:abc", ":29500", "host:0",
                "[::1:29500", "a]:29500", "::1:29500", "a b:29500")],  # the four were torch's ValueError, exit 1
    # node 0's name unknown here: the agent retried it until --startup-timeout, a warning line a try, exit 1
    ("launch endpoint host not resolved", ["launch", "-n", "1", "--rdzv-endpoint", "node0.invalid:29500", "--",
                                           "plugins", "list"],
     ["--rdzv-endpoint node0.invalid:29500: this node cannot resolve host 'node0.invalid'"]),
    ("launch log dir empty", ["launch", "--log-dir", "", "--", "plugins", "list"], ["--log-dir", "empty path"]),
    ("deepcompile without whole-model compile", ["launch", "-n", "2", "--", "train", "--strategy", "deepspeed",
                                                 "--set", "strategy.deepcompile=true"],
     ["strategy.deepcompile", "train.compile = true", 'train.compile_scope = "model"']),
    ("deepcompile on the cpu", ["launch", "-n", "1", "--", "train", "--strategy", "deepspeed", "--set",
                                "strategy.deepcompile=true", "--set", "train.compile=true", "--set",
                                "train.compile_scope=model"], ["strategy.deepcompile", "CUDA devices only"]),
    ("export src empty path", ["checkpoint", "export", "", "out"], ["SRC", "empty path"]),
    ("export dst empty path", ["checkpoint", "export", "run", ""], ["DST", "empty path"]),
    ("info src empty path", ["checkpoint", "info", ""], ["SRC", "empty path"]),
]


@pytest.mark.parametrize(("what", "argv", "expect"), CASES, ids=[c[0] for c in CASES])
def test_hostile_pro_input_is_refused(hostile: Hostile, what: str, argv: list[str], expect: list[str]) -> None:
    hostile.refused(*argv, expect=expect)


def test_checkpoint_export_creates_missing_folders_and_says_so(hostile: Hostile) -> None:
    done = hostile.run("checkpoint", "export", "run", "exports/v1/ckpt")
    assert done.code == 0, done.stderr
    assert "(created folders exports, exports/v1)" in done.stdout
    assert (hostile.work / "exports" / "v1" / "ckpt" / "trainer.json").is_file()


def test_checkpoint_export_refuses_per_rank_state_that_is_no_file(hostile: Hostile) -> None:
    """A FIFO, folder or broken link named like a rank's random state beside the checkpoint's own
    files (its commit record lists only these) was copied as it is: the FIFO and the others were
    an internal error (exit 1, shutil's SpecialFileError, IsADirectoryError, FileNotFoundError).
    Now one line naming it, exit 2, checked before the copy starts (nothing written, never waits)."""
    import os
    import time

    stray = hostile.work / "run" / "checkpoints" / "step-1" / "rng-3.safetensors"
    for make, what in [(os.mkfifo, "not a regular file (a FIFO, device, socket or broken link)"),
                       (Path.mkdir, "a folder"),
                       (lambda p: p.symlink_to(hostile.work / "gone"), "not a regular file (a FIFO, device, socket or "
                                                                      "broken link)")]:
        make(stray)
        started = time.monotonic()
        line = hostile.refused("checkpoint", "export", "run", "out")
        assert line == (f"error: run/checkpoints/step-1/rng-3.safetensors: is {what}, not the per-rank state a checkpoint writes; the checkpoint is damaged, "
                        "use an earlier checkpoint of the run (pass its checkpoints/step-N folder) or start a fresh run")
        assert time.monotonic() - started < 5 and not list(hostile.work.glob(".out.tmp-*"))
        if stray.is_dir() and not stray.is_symlink():
            stray.rmdir()
        else:
            stray.unlink()


def test_checkpoint_info_names_what_is_in_place_of_the_trainer_state(hostile: Hostile, past_fifo: Any) -> None:
    """``checkpoint info`` on a run whose trainer.json is a FIFO or a folder said "trainer.json
    missing" (core's commit record check); it names what is there, never waiting on the FIFO."""
    import os

    state = hostile.work / "run" / "checkpoints" / "step-1" / "trainer.json"
    state.unlink()
    os.mkfifo(state)
    line = past_fifo(state, lambda: hostile.refused("checkpoint", "info", "run"))
    assert "step-1 is incomplete (trainer.json is not a regular file (a FIFO, device or socket))" in line, line
    state.unlink()
    state.mkdir()
    hostile.refused("checkpoint", "info", "run", expect=["step-1 is incomplete (trainer.json is a folder)"])


def test_the_pro_example_config_loads(pro_host: PluginHost) -> None:
    config = load_config(REPO / "examples" / "configs" / "fsdp-2gpu.toml", host=pro_host)
    assert (config.strategy.name, config.model.name) == ("fsdp", "1.3b")
