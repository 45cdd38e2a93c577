"""``bench train`` leaves torch >= 2.9's ``fp32_precision`` switches as it found them, each as it
was set (``"none"``: it follows its parent), and runs where they were set apart from the legacy
``allow_tf32`` ones. It restored only the legacy switches: their setters wrote some of the new
ones explicitly (a switch that had followed its parent no longer did), and reading cuDNN's
``allow_tf32`` after ``cudnn.conv.fp32_precision = "ieee"`` alone raised torch's "mix of the legacy
and new APIs" error, so the bench failed before it began.

The cases run in a fresh process (these switches are the process's), each forked twice from the
same state: one child only looks, the other runs ``tf32()`` (or the whole bench, in process through
``main``) and then looks. Looking moves each parent switch to "ieee" and "tf32" and reads every
switch (which ones follow) and the legacy ones (which torch refuses to read), so it is done once
per child. CPU only: the switches exist without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.__version__ < (2, 9), reason="fp32_precision switches: torch >= 2.9")

CASES = {
    "as torch starts": "",
    "cudnn.conv ieee (new API)": "B.cudnn.conv.fp32_precision = 'ieee'",
    "generic tf32, every other following": "B.fp32_precision = 'tf32'",
    "medium (legacy), cuda.matmul ieee": "torch.set_float32_matmul_precision('medium'); "
                                         "B.cuda.matmul.fp32_precision = 'ieee'",
    "cuda off (legacy), mkldnn.matmul bf16": "B.cudnn.allow_tf32 = B.cuda.matmul.allow_tf32 = False; "
                                             "B.mkldnn.matmul.fp32_precision = 'bf16'",
}

SCRIPT = r'''
import json, os, sys
import torch
from deepseek.bench._train_measure import tf32
from deepseek.cli.main import main

B = torch.backends
SWITCHES = [("generic", "all"), ("cuda", "all"), ("cuda", "matmul"), ("cuda", "conv"), ("cuda", "rnn"),
            ("mkldnn", "all"), ("mkldnn", "matmul"), ("mkldnn", "conv"), ("mkldnn", "rnn")]


def legacy(read):
    try:
        return read()
    except RuntimeError:
        return "refused"


def read_all():
    return [{f"{backend}.{op}": torch._C._get_fp32_precision_getter(backend, op) for backend, op in SWITCHES},
            legacy(torch.get_float32_matmul_precision), legacy(lambda: B.cuda.matmul.allow_tf32),
            legacy(lambda: B.cudnn.allow_tf32)]


def look():
    seen = {"read": read_all()}
    for backend in ("mkldnn", "cuda", "generic"):  # (torch.backends.mkldnn.fp32_precision sets the generic one)
        for value in ("ieee", "tf32"):
            torch._C._set_fp32_precision_setter(backend, "all", value)
            seen[f"{backend}={value}"] = read_all()
    return seen


def bench():
    try:
        main(["bench", "train", "--model", "tiny", "--model-option", "n_layers=1", "--steps", "1", "--warmup", "0",
              "--batch", "1", "--seq", "8", "--device", "cpu", "--precision", "fp32"])
    except SystemExit as exc:
        return exc.code


def within():
    with tf32():
        pass


cases, folder = json.loads(sys.argv[1]), sys.argv[2]
for i, (setting, run) in enumerate(cases):
    for ran in (None, run):
        pid = os.fork()
        if pid == 0:
            exec(setting)
            code = {None: lambda: None, "bench": bench, "within": within}[ran]()
            with open(os.path.join(folder, f"{i}-{ran}.json"), "w") as f:
                json.dump({"code": code, "seen": look()}, f)
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
'''


def test_bench_train_leaves_each_fp32_precision_switch_as_it_was_set(tmp_path: Path) -> None:
    """tf32() from each starting point, and one whole bench from the point where it failed to start."""
    cases = [(setting, "within") for setting in CASES.values()] + [(CASES["cudnn.conv ieee (new API)"], "bench")]
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cases), str(tmp_path)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for i, (setting, run) in enumerate(cases):
        before = json.loads((tmp_path / f"{i}-None.json").read_text())
        after = json.loads((tmp_path / f"{i}-{run}.json").read_text())
        assert after["code"] in (0, None), (setting, out.stderr)
        assert after["seen"] == before["seen"], (setting, run)
