"""Checkpoint folders damaged or placed by hand rather than by a crash: a missing file, a step
folder that is a link, leftovers, a lost or malformed commit record, a flipped bit found by the
commit record's CRC-32, a copy of another step; and which checkpoint a finished or continued run
resumes from and prunes. (Kills mid-save are in test_checkpoint_crash.py.)"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from _checkpoint_run import RUN

from deepseek.errors import CheckpointError, RunComplete, UsageError
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint_dirs import CheckpointWarning
from deepseek.training.trainer import Trainer


def test_run_continued_from_an_earlier_checkpoint_resumes_from_what_it_saved(tiny_config: Any, tmp_path: Path) -> None:
    """Newest means committed last, not the highest step: after going back to step 2 in the same
    folder and saving step 3, resuming takes step 3, not step 6 of the abandoned continuation."""
    keep = {**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}
    run = tmp_path / "run"
    Trainer(tiny_config(**keep), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    back = {**keep, "train": {**RUN["train"], "max_steps": 3}, "checkpoint": {"interval": 0, "keep_last": 5}}
    Trainer(tiny_config(**back), resume=root / "step-2", quiet=True).fit()
    assert ckpt.resolve_checkpoint(run) == root / "step-3"
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2, 4, 6, 3]  # commit order


def test_incomplete_checkpoint_folder_is_named_and_skipped(tiny_config: Any, tmp_path: Path) -> None:
    """A folder under a final name with a file missing (e.g. deleted by hand) is never resumed
    from; passed explicitly, the error names the file and the newest complete checkpoint."""
    run = tmp_path / "run"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    (root / "step-6" / ckpt.OPTIMIZER_FILE).unlink()
    with pytest.warns(CheckpointWarning) as caught:  # passed over, and said so
        assert ckpt.resolve_checkpoint(run) == root / "step-4"
    assert [str(w.message) for w in caught] == [
        f"{root / 'step-6'}: the checkpoint is incomplete (optimizer.safetensors missing); using step-4, the "
        "newest complete one"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # nothing newer passed over: nothing to say
        assert ckpt.resolve_checkpoint(root / "step-4") == root / "step-4"
    with pytest.raises(CheckpointError, match=r"step-6: the checkpoint is incomplete \(optimizer.safetensors "
                                                    r"missing\); use .*step-4"):
        ckpt.resolve_checkpoint(root / "step-6")


def test_a_step_folder_that_is_a_link_is_neither_resumed_nor_pruned(tiny_config: Any, tmp_path: Path) -> None:
    """A step-N link to another run's checkpoint was taken for the newest checkpoint, and pruning
    would have deleted what it points to."""
    other = tmp_path / "other"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}), run_dir=other, quiet=True).fit()
    run = tmp_path / "run"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 1}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    (root / "step-99").symlink_to(other / "checkpoints" / "step-2", target_is_directory=True)
    with pytest.warns(CheckpointWarning, match=r"step-99: the checkpoint is incomplete \(a symbolic link, not a "
                                               r"folder the run wrote\)"):
        assert ckpt.resolve_checkpoint(run) == root / "step-6"
    before = sorted(p.name for p in (other / "checkpoints" / "step-2").iterdir())
    ckpt.prune_checkpoints(root, keep_last=1)
    assert (root / "step-99").is_symlink()
    assert sorted(p.name for p in (other / "checkpoints" / "step-2").iterdir()) == before


def test_remove_stale_deletes_every_kind_of_leftover(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for name in ("step-4.tmp-abc", "step-2.trash-x", "step-3.old-y", "step-5"):
        (root / name).mkdir(parents=True)
    (root / ".latest.k2j3.tmp").write_text("step-4\n")
    (root / "step-5" / ckpt.TRAINER_FILE).write_text("{}")
    removed = sorted(p.name for p in ckpt.remove_stale(root))
    assert removed == [".latest.k2j3.tmp", "step-2.trash-x", "step-3.old-y", "step-4.tmp-abc"]
    assert sorted(p.name for p in root.iterdir()) == ["step-5"]


def test_a_checkpoint_that_lost_its_commit_record_is_passed_over_and_named(tiny_config: Any, tmp_path: Path) -> None:
    """Beside checkpoints with commit records, one without is incomplete: it was taken for a
    checkpoint of a run from before commit records, ordered first, passed over silently and then
    replaced."""
    run = tmp_path / "run"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    (root / "step-6" / "commit.json").unlink()
    with pytest.warns(CheckpointWarning, match=r"step-6: the checkpoint is incomplete \(commit\.json missing\); "
                                               r"using step-4"):
        assert ckpt.resolve_checkpoint(run) == root / "step-4"


def _flip_byte(path: Path) -> None:
    """One bit of ``path`` flipped in the middle, its size kept (what a failing disk does)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_file_changed_after_its_commit_is_found_by_its_checksum(tiny_config: Any, tmp_path: Path) -> None:
    """A flipped bit in a committed file (its size kept) was taken as it was: weights off by a
    bit trained on. The commit record's CRC-32 of each file finds it when the checkpoint is
    taken: a run folder passes over it to the newest undamaged one, with a warning; a checkpoint
    named directly is refused naming the file."""
    run = tmp_path / "run"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    record = json.loads((root / "step-6" / "commit.json").read_text())
    assert sorted(record["crc32"]) == sorted(record["files"]) and "model.safetensors" in record["crc32"]
    assert ckpt.resolve_checkpoint(run) == root / "step-6"
    _flip_byte(root / "step-6" / "model.safetensors")
    with pytest.warns(CheckpointWarning, match=r"step-6: the checkpoint is damaged \(model\.safetensors changed after "
                                               r"it was committed: its CRC-32 is [0-9a-f]{8}, the commit recorded "
                                               r"[0-9a-f]{8}\); using step-4"):
        assert ckpt.resolve_checkpoint(run) == root / "step-4"
    with pytest.raises(CheckpointError, match=r"step-6: the checkpoint is damaged \(model\.safetensors changed after "
                                              r"it was committed.*\); use .*step-4 or start a fresh run"):
        ckpt.resolve_checkpoint(root / "step-6")
    for step in (2, 4):
        _flip_byte(root / f"step-{step}" / "optimizer.safetensors")
    with pytest.raises(CheckpointError, match=r"no complete checkpoint to load: step-6 is damaged \(.*\), and 2 "
                                              r"earlier one\(s\) are damaged or incomplete too; use a copy of the "
                                              r"run made before, or train the model again$"):
        ckpt.resolve_checkpoint(run)  # for reading (eval, export): no option of train's to name
    with pytest.raises(CheckpointError, match=r"too; use a copy of the run made before, or start a fresh run in "
                                              r"another folder \(run_dir=\)$"):
        ckpt.resolve_checkpoint(run, resuming=True)
    # A fresh run in the folder is refused without sending the user back to resume (from Python: run_dir=)
    with pytest.raises(UsageError, match=r"already holds a run, and it cannot be continued \(.*\); pick another "
                                         r"run_dir= / logging\.name for a fresh run"):
        Trainer(tiny_config(**RUN), run_dir=run, quiet=True).fit()


