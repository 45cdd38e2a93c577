"""``deepseek multimodal study CONFIG.toml``: a user's multimodal config is the base of every run
(its encoder shapes, its fusion method's options for that method's runs, its training settings
where no option is given), the study's own keys win and the file's values of them are named once;
the file is checked as ``deepseek train`` checks it (one line with the file and the field path)
before anything is written, and a study folder made with one file is not continued with another."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _inprocess import deepseek_here

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG = """\
[model]
name = "multimodal.classifier"
modalities = ["vision", "audio", "text"]
fusion = "concat"
modality_dropout = 0.3

[model.audio]
d_model = 32
n_layers = 1

[model.fusion_options]
d_model = 32
hidden = 48

[data]
batch_size = 8
eval_size = 16

[train]
max_steps = 2
lr = 1e-3
warmup_steps = 1

[strategy]
device = "cpu"
"""
STUDY = ["multimodal", "study", "base.toml", "--task", "redundant", "--seed", "0"]


def _run_config(out: Path, name: str) -> dict:
    return tomllib.loads((out / "runs" / f"redundant-{name}-s0" / "config.toml").read_text())


def test_the_file_is_the_base_of_every_run_and_the_study_keeps_its_own_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "base.toml").write_text(CONFIG)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "audio", "--config", "concat",
                                 "--out", "st")
    assert code == 0, err
    assert ("note: base.toml: the study sets model.modalities, model.fusion, model.modality_dropout itself in every "
            "run; the file's values of those are not used") in err
    out = tmp_path / "st"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["config"], r["steps"]) for r in rows] == [("audio", 2), ("concat", 2)]  # train.max_steps: --steps
    audio, concat = _run_config(out, "audio"), _run_config(out, "concat")
    for run in (audio, concat):
        assert run["model"]["audio"]["d_model"] == 32 and run["model"]["audio"]["n_layers"] == 1
        assert (run["train"]["lr"], run["train"]["warmup_steps"], run["train"]["max_steps"]) == (1e-3, 1, 2)
        assert (run["data"]["batch_size"], run["data"]["eval_size"], run["strategy"]["device"]) == (8, 16, "cpu")
    assert (audio["model"]["modalities"], audio["model"]["fusion"], audio["model"]["modality_dropout"]) == (
        ["audio"], "late", 0.0)
    assert concat["model"]["modality_dropout"] == 0.2  # the recipe's, not the file's 0.3
    options = concat["model"]["fusion_options"]
    assert (options["d_model"], options["hidden"], options["joint"]) == (32, 48, True)
    settings = json.loads((out / "study.json").read_text())
    assert (settings["steps"], settings["batch"], settings["lr"], settings["device"], settings["eval_size"]) == (
        2, 8, 1e-3, "cpu", 16)
    assert settings["base"] == tomllib.loads(CONFIG)

    # the folder's study was made with this file: another file, or an option over it, is refused
    (tmp_path / "base.toml").write_text(CONFIG.replace("n_layers = 1", "n_layers = 2"))
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "audio", "--out", "st")
    assert (code, err) == (2, "error: --out st: holds a study made with a CONFIG.toml of other tables (not this one); "
                              "continue it with those, or pick a new --out")
    (tmp_path / "base.toml").write_text(CONFIG)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "audio", "--steps", "3", "--out", "st")
    assert (code, err) == (2, "error: --out st: holds a study made with --steps 2 (not 3); continue it with those, "
                              "or pick a new --out")
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY[:3], "--task", "redundant", "--seed", "0",
                                 "--config", "audio", "--steps", "2", "--batch", "8", "--lr", "1e-3", "--device", "cpu",
                                 "--eval-size", "16", "--out", "st2")
    assert code == 0, err  # the file's values given as options: the same runs


@pytest.mark.parametrize(("edit", "message"), [
    (("d_model = 32\nn_layers = 1", "d_modle = 32"),
     "base.toml: model.audio.d_modle: unknown key (did you mean 'd_model'?)"),
    (("lr = 1e-3", "lr = -1"), "base.toml: train.lr: must be > 0 and at most 100, got -1 (int)"),
    (('name = "multimodal.classifier"', 'name = "tiny"'),
     "base.toml: model.name = 'tiny': the study trains multimodal.classifier models on multimodal.digits; name "
     "those, or leave model.name out"),
    (("hidden = 48", "hiden = 48"), "base.toml: model.fusion_options.hiden: unknown key (did you mean 'hidden'?)"),
    (("[train]", "[train"), "base.toml: not valid TOML"),
])
def test_a_bad_file_is_one_line_naming_it_and_the_field_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: tuple[str, str], message: str) -> None:
    assert edit[0] in CONFIG
    (tmp_path / "base.toml").write_text(CONFIG.replace(*edit))
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "audio", "--out", "st")
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"error: {message}"), err
    assert not (tmp_path / "st").exists()


def test_a_batch_the_file_gives_is_named_with_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "base.toml").write_text(CONFIG.replace("eval_size = 16", "eval_size = 4"))
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "audio", "--out", "st")
    assert (code, err) == (2, "error: base.toml: data.eval_size 4: fewer samples than one batch (base.toml: "
                              "data.batch_size 8); give at least 8")
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "audio", "--batch", "2", "--out", "st")
    assert code == 0, err  # --batch over the file's
    assert json.loads((tmp_path / "st" / "study.json").read_text())["batch"] == 2


def test_a_config_file_given_to_config_is_pointed_to_the_argument(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "multimodal", "study", "--config", "base.toml", "--out", "st")
    assert code == 2 and "--config names a model of the study" in err and (
        "give a config file as the argument: deepseek multimodal study CONFIG.toml") in err, err
    assert not (tmp_path / "st").exists()


def test_a_study_folder_of_a_build_before_config_files_reads_as_made_without_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "st"
    (out / "runs" / "redundant-audio-s0").mkdir(parents=True)
    old = {"steps": 2, "batch": 8, "lr": 1e-3, "device": "cpu", "recipe": "joint", "eval_size": 16,
           "unimodal_runs": None}  # no "base": it was read as no settings file at all
    (out / "study.json").write_text(json.dumps(old))
    (tmp_path / "base.toml").write_text(CONFIG)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "audio", "--out", "st")
    assert (code, err) == (2, "error: --out st: holds a study made with no CONFIG.toml (not with one); continue it "
                              "with those, or pick a new --out")


@pytest.mark.parametrize(("edit", "option", "message"), [
    (("max_steps = 2", "max_steps = -1"), ["--steps", "2"], "base.toml: train.max_steps: must be >= 1"),
    (("lr = 1e-3", "lr = -1"), ["--lr", "1e-3"], "base.toml: train.lr: must be > 0 and at most 100, got -1 (int)"),
    (("[strategy]", '[logging]\nprogress = "loud"\n\n[strategy]'), [], None),  # a key the study sets: not used
])
def test_only_the_values_the_study_uses_are_judged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   edit: tuple[str, str], option: list[str],
                                                   message: str | None) -> None:
    """A bad value in the file was refused even where a study option overrides that key (its
    value is never used): the check judges the file with the options' values over it."""
    assert edit[0] in CONFIG
    (tmp_path / "base.toml").write_text(CONFIG.replace(*edit))
    if message is not None:  # the file's value is used: refused, naming the file's key
        code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "audio", "--out", "refused")
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"error: {message}"), err
        assert not (tmp_path / "refused").exists()
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "audio", *option, "--out", "st")
    assert code == 0, err
    assert _run_config(tmp_path / "st", "audio")["train"]["max_steps"] == 2


