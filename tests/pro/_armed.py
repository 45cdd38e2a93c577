"""What run_torchrun's workers run (test helper): ``python _armed.py SCRIPT ARGS`` or ``python
_armed.py -m MODULE ARGS`` runs the script or module as ``__main__``, as torchrun would, with
``faulthandler`` armed on SIGUSR2, so that a job that times out prints the stack of every thread
of every rank before it is stopped (``_prohelpers._stop``)."""

from __future__ import annotations

import faulthandler
import os
import runpy
import signal
import sys
from pathlib import Path

faulthandler.register(signal.SIGUSR2, all_threads=True)
target = sys.argv[1:]
if target[:1] == ["-m"]:
    sys.argv = target[1:]
    sys.path[0] = os.getcwd()  # as python -m puts the working folder first
    runpy.run_module(target[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = target
    sys.path[0] = str(Path(target[0]).resolve().parent)  # as python SCRIPT puts the script's folder first
    runpy.run_path(target[0], run_name="__main__")
