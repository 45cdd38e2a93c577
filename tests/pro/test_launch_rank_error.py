"""An exception raised on one rank only ends every rank of a ``deepseek launch`` job, with one
line naming that rank: a plugin model (a GPT made in a temp dir, nothing of it in production code)
whose ``forward`` raises on rank 1 at its third training call, under ddp and under fsdp on 2 gloo
processes. The agent stops the other rank as soon as rank 1 exits; the launcher's last line is rank
1's own (exit code 1 for a bug in the model, 2 for a refusal); the rank that only lost its peer
says so (FSDP gathers weights inside the model's ``forward``: that rank's broken collective is not
blamed on the model's plugin, core's ``blamed_on``); and no checkpoint of the failing step
exists (the run keeps steps 1 and 2)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from test_launch import TINY, assert_no_temp_left, error_lines, launch

BOOM_PLUGIN = '''
import os
from deepseek.errors import UsageError
from deepseek.hookspecs import hookimpl
from deepseek.models.gpt import GPT


class Boom(GPT):
    """GPT whose forward raises on rank R at its N-th training call (DEEPSEEK_TEST_BOOM=R:N:bug|refusal)."""

    calls = 0

    def forward(self, input_ids, targets=None):
        rank, at, what = os.environ["DEEPSEEK_TEST_BOOM"].split(":")
        if self.training:
            Boom.calls += 1
            if os.environ["RANK"] == rank and Boom.calls == int(at):
                if what == "refusal":
                    raise UsageError(f"model boom: rank {rank} refuses training call {at}")
                raise RuntimeError(f"boom on rank {rank} at training call {at}")
        return super().forward(input_ids, targets)


@hookimpl
def deepseek_register_models(register):
    register("boom", "deepseek_boom:Boom", description="GPT raising on one rank")
'''
BOUND_S = 60.0
"""Seconds from rank 1's error to the launcher's exit, far above what it takes (1-4 s measured on
a loaded 2-core machine) and far below the collective timeout and the 300 s watchdog."""


@pytest.fixture(scope="module")
def boom_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder holding the deepseek-boom distribution, an empty folder for ``launch``'s site dir)."""
    root = tmp_path_factory.mktemp("boom")
    plugins, site = root / "plugins", root / "site"
    info = plugins / "deepseek_boom-0.1.dist-info"
    info.mkdir(parents=True)
    site.mkdir()
    (plugins / "deepseek_boom.py").write_text(BOOM_PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-boom\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deepseek]\nboom = deepseek_boom\n")
    return plugins, site


@pytest.mark.parametrize(
    ("strategy", "what", "code", "line"),
    [
        ("ddp", "bug", 1, "model 'boom' (deepseek-boom 0.1, registered by deepseek_boom): forward raised "
                          "RuntimeError: boom on rank 1 at training call 3; a bug in the plugin"),
        ("fsdp", "refusal", 2, "model boom: rank 1 refuses training call 3"),
    ],
)
def test_one_ranks_error_ends_the_job_with_its_line(strategy: str, what: str, code: int, line: str, tmp_path: Path,
                                                     boom_dirs: tuple[Path, Path]) -> None:
    args = ["-n", "2", "--log-dir", "logs", "--", "train", "--strategy", strategy, "--max-steps", "6",
            "--run-dir", "run", *TINY, "--set", "model.name=boom", "--set", "checkpoint.interval=1"]
    proc, _ = launch(args, tmp_path, boom_dirs, tmp_path / "markers", DEEPSEEK_TEST_BOOM=f"1:3:{what}")
    ended = time.time()
    assert proc.returncode == code, proc.stderr[-4000:]
    errors = error_lines(proc.stderr)
    assert re.fullmatch(rf"error: rank 1 \(pid \d+\) exited with code {code}: {re.escape(line)}.*; "
                        "the other ranks were stopped", errors[-1]), proc.stderr[-4000:]
    # before it, at most rank 0's own line (its output is on the console): it lost its peer
    assert [e for e in errors[:-1] if not e.startswith("error: rank 0 lost its connection to another rank (")] == [], \
        proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    rank1_log = next((tmp_path / "logs").glob("*/attempt_0/1/stderr.log"))
    assert ended - rank1_log.stat().st_mtime < BOUND_S  # its error was the last it wrote
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["latest", "step-1", "step-2"]  # none of the failing step 3, not even a partial one
    assert_no_temp_left(tmp_path)
