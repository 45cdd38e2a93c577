"""Issue 15's training figures on the GPU, with ``small`` (768 x 12) trained on the embedded corpus
as the teacher / original:

    python benchmarks/compress_gpu.py --part distill --out $OUT/distill   # tiny: distilled vs scratch
    python benchmarks/compress_gpu.py --part prune --out $OUT/prune       # prune.ffn 50% + recovery

Both parts first train the teacher (``small``, seq 256, batch 32, bf16, ``--teacher-steps``).

``distill``: per seed, the ``tiny`` preset (128 x 4, seq 256) trained from scratch and distilled
from the teacher (``distill`` model, alpha 0.5, T 2; ``distill.student`` extracted), same data,
steps and seed; both evaluated with ``deepseek eval --batches 32``.

``prune``: ``deepseek compress --method prune.ffn --set ratio=0.5`` of the teacher (batch-1 p50
latency of both on the GPU in the compress call), then per seed three runs of ``--recover-steps``
from their weights: the pruned model fine-tuned (``train.init_from``), the pruned model distilled
from the original (``student_from``), and the original fine-tuned the same way (the fair
reference); all evaluated with ``deepseek eval --batches 32``. Writes compress-gpu-<part>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import tomli_w
from _cli import deepseek  # benchmarks/_cli.py: run as python benchmarks/<script>.py

DEVICE = {"device": "cuda", "dtype": "bf16"}
SHAPE: dict = {"seq_len": 256, "batch_size": 32, "eval_batches": 16}
SHRINK: dict = {}  # --device cpu: the same pipeline with toy widths (a smoke test of the script)


def config(model: dict, steps: int, lr: float, seed: int, *, warmup: int = 50, init_from: str = "") -> dict:
    return {
        "model": model,
        "data": dict(SHAPE),
        "train": {"max_steps": steps, "warmup_steps": min(warmup, steps - 1), "eval_interval": 0, "lr": lr,
                  "min_lr": lr / 10, "seed": seed, "init_from": init_from},
        "precision": {"dtype": DEVICE["dtype"]},
        "strategy": {"name": "single", "device": DEVICE["device"]},
        "checkpoint": {"interval": 0},
        "logging": {"plot": False, "progress": False},
    }


def train(out: Path, name: str, cfg: dict) -> Path:
    (out / f"{name}.toml").write_text(tomli_w.dumps(cfg))
    deepseek("train", str(out / f"{name}.toml"), "--run-dir", str(out / name), "--quiet")
    return out / name


def val(run: Path) -> float:
    return json.loads(deepseek("eval", "--checkpoint", str(run), "--batches", "32", "--json", "--device",
                               DEVICE["device"]))["val_loss"]


def summary(rows: dict[str, list[float]], ref: float | None = None) -> list[str]:
    lines = []
    for name, values in rows.items():
        m = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        rel = f" | {m / ref - 1:+.2%}" if ref else ""
        lines.append(f"| {name} | {m:.4f} +- {sd:.4f}{rel} | " + ", ".join(f"{v:.4f}" for v in values) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=["distill", "prune"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--teacher-steps", type=int, default=1500)
    p.add_argument("--student-steps", type=int, default=1500)
    p.add_argument("--recover-steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--device", default="cuda", help="cuda (the figure) or cpu (a smoke test, fp32)")
    a = p.parse_args()
    DEVICE.update(device=a.device, dtype="bf16" if a.device == "cuda" else "fp32")
    if a.device == "cpu":
        SHAPE.update(seq_len=32, batch_size=4, eval_batches=2)
        SHRINK.update(d_model=32, n_heads=2, n_layers=2)
    a.out.mkdir(parents=True, exist_ok=True)
    small = {"name": "small", "max_seq_len": 256, **SHRINK}
    teacher = train(a.out, "teacher", config(small, a.teacher_steps, 6e-4, 1, warmup=100))
    result: dict = {"part": a.part, "teacher_steps": a.teacher_steps, "seeds": a.seeds, "teacher_val_loss": val(teacher)}
    print(f"teacher small, {a.teacher_steps} steps: val loss {result['teacher_val_loss']:.4f}")
    if a.part == "distill":
        tiny = {"name": "tiny", "max_seq_len": 256, **({"d_model": 16, "n_layers": 1} if SHRINK else {})}
        rows: dict[str, list[float]] = {"scratch": [], "distilled": []}
        for seed in a.seeds:
            s = a.out / f"s{seed}"
            s.mkdir(exist_ok=True)
            scratch = train(s, "scratch", config(tiny, a.student_steps, 3e-3, seed))
            model = {"name": "distill", "teacher": str(teacher.absolute()), "student": tiny, "alpha": 0.5,
                     "temperature": 2.0}
            distill = train(s, "distill", config(model, a.student_steps, 3e-3, seed))
            deepseek("compress", "--checkpoint", str(distill), "--method", "distill.student", "--out",
                     str(s / "distilled"), "--latency-runs", "0", "--device", DEVICE["device"])
            rows["scratch"].append(val(scratch))
            rows["distilled"].append(val(s / "distilled"))
        result.update(student_steps=a.student_steps, val_loss=rows)
        lines = summary(rows)
    else:
        pruned = a.out / "pruned"
        deepseek("compress", "--checkpoint", str(teacher), "--method", "prune.ffn", "--set", "ratio=0.5", "--out",
                 str(pruned), "--device", DEVICE["device"], "--latency-runs", "100", "--json", str(a.out / "compress.json"))
        report = json.loads((a.out / "compress.json").read_text())
        rows = {"pruned (no recovery)": [val(pruned)] * len(a.seeds), "pruned + fine-tune": [],
                "pruned + distillation": [], "original + fine-tune": []}
        lr, steps = 2e-4, a.recover_steps
        for seed in a.seeds:
            s = a.out / f"s{seed}"
            s.mkdir(exist_ok=True)
            pruned_model = toml_load(pruned / "config.toml")["model"]
            ft = train(s, "pruned_ft", config(pruned_model, steps, lr, seed, warmup=20, init_from=str(pruned.absolute())))
            model = {"name": "distill", "teacher": str(teacher.absolute()), "student_from": str(pruned.absolute()),
                     "alpha": 0.5, "temperature": 2.0}
            dist = train(s, "pruned_distill", config(model, steps, lr, seed, warmup=20))
            deepseek("compress", "--checkpoint", str(dist), "--method", "distill.student", "--out",
                     str(s / "pruned_distilled"), "--latency-runs", "0", "--device", DEVICE["device"])
            orig = train(s, "original_ft", config(small, steps, lr, seed, warmup=20, init_from=str(teacher.absolute())))
            rows["pruned + fine-tune"].append(val(ft))
            rows["pruned + distillation"].append(val(s / "pruned_distilled"))
            rows["original + fine-tune"].append(val(orig))
        result.update(recover_steps=steps, recover_lr=lr, val_loss=rows,
                      parameters={"original": report["original"]["parameters"],
                                  "pruned": report["compressed"]["parameters"]},
                      p50_ms={"original": report["original"]["p50_ms"], "pruned": report["compressed"]["p50_ms"]})
        print(f"parameters {report['original']['parameters']:,} -> {report['compressed']['parameters']:,}; p50 "
              f"batch 1 {report['original']['p50_ms']:.3f} -> {report['compressed']['p50_ms']:.3f} ms")
        lines = summary(rows, statistics.mean(rows["original + fine-tune"]))
    (a.out / f"compress-gpu-{a.part}.json").write_text(json.dumps(result, indent=1))
    print("\n".join(lines))


def toml_load(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


if __name__ == "__main__":
    main()
