"""The watchdog's watch past a rank's end of training: a rank that beat ``end`` and still runs
``--timeout`` seconds later is stuck on its way out (the agent would wait for it for ever); one
that exited, or a pid that is not the launcher's child, is never blamed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from deepseek_pro.launch.heartbeat import Watchdog, is_running_child


def _write(directory: Path, rank: int, phase: str, age: float, pid: int, seq: int = 9, step: int = 7) -> None:
    body = {"rank": rank, "pid": pid, "seq": seq, "phase": phase, "step": step, "time": time.time() - age}
    (directory / f"rank-{rank}.json").write_text(json.dumps(body))


def test_a_rank_still_running_past_its_end_is_blamed_one_that_exited_is_not(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while gone.poll() is None:  # exited and reaped, as the agent reaps its workers
            time.sleep(0.05)
        zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exited, not yet reaped
        dog = Watchdog(tmp_path, timeout=10, startup_timeout=100)
        _write(tmp_path, 0, "end", age=11, pid=gone.pid)
        _write(tmp_path, 1, "end", age=11, pid=sleeper.pid)
        _write(tmp_path, 2, "end", age=11, pid=1)  # not this process's child
        time.sleep(1.0)
        _write(tmp_path, 3, "end", age=11, pid=zombie.pid)
        assert is_running_child(sleeper.pid, unknown=False) and not is_running_child(zombie.pid, unknown=False)
        assert [b.rank for b in dog.check()] == [1]
        _write(tmp_path, 1, "end", age=5, pid=sleeper.pid)  # within the limit
        assert dog.check() == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_watchdog_stops_a_rank_stuck_after_its_end_with_a_verdict(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _write(tmp_path, 0, "end", age=3, pid=1)  # not a child: never blamed
        _write(tmp_path, 1, "end", age=3, pid=sleeper.pid)
        dog = Watchdog(tmp_path, timeout=1, startup_timeout=1, poll=0.1, dump_grace=0.1)
        dog.start()
        assert sleeper.wait(timeout=30) in (-signal.SIGUSR2, -signal.SIGKILL)
        dog.join(timeout=10)
        assert [b.rank for b in dog.stuck] == [1]
        assert dog.verdict is not None
        assert dog.verdict.startswith("rank 1 ended training at step 7 but was still running"), dog.verdict
        assert "(limit 1 s), stuck on the way out" in dog.verdict
        assert dog.verdict.endswith("the job was stopped (raise --timeout if it was only slow)")
    finally:
        sleeper.kill()
        sleeper.wait()
