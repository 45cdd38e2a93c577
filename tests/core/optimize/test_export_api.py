"""``deepseek.export``, the Python entry of ``deepseek export``: the same files as the command
(the same program, record and Hugging Face folder), a program that computes what the trained
model computes at shapes it was not traced at, and bad arguments refused in one ``UsageError``
line naming the keyword (not the command's option), with nothing written. There was no Python
function: a script had to run ``main(["export", ...])`` and catch ``SystemExit``."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import deepseek
from deepseek.cli.main import cli, main
from deepseek.config.ineffective import IneffectiveSettingWarning
from deepseek.config.load import config_from_dict
from deepseek.errors import UsageError
from deepseek.graph.export import load_exported, read_metadata
from deepseek.models.protocol import TrainableModel
from deepseek.training.trainer import Trainer

ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny GPT run folder (max_seq_len 32)."""
    folder = tmp_path_factory.mktemp("export") / "run"
    config = config_from_dict({
        "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 32},
        "data": {"seq_len": 32, "batch_size": 4, "eval_batches": 1},
        "train": {"max_steps": 3, "warmup_steps": 0}, "checkpoint": {"interval": 3}})
    Trainer(config, run_dir=folder, quiet=True).fit()
    return folder


def cli_export(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["export", *args])
    assert result.exit_code == 0, result.output
    return result


def test_pt2_is_the_commands_file_and_computes_the_trained_model(run: Path, tmp_path: Path) -> None:
    path = deepseek.export(run)
    assert path == run / "model.pt2" and path.is_file()                  # the command's default place
    cli_export("--checkpoint", str(run), "--out", str(tmp_path / "cli.pt2"))
    ours, theirs = read_metadata(path), read_metadata(tmp_path / "cli.pt2")
    assert ours == theirs and ours["model"]["max_seq_len"] == 32 and ours["inputs"] == [
        {"shape": [2, 16], "dtype": "torch.int64"}]                       # traced at batch 2, seq 16
    model = deepseek.load_model(run)
    for shape in ((1, 1), (3, 7), (5, 32)):                               # dynamic batch and seq
        x = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(sum(shape)))
        with torch.no_grad():
            eager = model(x)
        exported = load_exported(path)(x)
        assert exported.shape == (*shape, 256)
        torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-5)
        assert torch.equal(exported, load_exported(tmp_path / "cli.pt2")(x))


