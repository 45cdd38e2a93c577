"""The compressor contract suite (tests/contract/test_compressors_contract.py, docs/compress.md
'Writing a compressor') fails an outside compressor that breaks any of its rules, each with its
own line, and passes one that keeps them: run as a plugin author runs it, in a subprocess with a
throwaway plugin distribution installed and ``-k "deepseek-badcomp:"``. Before the suite, none of
these compressors failed a test: only ``deepseek compress`` on a trained run found the in-place
write and the table of another class, and nothing found the NaN model, the wrong figures or the
empty refusal (a refusal of two lines cannot happen: a DeepseekError writes
line breaks as escapes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PLUGIN = """
from deepseek import hookimpl

NAMES = ("good.copy", "bad.inplace", "bad.kind", "bad.nan", "bad.figures", "bad.refusal")

@hookimpl
def deepseek_register_compressors(register):
    for name in NAMES:
        cls = "".join(part.capitalize() for part in name.split("."))
        register(name, f"deepseek_badcomp.parts:{cls}", description=f"compressor {name}")
"""

PARTS = """
import copy

import torch

from deepseek.errors import UsageError
from deepseek.models.gpt import GPT
from deepseek_enterprise.compress.compressor import Compressed, Compressor, figures_record


class GoodCopy(Compressor):
    def check_model(self, model, config):
        if not isinstance(model, GPT):
            raise UsageError(f"good.copy: copies GPT models; {config.model.name!r} is not one")

    def compress(self, model, config, calibration):
        work = copy.deepcopy(model)
        return Compressed(work, config.to_dict()["model"], {"kept": "all", **figures_record(model, work)})


class BadInplace(GoodCopy):
    def compress(self, model, config, calibration):
        with torch.no_grad():
            model.lm_head.weight.mul_(0.5)                 # the model it was given
        return super().compress(model, config, calibration)


class Loud(GPT):
    pass


class BadKind(GoodCopy):
    def compress(self, model, config, calibration):
        result = super().compress(model, config, calibration)
        result.model.__class__ = Loud                     # its table still builds a GPT
        return result


class BadNan(GoodCopy):
    def compress(self, model, config, calibration):
        result = super().compress(model, config, calibration)
        with torch.no_grad():
            for p in result.model.parameters():
                p.fill_(float("nan"))
        return result


class BadFigures(GoodCopy):
    def compress(self, model, config, calibration):
        result = super().compress(model, config, calibration)
        result.record["parameters"] = [100, 50]          # not the two models' counts
        return result


class BadRefusal(GoodCopy):
    def check_model(self, model, config):
        raise UsageError("   ")
"""


def test_the_compressor_suite_fails_each_broken_rule_and_passes_a_compressor_that_keeps_them(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "deepseek_badcomp").mkdir(parents=True)
    (site / "deepseek_badcomp" / "__init__.py").write_text("")
    (site / "deepseek_badcomp" / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    (site / "deepseek_badcomp" / "parts.py").write_text(textwrap.dedent(PARTS))
    info = site / "deepseek_badcomp-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-badcomp\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[deepseek]\nbadcomp = deepseek_badcomp.plugin\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    env.update(PYTHONPATH=f"{site}:{env.get('PYTHONPATH', '')}", DEEPSEEK_PLUGINS="deepseek-badcomp,deepseek-enterprise",
               DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "pt"),
         str(REPO / "tests" / "contract" / "test_compressors_contract.py"), "-k", "deepseek-badcomp:"],
        capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    out = proc.stdout + proc.stderr
    failed = set(re.findall(r"^FAILED \S+::test_compressor_keeps_the_contract\[deepseek-badcomp:(\S+)\]", out, re.M))
    assert failed == {"bad.inplace", "bad.kind", "bad.nan", "bad.figures", "bad.refusal"}, out[-4000:]
    assert re.search(r"\b1 passed", out.strip().splitlines()[-1]), out[-4000:]  # good.copy
    assert "bad.inplace' (deepseek-badcomp 0.1.0, registered by deepseek_badcomp.plugin): compress changed the model it was given in place (" in out, out[-4000:]
    assert "builds another model than the one it returned (a GPT, where it returned a Loud)" in out, out[-4000:]
    assert re.search(r"compressor deepseek-badcomp:bad\.nan on model 'deepseek-core:1\.3b': the model it returned evaluates to "
                     r"non-finite values \{'val_loss': nan", out), out[-4000:]
    assert ("compressor deepseek-badcomp:bad.figures on model 'deepseek-core:1.3b': its record states parameters = [100, 50], but "
            "the model it was given and the one it returned have") in out, out[-4000:]
    assert "compressor deepseek-badcomp:bad.refusal refuses model 'deepseek-core:1.3b' with an empty message" in out, out[-4000:]
