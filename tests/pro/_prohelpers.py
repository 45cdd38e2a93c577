"""Helpers of the pro tests (fixtures in ``conftest.py`` hand them out): run commands under
torchrun (N processes, a free port, a timeout) and read the metrics the trainer wrote.

- :func:`run_torchrun` runs ``python -m torch.distributed.run --nproc-per-node N --master-port P
  ARGS`` and fails the test with the output's tail if it fails or times out (a timed-out job is
  stopped, its workers too: a hang fails the test, it does not outlive it);
- :func:`run_train_jobs` runs several training jobs (config tables + run folders, optionally
  ``resume``) one after another in ONE torchrun job through core's real Trainer, and returns each
  run's parsed ``metrics.jsonl``;
- :func:`tiny_config` is the small GPT setup every pro test trains (d_model 64, 2 layers,
  seq 32, global batch 4), as TOML-like tables.

Test modules in this folder may also ``import _prohelpers`` for the constants and functions.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
TRAIN_JOBS = HERE / "_train_jobs.py"
ARMED = HERE / "_armed.py"
TAIL = 6000


def free_port() -> int:
    """A TCP port that was free a moment ago (for ``--master-port``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_rank_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of rank 0 of a one-rank group on a free local port, as torchrun sets it: a
    launcher's strategy (``fsdp``, ``deepspeed``) then runs in this process."""
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)


