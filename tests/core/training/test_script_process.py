"""``deepseek run SCRIPT`` as a process, where ``python SCRIPT`` and it must end alike: the
script's ``atexit`` handlers (run at the process's exit, after the command put ``sys.path`` and
``sys.argv`` back) see them as the script left them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ATEXIT_SCRIPT = """
import atexit, sys

def bye():
    import helper_of_job  # in the script's folder, imported by no one before
    print("at exit:", helper_of_job.WORD, sys.argv[1:], flush=True)

atexit.register(bye)
sys.path.append("added-by-the-script")
atexit.register(lambda: print("still there:", "added-by-the-script" in sys.path, flush=True))
print("script done", flush=True)
"""


def test_atexit_handlers_of_the_script_import_from_its_folder(tmp_path: Path) -> None:
    """Was: ``ModuleNotFoundError: No module named 'helper_of_job'`` at exit (exit code 0 all the
    same), where ``python job.py`` printed the helper's word: the command took the script's folder
    off ``sys.path`` when the script returned, before Python ran the handlers."""
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "job.py").write_text(textwrap.dedent(ATEXIT_SCRIPT))
    (folder / "helper_of_job.py").write_text('WORD = "found"\n')
    done = subprocess.run([sys.executable, "-m", "deepseek", "--no-plugin-autoload", "run", str(folder / "job.py"), "--x"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.splitlines() == ["script done", "still there: True", "at exit: found ['--x']"], done.stdout
