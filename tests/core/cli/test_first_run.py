"""What a new user meets first: --debug anywhere on the line, a closing `try:` line that works as
printed, install hints that match how deepseek-core was installed, thread defaults."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_cli import TINY, Hostile

from deepseek.cli.main import split_debug
from deepseek.plugins import install


@pytest.mark.parametrize(("argv", "expected", "debug"), [
    (["train", "--debug", "x.toml"], ["train", "x.toml"], True),
    (["--debug", "train"], ["train"], True),
    (["train", "x.toml", "--debug"], ["train", "x.toml"], True),
    (["generate", "--checkpoint", "r", "--", "--debug"], ["generate", "--checkpoint", "r", "--", "--debug"], False),
    (["launch", "-n", "2", "--", "train", "--debug"], ["launch", "-n", "2", "--", "train", "--debug"], False),
])
def test_debug_is_a_root_option_anywhere_before_a_double_dash(argv: list[str], expected: list[str], debug: bool) -> None:
    assert split_debug(argv) == (expected, debug)


def test_debug_after_the_command_shows_the_traceback(hostile: Hostile) -> None:
    env = {**os.environ, "DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run([sys.executable, "-m", "deepseek", "config", "show", "--set", "train.lrr=1", "--debug"],
                          capture_output=True, text=True, env=env, cwd=hostile.work, timeout=120)
    assert proc.returncode == 2 and "Traceback" in proc.stderr  # the same exit code as without --debug
    assert "ConfigError: train.lrr: unknown key" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("error: train.lrr: unknown key")
    quiet = hostile.refused("config", "show", "--set", "train.lrr=1", expect=["train.lrr: unknown key"])
    assert "--debug" not in quiet


def test_the_try_line_runs_as_printed(hostile: Hostile) -> None:
    done = hostile.run("train", *TINY, "--run-dir", "runs/first")
    assert done.code == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("try: ")
    command = shlex.split(line.removeprefix("try: "))
    # In this process deepseek runs from pytest, not from a console script: the line names the
    # interpreter, which works from any shell.
    assert command[:3] == [sys.executable, "-m", "deepseek"]
    proc = subprocess.run([*command, "--max-new-tokens", "3", "--device", "cpu"], cwd=hostile.work,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("def ")  # the default corpus is Python: the line prompts with "def "
    (hostile.work / "notes.txt").write_text("a corpus of plain notes, not code\n" * 200)
    other = hostile.run("train", *TINY, "--set", "data.path=notes.txt", "--run-dir", "runs/notes")
    assert other.code == 0, other.stderr
    assert other.stdout.strip().splitlines()[-1].endswith("generate --checkpoint runs/notes")  # a new document


def test_install_hints_follow_how_core_was_installed(tmp_path: Path) -> None:
    repo = tmp_path / "repo" / "packages"
    (repo / "deepseek-pro").mkdir(parents=True)
    (repo / "deepseek-pro" / "pyproject.toml").write_text("")
    core_url = (repo / "deepseek-core").as_uri()
    editable = {"url": core_url, "dir_info": {"editable": True}}
    assert install.edition_source("deepseek-pro", editable) == f"-e {repo / 'deepseek-pro'}"
    assert install.edition_source("deepseek-pro", {"url": core_url, "dir_info": {}}) == str(repo / "deepseek-pro")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "deepseek_pro-0.1.0-py3-none-any.whl").write_bytes(b"")
    wheel = {"url": (wheels / "deepseek_core-0.1.0-py3-none-any.whl").as_uri(), "archive_info": {}}
    assert install.edition_source("deepseek-pro", wheel) == str(wheels / "deepseek_pro-0.1.0-py3-none-any.whl")
    vcs = {"url": "https://example.org/deepseek.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"},
           "subdirectory": "packages/deepseek-core"}
    assert install.edition_source("deepseek-pro", vcs) == (
        "'deepseek-pro @ git+https://example.org/deepseek.git@abc123#subdirectory=packages/deepseek-pro'")
    assert install.edition_source("deepseek-pro", {}) == "deepseek-pro==0.1.0"  # from a registry
    lost = {"url": (tmp_path / "gone" / "deepseek-core").as_uri(), "dir_info": {}}
    assert install.edition_source("deepseek-pro", lost) == "deepseek-pro==0.1.0"


def test_the_installer_is_the_one_this_environment_has() -> None:
    from importlib import metadata

    command = install.installer()
    if not any(d.metadata["Name"] == "pip" for d in metadata.distributions()):
        assert command.startswith("uv pip install --python ") or "ensurepip" in command
    else:
        assert command.endswith("pip install")


def test_cpu_threads_default_to_half_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from deepseek import devices

    before = torch.get_num_threads()
    monkeypatch.setattr(devices, "available_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert devices.use_default_cpu_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(devices, "available_cores", lambda: 16)
        assert devices.default_cpu_threads() == 8
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert devices.use_default_cpu_threads() is None  # the user's (or the launcher's) choice stands
    finally:
        torch.set_num_threads(before)


def test_running_out_of_memory_is_one_line_naming_the_fix() -> None:
    import torch

    from deepseek.cli.main import out_of_memory

    assert out_of_memory(MemoryError())
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 bytes"))
    assert not out_of_memory(RuntimeError("shape mismatch"))


def test_the_enterprise_hint_installs_pro_with_it_where_pro_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The printed command named deepseek-enterprise's folder alone; the resolver then looked for
    the deepseek-pro it pins in the package registry and failed."""
    for has_pro, expected in ((False, ["deepseek-pro", "deepseek-enterprise"]), (True, ["deepseek-enterprise"])):
        monkeypatch.setattr(install, "_installed", lambda dist, pro=has_pro: dist == "deepseek-pro" and pro)
        command = install.install_command("deepseek-enterprise")
        assert command == f"{install.installer()} " + " ".join(install.edition_source(d) for d in expected)
    assert install.install_command("deepseek-pro") == f"{install.installer()} {install.edition_source('deepseek-pro')}"
