"""Ranks that cannot meet: a rank started by hand without the others is one line (exit 2) after
``strategy.timeout_s`` and ends at once on SIGTERM while it waits (the wait is in C++: the
trainer's stop handler ran only after the timeout, 600 s by default, then an internal error); a
launcher whose rendezvous port is taken is one line (was an internal error, DistNetworkError)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from _prohelpers import free_port

CONFIG = '[model]\nname = "tiny"\nd_model = 32\nn_heads = 2\nn_layers = 1\n[data]\nbatch_size = 4\n'


def _alone(tmp_path: Path, *extra: str, port: int = 0) -> subprocess.Popen[str]:
    """Rank 0 of 2, started without rank 1."""
    (tmp_path / "c.toml").write_text(CONFIG)
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port or free_port()), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "deepseek", "train", "c.toml", "--strategy", "ddp", "--max-steps",
                             "2", "--run-dir", "run", *extra], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_rank_whose_peers_never_come_is_one_line_after_the_timeout(tmp_path: Path) -> None:
    proc = _alone(tmp_path, "--set", "strategy.timeout_s=3")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: strategy: the 2 ranks did not all meet at 127.0.0.1:"), err
    assert "start every rank (deepseek launch -n N starts them together), or raise strategy.timeout_s" in lines[0]
    assert not (tmp_path / "run").exists()


def test_sigterm_ends_a_rank_waiting_for_its_peers_at_once(tmp_path: Path) -> None:
    port = free_port()
    proc = _alone(tmp_path, port=port)  # strategy.timeout_s: 600 s
    deadline = time.monotonic() + 120
    while True:  # rank 0 serves the store on MASTER_PORT once it waits for the others
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10 and proc.returncode == -signal.SIGTERM
    assert not (tmp_path / "run").exists()


def test_a_rendezvous_port_in_use_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "deepseek", "launch", "-n", "2", "--rdzv-endpoint",
                               f"127.0.0.1:{port}", "--", "train", "c.toml", "--strategy", "ddp", "--max-steps", "2",
                               "--run-dir", "run"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: --rdzv-endpoint 127.0.0.1:{port}: the port is in use (another job or program listens on it); pick "
        "another port"], proc.stderr
    assert not (tmp_path / "run").exists()
