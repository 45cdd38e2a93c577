"""``deepseek eval`` on weights that are not a training run, and on other data: an exported
``.safetensors`` file, a folder holding one (import-hf's layout) with the ``config.toml`` beside
it, ``--config FILE`` and ``--set data.KEY=VALUE``; ``val_perplexity`` for token data; and the
one-line refusals of those options."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from hostile_cli import invoke

from deepseek.plugins.host import PluginHost
from deepseek.training.checkpoint import export_weights

# hostile_cli.TINY: data.batch_size = 2, data.seq_len = 16, data.eval_batches = 1, model.max_seq_len = 32


def _eval(host: PluginHost, *argv: str) -> dict:
    out = invoke(["eval", *argv, "--device", "cpu", "--json"], host)
    assert out.code == 0, out.stderr
    return json.loads(out.stdout)


def _refused(host: PluginHost, *argv: str) -> str:
    out = invoke(["eval", *argv, "--device", "cpu"], host)
    lines = out.stderr.strip().splitlines()
    assert out.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (out.code, out.stderr)
    return lines[0][len("error: "):]


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained run's weights exported to one file (step 1), with nothing beside it."""
    return export_weights(trained_run, tmp_path_factory.mktemp("exported") / "tiny.safetensors")


def test_a_run_reports_perplexity_as_exp_of_its_loss(trained_run: Path, core_host: PluginHost) -> None:
    got = _eval(core_host, "--checkpoint", str(trained_run))
    assert got["weights"] == "checkpoint" and got["step"] == 1
    assert got["val_perplexity"] == pytest.approx(math.exp(got["val_loss"]), rel=1e-12)
    line = invoke(["eval", "--checkpoint", str(trained_run), "--device", "cpu"], core_host).stdout.splitlines()[0]
    assert f"val_perplexity {math.exp(got['val_loss']):.4f}" in line and line.endswith("(step 1, model tiny)")


def test_an_exported_file_evaluates_on_a_config_as_the_run_does(trained_run: Path, exported: Path,
                                                                core_host: PluginHost) -> None:
    run = _eval(core_host, "--checkpoint", str(trained_run))
    got = _eval(core_host, "--checkpoint", str(exported), "--config", str(trained_run / "config.toml"))
    assert got["val_loss"] == run["val_loss"] and (got["tokens"], got["samples"]) == (32, 2)
    assert got["weights"] == "exported" and got["step"] == 1  # the step in the file's metadata, not null
    out = invoke(["eval", "--checkpoint", str(exported), "--config", str(trained_run / "config.toml"),
                  "--device", "cpu"], core_host)
    assert out.stdout.splitlines()[0].endswith("(exported weights of step 1, model tiny)"), out.stdout


def test_a_folder_of_weights_with_a_config_beside_evaluates_without_flags(
        trained_run: Path, exported: Path, core_host: PluginHost, tmp_path: Path) -> None:
    folder = tmp_path / "imported"
    folder.mkdir()
    shutil.copyfile(exported, folder / "model.safetensors")
    shutil.copyfile(trained_run / "config.toml", folder / "config.toml")  # its [data]: the run's
    run = _eval(core_host, "--checkpoint", str(trained_run))
    for path in (folder, folder / "model.safetensors"):
        got = _eval(core_host, "--checkpoint", str(path))
        assert (got["val_loss"], got["tokens"], got["weights"]) == (run["val_loss"], 32, "exported")
    sampled = [invoke(["generate", "--checkpoint", str(path), "--max-new-tokens", "4", "--temperature", "0",
                       "--device", "cpu", "ab"], core_host) for path in (folder, trained_run)]
    assert sampled[0].code == 0 and sampled[0].stdout == sampled[1].stdout, sampled[0].stderr  # the folder's weights


