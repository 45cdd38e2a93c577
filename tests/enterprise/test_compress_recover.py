"""``deepseek compress --max-drop`` with recovery: a ``recover`` step distils a pruned GPT from the
original through the ordinary trainer (the tri-modal model's fine-tuning: test_prune_mlp.py), the report lists each pruning with and without
it, a pruning rejected bare can win recovered, the written folder loads with deepseek-core
alone, and recovery that cannot train here is refused in one line."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import pytest
from _compresshelpers import CONFIG, core_only_cli, deepseek_cli, train_tiny
from _inprocess import deepseek_here

QCONFIG = {**CONFIG, "model": {**CONFIG["model"], "d_model": 64, "d_ff": 256}}
BARE, RECOVERED = "prune.ffn ratio=0.9", "prune.ffn ratio=0.9 + recover"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("recover"), QCONFIG)


def _search(trained: Path, out: str, budget: str, *args: str) -> tuple[int, str, dict | None]:
    proc = deepseek_cli("compress", "--checkpoint", "run", "--max-drop", budget, "--out", out, "--latency-runs", "0",
                        "--json", f"{out}.json", *args, cwd=trained)
    report = json.loads((trained / f"{out}.json").read_text()) if proc.returncode == 0 else None
    return proc.returncode, proc.stderr, report


def test_a_pruning_rejected_bare_wins_with_recovery_and_loads_with_core(trained: Path) -> None:
    # (a recipe of recover alone is refused before any work: test_recovery_that_cannot_run_is_one_line)
    recipes = ["--recipe", BARE, "--recipe", RECOVERED, "--recovery-steps", "20"]
    rc, err, wide = _search(trained, "wide", "1000%", *recipes)
    assert rc == 0, err
    rows = {c["recipe"]: c for c in wide["candidates"]}
    assert list(rows) == [BARE, RECOVERED]  # every candidate reported, with and without recovery
    bare, recovered = rows[BARE]["drop"], rows[RECOVERED]["drop"]
    assert bare > 0 and recovered < bare, (bare, recovered)
    # from the measured drops: the bare cut fails it, the recovered one passes (30 steps leave the original
    # undertrained, so 20 more steps can take the recovered cut below the original: a negative drop)
    budget = (bare + max(recovered, 0)) / 2

    rc, err, tight = _search(trained, "tight", f"{budget:.6f}%", *recipes)
    assert rc == 0, err
    rows = {c["recipe"]: c for c in tight["candidates"]}
    assert rows[BARE]["verdict"].startswith(f"rejected: drop +{bare:.2f}% > ")
    assert rows[RECOVERED]["verdict"].startswith("kept") and tight["recipe"] == RECOVERED
    assert rows[RECOVERED]["drop"] == pytest.approx(recovered, abs=1e-6)  # the same 20 steps, the same result

    # compression.json records the chain with the recovery step and its budget
    written = json.loads((trained / "tight" / "compression.json").read_text())
    assert [r["method"] for r in written["record"]] == ["prune.ffn", "recover"]
    step = written["record"][1]["record"]
    assert step["steps"] == 20 and step["teacher"] == str((trained / "run" / "checkpoints" / "step-30").resolve())
    assert step["lr"] == pytest.approx(QCONFIG["train"]["lr"] / 3) and step["alpha"] == 0.5
    assert written["record"][0]["record"]["d_ff"] == [256, 24]

    # an ordinary run folder of the pruned shape, loaded and evaluated by deepseek-core alone
    config = (trained / "tight" / "config.toml").read_text()
    assert 'name = "tiny"' in config and "d_ff = 24" in config and "distill" not in config
    ev = core_only_cli("eval", "--checkpoint", "tight", "--json", cwd=trained)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["val_loss"] == pytest.approx(rows[RECOVERED]["val_loss"], rel=1e-6)
    assert not list((trained / "tight").glob("**/student"))  # the scratch runs stayed out of it


def test_the_built_in_recipes_try_each_pruning_bare_and_recovered(trained: Path) -> None:
    rc, err, report = _search(trained, "builtin", "1000%", "--recovery-steps", "5")
    assert rc == 0, err
    labels = [c["recipe"] for c in report["candidates"]]
    assert labels == [
        "prune.ffn ratio=0.5 + quantize.int8", "prune.ffn ratio=0.5 + recover steps=5 + quantize.int8",
        "prune.ffn ratio=0.25 + quantize.int8", "prune.ffn ratio=0.25 + recover steps=5 + quantize.int8",
        "prune.mlp ratio=0.5 + quantize.int8", "prune.mlp ratio=0.5 + recover steps=5 + quantize.int8",
        "quantize.int8", "quantize.int8-weight",
        "prune.ffn ratio=0.5", "prune.ffn ratio=0.5 + recover steps=5",
        "prune.ffn ratio=0.25", "prune.ffn ratio=0.25 + recover steps=5",
        "prune.heads ratio=0.25", "prune.heads ratio=0.25 + recover steps=5", "prune.mlp ratio=0.5",
        "prune.mlp ratio=0.5 + recover steps=5"]
    rows = {c["recipe"]: c for c in report["candidates"]}
    # the shared prefix 'prune.ffn ratio=0.5 + recover' was trained once for both recipes
    first = rows["prune.ffn ratio=0.5 + recover steps=5 + quantize.int8"]["records"][1]
    assert first == rows["prune.ffn ratio=0.5 + recover steps=5"]["records"][1] and first["record"]["steps"] == 5
    # equal weights: the recovered twin wins when its drop is smaller
    pair = [rows["prune.ffn ratio=0.5 + quantize.int8"], rows["prune.ffn ratio=0.5 + recover steps=5 + quantize.int8"]]
    assert pair[0]["weights_bytes"] == pair[1]["weights_bytes"]
    assert report["recipe"] == min(pair, key=lambda c: c["drop"])["recipe"]


@pytest.fixture(scope="module")
def quantized(trained: Path) -> Path:
    out = deepseek_cli("compress", "--checkpoint", "run", "--method", "quantize.int8", "--out", "q8",
                       "--latency-runs", "0", cwd=trained)
    assert out.returncode == 0, out.stderr
    return trained / "q8"


@pytest.fixture(scope="module")
def no_data(trained: Path) -> Path:
    """A copy of the run whose trainer.json records no [data] table."""
    copy = trained / "nodata"
    if not copy.exists():
        shutil.copytree(trained / "run", copy)
        state_file = copy / "checkpoints" / "step-30" / "trainer.json"
        state = json.loads(state_file.read_text())
        del state["config"]["data"]
        state_file.write_text(json.dumps(state))
        commit_file = state_file.with_name("commit.json")  # its size as committed, so the checkpoint stays whole
        commit = json.loads(commit_file.read_text())
        commit["files"]["trainer.json"] = state_file.stat().st_size
        commit["crc32"]["trainer.json"] = f"{zlib.crc32(state_file.read_bytes()):08x}"
        commit_file.write_text(json.dumps(commit))
    return copy


@pytest.fixture(scope="module")
def exported(trained: Path) -> Path:
    """The run's weights exported, with a config.toml of its [data] beside them (what compress
    evaluates them on)."""
    import tomli_w

    from deepseek.training.checkpoint import export_weights

    folder = trained / "exp"
    if not folder.exists():
        folder.mkdir()
        export_weights(trained / "run", folder / "model.safetensors")
        (folder / "config.toml").write_text(tomli_w.dumps({"data": CONFIG["data"]}))
    return folder


@pytest.mark.parametrize(("checkpoint", "args", "message"), [
    ("run", ["--max-drop", "5%", "--recovery-steps", "-1"], "Invalid value for '--recovery-steps'"),
    ("run", ["--max-drop", "5%", "--recovery-steps", "many"], "Invalid value for '--recovery-steps'"),
    ("run", ["--max-drop", "5%", "--recovery-steps", "1.5"], "Invalid value for '--recovery-steps'"),
    ("run", ["--max-drop", "5%", "--recovery-steps", str(2**70)],  # was each recipe's 'not applicable: train.max_steps'
     f"Invalid value for '--recovery-steps': {2**70} is not in the range 0<=x<={2**63 - 1}"),
    ("run", ["--max-drop", "5%", "--latency-runs", str(10**30)],  # ran until killed
     f"{10**30} is not in the range 0<=x<=1000000"),
    ("run", ["--max-drop", "5%", "--calibration-batches", str(10**30)],  # read batches until killed
     f"{10**30} is not in the range 0<=x<=1024"),
    ("run", ["--method", "prune.ffn", "--recovery-steps", "5"], "--recovery-steps: recovery is a step of the --max-drop"),
    ("run", ["--method", "recover"], "recover: is a step of a --max-drop search"),
    ("run", ["--max-drop", "5%", "--recipe", "prune.ffn + recover steps=-2"],
     "--recipe (recover).steps: must be a whole number >= 0"),
    ("run", ["--max-drop", "5%", "--recipe", "prune.ffn + recover alpha=2"], "--recipe (recover).alpha: must be in [0, 1]"),
    ("run", ["--max-drop", "5%", "--recipe", "prune.ffn + recovr"], "did you mean 'recover'"),
    ("run", ["--max-drop", "5%", "--recovery-steps", "0", "--recipe", "prune.ffn + recover"],
     "its recover step has no step budget with --recovery-steps 0"),
    ("q8", ["--max-drop", "5%", "--recovery-steps", "5"],
     "--checkpoint: q8 holds a model that deepseek compress already quantized (int8); compress the run it came from"),
    ("nodata", ["--max-drop", "5%", "--recovery-steps", "5"],
     "--recovery-steps: recover: the checkpoint's trainer.json records no [data] table"),
    ("nodata", ["--max-drop", "5%", "--recipe", "prune.ffn + recover"], "--recipe: recover: the checkpoint's trainer.json"),
    # exported weights were refused as 'the checkpoint's trainer.json records no [data] table'
    ("exp/model.safetensors", ["--max-drop", "5%", "--recovery-steps", "5"],
     "error: --recovery-steps: recover: exp/model.safetensors holds exported weights, which record no training data, "
     "so the original's training data is unknown; compress the run folder that trained them; or search without "
     "recovery (--recovery-steps 0, no recover step)"),
    # misplaced: these failed only when the search reached them
    ("run", ["--max-drop", "5%", "--recipe", "recover + prune.ffn"],
     "--recipe 'recover + prune.ffn': recover has nothing to recover at the start of a recipe"),
    ("run", ["--max-drop", "5%", "--recipe", "prune.ffn", "--recipe", "prune.ffn + quantize.int8 + recover"],
     "--recipe 'prune.ffn + quantize.int8 + recover': recover follows a quantization, and a quantized model does "
     "not train"),
])
def test_recovery_that_cannot_run_is_one_line(monkeypatch: pytest.MonkeyPatch, trained: Path, quantized: Path,
                                              no_data: Path, exported: Path, checkpoint: str, args: list[str],
                                              message: str) -> None:
    code, err, _ = deepseek_here(monkeypatch, trained, "compress", "--checkpoint", checkpoint, "--out", "never",
                                 "--latency-runs", "0", *args)
    assert code == 2 and message in err, err
    assert len(err.splitlines()) == 1 and not (trained / "never").exists()


def test_a_recover_step_that_diverges_fails_its_recipe_and_the_search_goes_on(trained: Path) -> None:
    """A recover step that diverges (lr=100, train.lr's largest: its gradient norm is NaN at step 2)
    stopped the whole search, exit 1, with the trainer's 'lower train.lr' (an option compress has
    not); now that recipe fails with the recover step's own fix, and the next recipe is measured and
    written."""
    diverging = "prune.ffn ratio=0.5 + recover steps=3 lr=100"
    code, err, report = _search(trained, "diverged", "100%", "--recipe", diverging, "--recipe", "quantize.int8")
    assert code == 0, err
    failed, kept = (c["verdict"] for c in report["candidates"])
    assert failed.startswith("failed: recover: training diverged: the "), failed
    assert failed.endswith("(train.lr=100); give the step a lower learning rate ('recover lr=X')"), failed
    assert kept == "kept: the smallest within budget"
    assert report["recipe"] == "quantize.int8" and (trained / "diverged" / "compression.json").is_file()
