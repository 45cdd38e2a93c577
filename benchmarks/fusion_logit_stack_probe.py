"""Diagnostic (validation only): a logit-level stacker (one weight per modality on its own
classifier's logits, fitted by LBFGS) on the fit unimodal models, fitted on the blend part or
on the fit part, evaluated on val. Never reads the test split.

    python benchmarks/fusion_logit_stack_probe.py RUNS   # RUNS: the runs folder of a study with
    # --recipe stacked --seed 0 (its redundant-{vision,audio,text}-s0 unimodal runs, fitted on `fit`)
"""
import dataclasses
import sys
import tempfile

import torch

from deepseek.config.load import config_from_dict
from deepseek.training.build import build_model
from deepseek_enterprise.calibration import fit_weights
from deepseek_enterprise.digits.dataset import MultimodalDigits
from deepseek_enterprise.study_recipes import study_config

torch.set_num_threads(1)
runs = {m: f"{sys.argv[1]}/redundant-{m}-s0" for m in ("vision", "audio", "text")}
cfg = config_from_dict(study_config("redundant", "late", 0, 1200, batch=64, lr=2e-3, device="cpu",
                                    runs_dir=tempfile.mkdtemp(), recipe="stacked", sources=runs))
opts = dataclasses.replace(cfg.model.options, freeze_pretrained=False)
model = build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, options=opts))).eval()


def logits(batches):
    xs, ys, fused = [], [], []
    with torch.no_grad():
        for b in batches:
            out = model.predict(b)
            xs.append(torch.stack([out.modality_logits[m] for m in ("vision", "audio", "text")], 1))
            ys.append(b["label"])
            fused.append(out.logits)
    return torch.cat(xs), torch.cat(ys), torch.cat(fused)


def draw(part, n=64):
    d = MultimodalDigits(dataclasses.replace(cfg.data.options, train_sources=part), batch_size=64, seed=0)
    return [next(d) for _ in range(n)]


val = MultimodalDigits(cfg.data.options, batch_size=64, seed=0).split_batches("val", 16)
xv, yv, fv = logits(val)
print("val: ensemble (late as built)", round(100 * (fv.argmax(1) == yv).float().mean().item(), 1),
      " equal weights on own logits", round(100 * (xv.sum(1).argmax(1) == yv).float().mean().item(), 1))
for part in ("blend", "fit"):
    x, y, _ = logits(draw(part))
    own = [round(100 * (x[:, i].argmax(1) == y).float().mean().item(), 1) for i in range(3)]
    fitted = fit_weights(x, y, ["vision", "audio", "text"])
    w = torch.tensor(list(fitted.values()))
    acc = (((xv * w[None, :, None]).sum(1)).argmax(1) == yv).float().mean().item()
    print(f"fitted on {part}: own reads there v/a/t {own}, weights v/a/t {[round(v, 2) for v in w.tolist()]}, val {100 * acc:.1f}")
