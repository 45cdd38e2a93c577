"""``deepseek multimodal study|table|eval`` from the command line: a small study writes results
and tables, ``eval`` agrees with core's ``deepseek eval`` and with the study's test figures,
and hostile input is one line with exit code 2 (core's commands on a multimodal config:
test_multimodal_config_cli.py)."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any

import pytest
from _inprocess import deepseek_here

EVAL_SIZE = 128


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("study")
    # 2 steps: what the tests read (rows, tables, run folders, eval agreement) does not depend on
    # how far the models trained; each step costs a validation pass (eval_interval is 1 below 12).
    # 128 validation and test samples (8 batches) instead of 1,024: the full-split evaluations
    # (test, each modality missing, the confusion matrix, eval below) are most of the time.
    # In this process (a process start imports torch again, seconds, many more under load)
    with pytest.MonkeyPatch.context() as monkeypatch:
        code, err, stdout = deepseek_here(
            monkeypatch, work, "multimodal", "study", "--task", "redundant", "--seed", "0", "--seed", "1", "--config",
            "vision", "--config", "cross_attention", "--steps", "2", "--batch", "16", "--eval-size", str(EVAL_SIZE),
            "--device", "cpu", "--out", "res")
    assert code == 0, err[-3000:]
    return {"dir": work, "stdout": stdout,
            "rows": [json.loads(line) for line in (work / "res" / "results.jsonl").read_text().splitlines()]}


def test_study_writes_every_run_and_the_tables(study: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    rows = study["rows"]
    assert sorted((r["config"], r["seed"]) for r in rows) == [("cross_attention", 0), ("cross_attention", 1),
                                                              ("vision", 0), ("vision", 1)]
    for r in rows:
        assert 0.0 <= r["test"]["test_accuracy"] <= 1.0 and r["steps"] == 2
        assert [step for step, _ in r["val_curve"]][-1] == 2
    fused = [r for r in rows if r["config"] == "cross_attention"]
    assert all(set(r["missing"]) == {"vision", "audio", "text"} for r in fused)
    assert all(r["latency"]["p50_ms"] <= r["latency"]["p90_ms"] for r in fused)
    mean = sum(r["test"]["test_accuracy"] for r in fused) / 2
    params = fused[0]["parameters"]
    assert params == fused[1]["parameters"] > 0
    assert f"| cross_attention | {params / 1e6:.2f} M | {100 * mean:.1f} +- " in study["stdout"]
    assert "cross_attention, batch 1 on cpu (2 runs, " in study["stdout"]
    assert deepseek_here(monkeypatch, study["dir"], "multimodal", "table", "res/results.jsonl") == (0, "", study["stdout"])
    # --eval-size reached every run: its validation set (the confusion matrix covers all of it).
    for r in rows:
        confusion = json.loads((study["dir"] / "res" / "runs" / f"redundant-{r['config']}-s{r['seed']}" /
                                "confusion.json").read_text())
        assert confusion["step"] == 2 and confusion["samples"] == EVAL_SIZE


def test_the_study_refuses_an_eval_size_below_one_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = deepseek_here(monkeypatch, tmp_path, "multimodal", "study", "--task", "redundant", "--seed", "0", "--config", "vision",
               "--steps", "1", "--batch", "16", "--eval-size", "15", "--device", "cpu", "--out", "res")
    assert out == (2, "error: --eval-size 15: fewer samples than one batch (--batch 16); give at least 16", "")
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--seed", "1", "--seed", "1", "--config", "vision"], "--seed 1 given twice; give each once"),
    (["--seed", "0", "--config", "vision", "--config", "vision"], "--config vision given twice; give each once"),
    (["--task", "redundant", "--task", "redundant", "--seed", "0", "--config", "vision"],
     "--task redundant given twice; give each once"),
    (["--seed", "0", "--config", "vision", "--eval-size", "99999999999"],
     "data.eval_size: must be in 1..65536, got 99999999999 (int)"),
])
def test_the_study_refuses_repeated_names_and_bad_configs_before_writing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str) -> None:
    """A repeated name ran its first run, then failed on that run's folder half-way through the
    study; a config the dataset refuses failed after the --out folder was made."""
    out = deepseek_here(monkeypatch, tmp_path, "multimodal", "study", *args, "--steps", "1", "--batch", "16",
                        "--device", "cpu", "--out", "res")
    assert out == (2, f"error: {message}", "")
    assert not (tmp_path / "res").exists()


def test_the_study_names_the_steps_option_for_a_huge_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--steps 10**24`` was refused as "train.max_steps: ... outside TOML's 64-bit integer range",
    a key the command line never named; now the option and its range (bench train's --steps')."""
    out = deepseek_here(monkeypatch, tmp_path, "multimodal", "study", "--seed", "0", "--config", "vision", "--steps",
                        str(10**24), "--device", "cpu", "--out", "res")
    assert out == (2, f"error: Invalid value for '--steps': {10**24} is not in the range 1<=x<=1000000. (see "
                      "'deepseek multimodal study --help')", "")
    assert not (tmp_path / "res").exists()