def test_the_default_export_file_is_the_runs_own_and_a_re_export_replaces_it(
        run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``deepseek export``'s ``RUN/model.FORMAT`` was any file of the run folder: ``bench latency
    --json RUN/model.pt2`` replaced the exported program. The command declares them (its
    ``run_files``), so no other command's output takes them, and export writes its own again, also
    for a checkpoint folder (whose default was inside the checkpoint, refused as the run's)."""
    from deepseek.paths import check_output
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.settings import PluginSettings

    (run / "model.pt2").write_bytes(b"an earlier export")
    step = next((run / "checkpoints").glob("step-*"))  # its default was inside the checkpoint, and refused there
    assert deepseek.export(step) == run / "model.pt2"  # export's own file: replaced by a re-export
    assert read_metadata(run / "model.pt2")["model"]["max_seq_len"] == 32
    before = (run / "model.pt2").read_bytes()
    host = PluginHost(PluginSettings(autoload=False))
    for name in ("model.pt2", "model.onnx"):  # existing or not
        with pytest.raises(SystemExit) as exit_:
            main(["bench", "latency", "--model", "tiny", "--json", str(run / name)], host=host)
        assert exit_.value.code == 2
        assert f"error: --json: {run / name} is a " in capsys.readouterr().err
    assert (run / "model.pt2").read_bytes() == before and not (run / "model.onnx").exists()
    with pytest.raises(UsageError, match=f"^--out: {run / 'model.onnx.data'} is a place of the run folder"):
        check_output(run / "model.onnx.data", where="--out", folder=True, host=host)
    from deepseek.builtins.commands import export_run_file
    from deepseek.errors import PluginError

    with pytest.raises(PluginError, match="command 'export' .*: cannot replace 'config.toml' as its own run file"):
        export_run_file(host, "config.toml")  # core's file is no command's to replace
    with pytest.raises(UsageError, match=f"^--out: {run / 'config.toml'} is a file of the run folder"):
        check_output(run / "config.toml", where="--out", folder=False, host=host)


def test_the_default_export_home_is_a_run_folder_not_any_folder_named_checkpoints(tmp_path: Path) -> None:
    """``export_home`` (export's and ``hf``'s default place) took the grandparent of any folder
    whose parent is named ``checkpoints``: a run kept in ``/x/checkpoints/run1`` exported to
    ``/x/model.pt2``, and weights exported to ``/x/checkpoints/w/`` likewise. Only a run folder's
    ``checkpoints/`` counts."""
    from deepseek.graph.export_trained import export_home

    kept = tmp_path / "checkpoints"  # a user's folder of runs and weights, named so
    run = kept / "run1"
    (run / "checkpoints" / "step-3").mkdir(parents=True)
    (run / "config.toml").write_text("", encoding="utf-8")
    weights = kept / "w" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"")
    assert export_home(run) == run
    assert export_home(run / "checkpoints" / "step-3") == run
    assert export_home(run / "checkpoints" / "step-3" / "model.safetensors") == run
    assert export_home(run / "checkpoints") == run
    assert export_home(weights) == weights.parent
    assert export_home(weights.parent) == weights.parent


def test_static_export_fixes_the_given_shape(run: Path, tmp_path: Path) -> None:
    path = deepseek.export(run, tmp_path / "sub" / "fixed.pt2", batch=3, seq=8, static=True)
    assert path == tmp_path / "sub" / "fixed.pt2"
    assert read_metadata(path)["inputs"] == [{"shape": [3, 8], "dtype": "torch.int64"}]
    program = load_exported(path)
    x = torch.randint(0, 256, (3, 8))
    with torch.no_grad():
        torch.testing.assert_close(program(x), deepseek.load_model(run)(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception):  # noqa: B017, PT011 - torch's own guard refuses another shape
        program(torch.randint(0, 256, (2, 8)))


NO_TOKENIZER = ("tokenizer: none written; the vocabulary is raw UTF-8 bytes (ids 0..255), so encode text as "
                "list(text.encode('utf-8')) and decode ids with bytes(ids).decode('utf-8', 'replace')")


def test_hf_folder_is_the_commands_folder(run: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning) as said:   # the command's note on the tokenizer, from Python a warning
        path = deepseek.export(run, tmp_path / "hf", format="hf", dtype="bf16")
    assert [str(w.message) for w in said] == [NO_TOKENIZER] and said[0].filename == __file__   # the caller's line
    result = cli_export("--checkpoint", str(run), "--format", "hf", "--dtype", "bf16", "--out",
                        str(tmp_path / "cli-hf"))
    assert result.output.splitlines()[1:] == [NO_TOKENIZER]                # the command prints it as it did
    names = sorted(f.name for f in path.iterdir())
    assert names == ["config.json", "model.safetensors"]                  # byte tokens: no tokenizer
    assert names == sorted(f.name for f in (tmp_path / "cli-hf").iterdir())
    for name in names:
        assert (path / name).read_bytes() == (tmp_path / "cli-hf" / name).read_bytes(), name


def test_the_default_hf_folder_is_the_runs_and_export_alone_writes_it(run: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Export's default ``RUN/hf/`` was no declared run file (those were plain files): ``import-hf
    --out RUN/hf`` took export's place, and ``bench latency --json RUN/hf/config.json`` replaced the
    exported config. Export declares the folder (``hf/``): everything in it is the run's, and
    export writes it, as a whole."""
    import shutil

    from deepseek.builtins.commands import export_run_file
    from deepseek.paths import check_output
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.settings import PluginSettings

    host, hf = PluginHost(PluginSettings(autoload=False)), run / "hf"
    with pytest.raises(SystemExit) as exit_:
        main(["import-hf", str(run / "gpt2"), "--out", str(hf)], host=host)
    assert exit_.value.code == 2 and f"error: --out: {hf} is a place of the run folder {run}'s own files" in \
        capsys.readouterr().err and not hf.exists()
    try:
        with pytest.warns(UserWarning, match="^tokenizer: none written"):
            assert deepseek.export(run, format="hf") == hf
        before = (hf / "config.json").read_bytes()
        exported = {f.name: f.read_bytes() for f in hf.iterdir()}
        with pytest.raises(SystemExit) as exit_:  # exported again: the earlier export's folder stays whole
            main(["export", "--checkpoint", str(run), "--format", "hf"], host=host)
        assert exit_.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
            f"error: --out: not given, so the folder is {hf}, which already exists (an earlier export's, or a "
            f"folder of yours) and an export replaces no folder; give --out a new folder, or remove {hf}"]
        assert {f.name: f.read_bytes() for f in hf.iterdir()} == exported
        assert not [p for p in run.iterdir() if ".partial-" in p.name]
        for target in (hf / "config.json", hf / "report.json"):  # existing or not
            with pytest.raises(SystemExit) as exit_:
                main(["bench", "latency", "--model", "tiny", "--json", str(target)], host=host)
            assert exit_.value.code == 2 and f"error: --json: {target} is a " in capsys.readouterr().err
        assert (hf / "config.json").read_bytes() == before and not (hf / "report.json").exists()
        with pytest.raises(UsageError, match=f"^--out: {hf / 'sub'} is a place of the run folder {run}'s own"):
            check_output(hf / "sub", where="--out", folder=True, host=host,
                         replaces=export_run_file(host, "hf/"))  # inside: not export's
    finally:
        shutil.rmtree(hf, ignore_errors=True)


def test_a_batch_of_one_traced_at_two_is_warned_from_python_and_printed_by_the_command(
        run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The note the command prints was dropped from Python; now one Note is made, which
    deepseek.export warns (IneffectiveSettingWarning: the 1 has no effect on the file) and the
    command prints as before, not as a warning."""
    with pytest.warns(IneffectiveSettingWarning) as said:
        deepseek.export(run, tmp_path / "b1.pt2", batch=1, seq=1)
    assert [str(w.message) for w in said] == [
        "batch=1 and seq=1 traced as 2 (torch.export fixes a dimension traced at 1); the file takes any batch and "
        "seq from 1 (static=True fixes the shape instead)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", IneffectiveSettingWarning)
        deepseek.export(run, tmp_path / "b2.pt2", batch=2)                # nothing raised: nothing to say
        deepseek.export(run, tmp_path / "s1.pt2", batch=1, seq=1, static=True)
    code, err = command("--checkpoint", str(run), "--out", str(tmp_path / "c1.pt2"), "--batch", "1", "--seq", "1",
                        capsys=capsys)
    assert code == 0 and err == ("note: --batch 1 and --seq 1 traced as 2 (torch.export fixes a dimension traced "
                                 "at 1); the file takes any batch and seq from 1 (--static fixes the shape instead)\n")


@pytest.mark.skipif(not ONNX, reason="needs onnx, onnxscript and onnxruntime (the ecosystem session has them)")
def test_onnx_runs_like_the_trained_model(run: Path, tmp_path: Path) -> None:
    path = deepseek.export(run, tmp_path / "m.onnx", format="onnx")
    x = torch.randint(0, 256, (3, 11))
    with torch.no_grad():
        torch.testing.assert_close(load_exported(path)(x), deepseek.load_model(run)(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("kwargs", "line"), [
    ({"dtype": "fp16"}, "dtype applies to format='hf' only; leave it out for format='pt2'"),
    ({"format": "tflite"}, "format: expected one of 'pt2', 'onnx', 'hf', got 'tflite'"),
    ({"batch": 0}, "batch: must be >= 1, got 0"),
    ({"seq": 2.5}, "seq: expected a whole number >= 1, got 2.5 (float); pass an int"),
    ({"static": "no"}, "static: expected True or False, got 'no' (str)"),
    ({"seq": 40}, "seq=40 exceeds the model's max_seq_len 32; use seq <= 32"),
    ({"out": "OUT/model.onnx"}, "out: OUT/model.onnx does not end in .pt2; name the pt2 file like model.pt2 "
                                "(an existing .pt2 file is replaced)"),
    ({"out": "OUT"}, "out: OUT is a folder; give a file path, e.g. OUT/model.pt2"),
    ({"out": "OUT/new/deeper/model.pt2", "seq": 40}, "seq=40 exceeds the model's max_seq_len 32; use seq <= 32"),
])
def test_bad_arguments_are_one_line_naming_the_keyword(run: Path, tmp_path: Path, kwargs: dict[str, Any],
                                                       line: str) -> None:
    if "out" in kwargs:
        kwargs = {**kwargs, "out": kwargs["out"].replace("OUT", str(tmp_path))}
        line = line.replace("OUT", str(tmp_path))
    before = sorted(run.rglob("*"))
    with pytest.raises(UsageError) as refused:
        deepseek.export(run, **kwargs)
    assert str(refused.value) == line
    assert sorted(run.rglob("*")) == before and not list(tmp_path.iterdir())   # nothing written, no folder made


def command(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``deepseek export ARGS`` as the console script runs it: its exit code and stderr."""
    with pytest.raises(SystemExit) as done:
        main(["export", *args])
    return done.value.code, capsys.readouterr().err


def test_the_command_still_names_its_options(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert command("--checkpoint", str(run), "--seq", "40", capsys=capsys) == (
        2, "error: --seq 40 exceeds the model's max_seq_len 32; use --seq <= 32\n")
    assert command("--checkpoint", str(run), "--dtype", "fp16", capsys=capsys) == (
        2, "error: --dtype applies to --format hf only; leave it out for --format pt2\n")
    assert command("--checkpoint", str(run), "--out", str(tmp_path), capsys=capsys) == (
        2, f"error: --out: {tmp_path} is a folder; give a file path, e.g. {tmp_path / 'model.pt2'}\n")
    code, err = command("--checkpoint", str(run), "--out", str(tmp_path / "b1.pt2"), "--batch", "1", capsys=capsys)
    assert code == 0 and err.startswith("note: --batch 1 traced as 2 (torch.export fixes a dimension traced at 1); "
                                        "the file takes any batch and seq from 1 (--static fixes the shape instead)")
    assert read_metadata(tmp_path / "b1.pt2")["inputs"][0]["shape"] == [2, 16]


class Net(TrainableModel):
    """A script's classifier with the capability ``serving``: its forward is the training step."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(2, 3)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self.body(x), label)

    def serving_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"x": batch["x"]}

    def serving_forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.body(inputs["x"])


def test_a_fit_run_is_refused_and_exported_from_its_script_as_python_api_says(tmp_path: Path) -> None:
    """docs/python-api.md, "Exporting": deepseek.export cannot rebuild a script's model (one line);
    the script loads the weights into its model and writes the file with export_serving."""
    from deepseek.errors import CheckpointError
    from deepseek.graph.serving import export_serving

    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    rows = torch.utils.data.TensorDataset(x, (x > 0).sum(1))
    run = tmp_path / "mine"
    deepseek.fit(Net, rows, names=("x", "label"), batch_size=16, config={"train": {"max_steps": 5}}, run_dir=run,
                 quiet=True)
    with pytest.raises(CheckpointError, match=r"model 'script' is the model object of a Python script trained with "
                                              r"deepseek\.fit, which only that script can build"):
        deepseek.export(run)
    assert not (run / "model.pt2").exists()
    model = deepseek.load_model(run, model=Net())
    path = export_serving(model, {"x": x[:4], "label": (x[:4] > 0).sum(1)}, tmp_path / "net.pt2")
    with torch.no_grad():
        torch.testing.assert_close(load_exported(path)({"x": x[:7]}), model.body(x[:7]))   # rows stay dynamic


# ``deepseek export ARGS`` SIGKILLed just before its output (argv[1]) is renamed into place.
KILLED_BEFORE_RENAME = """
import os, signal, sys
real = os.replace
def replace(src, dst, *args, **kwargs):
    if os.path.basename(os.fspath(dst)) == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst, *args, **kwargs)
os.replace = replace
from deepseek.cli.main import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize(("fmt", "name"), [("pt2", "model.pt2"), ("hf", "hf")])
def test_what_a_killed_export_left_is_removed_by_the_next(run: Path, tmp_path: Path, fmt: str, name: str) -> None:
    """Killed before its rename, an export left its whole temp output (``.model.XXXX.tmp.pt2``,
    a 1.3b model's 5 GiB) beside --out for good: nothing ever removed it. The next export of that
    output removes what a dead process left, and leaves a live writer's."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / name
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLED_BEFORE_RENAME, name, "export", "--checkpoint", str(run),
                             "--format", fmt, "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (left,) = list(tmp_path.iterdir())  # nothing under the output's name: only the hidden partial one
    assert left.name.startswith(".") and not out.exists()
    live = tmp_path / f".{name}.partial-{os.getppid()}"  # a live process's partial output stays
    live.write_text("being written")
    cli_export("--checkpoint", str(run), "--format", fmt, "--out", str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, live.name])


def test_a_damaged_pt2_is_our_one_line_alone(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """torch.export.load logged the damaged file's whole traceback to stderr (its own handler)
    before our line; the line named torch's later error, which points at 'the warnings above'."""
    import logging
    import zipfile

    junk, unversioned = tmp_path / "junk.pt2", tmp_path / "unversioned.pt2"
    junk.write_bytes(b"\x00deepseek" * 300)
    with zipfile.ZipFile(unversioned, "w") as z:  # a zip archive, not one torch.export wrote
        z.writestr("model/data.pkl", b"xx")
    logger = logging.getLogger("torch.export")
    before = (list(logger.handlers), logger.propagate, logger.level)
    for path, cause in ((junk, "PytorchStreamReader failed reading zip archive: failed finding central directory"),
                        (unversioned, 'Expected hasRecord("version") to be true, but got false')):
        for load, where in ((load_exported, f"{path}"), (read_metadata, f"read_metadata: {path}")):
            with pytest.raises(UsageError) as info:
                load(path)
            assert str(info.value) == (f"{where}: not a loadable torch.export (.pt2) file (RuntimeError: {cause}); "
                                       "export the model again (deepseek export)")
    assert capfd.readouterr() == ("", "")
    assert (list(logger.handlers), logger.propagate, logger.level) == before  # torch's own logging as it was