def run_torchrun(
    args: Sequence[str],
    *,
    nproc: int = 2,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (a script path or ``-m module`` plus its arguments) on ``nproc`` local
    processes under torchrun, each through ``_armed.py``. With ``check``, a non-zero exit or a
    timeout fails the test; a timed-out job's output ends with the stacks of its ranks."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"}
    full_env.pop("TORCH_CUDA_ARCH_LIST", None)
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(ARMED), *args]
    with subprocess.Popen(cmd, env=full_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as running:
        try:
            stdout, stderr = running.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            out, err = _stop(running)
            pytest.fail(f"torchrun timed out after {timeout} s: {' '.join(cmd)}\n--- stdout ---\n{out[-TAIL:]}\n"
                        f"--- stderr ---\n{err[-TAIL:]}")
        except BaseException:
            _stop(running)
            raise
    proc = subprocess.CompletedProcess(cmd, running.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        pytest.fail(
            f"torchrun exited with {proc.returncode}: {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-TAIL:]}\n--- stderr ---\n{proc.stderr[-TAIL:]}"
        )
    return proc


FUSED_ADAM_BUILD = "from deepspeed.ops.op_builder import FusedAdamBuilder; FusedAdamBuilder().load()"
"""What DeepSpeed's ``FusedAdam`` does first on the CPU accelerator: JIT-build (or load) its op."""


def start_fused_adam_build(log: Path) -> subprocess.Popen[bytes]:
    """Start building DeepSpeed's CPU ``fused_adam`` op in a process of its own (its output in
    ``log``), with the environment :func:`run_torchrun` gives its workers, so that the workers of a
    test using ``FusedAdam`` find it built into the same ``TORCH_EXTENSIONS_DIR`` folder.

    The build takes 90-160 s of both cores once per environment (the folder's build commands hold
    the environment's absolute paths); inside the test it stopped that xdist worker for as long.
    Started with the session it runs beside the tests, in the CPU time their waits leave (timeouts,
    sleeps, ranks meeting); where the cores are busy throughout, it saves nothing. No
    wait is needed: torch's JIT loader holds a lock file in the build folder while it builds, and
    a worker that finds it waits for it, then loads what was built. The process is not stopped at
    the session's end (a build killed halfway would leave that lock file, on which every later
    load would wait forever); it ends by itself when the build does."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    env.pop("TORCH_CUDA_ARCH_LIST", None)
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", FUSED_ADAM_BUILD], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(running: subprocess.Popen[str]) -> tuple[str, str]:
    """Stop a torchrun that ran too long, workers included, and return what it printed. Each
    worker still there first prints the stack of each of its threads (SIGUSR2, armed by
    ``_armed.py``). Its workers run in their own sessions, so SIGTERM goes to torchrun, which
    stops them; SIGKILL after 45 s if it does not (torchrun itself kills a worker still there after
    30 s)."""
    dumped = [pid for pid in _descendants(running.pid) if _catches(pid, signal.SIGUSR2)]
    for pid in dumped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR2)
    if dumped:
        time.sleep(3)
    running.terminate()
    try:
        return running.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        running.kill()
        return running.communicate()


def _descendants(root: int) -> list[int]:
    """The pids of ``root``'s children, their children and so on (Linux ``/proc``; elsewhere none)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid`` handles ``sig`` (its ``SigCgt`` mask), so that sending it does not end it."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of ``<run_dir>/metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_records(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-step training records (those with a ``loss``), in step order."""
    return sorted((r for r in read_metrics(run_dir) if "loss" in r), key=lambda r: r["step"])


def tiny_config(
    strategy: str = "single", steps: int = 5, *, options: Mapping[str, Any] | None = None, **sections: Mapping[str, Any]
) -> dict[str, Any]:
    """Tables of a tiny, fast, deterministic run: GPT d_model 64 / 4 heads / 2 layers, seq 32,
    global batch 4, fp32, no evaluation, a checkpoint only at the end. ``sections`` update tables
    (``train={"grad_accum": 2}``)."""
    config: dict[str, Any] = {
        "model": {"name": "tiny", "d_model": 64, "n_heads": 4, "n_layers": 2, "max_seq_len": 32},
        "data": {"seq_len": 32, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 64},
        "train": {"max_steps": steps, "warmup_steps": 2, "eval_interval": 0, "lr": 3e-3, "min_lr": 3e-4,
                  "seed": 1234},
        "precision": {"dtype": "fp32"},
        "checkpoint": {"interval": 0, "keep_last": 10},
        "logging": {"progress": False, "plot": False},
        "strategy": {"name": strategy, **(options or {})},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return copy.deepcopy(config)


def run_train_jobs(
    jobs: Sequence[Mapping[str, Any]], workdir: Path, *, nproc: int = 2, timeout: float = 420
) -> dict[str, list[dict[str, Any]]]:
    """Run ``jobs`` (``{"name", "config", "resume"?, "unwrapped"?, "unwrap_report"?, "late_rank"?}``) in one torchrun job; each
    writes ``workdir/<name>`` (see ``_train_jobs.py``), and the job's output (stdout, then stderr)
    is kept beside its spec (``workdir/jobs-<n>.log``). Returns ``{name: train_records}``."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = []
    for job in jobs:
        spec.append({"config": job["config"], "run_dir": str(workdir / job["name"]),
                     "resume": str(job["resume"]) if job.get("resume") else None,
                     "unwrapped": bool(job.get("unwrapped")), "unwrap_report": bool(job.get("unwrap_report")),
                     "late_rank": job.get("late_rank")})
    spec_path = workdir / f"jobs-{len(list(workdir.glob('jobs-*.json')))}.json"
    spec_path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    proc = run_torchrun([str(TRAIN_JOBS), str(spec_path)], nproc=nproc, timeout=timeout)
    spec_path.with_suffix(".log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    return {job["name"]: train_records(workdir / job["name"]) for job in jobs}


def run_single(config: Mapping[str, Any], run_dir: Path, resume: Path | None = None) -> list[dict[str, Any]]:
    """Train in this process (strategy ``single``); returns the step records."""
    import torch

    from deepseek.config.load import config_from_dict
    from deepseek.training.trainer import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(config_from_dict(dict(config)), run_dir=run_dir, resume=resume, quiet=True).fit()
    finally:
        torch.set_num_threads(threads)
    return train_records(run_dir)




# ----------------------------------------------------------------------------- shared runs
# One torchrun job trains every strategy of ddp / fsdp / deepspeed from the same seed and global
# batch; test_ddp, test_fsdp, test_deepspeed, test_compression and test_checkpoint(_damaged,
# _core_alone) all read it.

REF_STEPS = 10
PARITY_STEPS = 5
POWERSGD = {"compression": "powersgd", "powersgd_rank": 1, "powersgd_start_iter": 2}


def tiny_run(strategy: str, steps: int = PARITY_STEPS, options: Mapping[str, Any] | None = None,
          **sections: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`tiny_config` with the decay horizon fixed at ``REF_STEPS``: runs of different
    lengths share one learning-rate schedule, so their losses are comparable step by step."""
    train = {"decay_steps": REF_STEPS, **sections.pop("train", {})}
    return tiny_config(strategy, steps, options=options, train=train, **sections)


def strategy_jobs(ds_json: Path) -> list[dict[str, Any]]:
    """The shared parity runs (name -> config)."""
    every = {"interval": 4}  # a checkpoint at step 4 (and at the end) for the checkpoint tests
    return [
        {"name": "ddp", "config": tiny_run("ddp", 6, checkpoint={"interval": 3}), "unwrapped": True},
        {"name": "ddp_accum", "config": tiny_run("ddp", train={"grad_accum": 2, "activation_checkpointing": True})},
        {"name": "ddp_bf16", "config": tiny_run("ddp", options={"compression": "bf16"})},
        {"name": "ddp_fp16", "config": tiny_run("ddp", options={"compression": "fp16"})},
        {"name": "ddp_powersgd", "config": tiny_run("ddp", options=POWERSGD)},
        {"name": "fsdp", "config": tiny_run("zero3", checkpoint=every), "unwrapped": True},
        {"name": "fsdp_accum", "config": tiny_run("fsdp", train={"grad_accum": 2, "activation_checkpointing": True})},
        {"name": "fsdp_bf16", "config": tiny_run("fsdp", options={"compression": "bf16"})},
        {"name": "fsdp_sharded", "config": tiny_run("fsdp", options={"checkpoint": "sharded"}, checkpoint=every)},
        {"name": "fsdp_offload", "config": tiny_run("fsdp", options={"cpu_offload": True})},
        {"name": "ddp_fp16prec", "config": tiny_run("ddp", precision={"dtype": "fp16"})},
        {"name": "fsdp_bf16prec", "config": tiny_run("fsdp", precision={"dtype": "bf16"})},
        # DeepSpeed last: it may leave process-wide patches behind for later jobs.
        {"name": "ds1", "config": tiny_run("deepspeed", options={"stage": 1})},
        {"name": "ds2_accum", "config": tiny_run("deepspeed", options={"stage": 2}, train={"grad_accum": 2})},
        {"name": "ds2_offload", "config": tiny_run("deepspeed", options={"stage": 2, "offload_optimizer": True})},
        {"name": "ds3", "config": tiny_run("deepspeed", options={"stage": 3}), "unwrapped": True},
        {"name": "ds3_blocks", "config": tiny_run("deepspeed", options={"stage": 3, "gather_unit": "block"},
                                                  train={"grad_accum": 2, "activation_checkpointing": True})},
        {"name": "ds3_modules", "config": tiny_run("deepspeed", options={"stage": 3, "gather_unit": "module"})},
        {"name": "ds3_offload", "config": tiny_run("deepspeed", options={"stage": 3, "offload_optimizer": True,
                                                                       "offload_params": True})},
        {"name": "ds_json", "config": tiny_run("deepspeed", options={"config_path": str(ds_json)})},
        {"name": "ds3_bf16prec", "config": tiny_run("deepspeed", options={"stage": 3}, precision={"dtype": "bf16"})},
    ]




def rerecord(folder: Path, name: str) -> None:
    """Make ``folder``'s commit record agree with an edited ``name`` (its size and CRC-32), so that
    what is tested is the edited value, not the record's checksum."""
    record = json.loads((folder / "commit.json").read_text())
    record["files"][name] = (folder / name).stat().st_size
    record["crc32"][name] = f"{zlib.crc32((folder / name).read_bytes()):08x}"
    (folder / "commit.json").write_text(json.dumps(record))


def losses(records: Sequence[Mapping[str, Any]]) -> list[float]:
    """The ``loss`` of each step record."""
    return [float(r["loss"]) for r in records]


def run_probe_here(probe: Path, out: Path, *names: str) -> None:
    """What ``python PROBE OUT NAME [NAME ...]`` does alone (a probe's ``run(OUT, NAME)`` for each
    name, on one intra-op thread), in this process: the probes' ``single`` references, which need
    no process of their own, without an interpreter start (torch's and deepseek's imports, seconds
    on the shared CI cores). The previous thread count is restored after."""
    import torch

    spec = importlib.util.spec_from_file_location(f"{probe.stem}_here", probe)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the probe's ``if __name__ == "__main__"`` part does not run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name in names:
            module.run(out, name)
    finally:
        torch.set_num_threads(threads)


def deepseek_here(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``deepseek ARGS`` run in this process from ``cwd`` on the process's plugin host (core and
    pro), ``env`` set in ``os.environ`` for the call (the processes it starts inherit it), on one
    intra-op thread, ``sys.argv``, ``sys.path`` and the thread count restored after; its exit code
    (a ``SystemExit`` read as the interpreter reads it: tests/core/_exitcode.py), stdout and
    stderr as ``subprocess.run(..., capture_output=True, text=True)`` gives them. For
    input the launcher refuses before any process starts, where what is tested is the command's
    verdict, not its process: a process start costs seconds on the shared CI cores."""
    import torch

    from deepseek.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.chdir(cwd)
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.setattr(sys, "argv", list(sys.argv))
        patch.setattr(sys, "path", list(sys.path))
        torch.set_num_threads(1)
        try:
            main(list(args))
        except SystemExit as exc:
            code = core_test_module("_exitcode").exit_status(exc.code, err)
        finally:
            torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["deepseek", *args], code, out.getvalue(), err.getvalue())


def core_test_module(stem: str) -> Any:
    """tests/core/``stem``.py (a helper core's tests share: ``_exitcode``, core's rule for how a
    SystemExit's code becomes an exit status; ``_negative_momentum``), loaded once by its path:
    tests/core is not on the pro tests' ``sys.path``, and putting it there would put core's
    conftest.py there too. Kept in ``sys.modules`` as ``core_tests<stem>`` (the name
    tests/enterprise/_core_tests.py gives it too), where dataclasses look up its annotations."""
    name = f"core_tests{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "core" / f"{stem}.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def deepseek_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m deepseek ARGS`` on the CPU with one intra-op thread (text output captured)."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "deepseek", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_no_temp_left(cwd: Path) -> None:
    """A launch run with ``TMPDIR`` set to ``<cwd>/tmp`` (its launcher and workers) left nothing
    there but torch's compile cache (``torchinductor_<user>``: one folder, shared and reused by
    every run)."""
    assert sorted(p.name for p in (cwd / "tmp").iterdir() if not p.name.startswith("torchinductor_")) == []


def random_gpt_weights(path: Path, *, seed: int, std: float, n_layers: int) -> Path:
    """An exported weights file of a small byte-level GPT (d_model 64, 4 heads, 32 positions) with
    normal(0, ``std``) weights: untrained, but with a greedy continuation that varies for the
    seeds the tests pick (most random GPTs repeat one token)."""
    import torch

    from deepseek.models.gpt import GPT, GPTConfig
    from deepseek.training.checkpoint import save_model_state

    cfg = {"vocab_size": 256, "d_model": 64, "n_heads": 4, "n_layers": n_layers, "max_seq_len": 32}
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**cfg))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    meta = {"format": "deepseek-weights", "model": json.dumps({"name": "gpt", **cfg}), "step": "0"}
    return save_model_state(path, model.state_dict(), meta)

