"""docs/tune.md's in-process tuner that reports its training's evaluations to the study's pruner
(the block marked ``in-process-pruning``), run as the page gives it: in a study, every evaluation
after step 0 reaches Optuna's storage as the trial's intermediate value at that step; and when the
pruner says stop at an evaluation, the training ends at that step and ``run`` raises
``TrialStopped`` with that step and value. The page said only that ``trial.report`` exists; how a
tuner training in its own process gets its evaluations to it was not written anywhere."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
import tomllib
from _hosts import enterprise_host
from _inprocess import deepseek_here
from _tune_common import tiny_config

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek_enterprise.tune.tuner import TrialRun, TrialStopped

DOC = Path(__file__).resolve().parents[2] / "docs" / "tune.md"
BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\n```python\n(.*?)\n```", re.S)
SPACE = '[space]\n"train.lr" = { type = "float", low = 1e-3, high = 1e-2, log = true }\n'


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The page's block, run as a module of its own."""
    code = dict(BLOCK.findall(DOC.read_text(encoding="utf-8")))["in-process-pruning"]
    module = types.ModuleType("tune_page_pruning")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, "docs/tune.md:in-process-pruning", "exec"), module.__dict__)  # noqa: S102
    return module


def evaluations(run: Path) -> dict[int, float]:
    """``val_loss`` of each evaluation in the run's metrics.jsonl, by step."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["val_loss"] for r in records if "val_loss" in r}


def test_the_pages_tuner_reports_every_evaluation_to_the_study(page: types.ModuleType, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    class Plugin:
        @hookimpl
        def deepseek_register_tuners(self, register):  # type: ignore[no-untyped-def]
            register("inproc", page.InProcessTuner, description="docs/tune.md's in-process tuner")

    (tmp_path / "base.toml").write_text(tiny_config(10, eval_interval=5))
    (tmp_path / "space.toml").write_text(SPACE)
    host = enterprise_host((Plugin(), "deepseek-inproc"))
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "base.toml", "--space", "space.toml", "--study", "p",
                                 "--tuner", "inproc", "--trials", "1", "--out", "st", host=host)
    assert code == 0, err
    seen = evaluations(tmp_path / "st" / "trials" / "0000" / "run")
    assert sorted(seen) == [0, 5, 10]
    (trial,) = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path / 'st' / 'study.db'}").trials
    assert trial.state.name == "COMPLETE"
    assert trial.intermediate_values == {5: seen[5], 10: seen[10]}
    assert trial.value == seen[10]


def test_the_pages_tuner_stops_its_training_where_the_pruner_says(page: types.ModuleType, tmp_path: Path) -> None:
    config = config_from_dict(tomllib.loads(tiny_config(10, eval_interval=5)))
    (tmp_path / "trial.toml").write_text(tiny_config(10, eval_interval=5))
    asked: list[tuple[int, float]] = []

    def pruner(step: int, value: float) -> bool:
        asked.append((step, value))
        return True  # stop at the first evaluation reported

    tuner = page.InProcessTuner(page.InProcessTuner.Options(), host=enterprise_host())
    trial = TrialRun(number=0, config=config, config_path=tmp_path / "trial.toml", folder=tmp_path,
                     objective="val_loss", should_stop=pruner)
    with pytest.raises(TrialStopped) as stopped:
        tuner.run(trial)
    seen = evaluations(tmp_path / "run")
    assert asked == [(5, seen[5])]
    assert (stopped.value.step, stopped.value.value) == (5, seen[5])
    assert max(seen) == 5  # no step after it was trained
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*")) == ["step-5"]
