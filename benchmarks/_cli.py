"""The one way the benchmark scripts run a deepseek command: this interpreter, output captured,
a failure ends the script with the command's last error lines."""

from __future__ import annotations

import subprocess
import sys


def deepseek(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "deepseek", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"deepseek {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return out.stdout
