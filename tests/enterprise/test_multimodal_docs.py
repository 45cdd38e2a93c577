"""docs/multimodal.md's third-party plugin works as the page shows it.

The code blocks marked ``<!-- test: NAME -->`` on the page (the ``pyproject.toml``, the
entry-point hooks, the gated-sum fusion method, the patch encoder and the config that uses them)
are turned into a throwaway installed distribution ``deepseek-acme`` (a ``dist-info`` folder with
``METADATA`` and ``entry_points.txt`` taken from the page's ``pyproject.toml``, plus the modules).
A subprocess with it on ``PYTHONPATH`` loads it through a ``PluginHost``, checks the fusion
contract (finite for every subset of modalities; a missing modality changes nothing), then
trains a ``multimodal.classifier`` with that fusion method and encoder for 2 steps with
``Trainer(config, host=...)``: the loss must be finite and every parameter of the fusion method
and of the plugin's encoder must have moved (weight decay is off, so only gradients move them).
A config whose ``[model.vision] img_size`` does not fit the digits is then refused as the user's
one line (the encoder's ``check_inputs`` and ``keys_for_inputs``), not as a bug in the plugin.

Why a subprocess: the page tells authors to publish the plugin as a distribution with an
entry point, so the test loads it the way users will, from installed metadata (an in-process
``PluginHost.register_plugin`` fusion is tested in ``test_multimodal.py``).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DOC = Path(__file__).resolve().parents[2] / "docs" / "multimodal.md"
MODULES = {
    "plugin-hooks": "deepseek_acme/plugin.py",
    "fusion-plugin": "deepseek_acme/fusion.py",
    "encoder-plugin": "deepseek_acme/encoders.py",
}
BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\n```(\w+)\n(.*?)\n```", re.S)


def doc_blocks() -> dict[str, tuple[str, str]]:
    """``{marker: (language, code)}`` of the page's marked code blocks."""
    found: dict[str, tuple[str, str]] = {}
    for marker, language, code in BLOCK.findall(DOC.read_text(encoding="utf-8")):
        assert marker not in found, f"docs/multimodal.md marks two blocks '{marker}'"
        found[marker] = (language, code + "\n")
    return found


def registrations(plugin_source: str) -> dict[str, str]:
    """``{component name: "module:attribute"}`` of the ``register(...)`` calls in the hooks."""
    calls = [n for n in ast.walk(ast.parse(plugin_source))
             if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "register"]
    return {ast.literal_eval(c.args[0]): ast.literal_eval(c.args[1]) for c in calls}


def test_the_page_marks_a_consistent_plugin() -> None:
    blocks = doc_blocks()
    assert set(blocks) == {"pyproject", "fusion-config", "fusion-helpers", *MODULES}, sorted(blocks)
    assert [blocks[m][0] for m in MODULES] == ["python"] * 3
    assert blocks["pyproject"][0] == blocks["fusion-config"][0] == "toml"
    project = tomllib.loads(blocks["pyproject"][1])["project"]
    assert project["entry-points"]["deepseek"] == {"acme": "deepseek_acme.plugin"}
    assert any(d.startswith("deepseek-enterprise") for d in project["dependencies"])

    hooks = blocks["plugin-hooks"][1]
    top_imports = [n for n in ast.parse(hooks).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top_imports for a in n.names] + [getattr(n, "module", "") or "" for n in top_imports]
    assert not [n for n in names if n.split(".")[0] == "torch"], "the entry-point module must not import torch"
    targets = registrations(hooks)
    assert set(targets) == {"acme.gated_sum", "vision.acme_patches"}
    for marker, path in MODULES.items():
        compile(blocks[marker][1], path, "exec")
    for target in targets.values():  # every lazy target names a class the page defines in that module
        module, attribute = target.split(":")
        marker = next(m for m, p in MODULES.items() if p == module.replace(".", "/") + ".py")
        classes = {n.name for n in ast.parse(blocks[marker][1]).body if isinstance(n, ast.ClassDef)}
        assert attribute in classes, (target, classes)

    model = tomllib.loads(blocks["fusion-config"][1])["model"]
    assert (model["name"], model["fusion"], model["vision_encoder"]) == (
        "multimodal.classifier", "acme.gated_sum", "vision.acme_patches")


def install_from_page(site: Path) -> dict[str, Any]:
    """Write the page's plugin into ``site`` as an installed distribution; returns its
    ``[project]`` table."""
    blocks = doc_blocks()
    project = tomllib.loads(blocks["pyproject"][1])["project"]
    package = site / "deepseek_acme"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for marker, path in MODULES.items():
        (site / path).write_text(blocks[marker][1], encoding="utf-8")
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    metadata = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}"]
    metadata += [f"Requires-Dist: {d}" for d in project["dependencies"]]
    (info / "METADATA").write_text("\n".join(metadata) + "\n", encoding="utf-8")
    entry_points = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["deepseek"].items())
    (info / "entry_points.txt").write_text(f"[deepseek]\n{entry_points}", encoding="utf-8")
    return project


