"""docs/compress.md's complete compressor works as the page shows it.

The blocks marked ``compressor-plugin`` (the module) and ``compressor-hooks`` (the entry point)
are written into a throwaway distribution ``deepseek-acme`` on ``PYTHONPATH`` (a ``dist-info``
folder beside the package, docs/plugins.md "Trying a plugin without installing it"), and
``deepseek compress --method acme.magnitude`` runs on a trained tiny GPT in a subprocess, as an
outside author would run it. The result must hold exactly the input's weights with the
``ratio`` smallest of every Linear weight set to zero; a bad option is one line, exit 2; and the
module's ``loads_without_torch`` declaration is true (a fresh process imports it without torch).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _compresshelpers import deepseek_cli, train_tiny
from safetensors.torch import load_file

DOC = Path(__file__).resolve().parents[2] / "docs" / "compress.md"
BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\n```(\w+)\n(.*?)\n```", re.S)
MODULES = {"compressor-hooks": "plugin.py", "compressor-plugin": "compress.py"}


def install_from_page(site: Path) -> dict[str, str]:
    """Write the page's compressor plugin into ``site``; returns the environment that finds it."""
    blocks = {m: code for m, _, code in BLOCK.findall(DOC.read_text(encoding="utf-8"))}
    assert set(MODULES) <= set(blocks), sorted(blocks)
    package = site / "deepseek_acme"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for marker, name in MODULES.items():
        (package / name).write_text(blocks[marker] + "\n", encoding="utf-8")
    info = site / "deepseek_acme-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-acme\nVersion: 0.1.0\n"
                                   "Requires-Dist: deepseek-enterprise<0.2,>=0.1.0\n")
    (info / "entry_points.txt").write_text("[deepseek]\nacme = deepseek_acme.plugin\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    work = train_tiny(tmp_path_factory.mktemp("compress-docs"))
    env = install_from_page(work / "site")
    out = deepseek_cli("compress", "--checkpoint", "run", "--method", "acme.magnitude", "--set", "ratio=0.5",
                       "--out", "out", "--latency-runs", "0", "--batches", "1", cwd=work, env=env)
    assert out.returncode == 0, out.stderr
    return work, env


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "step-30" / "model.safetensors")  # train_tiny's 30 steps


def test_the_page_compressor_zeroes_half_of_every_linear_weight_and_nothing_else(pruned) -> None:  # noqa: ANN001
    work, _ = pruned
    before, after = weights(work / "run"), weights(work / "out")
    assert before.keys() == after.keys()
    linear = {k for k in before if k.startswith("blocks.") and k.endswith(".weight") and before[k].dim() == 2}
    assert len(linear) == 8, sorted(linear)  # qkv, proj, fc, proj of each of the 2 layers
    zeroed = 0
    for key in before:
        kept = after[key] != 0
        assert torch.equal(after[key][kept], before[key][kept]), key  # a kept weight is the input's
        if key in linear:
            removed = int((~kept).sum()) - int((before[key] == 0).sum())
            assert removed == before[key].numel() // 2, (key, removed)
            # every weight removed is no larger in magnitude than any weight kept
            assert before[key][~kept].abs().max() <= before[key][kept].abs().min(), key
            zeroed += removed
    record = json.loads((work / "out" / "compression.json").read_text())
    assert record["method"] == "acme.magnitude" and record["options"] == {"ratio": 0.5}
    assert record["record"]["zeroed_weights"] >= zeroed
    assert record["record"]["parameters"][0] == record["record"]["parameters"][1]


def test_a_bad_ratio_is_one_line_exit_2_and_nothing_is_written(pruned) -> None:  # noqa: ANN001
    work, env = pruned
    out = deepseek_cli("compress", "--checkpoint", "run", "--method", "acme.magnitude", "--set", "ratio=1.5",
                       "--out", "bad", cwd=work, env=env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: --set (acme.magnitude).ratio: must be between 0 and 1 (exclusive), got 1.5 (float)"]
    assert not (work / "bad").exists()


def test_its_loads_without_torch_declaration_is_true(pruned) -> None:  # noqa: ANN001
    _, env = pruned
    out = subprocess.run([sys.executable, "-c", "import sys, deepseek_acme.compress; print('torch' in sys.modules)"],
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