@pytest.mark.parametrize(("record", "why"), [
    # Python's own words were the reason: "cannot convert dictionary update sequence element #0 to
    # a sequence", "list indices must be integers or slices, not str", "'seq'"
    ({"seq": 2, "files": [1]}, "not a commit record (a JSON object with a files table and a crc32 table)"),
    ([1], "not a commit record (a JSON object with a files table and a crc32 table)"),
    ({"files": {"trainer.json": 5}}, "seq None is not a commit count"),
    ({"seq": 2, "files": {"trainer.json": 5}, "crc32": "x"},
     "not a commit record (a JSON object with a files table and a crc32 table)"),
    # a listed file without its checksum went unchecked (a record without crc32 at all is an older run's)
    ({"seq": 2, "files": {"trainer.json": 5, "model.safetensors": 9}, "crc32": {"trainer.json": "0000abcd"}},
     "crc32 gives no checksum of model.safetensors, which files lists"),
])
def test_a_commit_record_of_another_shape_is_named_in_words(tiny_config: Any, tmp_path: Path, record: Any,
                                                             why: str) -> None:
    run = tmp_path / "run"
    Trainer(tiny_config(**{**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    (root / "step-6" / "commit.json").write_text(json.dumps(record))
    with pytest.warns(CheckpointWarning, match=re.escape(f"step-6: the checkpoint is incomplete (commit.json unreadable "
                                                         f"({why})); using step-4")):
        assert ckpt.resolve_checkpoint(run) == root / "step-4"


def test_a_checkpoint_of_another_step_put_there_by_hand_is_kept_not_replaced(tiny_config: Any, tmp_path: Path) -> None:
    """A copy of step 2 placed as step-6 was passed over on resume and deleted when the run saved
    its own step 6, without a word; with a commit record newer than the run's it was even resumed
    from (the run went back to step 2)."""
    import shutil

    keep = {**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}
    run = tmp_path / "run"
    Trainer(tiny_config(**{**keep, "train": {**RUN["train"], "max_steps": 4}}), run_dir=run, quiet=True).fit()
    root = run / "checkpoints"
    shutil.copytree(root / "step-2", root / "step-6")
    record = json.loads((root / "step-6" / "commit.json").read_text())
    (root / "step-6" / "commit.json").write_text(json.dumps({**record, "seq": 99}))
    placed = {p.name: p.read_bytes() for p in (root / "step-6").iterdir()}
    assert [step for step, _ in ckpt.list_checkpoints(root)] == [2, 4]  # neither resumed from nor pruned
    with pytest.warns(CheckpointWarning) as said:
        Trainer(tiny_config(**keep), resume=run, quiet=True).fit()
    lines = [str(w.message) for w in said]
    assert any(re.search(r"step-6: the checkpoint is not this run's \(put there by hand: its trainer.json records "
                         r"step 2\); using step-4, the newest complete one", line) for line in lines), lines
    assert any(re.search(r"step-6: held a checkpoint of another step .* moved to ", line) for line in lines), lines
    (kept,) = root.glob("step-6.foreign-*/step-6")
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == placed
    assert json.loads((root / "step-6" / ckpt.TRAINER_FILE).read_text())["step"] == 6


def test_a_finished_run_resumed_from_an_older_checkpoint_prunes_nothing(tiny_config: Any, tmp_path: Path) -> None:
    """Only a resume of the run's newest checkpoint prunes: the one resumed from stays whatever
    its place in the commit order (here it would be the first to go)."""
    keep = {**RUN, "checkpoint": {"interval": 2, "keep_last": 5}}
    run = tmp_path / "run"
    root = run / "checkpoints"
    Trainer(tiny_config(**keep), run_dir=run, quiet=True).fit()
    with pytest.raises(RunComplete, match="the run is complete"):
        Trainer(tiny_config(**{**RUN, "train": {**RUN["train"], "max_steps": 4}}), resume=root / "step-4",
                quiet=True).fit()
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2, 4, 6]