SCRIPT = r'''
import itertools, json, math, sys, warnings
import torch
import deepseek
from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError, DeepseekError
from deepseek.models.encoder import EncoderOutput
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.trainer import Trainer

spec = json.loads(sys.argv[1])
host = PluginHost(PluginSettings(allow=frozenset(spec["dists"])))
record = host.records[spec["dist"]]
facts = {"status": record.status, "reason": record.reason, "components": record.components}
fusion_name, encoder_name = spec["fusion"], spec["encoder"]
facts["resolved"] = [host.resolve("fusion", fusion_name).dist, host.resolve("encoder", encoder_name).dist]

# The fusion contract, on random features (one padded sample per modality).
cls = host.resolve("fusion", fusion_name).load()
torch.manual_seed(0)
fusion = cls(cls.Options(d_model=16, hidden=8), dims={"vision": 8, "audio": 12, "text": 4}, num_classes=10).eval()
feats = {}
for m, (t, d) in {"vision": (4, 8), "audio": (6, 12), "text": (5, 4)}.items():
    mask = torch.zeros(4, t, dtype=torch.bool)
    mask[0, t // 2:] = True
    feats[m] = EncoderOutput(torch.randn(4, t, d).masked_fill(mask[..., None], 0.0), mask)
finite = []
for flags in itertools.product([False, True], repeat=3):
    present = {m: torch.full((4,), f) for m, f in zip(feats, flags)}
    out = fusion(feats, present)
    finite.append(bool(torch.isfinite(out.logits).all()) and tuple(out.logits.shape) == (4, 10)
                  and set(out.modality_logits) == set(out.pooled) == set(feats))
facts["finite_for_every_subset"] = all(finite)
present = {m: torch.ones(4, dtype=torch.bool) for m in feats}
present["audio"] = torch.tensor([True, False, True, False])
noisy = {**feats, "audio": EncoderOutput(feats["audio"].features + 5.0, feats["audio"].padding_mask)}
a, b = fusion(feats, present).logits, fusion(noisy, present).logits
facts["missing_changes"] = float((a[[1, 3]] - b[[1, 3]]).abs().max())
facts["present_changes"] = float((a[[0, 2]] - b[[0, 2]]).abs().max())

# The encoder, through deepseek.create_encoder (the process's host: the plugin is installed).
enc = deepseek.create_encoder(encoder_name, d_model=16).eval()
out = enc(torch.randn(3, 1, 8, 8))
facts["encoder"] = [list(out.features.shape), bool(out.padding_mask.any()), enc.output_dim]
try:
    deepseek.create_encoder(encoder_name, patch_size=3)
    facts["encoder_error"] = None
except ConfigError as exc:
    facts["encoder_error"] = str(exc)

# Two training steps; a plugin of this test records the weights at the start and the losses.
class Recorder:
    def __init__(self):
        self.start, self.losses = {}, []

    @hookimpl
    def deepseek_train_start(self, trainer):
        model = trainer.strategy.unwrapped_model()
        self.start = {n: p.detach().clone() for n, p in model.named_parameters()
                      if n.startswith(("fusion.", "encoders.vision."))}

    @hookimpl
    def deepseek_train_step_end(self, trainer, step, metrics):
        self.losses.append(metrics["loss"])

recorder = Recorder()
facts["recorder"] = host.register_plugin(recorder, dist="deepseek-recorder").status
config = config_from_dict(spec["config"], host=host)
trainer = Trainer(config, run_dir=spec["run_dir"], quiet=True, host=host)
result = trainer.fit()
model = trainer.strategy.unwrapped_model()
facts["fusion_type"] = type(model.fusion).__name__
facts["encoder_type"] = type(model.encoders["vision"]).__name__
facts["tracked"] = sorted(recorder.start)
facts["unchanged"] = [n for n, p in model.named_parameters()
                      if n in recorder.start and torch.equal(p.detach(), recorder.start[n])]
facts["losses"] = recorder.losses
facts["step"] = result.step
facts["val_accuracy"] = result.val_metrics.get("val_accuracy")

# A user's [model.vision] that does not fit the data is the user's one line (check_inputs and
# keys_for_inputs), refused before the run folder is written.
wrong = json.loads(json.dumps(spec["config"]))
wrong["model"]["vision"] = {**wrong["model"]["vision"], "img_size": 10}
try:
    Trainer(config_from_dict(wrong, host=host), run_dir=spec["run_dir"] + "-wrong", quiet=True, host=host).fit()
    facts["mismatch"] = None
except DeepseekError as exc:
    facts["mismatch"] = [type(exc).__name__, str(exc), exc.exit_code]
print("FACTS " + json.dumps(facts))
'''


