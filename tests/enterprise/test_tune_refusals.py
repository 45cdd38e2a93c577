"""``deepseek tune``: bad input (the search space, a component's own tables, an optimizer group
rule, the options) refused in one line before the study writes anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inprocess import deepseek_here
from _tune_common import SPACE, write


@pytest.mark.parametrize(("space", "message"), [
    ("[space]\n\"train.lr\" = { type = \"float\", low = 1e-2, high = 1e-3 }", "space.'train.lr': low=0.01 must be below high=0.001"),
    # Optuna narrowed the range to one value with a warning only
    ("[space]\n\"train.warmup_steps\" = { type = \"int\", low = 0, high = 10, step = 100 }",
     "space.'train.warmup_steps': step 100 is larger than high - low = 10, so the range holds one value"),
    ("[space]\n\"train.lr\" = { type = \"float\", low = 0.0, high = 1e-3, log = true }", "log = true needs low > 0"),
    ("[space]\n\"train.lr\" = { typ = \"float\", low = 0.1, high = 0.2 }", "space.'train.lr'.typ: unknown key (did you mean 'type'?)"),
    ("[space]\n\"train.lr\" = { type = \"flaot\", low = 0.1, high = 0.2 }", "did you mean 'float'"),
    ("[space]\n\"data.batch_size\" = { choices = [] }", "choices must be a non-empty list"),
    ("[space]\n\"train.lrr\" = { type = \"float\", low = 0.1, high = 0.2 }", "space.'train.lrr' = 0.1: train.lrr: unknown"),
    ("[space]\n\"train.lr\" = { type = \"float\", low = -1.0, high = 0.2 }", "space.'train.lr' = -1.0: train.lr"),
    ("[spaces]\n", "unknown table 'spaces' (did you mean 'space'?)"),
    # a path the base config cannot take is named once, with the fix, and no value is blamed
    ("[space]\n\"optimizer.groups.0.lr_scale\" = { type = \"float\", low = 0.1, high = 1.0 }",
     "space.toml: space.'optimizer.groups.0.lr_scale': in base.toml, optimizer.groups has no list "
     "of tables to enter at index 0: the config gives no [[optimizer.groups]] table; add them to the config file, "
     "then set their keys by index (optimizer.groups.0.KEY)"),
    ("[space]\n\"strategy.name\" = { choices = [\"single\", \"zero9\"] }",
     "space.'strategy.name' = 'zero9': strategy.name: unknown strategy 'zero9'; did you mean 'zero3'?"),
    ("[space]\n\"train.lr\" = { type = \"float\", low = 0.1, high = 0.2 }\n[tuner]\nnprocs = 2",
     "tuner.nprocs: unknown"),
    # the nested table replaced the quoted key's range without a word
    ("[space]\n\"train.lr\" = { type = \"float\", low = 1e-3, high = 1e-2 }\n[space.train]\n"
     "lr = { type = \"float\", low = 0.1, high = 0.2 }",
     "space.'train.lr' is given twice (as a quoted key and as a nested table); keep one of them"),
    # an internal error (IndexError); the parameter was never searched
    ("[space]\n\"optimizer.name\" = { choices = [\"adamw\", \"sgd\"] }\n"
     "\"train.lr\" = { type = \"float\", low = 1e-3, high = 1e-2, when = { \"optimizer.name\" = [] } }",
     "space.'train.lr': when optimizer.name = [] lists no value, so this parameter would never be searched"),
    # a sampled float is never exactly 0.005: train.warmup_steps was never searched, without a word
    ("[space]\n\"train.lr\" = { type = \"float\", low = 1e-3, high = 1e-2 }\n"
     "\"train.warmup_steps\" = { type = \"int\", low = 0, high = 3, when = { \"train.lr\" = 0.005 } }",
     "space.'train.warmup_steps': when names train.lr, a continuous float range: a trial's value is never exactly a "
     "given one, so this parameter would never be searched"),
    # Optuna cannot record the baseline's 8 among the choices: an internal error at the first trial,
    # with the folder and its study.db left behind
    ("[space]\n\"data.batch_size\" = { choices = [4, 16] }",
     "space.'data.batch_size': the base config's value 8 is not one of the choices {4, 16}, and the baseline "
     "trial (the base config's own values) can take only a choice; add 8 to the choices, or pass --no-baseline"),
])
def test_bad_space_is_one_line(tmp_path: Path, space: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, space=space)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "base.toml", "--study", "b", "--space", "space.toml",
                                 "--trials", "1", "--out", "st")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "st").exists()  # nothing written


@pytest.mark.parametrize(("content", "message"), [
    # the space file was called "the config file", as if base.toml were the one to fix
    (b"[space]\n# caf\xe9\n", "space.toml: cannot read the search space file: byte 0xe9 at position 13 is not UTF-8; "
                                "save the file as UTF-8 text"),
    (None, "space.toml: search space file not found; give a search space TOML file (docs/tune.md)"),
])
def test_a_space_file_that_cannot_be_read_is_named_as_the_space_file(
        tmp_path: Path, content: bytes | None, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path)
    if content is None:
        (tmp_path / "space.toml").unlink()
    else:
        (tmp_path / "space.toml").write_bytes(content)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "base.toml", "--study", "b", "--space", "space.toml",
                                 "--trials", "1", "--out", "st")
    assert code == 2, err
    assert err.strip() == f"error: {message}", err
    assert not (tmp_path / "st").exists()


MULTIMODAL_BASE = '[model]\nname = "multimodal.classifier"\n[data]\nname = "multimodal.digits"\n'


@pytest.mark.parametrize(("entry", "message"), [
    ('"model.fusion_options.layers" = { type = "int", low = 0, high = 2 }',
     "space.'model.fusion_options.layers' = 0: model.fusion_options.layers: must be >= 1"),
    ('"model.fusion_options.nope" = { choices = [1, 2] }',
     "space.'model.fusion_options.nope' = 1: model.fusion_options.nope: unknown key"),
    ('"model.vision.depthz" = { choices = [1] }', "space.'model.vision.depthz' = 1: model.vision.depthz: unknown key"),
])
def test_a_components_own_table_in_the_space_is_checked_before_the_study(
        tmp_path: Path, entry: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tables a model's components check as the model is built (fusion, encoders) are
    checked at every end point / choice before any trial, like the config's own keys."""
    write(tmp_path, space=f"[space]\n{entry}\n")
    (tmp_path / "base.toml").write_text(MULTIMODAL_BASE)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "base.toml", "--study", "b", "--space", "space.toml",
                                 "--trials", "1", "--out", "st")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "st").exists()  # nothing written