def test_set_overrides_the_data_of_a_run(trained_run: Path, exported: Path, core_host: PluginHost) -> None:
    got = _eval(core_host, "--checkpoint", str(trained_run), "--set", "data.batch_size=3", "--set", "data.seq_len=8")
    assert (got["batches"], got["samples"], got["tokens"]) == (1, 3, 24)
    on_file = _eval(core_host, "--checkpoint", str(exported), "--config", str(trained_run / "config.toml"),
                    "--set", "data.batch_size=3", "--set", "data.seq_len=8")
    assert on_file["val_loss"] == got["val_loss"]


def test_refusals_are_one_line(trained_run: Path, exported: Path, core_host: PluginHost, tmp_path: Path) -> None:
    run = str(trained_run)
    assert _refused(core_host, "--checkpoint", run, "--config", str(tmp_path / "none.toml")) == (
        f"{tmp_path / 'none.toml'}: config file not found; check the path of --config")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nseq_len = 8\n")
    assert _refused(core_host, "--checkpoint", run, "--config", str(bad)).startswith(f"{bad}: not valid TOML: ")
    assert _refused(core_host, "--checkpoint", run, "--set", "data.seq_lenn=8").startswith(
        "--set: data.seq_lenn: unknown key (did you mean 'seq_len'?)")
    assert _refused(core_host, "--checkpoint", run, "--set", "train.lr=1") == (
        "--set 'train.lr=1': eval takes data.KEY=VALUE only (the evaluation data); the model is the weights'")
    other = tmp_path / "other.toml"
    other.write_text((trained_run / "config.toml").read_text().replace("d_model = 32", "d_model = 64"))
    for checkpoint in (run, str(exported)):
        assert _refused(core_host, "--checkpoint", checkpoint, "--config", str(other)) == (
            f"{other}: model.d_model = 64 but the weights have 32; its [model] must describe the weights: pass the "
            "config they were trained with, or one without [model]")
    scalar = tmp_path / "scalar.toml"  # with --set data.name, eval kept the dataset's keys of a table that was an int
    scalar.write_text("data = 3\n")
    for extra in ((), ("--set", "data.name=text")):
        assert _refused(core_host, "--checkpoint", run, "--config", str(scalar), *extra) == (
            f"{scalar}: data: expected a [data] table, got 3")
    (tmp_path / "empty").mkdir()
    assert _refused(core_host, "--checkpoint", str(tmp_path / "empty")) == (
        f"{tmp_path / 'empty'}: holds no checkpoint (trainer.json, checkpoints/step-N) and no model.safetensors; "
        "pass a run folder, a checkpoint folder, or weights written by deepseek import-hf or export_weights")


def test_a_config_beside_exported_weights_must_describe_them(trained_run: Path, exported: Path,
                                                             core_host: PluginHost, tmp_path: Path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    shutil.copyfile(exported, folder / "model.safetensors")
    (folder / "config.toml").write_text('[model]\nname = "tiny"\nn_layers = 3\n')
    assert _refused(core_host, "--checkpoint", str(folder)).startswith(
        f"{folder / 'config.toml'}: model.n_layers = 3 but the weights have 1;")
    (folder / "config.toml").write_text("[data\n")
    assert _refused(core_host, "--checkpoint", str(folder)).startswith(f"{folder / 'config.toml'}: not valid TOML: ")
    sampled = invoke(["generate", "--checkpoint", str(folder), "--max-new-tokens", "2", "--device", "cpu"], core_host)
    assert sampled.code == 0, sampled.stderr  # generate reads no data: the config beside is not read


def test_data_longer_than_the_weights_take_is_one_line_before_any_batch_runs(exported: Path,
                                                                            core_host: PluginHost) -> None:
    # the default data's 128-token rows against the tiny model's 32 positions: refused by the
    # model's own data check, as the trainer refuses them, naming the key --set can lower
    line = _refused(core_host, "--checkpoint", str(exported))
    assert line.startswith("data.seq_len: sequences of 128 tokens are longer than the model's max_seq_len=32; "
                           "lower data.seq_len"), line
    assert _eval(core_host, "--checkpoint", str(exported), "--set", "data.seq_len=32")["tokens"] > 0
