"""``deepseek compress --max-drop``: every recipe is tried and reported, only those within the
budget are kept, the smallest of them is written (the fastest with ``--prefer latency``), and a
budget nothing meets writes nothing and says which recipe came closest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from _compresshelpers import CONFIG, deepseek_cli, train_tiny
from _inprocess import deepseek_here

from deepseek_enterprise.compress.search import Tried, parse_recipe, pick

QCONFIG = {**CONFIG, "model": {**CONFIG["model"], "d_model": 64, "d_ff": 256}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("search"), QCONFIG)


def _search(trained: Path, out: str, budget: str, *recipes: str, extra: tuple[str, ...] = ()) -> tuple[int, str, dict | None]:
    args = ["compress", "--checkpoint", "run", "--max-drop", budget, "--out", out, "--latency-runs", "0",
            "--json", f"{out}.json", *extra]
    for recipe in recipes:
        args += ["--recipe", recipe]
    proc = deepseek_cli(*args, cwd=trained)
    report = json.loads((trained / f"{out}.json").read_text()) if proc.returncode == 0 else None
    return proc.returncode, proc.stderr, report


def test_every_recipe_is_reported_and_the_smallest_within_budget_is_written(trained: Path) -> None:
    rc, err, report = _search(trained, "all", "50%", extra=("--recovery-steps", "0"))  # with it: test_compress_recover
    assert rc == 0, err
    candidates = report["candidates"]
    assert [c["recipe"] for c in candidates][:4] == [
        "prune.ffn ratio=0.5 + quantize.int8", "prune.ffn ratio=0.25 + quantize.int8",
        "prune.mlp ratio=0.5 + quantize.int8", "quantize.int8"]
    verdicts = {c["recipe"]: c["verdict"] for c in candidates}
    assert verdicts["prune.mlp ratio=0.5"].startswith("not applicable: prune.mlp: a GPT's MLP channels")
    fits = [c for c in candidates if c["drop"] is not None and c["drop"] <= 50]
    kept = [c for c in candidates if c["verdict"].startswith("kept")]
    assert len(kept) == 1 and kept[0]["weights_bytes"] == min(c["weights_bytes"] for c in fits)
    assert report["recipe"] == kept[0]["recipe"] == "prune.ffn ratio=0.5 + quantize.int8"
    assert report["prefer"] == "size" and kept[0]["verdict"] == "kept: the smallest within budget"
    assert [r["method"] for r in report["record"]] == ["prune.ffn", "quantize.int8"]
    ev = deepseek_cli("eval", "--checkpoint", "all", "--json", cwd=trained)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["val_loss"] == pytest.approx(kept[0]["val_loss"], rel=1e-6)
    config = (trained / "all" / "config.toml").read_text()
    assert 'name = "quantized"' in config and "d_ff = 128" in config  # pruned, then quantized


def test_only_recipes_within_budget_are_kept_and_each_other_says_why(trained: Path) -> None:
    recipes = ("prune.ffn ratio=0.9", "quantize.int8")
    rc, err, wide = _search(trained, "wide", "50%", *recipes)
    assert rc == 0, err
    drops = {c["recipe"]: c["drop"] for c in wide["candidates"]}
    assert drops["prune.ffn ratio=0.9"] > max(drops["quantize.int8"], 0)
    budget = (drops["prune.ffn ratio=0.9"] + max(drops["quantize.int8"], 0)) / 2
    rc, err, tight = _search(trained, "tight", f"{budget:.6f}%", *recipes)
    assert rc == 0, err
    verdicts = {c["recipe"]: c["verdict"] for c in tight["candidates"]}
    assert verdicts["prune.ffn ratio=0.9"].startswith(f"rejected: drop +{drops['prune.ffn ratio=0.9']:.2f}% >")
    assert verdicts["quantize.int8"].startswith("kept") and tight["recipe"] == "quantize.int8"


def test_a_budget_nothing_meets_writes_nothing_and_names_the_closest(monkeypatch: pytest.MonkeyPatch,
                                                                      trained: Path) -> None:
    weights = next((trained / "run" / "checkpoints").glob("step-*")) / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    rc, err, _ = deepseek_here(monkeypatch, trained, "compress", "--checkpoint", "run", "--max-drop", "0%", "--out",
                               "none", "--latency-runs", "0", "--json", "none.json", "--recipe", "prune.ffn ratio=0.9",
                               "--recipe", "prune.ffn ratio=0.95 multiple_of=4")
    assert rc == 2
    assert err.startswith("error: --max-drop 0%: no recipe stays within it; the closest was prune.ffn ratio=0.9")
    assert len(err.strip().splitlines()) == 1 and not (trained / "none").exists()
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest  # the original untouched


def _tried(label: str, weights: int, p50: float | None, drop: float) -> Tried:
    return Tried(parse_recipe(label), {"val_loss": 1.0, "weights_bytes": weights, "p50_ms": p50}, drop)


def test_prefer_latency_keeps_the_fastest_within_budget_where_size_keeps_the_smallest() -> None:
    """The case reported for the tri-modal classifier: the smallest recipe within the budget took
    ~8x the original's batch-1 latency, and --max-drop kept it (size is still the default)."""
    smallest = _tried("prune.mlp ratio=0.5 + quantize.int8", 40_000, 8.0, 0.2)
    fast = _tried("prune.mlp ratio=0.5", 90_000, 0.9, 0.1)
    fast_smaller = _tried("prune.mlp ratio=0.5 + recover steps=100", 80_000, 0.9, 0.3)
    fast_smaller_better = _tried("prune.mlp ratio=0.5 + recover steps=200", 80_000, 0.9, 0.0)
    plain = _tried("quantize.int8-weight", 60_000, 3.0, 0.0)
    assert pick([smallest, fast, plain]) is smallest  # the default: size
    assert pick([smallest, fast, plain], "size") is smallest
    assert pick([smallest, fast, plain], "latency") is fast
    # ties on latency: the smaller weights, then the smaller drop
    assert pick([smallest, fast, fast_smaller, plain], "latency") is fast_smaller
    assert pick([smallest, fast, fast_smaller, fast_smaller_better, plain], "latency") is fast_smaller_better


