"""docs/plugins.md section 6: the block that keeps a callback's state in a file of its own runs as
written. It used ``json``, ``hookimpl``, ``_ema`` and ``deepseek.durable`` without importing or
defining them (``import deepseek`` alone does not bind ``deepseek.durable``), so a plugin author
copying it got a NameError or AttributeError in the middle of a run."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

REPO = Path(__file__).resolve().parents[3]
# The block sits in a list item: its lines are indented by two spaces.
BLOCK = re.compile(r"^( *)<!-- test: callback-state -->\n\1```python\n(.*?)\n\1```", re.S | re.M)


def _module() -> types.ModuleType:
    found = BLOCK.search((REPO / "docs" / "plugins.md").read_text(encoding="utf-8"))
    assert found, "docs/plugins.md lost its 'callback-state' block"
    indent, body = found.groups()
    code = "\n".join(line[len(indent):] for line in body.splitlines())
    module = types.ModuleType("acme_callback_state")
    exec(compile(code, "plugins.md:callback-state", "exec"), module.__dict__)  # noqa: S102
    return module


def test_the_state_block_runs_as_written_and_resumes_from_the_saved_step(tmp_path: Path) -> None:
    plugin = _module()
    record = PluginHost(PluginSettings(autoload=False)).register_plugin(plugin, dist="deepseek-acme", version="0.1.0")
    assert record.status == "ok", record.reason

    first = types.SimpleNamespace(run_dir=tmp_path, is_global_zero=True, step=0)
    plugin.deepseek_train_start(trainer=first)
    assert plugin._ema[id(first)] is None  # a fresh run: no file yet
    for step, ema in ((10, 0.5), (20, 0.25), (25, 0.125)):  # 25: a row of a run killed after step 20's checkpoint
        plugin._ema[id(first)] = ema
        plugin.deepseek_checkpoint_saved(trainer=first, path=tmp_path / f"step-{step}", step=step)

    resumed = types.SimpleNamespace(run_dir=tmp_path, is_global_zero=True, step=20)
    plugin.deepseek_train_start(trainer=resumed)
    assert plugin._ema[id(resumed)] == 0.25
    rows = [json.loads(line) for line in (tmp_path / "acme-state.jsonl").read_text().splitlines()]
    assert rows == [{"step": 10, "ema": 0.5}, {"step": 20, "ema": 0.25}]  # the killed run's row is gone
