"""A symbolic link inside a committed checkpoint folder, at a path its ``commit.json`` lists (a shard
file, the ``model/`` folder of the shards, ``trainer.json``), pointing at a copy of what was there:
same bytes, so the record's sizes and CRC-32 agree. Every reader (``train --resume``, ``checkpoint
info``) refuses it in one line naming the link, where it points and what to do, exit 2, the run
folder as it was and nothing written; passed a run folder, the lookup passes over that checkpoint.
A commit never writes a link: one in a checkpoint being saved is refused before the commit.
The checkpoints are copies of the shared two-rank runs (``pro_runs``: ``fsdp_sharded``, ``ds1``);
every reader runs in this process."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "cli"))
from hostile_cli import Hostile  # noqa: E402

from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.plugins.settings import PluginSettings  # noqa: E402

SHARD = "model/shard-00002-model-00001-of-00001.safetensors"
SINGLE = ["--strategy", "single", "--set", 'strategy.device="cpu"']


def _linked(work: Path, step: Path, name: str) -> Path:
    """``step / name`` moved out of the run folder (to ``work/elsewhere``) and a symbolic link to it
    put in its place; the copy's path."""
    target = work / "elsewhere" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(step / name, target)
    (step / name).symlink_to(target, target_is_directory=target.is_dir())
    return target


@pytest.mark.parametrize(("run", "step", "name", "what"), [
    ("fsdp_sharded", "step-4", SHARD, "file"),  # the shard of rank 1
    ("fsdp_sharded", "step-4", "model", "folder"),  # every model shard, through the folder
    ("ds1", "step-5", "trainer.json", "file"),  # deepspeed's full layout
], ids=["shard file", "shard folder", "trainer.json"])
def test_a_link_in_a_committed_checkpoint_is_refused(pro_runs: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     run: str, step: str, name: str, what: str) -> None:
    """Each resumed (exit 0) from the file the link points to, wherever it is: its size and checksum
    were taken through the link."""
    shutil.copytree(pro_runs["dir"] / run, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    folder = Path("run", "checkpoints", step)
    assert not [p for p in (tmp_path / "run").rglob("*") if p.is_symlink()]  # the writers make none
    target = _linked(tmp_path, tmp_path / folder, name)
    hostile = Hostile(PluginHost(PluginSettings(autoload=False, allow=frozenset({"deepseek-pro"}))), tmp_path,
                      [tmp_path / "run", tmp_path / "elsewhere"])
    words = [f"error: {folder}: the checkpoint is incomplete ({name} is a symbolic link to {target}, not the {what} "
             f"its commit wrote; replace the link with a copy of the {what} it points to)"]
    hostile.refused("train", "--resume", str(folder), *SINGLE, "--max-steps", "6", "--run-dir", "new", "--quiet",
                    expect=words)
    hostile.refused("checkpoint", "info", str(folder), expect=words)
    assert not (tmp_path / "new").exists()


def test_a_run_folder_passes_over_a_checkpoint_holding_a_link(pro_runs: dict, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The run folder resolves to its newest checkpoint without a link (step 4, not step 5)."""
    import json

    shutil.copytree(pro_runs["dir"] / "fsdp_sharded", tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    _linked(tmp_path, tmp_path / "run" / "checkpoints" / "step-5", SHARD)
    hostile = Hostile(PluginHost(PluginSettings(autoload=False, allow=frozenset({"deepseek-pro"}))), tmp_path)
    done = hostile.run("checkpoint", "info", "run", "--json")
    assert done.code == 0, done.stderr
    assert f"step-5: the checkpoint is incomplete ({SHARD} is a symbolic link to " in done.stderr, done.stderr
    assert Path(json.loads(done.stdout)["path"]).name == "step-4"


def test_a_commit_refuses_a_link_in_the_checkpoint_it_commits(tmp_path: Path) -> None:
    """A link a writer put into the folder being saved (none of core's or deepseek-pro's does: a
    plugin strategy's ``save_checkpoint`` might) was recorded, its target hashed, and committed."""
    from deepseek.errors import CheckpointError
    from deepseek.training.checkpoint_dirs import commit_checkpoint, new_temp_dir

    root = tmp_path / "run" / "checkpoints"
    root.mkdir(parents=True)
    tmp = new_temp_dir(root, 3)
    (tmp / "trainer.json").write_text("{}")
    (tmp / "elsewhere.bin").write_bytes(b"x" * 8)
    (tmp / "model.safetensors").symlink_to(tmp / "elsewhere.bin")
    with pytest.raises(CheckpointError, match=rf"^{tmp / 'model.safetensors'}: is a symbolic link \(to "
                                              rf"{tmp / 'elsewhere.bin'}\), written into a checkpoint being saved; "):
        commit_checkpoint(tmp, root / "step-3")
    assert sorted(p.name for p in root.iterdir()) == [tmp.name]  # nothing committed, no latest