def test_a_key_no_option_or_file_gives_is_judged_at_the_studys_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The study trains with --batch's default 64 where neither the option nor the file gives a
    batch: the file's train.grad_accum = 32 splits it. The file was judged at data.batch_size's
    schema default 16 instead, and refused for a batch the study never uses."""
    (tmp_path / "base.toml").write_text(CONFIG.replace("batch_size = 8\neval_size = 16", "eval_size = 64").replace("[train]\n",
                                                                                     "[train]\ngrad_accum = 32\n"))
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "audio", "--out", "st")
    assert code == 0, err
    config = _run_config(tmp_path / "st", "audio")
    assert (config["data"]["batch_size"], config["train"]["grad_accum"]) == (64, 32)
    # a grad_accum that does not split the study's batch is still refused, naming the file's key
    (tmp_path / "base.toml").write_text(CONFIG.replace("batch_size = 8\neval_size = 16", "eval_size = 64").replace("[train]\n",
                                                                                     "[train]\ngrad_accum = 48\n"))
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "audio", "--out", "refused")
    assert (code, err) == (2, "error: base.toml: train.grad_accum: data.batch_size=64 is not divisible by "
                              "train.grad_accum=48; make the batch a multiple of grad_accum"), err
    assert not (tmp_path / "refused").exists()
