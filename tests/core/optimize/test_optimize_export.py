"""Export round trips (.pt2 with torch alone, ONNX checked by onnx / run by onnxruntime) and the
``deepseek optimize`` / ``deepseek export`` commands on a trained-model weights file."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import deepseek
from deepseek.cli.main import cli
from deepseek.errors import UsageError
from deepseek.graph.export import (
    export_model,
    load_exported,
    read_metadata,
    staged_onnx,
    token_dims,
)

MODEL_CFG = {"name": "tiny", "n_layers": 2, "d_model": 64}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return deepseek.create_model("tiny", n_layers=2, d_model=64).eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory, model: torch.nn.Module) -> Path:
    """A self-describing weights file, as ``export_weights`` writes it for a trained run."""
    from deepseek.training.checkpoint import save_model_state

    path = tmp_path_factory.mktemp("run") / "weights.safetensors"
    save_model_state(path, model.state_dict(), {"format": "deepseek-weights", "model": json.dumps(MODEL_CFG)})
    return path


def test_pt2_round_trip_with_dynamic_batch_and_seq(tmp_path: Path, model: torch.nn.Module) -> None:
    x = torch.randint(0, 256, (2, 16))
    path = export_model(model, (x,), tmp_path / "m.pt2", dynamic=[token_dims(128)], metadata={"model": MODEL_CFG})
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt2"], "no temp file left behind"
    loaded = load_exported(path)
    for shape in ((2, 16), (1, 5), (3, 40)):
        y = torch.randint(0, 256, shape)
        with torch.no_grad():
            torch.testing.assert_close(loaded(y), model(y), rtol=1e-5, atol=1e-5)
    meta = read_metadata(path)
    assert meta["model"] == MODEL_CFG and meta["inputs"] == [{"shape": [2, 16], "dtype": "torch.int64"}]


def test_pt2_loads_and_runs_without_optional_packages(tmp_path: Path, model: torch.nn.Module) -> None:
    x = torch.randint(0, 256, (2, 8))
    path = export_model(model, (x,), tmp_path / "m.pt2")
    with torch.no_grad():
        expected = model(x)
    torch.save(x, tmp_path / "x.pt")
    torch.save(expected, tmp_path / "y.pt")
    blocked = ["onnx", "onnxscript", "onnxruntime", "deepseek_pro", "deepseek_enterprise", "deepspeed", "timm", "torchaudio"]
    script = f"""
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # as if not installed: import fails, find_spec() is None
import torch
from deepseek.graph.export import load_exported
f = load_exported({str(path)!r})
x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)
y = torch.load({str(tmp_path / 'y.pt')!r}, weights_only=True)
torch.testing.assert_close(f(x), y, rtol=1e-5, atol=1e-5)
print('ok')
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def test_onnx_export_is_a_valid_model(tmp_path: Path, model: torch.nn.Module) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    x = torch.randint(0, 256, (2, 16))
    path = export_model(model, (x,), tmp_path / "m.onnx", fmt="onnx", dynamic=[token_dims(128)])
    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path)).graph
    assert len(graph.input) == 1 and len(graph.output) == 1
    if importlib.util.find_spec("onnxruntime") is not None:
        y = torch.randint(0, 256, (3, 20))
        with torch.no_grad():
            torch.testing.assert_close(load_exported(path)(y), model(y), rtol=1e-4, atol=1e-4)


def test_onnx_weights_in_a_data_file_land_beside_the_model_under_its_name(tmp_path: Path) -> None:
    # ONNX keeps weights over 2 GB (a 1.3b model) in NAME.data, named after the file it was saved
    # as: a model saved under a temporary name and renamed pointed at a hidden partial file, which
    # the next export to the same place deleted as a killed writer's leftovers.
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU()).eval()  # weights past ONNX's inline size
    x = torch.randn(2, 64)
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    out = tmp_path / "model.onnx"
    with staged_onnx(out) as dest:
        program.save(str(dest), external_data=True)  # what ONNX does by itself past 2 GB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]
    locations = {e.value for t in onnx.load(str(out), load_external_data=False).graph.initializer
                 for e in t.external_data if e.key == "location"}
    assert locations == {"model.onnx.data"}
    export_model(model, (x,), tmp_path / "model.onnx", fmt="onnx")  # a later export to the same place
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        session = ort.InferenceSession(str(out))
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        torch.testing.assert_close(torch.from_numpy(got), model(x).detach(), rtol=1e-5, atol=1e-5)