def test_the_page_plugin_trains_a_multimodal_classifier(tmp_path: Path) -> None:
    project = install_from_page(tmp_path / "site")
    page_model = tomllib.loads(doc_blocks()["fusion-config"][1])["model"]
    # The page's [model] table, shrunk to tiny widths (the shape of test_multimodal.py's config).
    model = {**page_model, "fusion_options": {"d_model": 16, "hidden": 32}, "vision": {"d_model": 16, "n_layers": 1},
             "audio": {"d_model": 16, "n_heads": 2, "n_layers": 1},
             "text": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_seq_len": 24},
             "modality_dropout": 0.2, "contrastive_weight": 0.1}
    config = {
        "model": model,
        "data": {"name": "multimodal.digits", "batch_size": 8, "eval_batches": 1, "eval_size": 16},
        "train": {"max_steps": 2, "warmup_steps": 1, "lr": 3e-3, "min_lr": 3e-4, "eval_interval": 2},
        "optimizer": {"weight_decay": 0.0},
        "precision": {"dtype": "fp32"},
        "strategy": {"name": "single", "device": "cpu"},
        "checkpoint": {"interval": 0, "at_end": False},
        "logging": {"progress": False, "plot": False, "runs_dir": str(tmp_path / "runs")},
    }
    dists = ["deepseek-pro", "deepseek-enterprise", project["name"]]
    spec = {"dists": dists, "dist": project["name"], "fusion": page_model["fusion"],
            "encoder": page_model["vision_encoder"], "config": config, "run_dir": str(tmp_path / "run")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in [str(tmp_path / "site"), env.get("PYTHONPATH", "")] if p),
               DEEPSEEK_PLUGINS=",".join(dists), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("FACTS ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    facts = json.loads(lines[-1].removeprefix("FACTS "))

    assert facts["status"] == "ok", facts["reason"]
    assert facts["components"] == {"encoder": ["vision.acme_patches"], "fusion": ["acme.gated_sum"]}
    assert facts["resolved"] == [project["name"]] * 2
    assert facts["finite_for_every_subset"]
    assert facts["missing_changes"] == 0.0 and facts["present_changes"] > 0.0
    assert facts["encoder"] == [[3, 16, 16], False, 16]
    assert facts["encoder_error"] is not None and facts["encoder_error"].startswith(
        "encoder.vision.acme_patches.patch_size: 3 does not divide img_size=8")
    assert facts["recorder"] == "ok"

    assert (facts["fusion_type"], facts["encoder_type"]) == ("GatedSumFusion", "PatchEncoder")
    assert facts["step"] == 2 and len(facts["losses"]) == 2
    assert all(isinstance(v, float) and v == v and abs(v) != float("inf") for v in facts["losses"]), facts["losses"]
    gates = [n for n in facts["tracked"] if n.startswith("fusion.gate.")]
    assert len(gates) == 6 and any(n.startswith("encoders.vision.blocks.") for n in facts["tracked"])
    assert facts["unchanged"] == [], f"parameters that did not train: {facts['unchanged']}"
    assert 0.0 <= facts["val_accuracy"] <= 1.0
    assert (tmp_path / "run" / "confusion.json").is_file() and (tmp_path / "run" / "splits.json").is_file()
    # The page's encoder declared no check_inputs / keys_for_inputs: img_size = 10 on 8x8 digits
    # reached forward and was reported as the plugin's bug (PluginError, exit code 1).
    kind, line, code = facts["mismatch"]
    assert (kind, code) == ("UsageError", 2) and line == (
        "model.vision: encoder vision.acme_patches: images must be (batch, 1, 10, 10), got shape (8, 1, 8, 8) "
        "(dataset MultimodalDigits); set model.vision.img_size = 8"), facts["mismatch"]
    assert not (tmp_path / "run-wrong").exists()


def test_the_pages_fusion_helpers_example_runs() -> None:
    """Section 3 named ``present_mean(values, present)`` as a helper of "the module" without saying
    which module, nor that both arguments are mappings by modality: a plugin written from the page
    called it as a method with lists. The example on the page runs as written."""
    language, code = doc_blocks()["fusion-helpers"]
    assert language == "python"
    exec(compile(code, "docs/multimodal.md:fusion-helpers", "exec"), {})  # noqa: S102
