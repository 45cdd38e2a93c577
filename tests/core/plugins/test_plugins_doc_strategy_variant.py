"""docs/plugins.md section 12, "A variant of an existing strategy", works as the page shows it:
its ``AcmeSingle`` (the block marked ``<!-- test: strategy-variant -->``, run as a module) trains
a tiny GPT reporting its step count as a step metric, writes its own file into each checkpoint
(listed in the commit record), goes on counting after a resume, and starts from the saved step
when it resumes a checkpoint ``single`` wrote. An outside author found neither ``step_metrics``
nor files of a strategy's own in a checkpoint on the page; the page now shows both."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path
from typing import Any

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer

DOC = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"
BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\n```python\n(.*?)\n```", re.S)
TINY = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 16},
    "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1},
    "train": {"max_steps": 4, "eval_interval": 0},
    "precision": {"dtype": "fp32"}, "strategy": {"name": "acme.single", "device": "cpu"},
    "checkpoint": {"interval": 2, "keep_last": 3}, "logging": {"progress": False, "plot": False},
}


def _host(monkeypatch: Any) -> PluginHost:
    module = types.ModuleType("doc_strategy_variant")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    code = dict(BLOCK.findall(DOC.read_text(encoding="utf-8")))["strategy-variant"]
    exec(compile(code, "docs/plugins.md:strategy-variant", "exec"), module.__dict__)  # noqa: S102

    class Plugin:
        @hookimpl
        def deepseek_register_strategies(self, register: Any) -> None:
            register("acme.single", module.AcmeSingle, description="single, counting its steps",
                     declares={"memory_rows": ["single"]})

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-acme").status == "ok"
    return host


def _train(tmp_path: Path, host: PluginHost, run: str, strategy: str = "acme.single", **kwargs: Any) -> Any:
    tables = {**TINY, "strategy": {**TINY["strategy"], "name": strategy},
              "logging": {**TINY["logging"], "runs_dir": str(tmp_path)}}
    return Trainer(config_from_dict(tables, host=host), run_dir=tmp_path / run, host=host, quiet=True,
                   **kwargs).fit()


def _counts(run_dir: Path) -> dict[int, Any]:
    return {row["step"]: row.get("acme_steps") for row in read_metrics(run_dir / "metrics.jsonl") if "loss" in row}


def test_the_pages_strategy_variant_reports_saves_and_resumes_its_count(tmp_path: Path, monkeypatch: Any) -> None:
    host = _host(monkeypatch)
    done = _train(tmp_path, host, "run")
    assert _counts(done.run_dir) == {1: 1, 2: 2, 3: 3, 4: 4}
    step2 = done.run_dir / "checkpoints" / "step-2"
    assert json.loads((step2 / "acme-steps.json").read_text()) == 2
    assert "acme-steps.json" in json.loads((step2 / "commit.json").read_text())["files"]

    resumed = _train(tmp_path, host, "resumed", resume=step2)
    assert _counts(resumed.run_dir) == {3: 3, 4: 4}

    plain = _train(tmp_path, host, "plain", strategy="single")  # no file of acme's in its checkpoints
    assert not (plain.run_dir / "checkpoints" / "step-2" / "acme-steps.json").exists()
    crossed = _train(tmp_path, host, "crossed", resume=plain.run_dir / "checkpoints" / "step-2")
    assert _counts(crossed.run_dir) == {3: 3, 4: 4}
