"""Slurm's output read like user input (no Slurm command is run here): ``squeue`` lines, the
``ExitCode`` field of ``scontrol show job``, ``sbatch --parsable``'s answer, ``slurmstepd``'s
memory-kill line in a job's log, and the job states and names the Slurm executor relies on.

Numbers are ASCII digits of bounded length (a Unicode digit is not one), states upper-case
words; a line or field that does not parse is skipped or read as "not said", never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
                    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"})
"""Slurm job states in which the job has not ended (its processes may still run)."""
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"})
"""Final Slurm job states."""
REASONS = {"TIMEOUT": "Slurm time limit reached (quota cpu-seconds as --time)",
           "OUT_OF_MEMORY": "Slurm: out of memory (quota memory-bytes as --mem)",
           "NODE_FAIL": "Slurm: the node running the job failed",
           "PREEMPTED": "Slurm preempted the job", "BOOT_FAIL": "Slurm: the node failed to boot",
           "DEADLINE": "Slurm: deadline reached", "CANCELLED": "cancelled in Slurm (scancel)"}
"""Why a job in this final Slurm state failed, beyond its exit code."""
NEVER_RAN = 1
"""The exit code of a job Slurm ended in a state other than ``COMPLETED`` with ``ExitCode=0:0``
(cancelled while pending, a deadline, a boot failure): it never ran to its end, so it is not a
success."""

NAME = re.compile(r"deepseek-[0-9]{1,12}-[0-9a-f]{8}")
"""A job name the Slurm executor submits under: ``deepseek-<id>-<8 hex>``."""
SBATCH_ID = re.compile(r"([0-9]{1,12})(;[A-Za-z0-9_.-]+)?")
"""What ``sbatch --parsable`` answers: the job id, maybe ``;cluster``."""
_EXIT = re.compile(r"(?:^|\s)ExitCode=([0-9]{1,3}):([0-9]{1,3})(?=\s|$)")


@dataclass(frozen=True)
class Listed:
    """One line of ``squeue``: a job's state and name."""

    state: str
    name: str


def parse_squeue(text: str) -> dict[int, Listed]:
    """``squeue --format=%i|%T|%j`` lines as {job id: Listed}; lines that do not have a plain
    numeric id and an upper-case state (array or heterogeneous jobs, noise) are skipped."""
    jobs: dict[int, Listed] = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9]{1,12}", parts[0]):
            continue
        state = re.match(r"[A-Z_]{1,32}", parts[1])
        if state is not None:
            jobs[int(parts[0])] = Listed(state.group(0), parts[2].strip())
    return jobs


def parse_exit(text: str, slurm_id: int) -> int | None:
    """The exit code in ``scontrol show job -o ID`` output (``ExitCode=N:S``: N, or 128+S when a
    signal ended it); None when the output is not about ``slurm_id`` or has no such field."""
    if not re.match(rf"JobId={slurm_id}(?=\s)", text.strip()):
        return None
    m = _EXIT.search(text)
    if m is None:
        return None
    code, sig = int(m.group(1)), int(m.group(2))
    return 128 + sig if sig else code


def memory_kill(log_tail: str) -> str:
    """Why the job failed when ``slurmstepd`` wrote to its log that it killed the job over its
    memory (``--mem``; ``JobAcctGatherParams=OverMemoryKill`` or cgroup), else ''."""
    m = re.search(r"^slurmstepd[^:\n]{0,64}: error: [^\n]{0,64}exceeded memory limit \(([0-9]{1,20}) > ([0-9]{1,20})\)",
                  log_tail, re.MULTILINE)
    if m is None:
        return ""
    used, limit = int(m.group(1)) >> 20, int(m.group(2)) >> 20
    return (f"out of memory: Slurm killed the job at {used} MiB, over its --mem of {limit} MiB "
            "(quota memory-bytes)")


def first_line(text: str) -> str:
    """The first non-blank line of a command's output, printable characters only, at most 300."""
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return "".join(c for c in line if c.isprintable())[:300]
