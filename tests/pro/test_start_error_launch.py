"""An error of the start-up work rank 0 alone does in the run folder (``RunFolder.open``: the
leftovers of a killed save, ``metrics.jsonl``, the copies, ``config.toml``, the trackers), and of
the tidying rank 0 alone does when a resumed run has nothing left to train (``run_state.restore``),
under ``deepseek launch -n 2``: every rank ends with rank 0's line and exit code, where the other ranks
failed at their next collective ("lost its connection to another rank") or waited for rank 0."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _prohelpers import deepseek_here

CONFIG = ('[model]\nname = "tiny"\nd_model = 16\nn_heads = 2\nn_layers = 1\nmax_seq_len = 16\n'
          '[data]\nbatch_size = 2\nseq_len = 16\neval_batches = 1\n[train]\neval_interval = 0\nmax_steps = 4\n'
          '[checkpoint]\ninterval = 2\n[strategy]\ndevice = "cpu"\n')

# Loaded by the launched processes (PYTHONPATH): the rename of a moved-aside ``.replaced-`` folder
# refused as the kernel refuses it for a mount point (the tests run as root, whom permissions do
# not stop), as tests/core/training/test_checkpoint_leftovers.py refuses it in its own process.
REFUSED_RENAME = '''
import errno, os
real = os.replace
def replace(src, dst, *args, **kwargs):
    if ".replaced-" in os.path.basename(os.fspath(src)):
        raise OSError(errno.EBUSY, "Device or resource busy", os.fspath(src))
    real(src, dst, *args, **kwargs)
os.replace = replace
'''


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but the run's lock file (which names its last holder)."""
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != ".lock"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 4-step run (``single``, in this process) with checkpoints at steps 2 and 4, trained once for the module."""
    work = tmp_path_factory.mktemp("finished")
    (work / "c.toml").write_text(CONFIG)
    made = deepseek_here("train", "c.toml", "--run-dir", "r", "--quiet", cwd=work)
    assert made.returncode == 0, made.stderr
    return work / "r"


@pytest.mark.parametrize("more", [["--max-steps", "6"], []], ids=["resumed", "finished"])
def test_a_moved_aside_step_rank_0_cannot_rename_back_is_the_same_line_on_every_rank(
        finished_run: Path, tmp_path: Path, more: list[str]) -> None:
    """Rank 0 renames step 4's moved-aside checkpoint back at the start, and the rename fails:
    rank 0 said the one line (exit 2) and rank 1 "lost its connection to another rank" at its next
    collective; resuming the finished run (nothing to train: rank 0 alone tidies its folder), rank 1
    said "the run is complete". Now both ranks say rank 0's line, exit 2, and nothing in the folder
    changed."""
    shutil.copytree(finished_run, tmp_path / "r")
    root = tmp_path / "r" / "checkpoints"
    os.rename(root / "step-4", root / "step-4.replaced-ab")  # a re-save of step 4 killed between its renames
    (root / "step-4.tmp-cd").mkdir()  # and its new copy, not renamed in
    before = _tree(tmp_path / "r")
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(REFUSED_RENAME)
    path = os.pathsep.join([str(inject), *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = deepseek_here("launch", "-n", "2", "--log-dir", "logs", "--", "train", "--resume", "r", *more,
                         "--strategy", "ddp", "--quiet", cwd=tmp_path, env={"PYTHONPATH": path, "DS_ACCELERATOR": "cpu"})
    line = (f"error: {root / 'step-4.replaced-ab'}: is step 4's checkpoint (moved aside by a save of the same step "
            f"that was cut short) and could not be renamed back to step-4 (Device or resource busy); nothing was "
            f"deleted: rename it to {root / 'step-4'} yourself, then run the command again")
    assert (proc.returncode, proc.stderr.splitlines()) == (2, [f"[rank0] {line}"]), proc.stderr[-3000:]
    # what each rank said last, from its own log (the console shows rank 0's alone)
    said = {log.parent.name: log.read_text().splitlines()[-1:] for log in (tmp_path / "logs").rglob("stderr.log")}
    assert said == {"0": [line], "1": [line]}, said
    assert _tree(tmp_path / "r") == before and (root / "step-4.tmp-cd").is_dir()
