"""deepseek run (a script run as __main__, its usage errors and its own bug as python reports them)
and what the command line says of a run a script trained with deepseek.fit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _script_parts import CONFIG, Quadrants, points
from torch import nn

import deepseek
from deepseek.errors import UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(PluginSettings(autoload=False))


SCRIPT = """
import sys
import torch
import deepseek
from deepseek.errors import UsageError
if sys.argv[1:] == ["--fail"]:
    raise UsageError("my-script: --fail given; leave it out")
if sys.argv[1:] == ["--bug"]:
    {}["missing"]
print("args", sys.argv[1:])
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepseek", "--no-plugin-autoload", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_deepseek_run_runs_a_script_as_main_and_reports_its_usage_errors(
        tmp_path: Path, deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """The script's own bug in a real process (its exit code and the traceback python prints); the
    rest in this process (conftest's ``deepseek_here``: the same command, no process start)."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT))
    ok = deepseek_here("run", str(script), "--steps", "3", cwd=tmp_path)
    assert ok.returncode == 0 and "args ['--steps', '3']" in ok.stdout, ok.stderr
    bad = deepseek_here("run", str(script), "--fail", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith("my-script: --fail given; leave it out")
    # the script's own bug: its traceback, as python prints it, exit 1 (not deepseek's "internal error")
    bug = run("run", str(script), "--bug", cwd=tmp_path)
    assert bug.returncode == 1 and "internal error" not in bug.stderr
    lines = bug.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and lines[-1] == "KeyError: 'missing'", bug.stderr
    assert f'File "{script}", line 9, in <module>' in lines[1] and "runpy" not in bug.stderr, bug.stderr
    missing = deepseek_here("run", "nope.py", cwd=tmp_path)
    assert missing.returncode == 2 and "run: 'nope.py' does not exist" in missing.stderr
    (tmp_path / "notes.txt").write_text("x")
    wrong = deepseek_here("run", "notes.txt", cwd=tmp_path)
    assert wrong.returncode == 2 and "is not a .py file" in wrong.stderr
    # sys.exit("message"): exit 1 with the message on stderr, as python gives them (deepseek_here
    # returned the string as the exit code)
    (tmp_path / "bye.py").write_text('import sys\nsys.exit("bye: nothing to do")\n')
    bye = deepseek_here("run", "bye.py", cwd=tmp_path)
    assert bye.returncode == 1 and bye.stderr.strip().splitlines() == ["bye: nothing to do"], bye


def test_the_cli_says_where_a_scripts_model_can_be_evaluated(
        tmp_path: Path, host: PluginHost, deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=CONFIG,
                 run_dir=tmp_path / "r", host=host)
    out = deepseek_here("eval", "--checkpoint", str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode == 2
    assert "model 'script' is the model object of a Python script trained with deepseek.fit" in out.stderr
    assert "deepseek.evaluate(model, data, checkpoint=RUN)" in out.stderr
    assert "pip install" not in out.stderr and "deepseek-script" not in out.stderr  # no distribution to install
    assert out.stderr.strip().endswith("deepseek.evaluate(model, data, checkpoint=RUN)"), out.stderr
    # what the message offers: the weights loaded into the script's own model
    from deepseek.training.checkpoint import load_model_state

    model = deepseek.load_model(tmp_path / "r", model=Quadrants())
    saved = load_model_state(tmp_path / "r" / "checkpoints" / "step-60")
    assert not model.training and all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    with pytest.raises(deepseek.CheckpointError, match=r"weights do not fit this model"):
        deepseek.load_model(tmp_path / "r", model=nn.Linear(2, 2))
    with pytest.raises(UsageError, match=r"load_model\(model=\): expected the torch\.nn\.Module"):
        deepseek.load_model(tmp_path / "r", model=Quadrants)



def test_deepseek_run_runs_the_text_it_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """The script is read once: the text checked (a regular file that compiles) is the text run,
    as ``__main__`` (its classes pickle, ``__file__`` is its path), whatever is at the path after."""
    import deepseek.parsing

    script = tmp_path / "job.py"
    script.write_text("import pickle, sys\nclass Point: pass\nassert type(pickle.loads(pickle.dumps(Point()))) is Point\n"
                      "print('checked', __name__, __file__ == sys.argv[0])\n")
    real = deepseek.parsing.read_file

    def read_then_replace(path: Any, *args: Any) -> bytes:
        data = real(path, *args)
        if Path(path) == script:  # replaced right after the check read it: no longer valid Python
            script.write_text("print('replaced'\n")
        return data

    monkeypatch.setattr(deepseek.parsing, "read_file", read_then_replace)
    out = deepseek_here("run", str(script), cwd=tmp_path)
    assert (out.returncode, out.stdout) == (0, "checked __main__ True\n"), out  # was exit 1, a SyntaxError of the new text


@pytest.mark.parametrize("before", [None, "module"])
@pytest.mark.parametrize("ends", ["returns", "replaces its __main__", "removes its __main__", "fails"])
def test_deepseek_run_leaves_sys_modules_main_as_it_found_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: str | None, ends: str,
        deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """The script's temporary ``__main__`` was left in ``sys.modules`` where there was none before."""
    import types

    main = types.ModuleType("__main__") if before else None
    if main is None:
        monkeypatch.delitem(sys.modules, "__main__", raising=False)
    else:
        monkeypatch.setitem(sys.modules, "__main__", main)
    script = tmp_path / "job.py"
    script.write_text("import sys, types\nassert sys.modules['__main__'].__file__ == __file__\n" + {
        "returns": "", "replaces its __main__": "sys.modules['__main__'] = types.ModuleType('__main__')\n",
        "removes its __main__": "del sys.modules['__main__']\n", "fails": "raise SystemExit(3)\n"}[ends])
    out = deepseek_here("run", str(script), cwd=tmp_path)
    assert out.returncode == (3 if ends == "fails" else 0), out
    assert sys.modules.get("__main__", "none") is (main or "none")


