"""``deepseek export`` of a model over a batch of inputs (capability ``serving``): the tri-modal
classifier is traced on its run's first validation rows, with the rows dynamic, and the ``.pt2``
file, loaded with torch alone, gives the eager model's fused logits for another number of rows,
a missing modality included; its record lists the inputs by name. ``deepseek optimize`` optimizes
the classifier's ``serving_forward`` on the same rows. A model that offers neither token ids nor
``serving`` is one line (tests/core/optimize/test_serving_export_core.py). The commands run in
this process (``deepseek_run``): what is tested is their output, not a process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _compresshelpers import train_tiny
from _inprocess import deepseek_run
from test_quantize import MULTIMODAL

from deepseek.graph.export import load_exported, read_metadata
from deepseek.training.inference import load_trained
from deepseek_enterprise.digits.dataset import DigitsOptions, MultimodalDigits


@pytest.fixture(scope="module")
def mm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("mm_serving"), MULTIMODAL)


def test_export_traces_the_classifier_and_the_file_predicts_like_the_model(mm_run: Path) -> None:
    out = deepseek_run("export", "--checkpoint", "run", "--out", "mm.pt2", "--batch", "4", cwd=mm_run)
    assert out.returncode == 0, out.stderr
    assert "wrote mm.pt2 (pt2" in out.stdout
    meta = read_metadata(mm_run / "mm.pt2")
    names = [i["name"] for i in meta["serving"]["inputs"]]
    assert names[:2] == ["vision.inputs", "audio.inputs"] and "present.text" in names and "label" not in names
    assert all(i["shape"][0] == 4 for i in meta["serving"]["inputs"])
    assert meta["model"]["name"] == "multimodal.classifier"

    model, _, _ = load_trained(mm_run / "run")
    data = MultimodalDigits(DigitsOptions(task="redundant", eval_size=7), batch_size=8, seed=0)
    batch = data.split_batches("test")[0]  # 7 rows, from the test split, not the 4 traced
    batch["present"]["audio"][1] = False  # a row without its speech
    batch["present"]["vision"][2] = False
    inputs = model.serving_inputs(batch)
    exported = load_exported(mm_run / "mm.pt2")
    with torch.no_grad():
        expected, got = model.serving_forward(inputs), exported(inputs)
    assert got.shape == (7, 10)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), (got - expected).abs().max()
    # the missing modality changes the prediction's input: the file does not ignore present
    batch["present"]["audio"][1] = True
    with torch.no_grad():
        assert not torch.allclose(exported(model.serving_inputs(batch))[1], got[1])


def test_optimize_optimizes_the_classifier_on_its_runs_serving_inputs(mm_run: Path) -> None:
    """Was refused: optimize traced every model on token ids, which the classifier does not take."""
    out = deepseek_run("optimize", "--checkpoint", "run", "--batch", "4", "--passes", "none", "--json", cwd=mm_run)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["model"]["name"] == "multimodal.classifier" and plan["pipeline"] == ["eager"]
    assert plan["max_rel_error"] == 0.0 and plan["tolerance"] > 0
    assert "('vision', ('M', (('inputs', ('T', (4, " in plan["signature"], plan["signature"]  # shapes, not values
    out = deepseek_run("optimize", "--checkpoint", "run", "--seq", "16", cwd=mm_run)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: --seq 16: model 'multimodal.classifier' is optimized on its run's own inputs (capability 'serving'), "
        "whose shapes its data gives; leave --seq out (--batch sets the rows)"], out.stderr
    out = deepseek_run("optimize", "--checkpoint", "run", "--batch", "20", cwd=mm_run)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: --batch 20: the run's first validation batch, which model 'multimodal.classifier' is optimized on, "
        "holds 8 rows (data.batch_size = 8); give --batch 8 or less"], out.stderr


def test_a_static_export_takes_the_traced_rows_only(mm_run: Path) -> None:
    out = deepseek_run("export", "--checkpoint", "run", "--out", "static.pt2", "--batch", "3", "--static",
                       cwd=mm_run)
    assert out.returncode == 0, out.stderr
    meta = read_metadata(mm_run / "static.pt2")
    assert meta["serving"]["rows"] == "fixed" and meta["dynamic"] is None
    model, _, _ = load_trained(mm_run / "run")
    batch = MultimodalDigits(DigitsOptions(task="redundant", eval_size=3), batch_size=8, seed=0).split_batches("val")[0]
    with torch.no_grad():
        got = load_exported(mm_run / "static.pt2")(model.serving_inputs(batch))
        assert torch.allclose(got, model.serving_forward(model.serving_inputs(batch)), atol=1e-5, rtol=1e-5)


def test_a_static_batch_over_the_validation_batch_is_one_line(mm_run: Path) -> None:
    """--static --batch 20 asks for a file of 20 rows; the run's validation batches hold 8 (it wrote 8)."""
    out = deepseek_run("export", "--checkpoint", "run", "--out", "new/s20.pt2", "--batch", "20", "--static",
                       cwd=mm_run)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: --batch 20: the run's first validation batch holds 8 rows (data.batch_size = 8), and a --static "
        "export fixes the rows to those traced; give --batch 8 or less, or leave out --static (the rows stay dynamic)"]
    assert not (mm_run / "new").exists()
    out = deepseek_run("export", "--checkpoint", "run", "--out", "d20.pt2", "--batch", "20", cwd=mm_run)
    assert out.returncode == 0, out.stderr  # dynamic rows: traced on the 8 there are
    assert [i["shape"][0] for i in read_metadata(mm_run / "d20.pt2")["serving"]["inputs"]] == [8] * 8


def test_a_run_of_one_row_batches_exports_static_only(tmp_path: Path) -> None:
    """data.batch_size = 1: --batch cannot give 2 rows (the message said 'give a larger batch'), and the
    refusal left --out's new folder behind; --static without --batch traces the one row."""
    config = {**MULTIMODAL, "data": {**MULTIMODAL["data"], "batch_size": 1},
              "train": {**MULTIMODAL["train"], "max_steps": 2}}
    train_tiny(tmp_path, config)
    out = deepseek_run("export", "--checkpoint", "run", "--out", "new/m.pt2", "--batch", "4", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: export: the run's first validation batch holds 1 row (data.batch_size = 1); a dynamic export traces "
        "at least 2 rows (torch.export fixes a dimension of size 1): export --static, which fixes the rows to 1"]
    assert not (tmp_path / "new").exists()
    out = deepseek_run("export", "--checkpoint", "run", "--out", "one.pt2", "--static", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    meta = read_metadata(tmp_path / "one.pt2")
    assert meta["serving"]["rows"] == "fixed" and {i["shape"][0] for i in meta["serving"]["inputs"]} == {1}