def test_a_recipe_whose_latency_variant_failed_on_its_own_is_slower_than_any_not_a_type_error() -> None:
    """run_latency leaves out a variant whose timed calls fail for a reason not the model's, and
    p50_ms is then None: --prefer latency compared None with the others' p50 (TypeError out of the
    search), and --prefer size took it as the fastest on a tie of weights (``or 0.0``)."""
    untimed = _tried("prune.mlp ratio=0.5", 50_000, None, 0.0)
    timed = _tried("quantize.int8-weight", 50_000, 3.0, 0.1)
    slower = _tried("quantize.int8", 60_000, 9.0, 0.0)
    assert pick([untimed, slower], "latency") is slower
    assert pick([untimed, timed], "size") is timed
    assert pick([untimed], "latency") is untimed


def test_the_report_shows_a_p50_its_variant_did_not_give_as_a_dash(capsys: pytest.CaptureFixture[str]) -> None:
    """deepseek.optimize can time the original and fail on its own on the compressed model (p50 None):
    the report's table formatted that None (TypeError) after the folder was written; now it is '-'."""
    from deepseek_enterprise.compress.cli import _print

    side = {"parameters": 1000, "weights_bytes": 4000, "linear_weight_bytes": 2000, "val_loss": 1.0}
    report = {"method": "quantize.int8", "options": {}, "source": "run",
              "original": {**side, "p50_ms": 2.0, "p50_optimized_ms": 1.0},
              "compressed": {**side, "p50_ms": 3.0, "p50_optimized_ms": None}}
    _print(report, Path("out"))
    rows = [[cell.strip() for cell in line.strip("│ ").split("│")]
            for line in capsys.readouterr().out.splitlines() if "p50 batch 1" in line]
    assert rows == [["p50 batch 1 (eager)", "2.00 ms", "3.00 ms", "1.500x"],
                    ["p50 batch 1 (deepseek.optimize)", "1.00 ms", "-", "-"]]


def test_the_tables_name_the_units_of_their_changes(capsys: pytest.CaptureFixture[str]) -> None:
    """The comparison's last column gave val_accuracy 0.90 -> 0.89 as "-1.11%" (relative), beside an
    --max-drop Npt budget in points (that drop is 1.00pt), with no unit named: accuracy now reads in
    points first, every validation value's relative change says "rel", and the search table's drop
    column names its metric and unit."""
    from deepseek_enterprise.compress.cli import _print, _print_search
    from deepseek_enterprise.compress.search import parse_budget

    side = {"parameters": 1000, "weights_bytes": 4000, "linear_weight_bytes": 2000, "p50_ms": None,
            "p50_optimized_ms": None}
    report = {"method": "quantize.int8", "options": {}, "source": "run",
              "original": {**side, "val_loss": 0.5, "val_accuracy": 0.9},
              "compressed": {**side, "val_loss": 0.55, "val_accuracy": 0.89}}
    _print(report, Path("out"))
    lines = capsys.readouterr().out.splitlines()
    rows = [[cell.strip() for cell in line.strip("│ ").split("│")] for line in lines if "val_" in line]
    assert rows == [["val_loss", "0.5000", "0.5500", "+10.00% rel"],
                    ["val_accuracy", "0.9000", "0.8900", "-1.00pt (-1.11% rel)"]]
    assert any("compressed vs original" in line for line in lines), lines
    tried = [_tried("quantize.int8", 10, None, 1.0)]
    for budget, header in (("2pt", "drop (val_accuracy, points below the original's)"),
                           ("2%", "drop (val_loss, % above the original's)")):
        tried[0].figures["val_loss"] = 0.55
        _print_search(tried, {"val_loss": 0.5, "weights_bytes": 20}, parse_budget(budget))
        out = capsys.readouterr().out
        assert header in out and f"+1.00{parse_budget(budget).unit}" in out, out