def test_deepseek_run_leaves_sys_argv_and_sys_path_as_it_found_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: PluginHost, capsys: pytest.CaptureFixture[str]) -> None:
    """Called in this process (``main``, not conftest's ``deepseek_here``, which puts both back
    itself), ``deepseek run`` left ``sys.argv`` as ``[SCRIPT, *ARGS]`` and the script's folder on
    ``sys.path``: after it, both are the caller's lists with the caller's items, however the script
    ended and whatever it did to them."""
    from deepseek.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["caller", "--its-own"])
    monkeypatch.setattr(sys, "path", list(sys.path))
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import sys
        from deepseek.errors import UsageError
        assert sys.argv[0] == __file__ and sys.path[0] == {folder!r}, (sys.argv, sys.path[0])
        sys.path.append("/added/by/the/script")
        how = sys.argv[1]
        if how == "rebinds":
            sys.argv, sys.path = ["other"], ["elsewhere"]
        elif how == "raises":
            raise KeyError("missing")
        elif how == "usage":
            raise UsageError("job: bad input")
        elif how == "exits":
            sys.exit(3)
        print("ran", how)
        """).format(folder=str(tmp_path.resolve())))
    argv, search_path, entries = sys.argv, sys.path, list(sys.path)
    for how, code in [("returns", 0), ("rebinds", 0), ("raises", 1), ("usage", 2), ("exits", 3)]:
        with pytest.raises(SystemExit) as exc:
            main(["run", "job.py", how], host=host)
        out = capsys.readouterr()
        assert exc.value.code == code and (how not in ("returns", "rebinds") or f"ran {how}" in out.out), (how, out)
        assert sys.argv is argv and sys.argv == ["caller", "--its-own"], (how, sys.argv)
        assert sys.path is search_path and sys.path == entries, (how, sys.path[:2], sys.path[-1])


def test_two_deepseek_runs_in_two_threads_run_their_scripts_in_turn(tmp_path: Path, host: PluginHost,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: two in-process runs that overlapped in two threads shared the process's ``sys.argv``
    (the first script read the second's), and the command swapped ``atexit.register`` for its own
    for the while: the first to end, not the last to start, left the other's method in the module
    for good. Now the second waits for the first script to end (the wait here is cut short at
    0.5 s: it starts once the first ends); the ``atexit`` module is left alone."""
    import atexit
    import threading
    import types
    import warnings

    from deepseek.cli.main import main

    # the warning display is the process's: main() restores it when the last of the two leaves
    # (test_warning_lines_threads.py); kept here too, so a failure here leaves it to no later test
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    monkeypatch.setattr(warnings, "filters", warnings.filters)
    sync = types.SimpleNamespace(**{name: threading.Event() for name in ("a_started", "a_go", "b_started", "b_go")},
                                 seen={})
    monkeypatch.setitem(sys.modules, "_run_in_turn", sync)
    monkeypatch.setattr(sys, "argv", ["caller"])
    for name in "ab":
        (tmp_path / f"{name}.py").write_text(f"import sys, _run_in_turn as s\ns.{name}_started.set()\n"
                                             f"s.{name}_go.wait(60)\ns.seen[{name!r}] = list(sys.argv)\n")
    functions = atexit.register, atexit.unregister
    codes: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            main(["run", str(tmp_path / f"{name}.py"), f"--{name}"], host=host)
        except SystemExit as exc:
            codes[name] = exc.code

    first, second = (threading.Thread(target=run, args=(name,)) for name in "ab")
    first.start()
    assert sync.a_started.wait(60)
    second.start()
    sync.b_started.wait(0.5)
    sync.a_go.set()
    first.join(60)
    sync.b_go.set()
    second.join(60)
    assert (atexit.register, atexit.unregister) == functions and sys.argv == ["caller"]
    assert codes == {"a": 0, "b": 0}
    assert sync.seen == {"a": [str(tmp_path / "a.py"), "--a"], "b": [str(tmp_path / "b.py"), "--b"]}


@pytest.mark.parametrize("own", ["", "def bye(): pass\nimport atexit\natexit.register(bye)\natexit.unregister(bye)\n"],
                         ids=["registers-none", "unregisters-its-own"])
def test_deepseek_run_in_process_leaves_nothing_registered_at_exit_behind_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own: str,
        deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """Was: every ``deepseek run`` in a process registered two ``atexit`` handlers that stayed
    registered until the process ended, holding the lists the script left in ``sys.argv`` and
    ``sys.path``: N runs of a script that registered no handler of its own kept N scripts' leftovers
    alive (here an object each script put in ``sys.argv``). A script that registers one still
    has its view at exit (test_script_process.py, a real process's exit). One that unregistered the
    handler it registered kept the pair too: the command counted the process's handlers with
    CPython's private ``atexit._ncallbacks()``, which up to 3.13 does not go down on ``unregister``."""
    import gc
    import types
    import weakref

    refs: list[weakref.ref[Any]] = []
    monkeypatch.setitem(sys.modules, "_run_leftovers", types.SimpleNamespace(refs=refs, weakref=weakref))
    script = tmp_path / "job.py"
    script.write_text("import sys, _run_leftovers\nclass Left: pass\nleft = Left()\n"
                      "sys.argv.append(left)\n_run_leftovers.refs.append(_run_leftovers.weakref.ref(left))\n" + own)
    for _ in range(3):
        assert deepseek_here("run", str(script), cwd=tmp_path).returncode == 0
    gc.collect()
    assert len(refs) == 3 and [ref() for ref in refs] == [None, None, None], [ref() for ref in refs]
