"""``deepseek optimize --checkpoint RUN`` without ``--seq`` traces the model at 128 tokens, or at
its ``max_seq_len`` when that is shorter (a run of ``examples/configs/quick-cpu.toml`` has 64:
the fixed default 128 was refused, so the documented command failed); an explicit ``--seq``
beyond the context is still refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

from hostile_cli import invoke

from deepseek.plugins.host import PluginHost

# hostile_cli.TINY: model.max_seq_len = 32


def test_optimize_without_seq_uses_the_models_context_when_shorter(trained_run: Path, core_host: PluginHost) -> None:
    out = invoke(["optimize", "--checkpoint", str(trained_run), "--passes", "const-fold", "--json"], core_host)
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["checkpoint"] == str(trained_run)
    refused = invoke(["optimize", "--checkpoint", str(trained_run), "--seq", "64"], core_host)
    assert refused.code == 2
    assert refused.stderr.strip() == "error: --seq 64 exceeds the model's max_seq_len 32; use --seq <= 32"


def test_optimize_titles_its_table_with_the_model_and_readable_inputs(trained_run: Path, core_host: PluginHost) -> None:
    """The table's title named the plan's cache key, a repr of nested tuples
    (``(('T', (1, 32), 'torch.int64', 'cpu'),)``); it names the model and its inputs."""
    out = invoke(["optimize", "--checkpoint", str(trained_run), "--passes", "const-fold"], core_host)
    assert out.code == 0, out.stderr
    assert "deepseek optimize: tiny, inputs int64 (1, 32) on cpu" in out.stdout, out.stdout
    assert "'T'" not in out.stdout
