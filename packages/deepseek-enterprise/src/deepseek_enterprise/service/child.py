"""The wrapper every job runs under: ``python -I -m deepseek_enterprise.service.child ARGS``.

It runs ``python -I -m deepseek ARGS`` in the same process group and working directory, waits,
writes the exit code to ``exit_code`` in the workspace (atomically), and exits with it. The file
lets a restarted server learn how a job that outlived it ended. SIGTERM reaches the whole group
(the job stops cleanly, ``deepseek train`` writes a checkpoint and exits 75); the wrapper itself
only waits for the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    # The group's SIGTERM is the job's to handle (exec gives the job the default handlers back).
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    child = subprocess.Popen([sys.executable, "-I", "-m", "deepseek", *argv])
    code = child.wait()
    if code < 0:
        code = 128 - code
    with open("exit_code.tmp", "w", encoding="ascii") as f:
        f.write(f"{code}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace("exit_code.tmp", "exit_code")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