def test_eval_agrees_with_the_study_and_core_eval(study: dict[str, Any], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    run = study["dir"] / "res" / "runs" / "redundant-cross_attention-s0"
    row = next(r for r in study["rows"] if r["config"] == "cross_attention" and r["seed"] == 0)

    def report_of(*args: str) -> dict[str, Any]:
        code, err, out = deepseek_here(monkeypatch, tmp_path, *args, "--checkpoint", str(run), "--json")
        assert code == 0, err
        return json.loads(out)

    report = report_of("multimodal", "eval", "--split", "test", "--confusion", str(tmp_path / "c.png"))
    assert report["accuracy"] == pytest.approx(row["test"]["test_accuracy"], abs=1e-6)
    assert report["accuracy_vision"] == pytest.approx(row["test"]["test_accuracy_vision"], abs=1e-6)
    confusion = report["confusion"]
    assert sum(map(sum, confusion)) == report["samples"] == EVAL_SIZE
    assert sum(confusion[i][i] for i in range(10)) / EVAL_SIZE == pytest.approx(report["accuracy"])
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    hidden = report_of("multimodal", "eval", "--split", "test", "--missing", "audio")
    assert hidden["accuracy"] == pytest.approx(row["missing"]["audio"], abs=1e-6)
    assert "accuracy_audio" not in hidden

    # --logit-weights: fused = 1 alone is the model as trained; vision = 1 alone reads as the vision head.
    same = report_of("multimodal", "eval", "--split", "test", "--logit-weights", "fused=1")
    assert same["accuracy"] == report["accuracy"] and same["logit_weights"] == {"fused": 1.0}
    alone = report_of("multimodal", "eval", "--split", "test", "--logit-weights", "vision=1")
    assert alone["accuracy"] == pytest.approx(report["accuracy_vision"], abs=1e-6) and report["logit_weights"] == {}

    core = report_of("eval", "--batches", str(EVAL_SIZE // 16))  # the whole val split
    assert core["val_accuracy"] == pytest.approx(report_of("multimodal", "eval")["accuracy"], abs=1e-6)


@pytest.mark.parametrize(("args", "message"), [
    (["eval", "--checkpoint", "RUN", "--missing", "smell"],
     "error: --missing: smell names 'smell', not a modality of this model; use some of vision, audio, text, each once"),
    (["eval", "--checkpoint", "RUN", "--missing", "vision,audoi"],
     "error: --missing: vision,audoi names 'audoi', not a modality of this model (did you mean 'audio'?); use some of "
     "vision, audio, text, each once"),
    # named as --missing, not as the data.missing it becomes
    (["eval", "--checkpoint", "RUN", "--missing", "audio,audio"],
     "error: --missing: audio,audio names 'audio' twice; use some of vision, audio, text, each once"),
    (["eval", "--checkpoint", "RUN", "--missing", "audio,,text"],
     "error: --missing: 'audio,,text' has an empty name; give names separated by single commas, e.g. a,b"),
    (["eval", "--checkpoint", "RUN", "--missing", "vision,audio,text"],
     "error: --missing: hides every modality of this model (vision, audio, text); leave at least one"),
    (["eval", "--checkpoint", "RUN", "--confusion", "c.jpg"],
     "error: --confusion: c.jpg must be a .png file; give a name ending in .png"),
    (["eval", "--checkpoint", "RUN", "--confusion", "RUN/config.toml/c.png"],
     "error: --confusion: RUN/config.toml is a file, so RUN/config.toml/c.png cannot be created below it; give a "
     "path whose parents are folders"),
    (["eval", "--checkpoint", "RUN", "--logit-weights", "speech=1"],
     "error: --logit-weights: speech is not 'fused' or a modality of this model (vision, audio, text); name those "
     "only"),
    (["eval", "--checkpoint", "RUN", "--logit-weights", "fused=1,audio=x"],
     "error: --logit-weights: audio='x' is not a finite number; give e.g. audio=0.5"),
    # 1e308: every sample was one class, exit 0
    (["eval", "--checkpoint", "RUN", "--logit-weights", "fused=1e308"],
     "error: --logit-weights: fused=1e+308 is outside [-1000, 1000] (fitted weights are near 1)"),
    # taken: every prediction was class 0, exit 0
    (["eval", "--checkpoint", "RUN", "--logit-weights", "fused=0,audio=-0"],
     "error: --logit-weights: every weight is 0: the logits would be 0 for every sample and every prediction class 0; "
     "give at least one nonzero weight (fused=1 is the model as trained)"),
    (["eval", "--checkpoint", "RUN", "--logit-weights", "audio"],
     "error: --logit-weights: 'audio' is not NAME=NUMBER; give e.g. fused=1.0,audio=0.4"),
    (["eval", "--checkpoint", "RUN", "--logit-weights", "audio=1,audio=2"],
     "error: --logit-weights: audio is given twice; give each name once"),
    (["eval", "--checkpoint", "RUN", "--device", "tpu"],
     "error: Invalid value for '--device': 'tpu' is not allowed; allowed values: 'auto', 'cpu', 'cuda', 'cuda:N' "
     "(see 'deepseek multimodal eval --help')"),
])
def test_eval_refuses_bad_input(study: dict[str, Any], tmp_path: Path, args: list[str], message: str,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    run = str(study["dir"] / "res" / "runs" / "redundant-cross_attention-s0")
    out = deepseek_here(monkeypatch, tmp_path, "multimodal", *[a.replace("RUN", run) for a in args])
    assert out == (2, message.replace("RUN", run), "")


def test_eval_refuses_inputs_the_saved_encoders_do_not_take_as_core_eval_does(
        study: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A saved [model.vision] img_size the dataset's images do not have (the weights fit any size:
    Swin's tables depend on the window): 'deepseek eval' and training refuse it in one line naming
    the key (the model's check_data); 'multimodal eval' of multimodal.digits skipped that check
    and ended in the encoder's AssertionError from forward, exit 1, blamed on the plugin."""
    run = tmp_path / "run"
    shutil.copytree(study["dir"] / "res" / "runs" / "redundant-vision-s0", run)
    step = run / "checkpoints" / "step-2"
    state = json.loads((step / "trainer.json").read_text())
    state["config"]["model"]["vision"]["img_size"] = 16
    (step / "trainer.json").write_text(json.dumps(state))
    commit = json.loads((step / "commit.json").read_text())  # edited, not damaged
    commit["files"]["trainer.json"] = (step / "trainer.json").stat().st_size
    commit["crc32"]["trainer.json"] = f"{zlib.crc32((step / 'trainer.json').read_bytes()):08x}"
    (step / "commit.json").write_text(json.dumps(commit))
    line = ("error: model.vision: encoder vision.swin: images must be (batch, 1, 16, 16), got shape (16, 1, 8, 8) "
            "(dataset MultimodalDigits); set model.vision.img_size = 8")
    assert deepseek_here(monkeypatch, tmp_path, "eval", "--checkpoint", "run", "--device", "cpu") == (2, line, "")
    assert deepseek_here(monkeypatch, tmp_path, "multimodal", "eval", "--checkpoint", "run", "--device", "cpu",
                         "--confusion", "c.png") == (2, line, "")
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize(("name", "argv"), [
    ("confusion.png", ["multimodal", "eval", "--checkpoint", "RUN", "--confusion"]),
    ("confusion.json", ["bench", "latency", "--model", "tiny", "--json"]),
    ("splits.json", ["bench", "latency", "--model", "tiny", "--json"]),
])
def test_an_output_is_not_written_over_a_file_the_plugin_wrote_in_the_run(
        study: dict[str, Any], tmp_path: Path, name: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`multimodal eval --confusion RUN/confusion.png` replaced the run's own training plot: core's
    check knew only core's run files, not the dataset's (MultimodalDigits.written_files), and its
    suggested path was that same file. Refused in one line, the file unchanged, the suggestion a new name."""
    run = tmp_path / "run"
    shutil.copytree(study["dir"] / "res" / "runs" / "redundant-cross_attention-s0", run)
    target = run / name
    if name == "confusion.png":  # the study trains with logging.plot off: the plot its training draws otherwise
        from deepseek_enterprise.report import plot_confusion

        plot_confusion(json.loads((run / "confusion.json").read_text()), target)
    before = target.read_bytes()
    where = "--confusion" if name.endswith(".png") else "--json"
    suggested = run / "confusion-2.png" if name == "confusion.png" else run / "latency.json"
    out = deepseek_here(monkeypatch, tmp_path, *[str(run) if a == "RUN" else a for a in argv], str(target))
    assert out == (2, f"error: {where}: {target} is a file of the run folder {run} (written by its training or the "
                      f"command that made it); give another path, e.g. {suggested}", ""), out
    assert target.read_bytes() == before


@pytest.mark.parametrize("inside", ["", "checkpoints/more"])
def test_a_study_out_folder_that_is_a_run_folder_or_in_its_checkpoints_is_refused(
        study: dict[str, Any], inside: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`multimodal study --out RUN` wrote study.json, results.jsonl and runs/ into a trained run's
    folder, and `--out RUN/checkpoints/more` its runs into the checkpoints the run prunes: refused
    in one line, exit 2, before anything is written."""
    run = study["dir"] / "res" / "runs" / "redundant-vision-s0"
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    out = run / inside if inside else run
    code, err, _ = deepseek_here(monkeypatch, study["dir"], "multimodal", "study", "--task", "redundant", "--seed", "0",
                                 "--config", "vision", "--steps", "1", "--device", "cpu", "--out", str(out))
    expected = (f"error: --out: {run} is a run folder (its config.toml and checkpoints/ are a run's); give a folder "
                f"of its own, e.g. {run.parent / 'redundant-vision-s0-study'}" if not inside else
                f"error: --out: {out} is a place of the run folder {run}'s own files (its training writes them, and "
                f"deletes a pruned checkpoint's folder); give a folder outside the run, e.g. "
                f"{run.parent / 'redundant-vision-s0-more'}")
    assert (code, err) == (2, expected), err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_eval_writes_its_own_confusion_plot_in_a_run_folder_again(study: dict[str, Any], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A file in a run folder that the run did not write (an earlier eval's plot) is the command's
    to replace: the same command run twice to the same path succeeds both times."""
    run = tmp_path / "run"
    shutil.copytree(study["dir"] / "res" / "runs" / "redundant-cross_attention-s0", run)
    for _ in range(2):
        code, err, out = deepseek_here(monkeypatch, tmp_path, "multimodal", "eval", "--checkpoint", str(run),
                                       "--confusion", str(run / "mine.png"))
        assert code == 0, err
        assert (run / "mine.png").read_bytes().startswith(b"\x89PNG")
        assert out.splitlines()[-1] == f"wrote {run / 'mine.png'}"  # it was written without a word
    # beside --json the line goes to stderr: stdout is the report alone; a folder made for it is named
    code, err, out = deepseek_here(monkeypatch, tmp_path, "multimodal", "eval", "--checkpoint", str(run),
                                   "--confusion", "plots/c.png", "--json")
    assert (code, err) == (0, "wrote plots/c.png (created folder plots)"), err
    assert json.loads(out)["samples"] > 0


@pytest.mark.parametrize(("content", "message"), [
    ("{not json\n", "bad.jsonl:1: not a results line (Expecting property name enclosed in double quotes)"),
    ('[1, 2]\n', "bad.jsonl:1: a results line is a JSON object"),
    ('{"task": "sum", "config": "late", "seed": 0}\n', "bad.jsonl:1: task 'sum' is not redundant or complementary"),
    ('{"task": "redundant", "config": "vision", "seed": 0, "test": {"test_accuracy": 7}}\n',
     "bad.jsonl:1: test.test_accuracy must be a number in [0, 1]"),
    ('{"task": "redundant", "config": "late", "seed": 0, "test": {"test_accuracy": 0.5}}\n',
     "bad.jsonl:1: missing must give a number in [0, 1] for vision, audio and text"),
    ('{"task": "redundant", "config": "late", "seed": 0, "recipe": "magic", "test": {"test_accuracy": 0.5}}\n',
     "bad.jsonl:1: recipe 'magic' is not one of aux, joint, pretrained, frozen, stacked, stacked-residual, calibrated, "
     "balanced, pretrained-balanced"),
    ("\n", "bad.jsonl: no results lines"),
    # the optional parts were read as they came: an internal error (IndexError, TypeError, KeyError)
    ('{"task": "redundant", "config": "vision", "seed": 0, "test": {"test_accuracy": 0.5}, "val_curve": [[1]]}\n',
     "bad.jsonl:1: val_curve must be a list of [step from 0 to 10^12, accuracy in [0, 1] or null] pairs"),
    ('{"task": "redundant", "config": "vision", "seed": 0, "test": {"test_accuracy": 0.5}, "latency": {}}\n',
     "bad.jsonl:1: latency must give p50_ms and p90_ms (milliseconds, 0 to a day: 86400000) and the device"),
    # numbers no run gives were taken as they came (a peak of 10^30 bytes shown as a 25-digit MiB count)
    *(('{"task": "redundant", "config": "vision", "seed": 0, "test": {"test_accuracy": 0.5}, "latency": '
       '{"p50_ms": 1, "p90_ms": 2, "device": "cuda", "' + key + '": ' + value + '}}\n',
       f"bad.jsonl:1: latency.{key} {value} is not a count of bytes from 0 to 2^50 (1 PiB)")
      for key in ("peak_memory_bytes", "peak_rss_bytes") for value in (str(2**50 + 1), "-1")),
    ('{"task": "redundant", "config": "vision", "seed": 0, "test": {"test_accuracy": 0.5}, "latency": '
     '{"p50_ms": 1, "p90_ms": 1e300, "device": "cpu"}}\n',
     "bad.jsonl:1: latency must give p50_ms and p90_ms (milliseconds, 0 to a day: 86400000) and the device"),
    ('{"task": "redundant", "config": "vision", "seed": 0, "test": {"test_accuracy": 0.5}, "val_curve": '
     '[[' + str(10**12 + 1) + ', 0.5]]}\n',
     "bad.jsonl:1: val_curve must be a list of [step from 0 to 10^12, accuracy in [0, 1] or null] pairs"),
    ('{"task": "redundant", "config": "vision", "seed": 0, "test": {"test_accuracy": 0.5}, "latency": '
     '{"p50_ms": 1, "p90_ms": 2, "device": "cpu", "parameters": "many"}}\n',
     "bad.jsonl:1: latency.parameters 'many' is not a count"),
    ('{"task": "redundant", "config": "vision", "seed": 0, "test": {"test_accuracy": 0.5}, "parameters": -5}\n',
     "bad.jsonl:1: parameters -5 is not a count"),
    # a count no model has was shown as it came: 10^30 as '999999999999999983222784.00 M'
    ('{"task": "redundant", "config": "vision", "seed": 0, "test": {"test_accuracy": 0.5}, "parameters": ' + str(10**30)
     + '}\n', f"bad.jsonl:1: parameters {10**30} is more than 10^15, more than any model has"),
    ('{"task": "redundant", "config": "vision", "seed": 0, "test": {"test_accuracy": 0.5}, "latency": '
     '{"p50_ms": 1, "p90_ms": 2, "device": "cpu", "parameters": 1000000000000001}}\n',
     "bad.jsonl:1: latency.parameters 1000000000000001 is more than 10^15, more than any model has"),
    # val was read unchecked beside a fused row's weighted results: a string was an internal error (TypeError),
    # 3 was shown as 300.0 %
    *(('{"task": "redundant", "config": "late", "seed": 0, "test": {"test_accuracy": 0.5}, '
       '"missing": {"vision": 0.5, "audio": 0.5, "text": 0.5}, "val": ' + val + ', "weighted": {"val_accuracy": 0.5, '
       '"test_accuracy": 0.5, "logit_weights": {"fused": 1, "vision": 1, "audio": 1, "text": 1}}}\n',
       "bad.jsonl:1: val must give val_accuracy (and val_accuracy_<modality>) as numbers in [0, 1]")
      for val in ('{"val_accuracy": "x"}', '{"val_accuracy": 3}', '[1, 2]', '{"val_accuracy_audio": NaN}')),
    # a modality's own reading was shown as a percentage as it came: 7.5 as 750.0, true as 100.0
    ('{"task": "redundant", "config": "audio", "seed": 0, "test": {"test_accuracy": 0.5, "test_accuracy_audio": 7.5}}\n',
     "bad.jsonl:1: test.test_accuracy_audio must be a number in [0, 1], got 7.5"),
    ('{"task": "redundant", "config": "audio", "seed": 0, "test": {"test_accuracy": 0.5, "test_accuracy_audio": true}}\n',
     "bad.jsonl:1: test.test_accuracy_audio must be a number in [0, 1], got True"),
    # a unimodal row's missing was read unchecked: an internal error (TypeError; KeyError beside a row without it)
    ('{"task": "redundant", "config": "audio", "seed": 0, "test": {"test_accuracy": 0.5}, '
     '"missing": {"vision": "x", "audio": 1, "text": 1}}\n',
     "bad.jsonl:1: missing is written for fused models only; a unimodal row (audio) has none"),
    # seed, steps, seconds and the test figures other than accuracy were taken as they came
    *(('{"task": "redundant", "config": "vision", ' + part + ', "test": {"test_accuracy": 0.5' + test + '}}\n',
       f"bad.jsonl:1: {message}")
      for part, test, message in (
          ('"seed": -3', "", "seed -3 is not a whole number from 0 to 4294967295"),
          ('"seed": 4294967296', "", "seed 4294967296 is not a whole number from 0 to 4294967295"),
          ('"seed": 0, "steps": "40"', "", "steps '40' is not a whole number from 0 to 10^12"),
          ('"seed": 0, "steps": -1', "", "steps -1 is not a whole number from 0 to 10^12"),
          ('"seed": 0, "steps": 1000000000001', "", "steps 1000000000001 is not a whole number from 0 to 10^12"),
          ('"seed": 0, "seconds": -5', "", "seconds -5 is not a number from 0 to 10^9 (about 32 years)"),
          ('"seed": 0, "seconds": Infinity', "", "seconds inf is not a number from 0 to 10^9 (about 32 years)"),
          ('"seed": 0', ', "test_loss": NaN', "test.test_loss must be a finite number within float32's range "
                                             "(3.4e38), got nan"),
          ('"seed": 0', ', "test_loss": -1', "test.test_loss must be a number >= 0, got -1"),
          # past any bound: a run of 10^300 seconds, 10^30 threads, a loss no float32 mean reaches
          ('"seed": 0, "seconds": 1e300', "", "seconds 1e+300 is not a number from 0 to 10^9 (about 32 years)"),
          ('"seed": 0, "machine": {"cpu": "c", "cpu_count": 8, "threads": ' + str(10**30) + '}', "",
           f"machine.threads {10**30} is more than 2^16 (65536), more than a machine counts"),
          ('"seed": 0, "machine": {"cpu": "c", "cpu_count": 65537}', "",
           "machine.cpu_count 65537 is more than 2^16 (65536), more than a machine counts"),
          ('"seed": 0', ', "test_loss": 1e39', "test.test_loss must be a finite number within float32's range "
                                             "(3.4e38), got 1e+39"),
          ('"seed": 0', ', "test_other": -1e39', "test.test_other must be a finite number within float32's range "
                                              "(3.4e38), got -1e+39"),
          ('"seed": 0, "val": {"val_accuracy": 0.5, "val_loss": Infinity}', "",
           "val.val_loss must be a finite number within float32's range (3.4e38), got inf"),
          ('"seed": 0, "val": {"val_accuracy": 0.5, "val_loss": -2}', "", "val.val_loss must be a number >= 0, got -2"),
          ('"seed": 0, "started_from": ["x"]', "", "started_from ['x'] is not a table of modality = run folder"),
          ('"seed": 0, "machine": "x"', "", "machine 'x' is not a table of the CPU's name (cpu) and other names or "
                                            "counts"),
          ('"seed": 0, "machine": {"cpu": "c", "threads": -1}', "",
           "machine {'cpu': 'c', 'threads': -1} is not a table of the CPU's name (cpu) and other names or counts"),
          # texts were taken as they came: a terminal escape or a newline in a name the table prints, any length
          ('"seed": 0, "machine": {"cpu": "c", "gpu": "H100\\u001b[2J"}', "",
           "machine.gpu 'H100\\x1b[2J' holds a control or non-printing character ('\\x1b' at 4)"),
          ('"seed": 0, "machine": {"cpu": "' + "x" * 201 + '"}', "", "machine.cpu holds 201 characters, more than its 200"),
          ('"seed": 0, "latency": {"p50_ms": 1, "p90_ms": 2, "device": "cpu\\nfake line"}', "",
           "latency.device 'cpu\\nfake line' holds a control or non-printing character ('\\n' at 3)"),
          ('"seed": 0, "started_from": {"vision": "runs/a\\u0007"}', "",
           "started_from.vision 'runs/a\\x07' holds a control or non-printing character ('\\x07' at 6)"),
          ('"seed": 0, "started_from": {"vision": "/' + "r" * 4096 + '"}', "",
           "started_from.vision holds 4097 characters, more than its 4096"))),
    ('{"task": "redundant", "config": "vision", "seed": 0, "test": {"test_accuracy": 0.5}}\n' * 2,
     "bad.jsonl:2: repeats the results of vision on the redundant task, seed 0 (bad.jsonl:1): a seed counted twice "
     "would weigh the mean"),
])
def test_table_refuses_bad_results(tmp_path: Path, content: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.jsonl").write_text(content)
    out = deepseek_here(monkeypatch, tmp_path, "multimodal", "table", "bad.jsonl")
    assert out == (2, f"error: {message}; pass results.jsonl files of 'study'", "")


def test_table_shows_a_small_models_parameters_in_significant_digits(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Two decimals in millions showed a model of 4,200 parameters as '0.00 M'; a model of 0.1 M
    and more is shown as before (BENCHMARKS.md's tables)."""
    def row(config: str, params: int) -> str:
        missing = {"missing": {"vision": 0.1, "audio": 0.1, "text": 0.1}} if config == "late" else {}
        return json.dumps({"task": "redundant", "config": config, "seed": 0, "parameters": params,
                           "test": {"test_accuracy": 0.5}, **missing,
                           "latency": {"device": "cpu", "p50_ms": 1.0, "p90_ms": 2.0, "parameters": params}})

    (tmp_path / "r.jsonl").write_text("\n".join([row("vision", 4_200), row("audio", 12_345), row("text", 123_456),
                                                  row("late", 7)]) + "\n")
    code, err, out = deepseek_here(monkeypatch, tmp_path, "multimodal", "table", "r.jsonl")
    assert code == 0, err
    shown = {line.split(" | ")[0].removeprefix("| "): line.split(" | ")[1] for line in out.splitlines()
             if line.startswith("| ") and " M | " in line}
    assert shown == {"vision": "0.0042 M", "audio": "0.012 M", "text": "0.12 M", "late (aux)": "0.0000070 M"}, out
    assert "vision, batch 1 on cpu (1 run, 0.0042 M parameters): p50 1.00 ms" in out
    assert "text, batch 1 on cpu (1 run, 0.12 M parameters): p50 1.00 ms" in out


@pytest.mark.parametrize(("count", "shown"), [
    (0, "0.00 M"), (1, "0.0000010 M"), (9, "0.0000090 M"), (10, "0.000010 M"), (99, "0.000099 M"),
    (100, "0.00010 M"), (994, "0.00099 M"), (996, "0.0010 M"), (999, "0.0010 M"), (1_000, "0.0010 M"),
    (4_200, "0.0042 M"), (9_940, "0.0099 M"), (9_960, "0.010 M"), (9_999, "0.010 M"), (10_000, "0.010 M"),
    (12_345, "0.012 M"), (99_400, "0.099 M"), (99_960, "0.10 M"), (99_999, "0.10 M"), (100_000, "0.10 M"),
    (123_456, "0.12 M"), (999_999, "1.00 M"), (1_000_000, "1.00 M"), (9_999_999, "10.00 M"),
    (123_456_789, "123.46 M"),
])
def test_millions_keeps_its_significant_digits_around_every_power_of_ten(count: int, shown: str) -> None:
    """Was: the digits were counted on the value before rounding, so a count that rounds up to the
    next power of ten got one too many (9,999 was '0.0100 M', 99,999 '0.100 M', 999 '0.00100 M')."""
    from deepseek_enterprise.study_report import millions

    assert millions(count) == shown


def test_table_refuses_a_fifo_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It blocked until killed."""
    import os

    os.mkfifo(tmp_path / "ff")
    out = deepseek_here(monkeypatch, tmp_path, "multimodal", "table", "ff")
    assert out == (2, "error: ff: not a regular file (a folder, device, FIFO or socket); pass results.jsonl files of "
                      "'study'", "")


def test_a_gpt_config_resuming_a_multimodal_run_names_both(study: dict[str, Any], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """It was refused as a mismatch of the data position ('saved with split=None')."""
    run = tmp_path / "mm"
    shutil.copytree(study["dir"] / "res" / "runs" / "redundant-vision-s0", run)
    (tmp_path / "gpt.toml").write_text('[model]\nname = "tiny"\n[train]\nmax_steps = 8\n')
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "gpt.toml", "--resume", "mm")
    assert code == 2 and err.strip().splitlines() == [
        "error: mm/checkpoints/step-2/trainer.json: the checkpoint is a run of model 'multimodal.classifier' on data "
        "'multimodal.digits', this config trains 'tiny' on 'text'; a resumed run keeps its model and data: resume "
        "without the config file (the run's own config is used), or train this config in another run folder "
        "(--run-dir)"], err


def _links(folder: Path) -> None:
    (folder / "loop").symlink_to("loop")
    (folder / "dangling").symlink_to("gone.jsonl")
    (folder / "afile").write_text("")


@pytest.mark.parametrize(("name", "problem"), [
    ("loop", "is a loop of symbolic links"),
    ("dangling", "is a symbolic link to gone.jsonl, which does not exist"),
    ("missing", "does not exist"),
])
def test_table_names_a_loop_or_dangling_link(tmp_path: Path, name: str, problem: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """click's 'does not exist' was said of a loop of links and of a link to nothing."""
    _links(tmp_path)
    out = deepseek_here(monkeypatch, tmp_path, "multimodal", "table", name)
    assert out == (2, f"error: {name}: {problem}; pass results.jsonl files of 'study'", "")


@pytest.mark.parametrize(("name", "problem"), [
    ("loop", "is a loop of symbolic links"),
    ("dangling", "is a symbolic link to gone.jsonl, which does not exist"),
    ("missing", "does not exist"),
    ("afile", "is not a folder"),
])
def test_study_names_unimodal_runs_that_are_a_loop_or_dangling_link(tmp_path: Path, name: str, problem: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _links(tmp_path)
    out = deepseek_here(monkeypatch, tmp_path, "multimodal", "study", "--recipe", "frozen", "--unimodal-runs", name,
                        "--out", "res")
    assert out == (2, f"error: --unimodal-runs: {name} {problem}; pass the runs folder of an earlier study", "")
    assert not (tmp_path / "res").exists()
