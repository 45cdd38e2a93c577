"""The Slurm executor's side that needs no cluster: Slurm's output read like user input (squeue
lines and scontrol exit codes that do not parse are skipped, slurmstepd's memory line counts only
at a line start), sbatch's arguments from the tenant's quota, and a server refusing a Slurm it
cannot use before it creates anything. The tests against a real cluster are in
test_service_slurm.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deepseek_enterprise.service.slurm import (
    Listed,
    SlurmExecutor,
    memory_kill,
    parse_exit,
    parse_squeue,
)


def test_squeue_lines_that_do_not_parse_are_skipped() -> None:
    text = ("12|RUNNING|deepseek-3-0123abcd\n"
            "13_4|PENDING|array\n"            # array task: not a plain id
            "14+0|RUNNING|het\n"               # heterogeneous job
            "x|RUNNING|nope\n"
            "15|running|lowercase state\n"
            "16|COMPLETED|name|with|bars\n"   # the name is the rest of the line
            "9999999999999|RUNNING|too long\n"
            "\u0661\u0662|RUNNING|arabic-indic digits\n"  # int() would read 12: not an id
            "\n|||\n"
            "17|OUT_OF_MEMORY|oom\n")
    assert parse_squeue(text) == {12: Listed("RUNNING", "deepseek-3-0123abcd"),
                                  16: Listed("COMPLETED", "name|with|bars"), 17: Listed("OUT_OF_MEMORY", "oom")}


def test_exit_codes_from_scontrol() -> None:
    assert parse_exit("JobId=7 JobName=x ExitCode=3:0 RunTime=1", 7) == 3
    assert parse_exit("JobId=7 JobName=x ExitCode=0:9 RunTime=1", 7) == 137  # ended by SIGKILL
    assert parse_exit("JobId=8 JobName=x ExitCode=3:0", 7) is None             # another job
    assert parse_exit("JobId=77 ExitCode=3:0", 7) is None
    assert parse_exit("JobId=7 JobName=ExitCode=1:0 Derived=2", 7) is None    # not a field of its own
    assert parse_exit("JobId=7 ExitCode=abc", 7) is None
    assert parse_exit("JobId=7 ExitCode=\u0663:0", 7) is None  # a Unicode digit is not one
    assert parse_exit("slurm_load_jobs error: Invalid job id specified", 7) is None


def test_sbatch_arguments_from_the_quota(tmp_path: Path) -> None:
    if shutil.which("sbatch") is None:
        pytest.skip("Slurm's client commands are not installed (the executor refuses to start without them)")
    from deepseek_enterprise.service.executor import Launch

    ex = SlurmExecutor(tmp_path, partition="gpu-a100")
    launch = Launch(5, "acme", "train", [], None, {}, ["0", "1"], memory_bytes=(3 << 30) + 5, cpu_seconds=61)
    args = ex.sbatch_args(launch, tmp_path / "w%j", "deepseek-5-0123abcd")
    assert args[:2] == ["sbatch", "--parsable"]
    assert {"--job-name=deepseek-5-0123abcd", "--account=acme", f"--chdir={tmp_path}/w%j",
            f"--output={tmp_path}/w%%j/job.log", "--partition=gpu-a100", "--gres=gpu:2", "--mem=3072M",
            "--time=2", "--no-requeue", "--export=ALL"} <= set(args)
    bare = ex.sbatch_args(Launch(6, "acme", "eval", [], None, {}, []), tmp_path, "deepseek-6-0123abcd")
    assert not any(a.startswith(("--gres", "--mem", "--time")) for a in bare)


@pytest.mark.parametrize(("env", "named"), [({"PATH": "/nonexistent"}, "sbatch, squeue, scancel, scontrol not found"),
                                            ({"DEEPSEEK_SLURM_PARTITION": "gpu;rm"}, "DEEPSEEK_SLURM_PARTITION='gpu;rm'")])
def test_server_refuses_slurm_it_cannot_use_before_creating_anything(tmp_path: Path, env: dict[str, str],
                                                                     named: str) -> None:
    import sys

    from _hosts import enterprise_host

    host = enterprise_host()
    assert host.resolve("executor", "slurm").load() is SlurmExecutor
    root = tmp_path / "never"
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DS_ACCELERATOR": "cpu", **env}
    done = subprocess.run([sys.executable, "-m", "deepseek", "server", "--executor", "slurm", "--root", str(root),
                           "--port", "1"], capture_output=True, text=True, timeout=120, env=full)
    assert done.returncode == 2 and done.stdout == "", done
    assert len(done.stderr.strip().splitlines()) == 1 and named in done.stderr, done.stderr
    assert not root.exists()


def test_memory_kill_read_from_slurmstepd_lines_only() -> None:
    line = "slurmstepd-vm: error: StepId=6.batch exceeded memory limit (539398144 > 104857600), being killed\n"
    assert memory_kill("step 1\n" + line) == ("out of memory: Slurm killed the job at 514 MiB, over its --mem of "
                                              "100 MiB (quota memory-bytes)")
    assert memory_kill("echo " + line) == ""  # not at a line start
    assert memory_kill(line.replace("539398144", "5" * 30)) == ""
    assert memory_kill("") == ""
