"""``deepseek compare RUN_A RUN_B``: paired per-example evaluation of two trained models with a
bootstrap interval and verdict, size and latency side by side; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _inprocess import deepseek_here
from _tune_common import deepseek, tiny_config

from deepseek_enterprise.paired_bootstrap import bootstrap


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("compare")
    for name, lr in (("good", 3e-3), ("poor", 1e-5)):
        (work / f"{name}.toml").write_text(tiny_config(40, lr=lr, eval_batches=4, eval_interval=40))
        out = deepseek("train", f"{name}.toml", "--run-dir", name, "--quiet", cwd=work)
        assert out.returncode == 0, out.stderr
    return work


def report(work: Path, *args: str) -> dict[str, Any]:
    out = deepseek("compare", *args, "--json", "r.json", "--latency-runs", "5", cwd=work)
    assert out.returncode == 0, out.stderr
    assert "paired examples" in out.stdout and "size and latency" in out.stdout
    return json.loads((work / "r.json").read_text())


def test_the_json_report_names_the_folders_it_created(runs: Path) -> None:
    out = deepseek("compare", "good", "poor", "--latency-runs", "0", "--json", "ab/1/r.json", cwd=runs)
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("\nwrote ab/1/r.json (created folders ab, ab/1)\n")
    assert json.loads((runs / "ab" / "1" / "r.json").read_text())["examples"] == 32


def test_a_clearly_worse_model_is_significantly_worse(runs: Path) -> None:
    r = report(runs, "good", "poor")
    (loss,) = [p for p in r["paired"] if p["name"] == "loss"]
    assert r["examples"] == 32  # 4 validation batches of 8 rows, each row its own example
    assert loss["b"] > loss["a"] and loss["low"] > 0 and loss["p_value"] < 0.05
    assert loss["verdict"].startswith("B worse")
    # A's mean over the rows is `deepseek eval`'s validation loss on the same batches.
    ev = json.loads(deepseek("eval", "--checkpoint", "good", "--json", cwd=runs).stdout)
    assert loss["a"] == pytest.approx(ev["val_loss"], rel=1e-5)
    a, b = r["runs"]["A"], r["runs"]["B"]
    assert a["parameters"] == b["parameters"] > 0 and a["p50_ms"] > 0 and b["p50_ms"] > 0
    weights = next((runs / "good" / "checkpoints").glob("step-*")) / "model.safetensors"
    assert a["weights_bytes"] == weights.stat().st_size  # the model's weights, not the optimizer state


def test_a_model_against_itself_has_no_difference(runs: Path) -> None:
    r = report(runs, "good", "good")
    (loss,) = r["paired"]
    assert loss["diff"] == 0 and loss["p_value"] == 1 and loss["verdict"] == "no significant difference"
    assert list(loss) == ["name", "a", "b", "diff", "low", "high", "p_value", "better", "resamples", "verdict"]
    assert (loss["better"], loss["resamples"]) == ("lower", 10_000)


def test_bootstrap_interval_and_p_value() -> None:
    mean, low, high, p = bootstrap([0.0] * 50, [1.0] * 50, resamples=2000, seed=0)
    assert (mean, low, high) == (1.0, 1.0, 1.0) and p == pytest.approx(1 / 2000)
    noise = [(-1) ** i * 0.5 for i in range(40)]
    mean, low, high, p = bootstrap([0.0] * 40, noise, resamples=4000, seed=1)
    assert mean == 0 and low < 0 < high and p > 0.5
    again = bootstrap([0.0] * 40, noise, resamples=4000, seed=1)
    assert again == (mean, low, high, p)  # seeded
    many = [0.01 * i for i in range(100_000)]  # drawn 41 resamples at a time: the same as all at once
    assert bootstrap([0.0] * len(many), many, resamples=300, seed=2) == pytest.approx(
        _bootstrap_at_once(many, 300, 2), abs=1e-12)


def _bootstrap_at_once(d: list[float], resamples: int, seed: int) -> tuple[float, float, float, float]:
    import numpy as np

    x = np.asarray(d)
    means = x[np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    p = 2 * min(float((means <= 0).mean()), float((means >= 0).mean()))
    return float(x.mean()), float(low), float(high), min(1.0, max(p, 1 / resamples))


@pytest.mark.parametrize(("args", "message"), [
    (["good", "missing"], "missing: no such checkpoint or run folder"),
    (["good", "poor", "--data", "nope.toml"], "nope.toml: config file not found"),
    # the API's words for it, naming no option: "config path: expected a path (...), got an empty path"
    (["good", "poor", "--data", ""], "Invalid value for '--data': '' is an empty path"),
    (["good", "poor", "--resamples", "5"], "Invalid value for '--resamples'"),
    # (resamples x examples) indices at once: an out-of-memory line that named --batch and --seq
    (["good", "poor", "--resamples", "100000000000"], "100000000000 is not in the range 100<=x<=1000000"),
    (["good", "poor", "--json", "good"], "--json: good is a folder"),
    # the memory check named data.eval_batches, a key the user never gave
    (["good", "poor", "--batches", str(10**20)], f"--batches {10**20} x data.batch_size"),
    # ran until killed
    (["good", "poor", "--latency-runs", str(10**30)], f"{10**30} is not in the range 0<=x<=1000000"),
    # the report was written over the config it read the data from
    (["good", "poor", "--data", "good.toml", "--json", "good.toml"],
     "--json: good.toml is the file --data gives, which this command reads (writing there would replace it); "
     "give another path, e.g. compare.json"),
])
def test_bad_input_is_one_line(monkeypatch: pytest.MonkeyPatch, runs: Path, args: list[str], message: str) -> None:
    before = (runs / "good.toml").read_bytes()
    code, err, _ = deepseek_here(monkeypatch, runs, "compare", *args)
    assert code == 2 and message in err, err
    assert len(err.splitlines()) == 1
    assert (runs / "good.toml").read_bytes() == before


def test_a_latency_variant_that_failed_for_its_own_reason_is_no_figure() -> None:
    """A variant ``run_latency`` reported as failed and left out (not the model's bug: no model
    block here) is no p50 in the comparison (None, printed as "-"), not a StopIteration, with a
    warning saying why (p50_ms passes run_latency no progress: it was a silent "-")."""
    import torch

    from deepseek_enterprise.compare import p50_ms

    class FailsWhenTimed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2))
            self.calls = 0

        def forward(self, x: torch.Tensor) -> Any:
            self.calls += 1
            if self.calls > 8:  # the reference and warm-up calls pass, the timed ones fail
                raise RuntimeError("no kernel for this")
            return x * self.w

    model = FailsWhenTimed()
    with pytest.warns(UserWarning) as said:  # why there is no figure: the CLI's one warning line
        assert p50_ms(model, [{"x": torch.ones(3, 2)}], runs=20) is None and model.calls > 8
    assert [str(w.message) for w in said] == [
        "batch-1 latency under eager: not timed, it failed on its own (RuntimeError: no kernel for this)"]
