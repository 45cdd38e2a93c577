"""The encoder and fusion contract suites (tests/contract, docs/plugins.md section 9) fail a
component with a parameter that no output reaches: on one process such a parameter only never
trains, but ``deepseek launch -- train --strategy ddp`` stops at the first step (DDP's
``find_unused_parameters``), after the job was launched. Before, both suites asked only that *some*
parameter got a gradient, and a fusion method written from docs/multimodal.md with a pairwise
layer for the first modality that no pair used passed them, then failed under ddp."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PLUGIN = """
from deepseek import hookimpl

@hookimpl
def deepseek_register_fusions(register):
    register("unused.fusion", "deepseek_unused.parts:Spare", description="concat with a spare layer")

@hookimpl
def deepseek_register_encoders(register):
    register("vision.unused", "deepseek_unused.parts:SpareEncoder", description="patches with a spare layer")
"""

PARTS = """
import torch
from torch import nn

from deepseek.models.encoder import Encoder, EncoderOutput
from deepseek_enterprise.fusion import Fusion, FusionOutput, present_mean


class Spare(Fusion):
    def __init__(self, options, *, dims, num_classes):
        super().__init__(options, dims=dims, num_classes=num_classes)
        self.spare = nn.Linear(options.d_model, num_classes)    # never called
        self.out = nn.Linear(options.d_model, num_classes)

    def forward(self, features, present):
        pooled = self.pool(features)
        return FusionOutput(self.out(present_mean(pooled, present)), self.classify(pooled), pooled)


class SpareEncoder(Encoder):
    def __init__(self, options):
        super().__init__()
        self.embed = nn.Conv2d(1, 8, 4, stride=4)
        self.spare = nn.Linear(8, 8)                            # never called
        self.output_dim = 8

    def forward(self, pixels, padding_mask=None):
        f = self.embed(pixels).flatten(2).transpose(1, 2)
        return EncoderOutput(f, torch.zeros(f.shape[:2], dtype=torch.bool))

    def example_inputs(self, batch_size=2):
        return torch.randn(batch_size, 1, 8, 8), None
"""


def test_a_parameter_no_output_reaches_fails_the_encoder_and_fusion_contracts(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "deepseek_unused").mkdir(parents=True)
    (site / "deepseek_unused" / "__init__.py").write_text("")
    (site / "deepseek_unused" / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    (site / "deepseek_unused" / "parts.py").write_text(textwrap.dedent(PARTS))
    info = site / "deepseek_unused-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-unused\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[deepseek]\nunused = deepseek_unused.plugin\n")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("DEEPSEEK_")}
    env.update(PYTHONPATH=f"{site}:{env.get('PYTHONPATH', '')}", DEEPSEEK_PLUGINS="deepseek-unused,deepseek-enterprise",
               DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    contract = REPO / "tests" / "contract"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "pt"),
         str(contract / "test_fusions_contract.py"), str(contract / "test_encoders_contract.py"),
         str(contract / "test_classifier_parts_contract.py"),
         "-k", "deepseek-unused:"],
        capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    out = proc.stdout + proc.stderr
    failed = set(re.findall(r"^FAILED \S+::(\S+)", out, re.M))
    assert failed == {"test_fusion_trains[deepseek-unused:unused.fusion]",
                      "test_encoder_trains[deepseek-unused:vision.unused]",
                      "test_fusion_trains_inside_the_classifier[deepseek-unused:unused.fusion]",
                      "test_encoder_trains_inside_the_classifier[deepseek-unused:vision.unused]"}, out[-3000:]
    assert "parameters ['spare.weight', 'spare.bias'] get no gradient from any output" in out, out[-3000:]
    assert "parameters ['spare.weight', 'spare.bias'] get no gradient from the features" in out, out[-3000:]
    # Inside multimodal.classifier too (the suite that puts each part in the model that uses it).
    assert out.count("parameters ['spare.weight', 'spare.bias'] get no gradient from the loss of "
                     "multimodal.classifier") >= 2, out[-3000:]
    # Everything else these components promise holds: only the unused parameters fail them (the
    # four above), every other check of theirs passes, and nothing errors.
    assert re.fullmatch(r"4 failed, [1-9]\d* passed(, \d+ skipped)?(, \d+ deselected)? in .*", out.strip().splitlines()[-1]), out[-3000:]
