"""The dataset contract (tests/contract/test_datasets_contract.py) resumes data with passes across
the end of one (docs/plugins.md section 11): a dataset whose ``state_dict`` loses the pass count,
or the generator its next pass is shuffled with, resumed the same batches within a pass, so the
contract's resume from the first position passed it, though a run resumed after a pass ended
counted its passes again or drew another order."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from plugin_testing import DistFactory

REPO = Path(__file__).resolve().parents[3]

DATA = """
from dataclasses import dataclass

import torch

from deepseek.data.dataset import Dataset


@dataclass(frozen=True)
class Options:
    rows: int = 12  # three batches of 4 a pass


@dataclass(frozen=True)
class LongOptions:
    rows: int = 4096  # a pass of 1024 batches of 4


class Passes(Dataset):
    Options = Options

    def __init__(self, options, *, batch_size, seed):
        super().__init__(options, batch_size=batch_size, seed=seed)
        self.epoch, self.cursor = 0, 0
        self.order = self.shuffled()

    def shuffled(self):
        return torch.randperm(self.options.rows, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))

    def __next__(self):
        rows = self.order[self.cursor:self.cursor + self.batch_size]
        self.cursor += self.batch_size
        if self.cursor >= self.options.rows:
            self.epoch, self.cursor = self.epoch + 1, 0
            self.order = self.shuffled()
        return {"x": rows.float()[:, None]}

    def epochs_done(self):
        return self.epoch

    def validation_batches(self, limit):
        return [{"x": torch.zeros(self.batch_size, 1)}]

    def state_dict(self):
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state):
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self.order = self.shuffled()


class LongPasses(Passes):
    Options = LongOptions


class ForgetsPasses(Passes):
    def state_dict(self):
        return {"cursor": self.cursor}

    def load_state_dict(self, state):
        self.cursor = int(state["cursor"])


class FreshShuffle(Passes):
    def __init__(self, options, *, batch_size, seed):
        self.generator = torch.Generator().manual_seed(seed)  # one generator for every pass, never saved
        super().__init__(options, batch_size=batch_size, seed=seed)

    def shuffled(self):
        return torch.randperm(self.options.rows, generator=self.generator)

    def load_state_dict(self, state):
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self.generator = torch.Generator().manual_seed(self.seed)  # the first pass's order, whatever the pass
        self.order = self.shuffled()
"""

PLUGIN = """
from deepseek import hookimpl


@hookimpl
def deepseek_register_datasets(register):
    register("acme.passes", "deepseek_acme.data:Passes", description="keeps its pass")
    register("acme.forgets", "deepseek_acme.data:ForgetsPasses", description="loses its pass count")
    register("acme.fresh", "deepseek_acme.data:FreshShuffle", description="loses its shuffle")
    register("acme.long", "deepseek_acme.data:LongPasses", description="a long pass")