def test_a_latency_search_keeps_the_fastest_and_says_so(trained: Path) -> None:
    recipes = ("prune.ffn ratio=0.5 + quantize.int8", "quantize.int8", "prune.ffn ratio=0.5")
    args = ("--prefer", "latency", "--latency-runs", "3")
    rc, err, report = _search(trained, "fast", "50%", *recipes, extra=args)
    assert rc == 0, err
    candidates = report["candidates"]
    fits = [c for c in candidates if c["drop"] is not None and c["drop"] <= 50]
    assert len(fits) == 3 and all(c["p50_ms"] > 0 for c in fits)
    kept = [c for c in candidates if c["verdict"] == "kept: the fastest within budget"]
    # the measured p50s decide: the kept one is the fastest (ties: smaller weights, then drop)
    fastest = min(fits, key=lambda c: (c["p50_ms"], c["weights_bytes"], c["drop"]))
    assert report["prefer"] == "latency" and [c["recipe"] for c in kept] == [fastest["recipe"]] == [report["recipe"]]
    assert all(c["verdict"] == "within budget; a faster (or as fast and smaller or better) recipe was kept"
               for c in fits if c is not kept[0])
    assert json.loads((trained / "fast" / "compression.json").read_text())["prefer"] == "latency"


@pytest.mark.parametrize(("args", "message"), [
    (["--max-drop", "1%", "--prefer", "fast"], "'fast' is not one of 'size', 'latency'"),
    (["--max-drop", "1%", "--prefer", "latency", "--latency-runs", "0"],
     "--prefer latency: keeps the fastest recipe, but --latency-runs 0 times none"),
    (["--method", "quantize.int8", "--prefer", "size"], "--prefer: chooses among the recipes of a --max-drop search"),
    (["--max-drop", "1"], "--max-drop: '1' is not a budget"),
    (["--max-drop", "1pt"], "reports no validation accuracy; give a loss budget such as 1%"),
    (["--max-drop", "1%", "--method", "quantize.int8"], "give --method NAME (one compressor) or --max-drop"),
    ([], "give --method NAME (one compressor) or --max-drop"),
    (["--recipe", "quantize.int8"], "--recipe: recipes are tried by a search"),
    (["--max-drop", "1%", "--set", "ratio=0.5"], "--set: options belong to --method"),
    (["--max-drop", "1%", "--recipe", "prune.fn"], "did you mean 'prune.ffn'"),
    (["--max-drop", "1%", "--recipe", "prune.ffn ratio=2"], "--recipe (prune.ffn).ratio: must be between 0 and 1"),
    (["--max-drop", "1%", "--recipe", "prune.ffn 0.5"], "'0.5' is not KEY=VALUE"),
    (["--max-drop", "1%", "--recipe", "prune.ffn ra..tio=0.5"],  # said --set 'recipe.ra..tio=0.5'
     "--recipe 'prune.ffn ra..tio=0.5': 'ra..tio=0.5' is not KEY=VALUE (options follow the compressor's name)"),
    (["--method", "prune.ffn", "--set", "ra..tio=0.5"],  # said --set 'compressor.ra..tio=0.5', e.g. train.lr
     "--set 'ra..tio=0.5': expected KEY=VALUE, an option of compressor prune.ffn, e.g. --set ratio=0.5"),
    (["--max-drop", "1%", "--recipe", "prune.ffn ratio=0.5 ratio=0.6 + quantize.int8"],
     "--recipe 'prune.ffn ratio=0.5 ratio=0.6 + quantize.int8': prune.ffn ratio given twice; give it once"),
    # a compressor's refusal of the model names the option that chose it (and suggests no --method in a recipe)
    (["--method", "prune.mlp"], "error: --method prune.mlp: a GPT's MLP channels are pruned by prune.ffn; use prune.ffn"),
    (["--method", "prune.ffn", "--set", "ratio=0.5", "--set", "ratio=0.25"],  # the last one silently won
     "error: --set (prune.ffn): ratio given twice; give it once"),
])
def test_bad_search_input_is_one_line(monkeypatch: pytest.MonkeyPatch, trained: Path, args: list[str],
                                     message: str) -> None:
    code, err, _ = deepseek_here(monkeypatch, trained, "compress", "--checkpoint", "run", "--out", "never", *args)
    assert code == 2 and message in err, err
    assert len(err.splitlines()) == 1 and not (trained / "never").exists()


def test_recipes_none_of_which_can_run_are_not_blamed_on_the_budget(monkeypatch: pytest.MonkeyPatch,
                                                                   trained: Path) -> None:
    """A second quantize step cannot run; the line said "raise the budget"."""
    rc, err, _ = deepseek_here(monkeypatch, trained, "compress", "--checkpoint", "run", "--max-drop", "5%", "--out",
                               "never", "--latency-runs", "0", "--recipe", "quantize.int8 + quantize.int8")
    assert rc == 2 and err.strip().splitlines() == [
        "error: --max-drop 5%: no recipe could run on this model (the table says why for each); nothing was written "
        "(give recipes that apply: --recipe, docs/compress.md)"], err
    assert not (trained / "never").exists()
