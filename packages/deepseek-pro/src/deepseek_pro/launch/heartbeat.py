"""Heartbeats (worker side) and the hang watchdog (launcher side).

Every worker started by ``deepseek launch`` writes ``$DEEPSEEK_HEARTBEAT_DIR/rank-<RANK>.json``
when it starts and at each point of training progress: the start of training, the end of every
optimizer step (after the other plugins' step hooks), each evaluation and each checkpoint. A
beat carries a sequence number; all ranks beat at the same points, so the rank with the lowest
sequence number is the one holding the others back.

The :class:`Watchdog` thread in the launcher reads the files. When a rank has not beaten for
``timeout`` seconds (``startup_timeout`` until its first optimizer step is done), it asks the
laggard ranks for a stack dump (:data:`DUMP_SIGNAL`, see :mod:`deepseek_pro.launch.worker`), kills them, and
records a verdict; the elastic agent then sees the dead worker and stops the rest of the job.
A rank that beat ``end`` (its training is over) and is still running ``timeout`` seconds later
is stuck on its way out (its final tasks, the process group's teardown, the exit handlers) and
is treated the same way: without it, the agent waited for that rank for ever.
Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from deepseek.parsing import loads_json, read_text

ENV_DIR = "DEEPSEEK_HEARTBEAT_DIR"
STARTUP_PHASES = frozenset({"start", "train"})
"""Phases before the first optimizer step finished (slow: imports, set-up, compilation)."""
DONE_PHASES = frozenset({"end"})
DUMP_SIGNAL = getattr(signal, "SIGUSR2", None)
"""The signal a worker answers with a stack dump of every thread (SIGUSR1 asks it to stop)."""

MAX_BEAT_BYTES = 4096
"""The largest ``rank-*.json`` read (a beat is about 100 bytes)."""

_seq = 0


@dataclass(frozen=True)
class Beat:
    """One rank's last heartbeat."""

    rank: int
    pid: int
    seq: int
    phase: str
    step: int
    time: float

    def where(self) -> str:
        """Human description of the last progress point (``"step 2"``, ``"start-up"``)."""
        if self.phase == "start":
            return "start-up (before training began)"
        if self.phase == "train":
            return "the first training step"
        if self.phase == "step":
            return f"step {self.step}"
        return {"eval": "evaluation", "checkpoint": "checkpoint"}.get(self.phase, self.phase) + f" at step {self.step}"


def beat(phase: str, step: int = 0) -> None:
    """Record progress of this worker (a no-op outside ``deepseek launch``)."""
    global _seq
    directory = os.environ.get(ENV_DIR)
    if not directory:
        return
    _seq += 1
    rank = int(os.environ.get("RANK", "0"))
    body = {"rank": rank, "pid": os.getpid(), "seq": _seq, "phase": phase, "step": int(step), "time": time.time()}
    path = Path(directory) / f"rank-{rank}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(body), encoding="utf-8")
        os.replace(tmp, path)  # not deepseek.durable: rewritten every step, meaningless after a restart
    except OSError:
        pass  # a heartbeat must never break training; the watchdog then reports this rank


def read_beats(directory: str | os.PathLike[str]) -> dict[int, Beat]:
    """The last beat of every rank that has written one. Unreadable files are skipped: a FIFO, a
    folder or a file over :data:`MAX_BEAT_BYTES` (``read_text``: never a blocking open or a
    read whole of a huge file in the watchdog thread), or one that is not a beat."""
    beats: dict[int, Beat] = {}
    for path in Path(directory).glob("rank-*.json"):
        try:
            d = loads_json(read_text(path, MAX_BEAT_BYTES))
            b = Beat(int(d["rank"]), int(d["pid"]), int(d["seq"]), str(d["phase"]), int(d["step"]), float(d["time"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        beats[b.rank] = b
    return beats


class Watchdog(threading.Thread):
    """Kill ranks that stopped making progress; :attr:`verdict` says which and why."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        timeout: float,
        startup_timeout: float,
        poll: float = 0.5,
        dump_grace: float = 1.5,
    ) -> None:
        super().__init__(name="deepseek-watchdog", daemon=True)
        self.directory = Path(directory)
        self.timeout = float(timeout)
        self.startup_timeout = float(startup_timeout)
        self.poll = poll
        self.dump_grace = dump_grace
        self.verdict: str | None = None
        self.stuck: list[Beat] = []
        self._done = threading.Event()

    def stop(self) -> None:
        """End the thread (the job is over)."""
        self._done.set()

    def limit(self, b: Beat) -> float:
        """Seconds of silence allowed after beat ``b``."""
        return self.startup_timeout if b.phase in STARTUP_PHASES else self.timeout

    def check(self, now: float | None = None) -> list[Beat]:
        """The ranks to blame right now (empty while everyone makes progress): the laggards among
        those silent past their limit, else ranks whose training ended ``timeout`` seconds ago and
        whose process still runs."""
        now = time.time() if now is None else now
        beats = read_beats(self.directory).values()
        live = [b for b in beats if b.phase not in DONE_PHASES]
        overdue = [b for b in live if now - b.time > self.limit(b)]
        if overdue:
            lowest = min(b.seq for b in live)
            laggards = [b for b in overdue if b.seq == lowest]
            return sorted(laggards or overdue, key=lambda b: b.rank)
        stuck = [b for b in beats if b.phase in DONE_PHASES and now - b.time > self.timeout
                 and is_running_child(b.pid, unknown=False)]
        return sorted(stuck, key=lambda b: b.rank)

    def run(self) -> None:
        while not self._done.wait(self.poll):
            stuck = self.check()
            if stuck:
                self._fire(stuck)
                return

    def _fire(self, stuck: list[Beat]) -> None:
        now = time.time()
        ahead = {b.where() for b in read_beats(self.directory).values() if b.seq > stuck[0].seq}
        ranks = ", ".join(str(b.rank) for b in stuck)
        silent = max(now - b.time for b in stuck)
        others = f"; the other ranks reached {', '.join(sorted(ahead))}" if ahead else ""
        self.stuck = stuck
        option = "--startup-timeout" if stuck[0].phase in STARTUP_PHASES else "--timeout"
        if stuck[0].phase in DONE_PHASES:
            self.verdict = (
                f"rank{'s' if len(stuck) > 1 else ''} {ranks} ended training at step {stuck[0].step} but "
                f"{'were' if len(stuck) > 1 else 'was'} still running {silent:.0f} s later (limit "
                f"{self.timeout:.0f} s), stuck on the way out (final tasks, process group teardown or exit "
                f"handlers; its stack follows); the job was stopped (raise {option} if it was only slow)"
            )
        else:
            self.verdict = (
                f"rank{'s' if len(stuck) > 1 else ''} {ranks} made no progress for {silent:.0f} s "
                f"(limit {self.limit(stuck[0]):.0f} s; last heartbeat: {stuck[0].where()}){others}; "
                f"the job was stopped (raise {option} if it was only slow)"
            )
        for sig in (DUMP_SIGNAL, signal.SIGKILL):
            for b in stuck:
                if sig is not None:
                    _signal(b.pid, sig)
            if sig is not signal.SIGKILL:
                time.sleep(self.dump_grace)


def is_running_child(pid: int, *, unknown: bool) -> bool:
    """Whether ``pid`` is a running child of this process (not exited, and not a pid the system
    reused for another process); ``unknown`` where /proc is missing (not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return unknown and not Path("/proc/self").exists()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (name) ": state, ppid, ...
    return fields[0] != "Z" and int(fields[1]) == os.getpid()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