"""


def _contract(make_dist: DistFactory, tmp_path: Path, *args: str, **env: str) -> str:
    """The dataset contract's output for distribution deepseek-acme (made once per test); ``args``:
    more pytest options."""
    if not (make_dist.root / "deepseek_acme").exists():
        make_dist("deepseek-acme", {"deepseek_acme.plugin": PLUGIN, "deepseek_acme.data": DATA},
                  entry_points={"acme": "deepseek_acme.plugin"})
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", "--basetemp", str(tmp_path / "pt"),
         str(REPO / "tests" / "contract" / "test_datasets_contract.py"), "-k", "deepseek-acme:", *args],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=make_dist.env(DEEPSEEK_PLUGINS="deepseek-acme", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", **env))
    return proc.stdout + proc.stderr


def test_a_dataset_losing_its_pass_on_load_fails_the_contract(make_dist: DistFactory, tmp_path: Path) -> None:
    out = _contract(make_dist, tmp_path)
    failed = sorted(re.findall(r"^FAILED \S+::(\S+)", out, re.M))
    assert failed == ["test_dataset_resumes_across_a_pass[deepseek-acme:acme.forgets]",
                      "test_dataset_resumes_across_a_pass[deepseek-acme:acme.fresh]"], out[-3000:]
    assert ("acme.forgets: resumed from the position saved just after batch 3 ended pass 1, epochs_done() gives 0, "
            "not 1; keep the pass count in state_dict") in out, out[-3000:]
    assert ("acme.fresh: resumed from the position saved just after batch 3 ended pass 1, batch 1 after it differs "
            "from the uninterrupted run's") in out, out[-3000:]
    assert ("SKIPPED [1] tests/contract/test_datasets_contract.py:") in out and (
        "acme.long: no pass ended within 256 batches of 4 rows at [data] keys {}, so resuming across a pass's end is "
        "not checked; to check it, give Options a key that makes the training set small and run with "
        "--contract-data '{\"acme.long\": {\"KEY\": VALUE}}'") in out, out[-3000:]
    assert re.search(r"2 failed, 5 passed, 1 skipped\b", out), out[-500:]


def test_a_long_pass_is_checked_at_the_keys_the_author_gives(make_dist: DistFactory, tmp_path: Path) -> None:
    out = _contract(make_dist, tmp_path, "--contract-data", '{"acme.long": {"rows": 8}}')
    assert re.search(r"2 failed, 6 passed\b", out), out[-3000:]
    assert "acme.long: " not in out and "SKIPPED" not in out  # checked at rows = 8 (two batches a pass): it resumes
    (tmp_path / "data.json").write_text('{"acme.long": {"rows": 8}}')
    out = _contract(make_dist, tmp_path, "--contract-data", str(tmp_path / "data.json"))  # a file of them
    assert re.search(r"2 failed, 6 passed\b", out) and "acme.long: " not in out, out[-3000:]
    out = _contract(make_dist, tmp_path, DEEPSEEK_CONTRACT_DATA='{"acme.long": {"rows": 8}}')  # the variable too
    assert re.search(r"2 failed, 6 passed\b", out) and "acme.long: " not in out, out[-3000:]


def test_contract_data_that_is_not_an_object_of_keys_is_one_line(make_dist: DistFactory, tmp_path: Path) -> None:
    out = _contract(make_dist, tmp_path, DEEPSEEK_CONTRACT_DATA='{"acme.long": 8}')
    assert ("DEEPSEEK_CONTRACT_DATA: expected an object of dataset name -> [data] keys, e.g. "
            "'{\"acme.rows\": {\"train_rows\": 40}}'") in out, out[-3000:]
    out = _contract(make_dist, tmp_path, "--contract-data", str(tmp_path / "missing.json"))
    assert (f"--contract-data: cannot read {tmp_path / 'missing.json'} (No such file or directory); give a JSON "
            "object of dataset name -> [data] keys, or the path of a JSON file holding one") in out, out[-3000:]
    (tmp_path / "bad.json").write_text("{rows: 8}")
    out = _contract(make_dist, tmp_path, "--contract-data", str(tmp_path / "bad.json"))
    assert f"--contract-data: {tmp_path / 'bad.json'}: not JSON (Expecting property name" in out, out[-3000:]
    assert "Traceback" not in out and re.search(r"\b8 errors?\b", out), out[-3000:]


NEEDS_KEYS = """

@dataclass(frozen=True)
class NeedsOptions:
    rows: int = 0  # no data without the author's keys: a file list, a row count


class NeedsRows(Passes):
    Options = NeedsOptions

    def __init__(self, options, *, batch_size, seed):
        if not options.rows:
            from deepseek.errors import UsageError
            raise UsageError("data.rows: not set; give the rows to read")
        super().__init__(options, batch_size=batch_size, seed=seed)
"""

NEEDS_PLUGIN = """
from deepseek import hookimpl


@hookimpl
def deepseek_register_datasets(register):
    register("needs.rows", "deepseek_needs.data:NeedsRows", description="reads nothing without its keys")
"""


def test_a_dataset_without_usable_defaults_gets_the_authors_keys_in_every_check(
        make_dist: DistFactory, tmp_path: Path) -> None:
    # The dataset contract itself (not only its resume across a pass) makes the dataset with the
    # --contract-data keys of its bare name: it looked its qualified name up, found none, and made it
    # from its defaults, which this dataset refuses.
    make_dist("deepseek-needs", {"deepseek_needs.plugin": NEEDS_PLUGIN, "deepseek_needs.data": DATA + NEEDS_KEYS},
              entry_points={"needs": "deepseek_needs.plugin"})
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", "--basetemp", str(tmp_path / "pt"),
         str(REPO / "tests" / "contract" / "test_datasets_contract.py"), "-k", "deepseek-needs:",
         "--contract-data", '{"needs.rows": {"rows": 8}}'],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=make_dist.env(DEEPSEEK_PLUGINS="deepseek-needs", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu"))
    out = proc.stdout + proc.stderr
    assert re.search(r"\b2 passed\b", out) and "failed" not in out and "data.rows: not set" not in out, out[-3000:]