def test_a_group_rule_choice_matching_no_parameter_is_refused_before_the_study(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, space='[space]\n"optimizer.groups.0.match" = { choices = ["wte.*", "wtee.*"] }\n')
    base = (tmp_path / "base.toml").read_text()
    (tmp_path / "base.toml").write_text(base + '\n[[optimizer.groups]]\nmatch = "wte.*"\nlr_scale = 0.5\n')
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "base.toml", "--study", "b", "--space", "space.toml",
                                 "--trials", "1", "--out", "st")
    assert code == 2, err
    assert err.strip().splitlines() == [
        "error: space.toml: space.'optimizer.groups.0.match' = 'wtee.*': optimizer.groups.0.match: ['wtee.*'] matches "
        "no parameter of the model; its names look like 'wte.weight', 'wpe.weight', 'blocks.0.ln1.weight', ... "
        "(deepseek config params lists them all)"]
    assert not (tmp_path / "st").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--study", "a b"], "--study 'a b': use letters"),
    (["--storage", "nonsense"], "--storage: 'nonsense' is not a storage URL"),
    # no URL at all (its '://' mistyped) was echoed as given, password and all (db_url.shown_url's rule now)
    (["--storage", "postgresql//bob:s3cret@db/x"], "--storage: 'postgresql//bob:***@db/x' is not a storage URL"),
    (["--storage", "bob:s3cret@db"], "--storage: 'bob:***@db' is not a storage URL"),
    # a libpq keyword string's password was echoed (only USER:PASSWORD@ was masked)
    (["--storage", "host=db password=s3cret"], "--storage: 'host=db password=***' is not a storage URL"),
    (["--objective", "tokens_per_s"], "model.name: the system tuner measures GPT models"),
    (["--objective", "accuracy"], "--objective accuracy: no registered tuner measures it"),
    # a mistyped objective had no did-you-mean (the project's one helper, deepseek.names.did_you_mean)
    # and the tuners' objectives followed it in parentheses of their own: "...?) (system: ..."
    (["--objective", "tokens_per_sec"], "--objective tokens_per_sec: no registered tuner measures it (did you mean "
                                        "'tokens_per_s'?); give one a tuner measures: tokens_per_s, samples_per_s "
                                        "(tuner system); val_* (tuner training)"),
    (["--objective", "loss"], "--objective loss: no registered tuner measures it (did you mean 'val_loss'?)"),
    (["--objective", "val-loss"], "--objective 'val-loss': a metric name such as val_loss or tokens_per_s (did you "
                                  "mean 'val_loss'?)"),
    (["--objective", "tokens_per_sec", "--tuner", "system"],
     "--objective tokens_per_sec: tuner 'system' measures tokens_per_s, samples_per_s (did you mean 'tokens_per_s'?)"),
    (["--tuner", "systen"], "did you mean 'system'"),
])
def test_bad_options_are_one_line(tmp_path: Path, args: list[str], message: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path)
    base = (tmp_path / "base.toml").read_text().replace('name = "tiny"', 'name = "multimodal.classifier"', 1) \
        if "tokens_per_s" in args else None
    if base is not None:  # the system tuner refuses a model bench train cannot measure
        (tmp_path / "base.toml").write_text("[model]\nname = \"multimodal.classifier\"\n"
                                            "[data]\nname = \"multimodal.digits\"\n")
        (tmp_path / "space.toml").write_text(SPACE.split("[tuner]")[0])
    argv = ["tune", "base.toml", "--study", "b", "--space", "space.toml", "--trials", "1", "--out", "st"]
    for i in range(0, len(args), 2):
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += args[i:i + 2]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, *argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not any(pair in err for pair in (") (", "))", "((")), err  # one parenthesis at a time


@pytest.mark.parametrize("inside", ["", "checkpoints/st"])
def test_an_out_folder_that_is_a_run_folder_or_in_its_checkpoints_is_refused(
        tmp_path: Path, inside: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The study's trials.json, best.toml, plots and trials/ went into a run folder (or among the
    checkpoints its run prunes): refused in one line before anything is written."""
    write(tmp_path, space=SPACE)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text((tmp_path / "base.toml").read_text())
    out = "run/" + inside if inside else "run"
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "base.toml", "--study", "b", "--space", "space.toml",
                                 "--trials", "1", "--out", out)
    assert (code, err) == (2, "error: --out: run is a run folder (its config.toml and checkpoints/ are a run's); give "
                              "a folder of its own, e.g. run-tune" if not inside else
                              f"error: --out: {out} is a place of the run folder {run}'s own files (its training "
                              f"writes them, and deletes a pruned checkpoint's folder); give a folder outside the run, "
                              f"e.g. {tmp_path / 'run-st'}"), err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == [Path("checkpoints"), Path("config.toml")]