def test_onnx_without_its_packages_names_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              model: torch.nn.Module) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(UsageError, match=r"onnxscript.*pip install 'deepseek-core\[onnx\]'"):
        export_model(model, (torch.randint(0, 256, (2, 4)),), tmp_path / "m.onnx", fmt="onnx")
    assert not list(tmp_path.iterdir())


def test_cli_export_pt2(weights: Path, tmp_path: Path, model: torch.nn.Module) -> None:
    out = tmp_path / "deploy" / "gpt.pt2"
    result = CliRunner().invoke(cli, ["export", "--checkpoint", str(weights), "--format", "pt2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.is_file()
    y = torch.randint(0, 256, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(load_exported(out)(y), model(y), rtol=1e-5, atol=1e-5)
    assert read_metadata(out)["model"]["d_model"] == 64


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_cli_export_at_batch_1_is_traced_at_2_says_so_and_runs_batch_1(weights: Path, tmp_path: Path,
                                                                       model: torch.nn.Module, fmt: str) -> None:
    """``--batch 1 --seq 1`` without ``--static``: torch.export would fix a dimension traced at 1,
    so the example is traced at 2 (which was silent); the file still takes batch 1 and seq 1 (and
    more), and one note line says so. ONNX runs where its packages are (tests-ecosystem)."""
    if fmt == "onnx":
        for package in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(package)
    out = tmp_path / f"m.{fmt}"
    result = CliRunner().invoke(cli, ["export", "--checkpoint", str(weights), "--format", fmt, "--out", str(out),
                                      "--batch", "1", "--seq", "1"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "note: --batch 1 and --seq 1 traced as 2 (torch.export fixes a dimension traced at 1); the file takes any "
        "batch and seq from 1 (--static fixes the shape instead)"]
    if fmt == "pt2":  # an ONNX file carries no record
        assert read_metadata(out)["inputs"] == [{"shape": [2, 2], "dtype": "torch.int64"}]
    exported = load_exported(out)
    for shape in ((1, 1), (1, 9), (3, 4)):
        y = torch.randint(0, 256, shape)
        with torch.no_grad():
            torch.testing.assert_close(torch.as_tensor(exported(y)), model(y), rtol=1e-5, atol=1e-5)
    again = CliRunner().invoke(cli, ["export", "--checkpoint", str(weights), "--format", fmt, "--out", str(out)])
    assert again.exit_code == 0 and "note:" not in again.output  # the default batch 2: nothing raised


def test_cli_optimize_reports_each_pass_as_json(weights: Path) -> None:
    args = ["optimize", "--checkpoint", str(weights), "--seq", "16", "--json",
            "--passes", "drop-dropout,fuse-linear,merge-siblings,attention-sdpa,const-fold"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    passes = {p["name"]: p for p in data["passes"]}
    assert list(passes) == ["drop-dropout", "fuse-linear", "merge-siblings", "attention-sdpa", "const-fold"]
    assert passes["drop-dropout"]["status"] == "applied" and passes["drop-dropout"]["changes"] == ["removed 5 dropout"]
    assert passes["fuse-linear"]["status"] == "no-op"
    assert data["max_rel_error"] <= 1e-4 and data["model"]["d_model"] == 64


def test_cli_bad_checkpoint_is_one_line_exit_2(tmp_path: Path) -> None:
    from deepseek.cli.main import main

    done = subprocess.run([sys.executable, "-m", "deepseek", "export", "--checkpoint", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "error:" in done.stderr
    assert main is not None


class Diverging(torch.nn.Module):
    """A model no exporter takes: its control flow depends on the input's values."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        return y if y.sum() > 0 else -y


def test_a_pt2_export_failing_mid_write_leaves_the_earlier_file_whole_and_nothing_else(
        tmp_path: Path, model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    out = tmp_path / "model.pt2"
    x = torch.randint(0, 256, (2, 16))
    export_model(model, (x,), out)
    before = out.read_bytes()
    real = torch.export.save

    def disk_full(program, path, **kwargs):  # the real writer runs, then the disk fills half-way
        real(program, path, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:1000])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.export, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_model(model, (x,), out)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pt2"]


def test_an_onnx_export_the_exporter_refuses_leaves_the_earlier_file_whole_and_nothing_else(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    out = tmp_path / "model.onnx"
    export_model(torch.nn.Linear(8, 8).eval(), (torch.randn(2, 8),), out, fmt="onnx")
    before = out.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 (the exporter's own error, whichever it raises)
        export_model(Diverging().eval(), (torch.randn(2, 8),), out, fmt="onnx")
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_onnx_stopped_between_its_data_and_model_renames_leaves_no_model_reading_other_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data file is moved beside the output before the model file: an earlier export's model
    file left there read the new export's weights at its own offsets (same shapes: no error, other
    outputs). The old model file is now removed first; the next export puts both in place."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from deepseek import durable

    def save(model: torch.nn.Module) -> None:
        program = torch.onnx.export(model.eval(), (torch.randn(2, 64),), dynamo=True, verbose=False)
        with staged_onnx(out) as dest:
            program.save(str(dest), external_data=True)

    out = tmp_path / "model.onnx"
    torch.manual_seed(0)
    save(torch.nn.Linear(64, 64))
    real = durable.replace

    def stopped(tmp, target):  # the process stops as it renames the model file
        if Path(target) == out:
            raise KeyboardInterrupt
        real(tmp, target)

    monkeypatch.setattr(durable, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        save(torch.nn.Linear(64, 64))
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx.data"]
    monkeypatch.setattr(durable, "replace", real)
    torch.manual_seed(1)
    again = torch.nn.Linear(64, 64)
    save(again)
    stored = [torch.from_numpy(onnx.numpy_helper.to_array(t, base_dir=str(tmp_path)).copy())
              for t in onnx.load(str(out)).graph.initializer]
    assert any(torch.equal(w, again.bias.detach()) for w in stored)  # the model reads the new export's data


def test_the_default_hf_folder_beside_weights_is_never_a_folder_export_did_not_write(
        weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``deepseek export W/weights.safetensors --format hf`` writes ``W/hf`` by default: an empty
    folder of the user's there was removed and replaced by the export (its mode with it), and a
    link there named ``hf`` was an internal error. Export writes its folder whole, so one there
    already is not its own: refused in one line, exit 2, the folder (or link) left as it was."""
    import os
    import shutil

    from deepseek.cli.main import main

    home = tmp_path / "w"
    home.mkdir()
    shutil.copyfile(weights, home / "weights.safetensors")
    mine = home / "hf"
    mine.mkdir(mode=0o750)
    inode = mine.stat().st_ino
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--checkpoint", str(home / "weights.safetensors"), "--format", "hf"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --out: not given, so the folder is {mine}, which already exists (an earlier export's, or a folder "
        f"of yours) and an export replaces no folder; give --out a new folder, or remove {mine}"]
    assert mine.stat().st_ino == inode and list(mine.iterdir()) == [] and sorted(os.listdir(home)) == [
        "hf", "weights.safetensors"]
    mine.rmdir()
    (tmp_path / "elsewhere").mkdir()
    mine.symlink_to(tmp_path / "elsewhere")  # a link, named hf or given as --out: the rename would replace it
    for out in ([], ["--out", str(mine)]):
        with pytest.raises(SystemExit) as exit_:
            main(["export", "--checkpoint", str(home / "weights.safetensors"), "--format", "hf", *out])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.strip() == (f"error: --out: {mine} is a symbolic link (to "
                                                   f"{tmp_path / 'elsewhere'}); give a new folder")
        assert mine.is_symlink() and list((tmp_path / "elsewhere").iterdir()) == []
    mine.unlink()
    with pytest.warns(UserWarning, match="^tokenizer: none written"):  # none there: written, as before
        assert deepseek.export(home / "weights.safetensors", format="hf") == mine
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "model.safetensors"]
    empty = tmp_path / "given"
    empty.mkdir()  # an empty folder given as --out is the user's choice: taken
    with pytest.warns(UserWarning, match="^tokenizer: none written"):
        assert deepseek.export(home / "weights.safetensors", empty, format="hf") == empty
