"""``precision.master_weights``: bf16 parameters, fp32 masters in the optimizer.

The optimizer against torch's AdamW, the trainer's run against the autocast run, the checkpoint
(fp32 weights, torch AdamW's layout) and exact resume, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepseek import hookimpl
from deepseek.errors import ConfigError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.clip import clip_gradients, fusable
from deepseek.training.master_weights import MasterWeightAdamW
from deepseek.training.single import SingleDeviceStrategy
from deepseek.training.trainer import Trainer

BF16 = {"precision": {"dtype": "bf16", "master_weights": True}}


def _weights(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 16, generator=gen), torch.randn(16, generator=gen)]


def _grads(step: int) -> list[torch.Tensor]:
    """bf16 gradients (as a bf16 model produces them) for step ``step``."""
    gen = torch.Generator().manual_seed(100 + step)
    return [torch.randn(8, 16, generator=gen).bfloat16(), torch.randn(16, generator=gen).bfloat16()]


def _pair(weight_decay: float = 0.1) -> tuple[list[torch.nn.Parameter], torch.optim.AdamW,
                                               list[torch.nn.Parameter], MasterWeightAdamW]:
    ref = [torch.nn.Parameter(w) for w in _weights()]
    ours = [torch.nn.Parameter(w) for w in _weights()]
    kwargs = {"lr": 1e-2, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": weight_decay}
    return ref, torch.optim.AdamW(ref, foreach=False, **kwargs), ours, MasterWeightAdamW(ours, **kwargs)


def test_the_step_is_torch_adamw_on_the_masters_and_the_parameters_are_their_rounding() -> None:
    ref, ref_opt, ours, opt = _pair()
    assert all(p.dtype == torch.bfloat16 for p in ours)  # the optimizer turned them to bf16
    for step in range(5):
        for r, p, g in zip(ref, ours, _grads(step), strict=True):
            r.grad, p.grad = g.float(), g
        ref_opt.step()
        opt.step()
    for r, p, w in zip(ref, ours, opt.master_weights(), strict=True):
        assert w.dtype == torch.float32
        torch.testing.assert_close(w, r.detach(), rtol=1e-6, atol=1e-7)
        assert torch.equal(p.detach(), w.bfloat16())
    assert float(opt.state[ours[0]]["step"]) == 5.0


def test_a_deferred_clip_coefficient_divides_the_gradients() -> None:
    ref, ref_opt, ours, opt = _pair()
    for r, p, g in zip(ref, ours, _grads(0), strict=True):
        r.grad, p.grad = g.float(), g
    assert fusable(opt)
    norm = clip_gradients(ours, 0.5, optimizer=opt)  # deferred: the gradients are untouched
    assert torch.equal(ours[0].grad, _grads(0)[0])
    ref_norm = torch.nn.utils.clip_grad_norm_(ref, 0.5)
    torch.testing.assert_close(norm, ref_norm, rtol=1e-6, atol=0)  # summed in fp32, not bf16
    ref_opt.step()
    opt.step()
    for r, w in zip(ref, opt.master_weights(), strict=True):
        torch.testing.assert_close(w, r.detach(), rtol=1e-6, atol=1e-7)


def test_state_dict_has_torch_adamws_layout_and_loads_back_in_fp32() -> None:
    _, ref_opt, ours, opt = _pair()
    for p, g in zip(ours, _grads(0), strict=True):
        p.grad = g
    opt.step()
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}  # no masters: the model file has them
    fresh_params = [torch.nn.Parameter(w) for w in _weights(1)]
    fresh = MasterWeightAdamW(fresh_params, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    fresh.load_state_dict(sd)
    for key in ("exp_avg", "exp_avg_sq"):
        assert fresh.state[fresh_params[0]][key].dtype == torch.float32  # the base class would cast to bf16
        assert torch.equal(fresh.state[fresh_params[0]][key], opt.state[ours[0]][key])
    assert fresh.param_groups[0]["lr"] == 1e-2
    with pytest.raises(ValueError, match="exp_avg_sq"):
        broken = opt.state_dict()
        del broken["state"][1]["exp_avg_sq"]
        fresh.load_state_dict(broken)


def test_bf16_parameters_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="takes fp32 parameters"):
        MasterWeightAdamW([torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))])


def test_a_run_with_master_weights_tracks_the_autocast_run_and_writes_fp32_weights(tiny_config, tmp_path: Path) -> None:
    base = {"precision": {"dtype": "bf16"}, "train": {"max_steps": 6}, "checkpoint": {"interval": 0, "at_end": True}}
    plain = Trainer(tiny_config(**base), run_dir=tmp_path / "autocast").fit()
    trainer = Trainer(tiny_config(**{**base, **BF16}), run_dir=tmp_path / "master")
    master = trainer.fit()
    # The matmuls see the same bf16 weights (autocast rounds the fp32 weights as the masters are
    # rounded); embeddings and norms read bf16 instead of fp32 weights, and the updates differ in
    # fp32 rounding only, so the losses agree to bf16 noise.
    assert abs(master.losses[0] - plain.losses[0]) < 1e-4
    assert max(abs(a - b) for a, b in zip(master.losses, plain.losses, strict=True)) < 2e-2
    model = trainer.strategy.unwrapped_model()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    saved = ckpt.load_model_state(master.run_dir / "checkpoints" / "step-6")
    optimizer = trainer.strategy.optimizer
    assert isinstance(optimizer, MasterWeightAdamW)
    by_id = {id(p): w for p, w in zip([p for g in optimizer.param_groups for p in g["params"]],
                                      optimizer.master_weights(), strict=True)}
    for name, p in model.named_parameters():
        assert saved[name].dtype == torch.float32
        assert torch.equal(saved[name], by_id[id(p)])  # the masters, not the bf16 rounding


def test_resume_with_master_weights_is_exact(tiny_config, tmp_path: Path) -> None:
    sections = {**BF16, "train": {"max_steps": 8, "warmup_steps": 2}, "checkpoint": {"interval": 4, "keep_last": 3}}
    straight = Trainer(tiny_config(**sections), run_dir=tmp_path / "straight").fit()
    resumed = Trainer(tiny_config(**sections), run_dir=tmp_path / "resumed",
                      resume=straight.run_dir / "checkpoints" / "step-4").fit()
    assert resumed.losses == straight.losses[4:]
    a = ckpt.load_model_state(straight.run_dir / "checkpoints" / "step-8")
    b = ckpt.load_model_state(resumed.run_dir / "checkpoints" / "step-8")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_of_the_autocast_path_resumes_with_master_weights(tiny_config, tmp_path: Path) -> None:
    sections = {"precision": {"dtype": "bf16"}, "train": {"max_steps": 4}, "checkpoint": {"interval": 2}}
    first = Trainer(tiny_config(**sections), run_dir=tmp_path / "autocast").fit()
    trainer = Trainer(tiny_config(**{**sections, **BF16}), run_dir=tmp_path / "master",
                      resume=first.run_dir / "checkpoints" / "step-2")
    resumed = trainer.fit()
    # Step 3 starts from the autocast run's fp32 weights: its loss differs only by the bf16
    # embeddings and norm weights (~1e-3 here; from the initial weights it would be ~0.3 higher).
    assert abs(resumed.losses[0] - first.losses[2]) < 5e-3
    assert abs(resumed.losses[1] - first.losses[3]) < 5e-3
    optimizer = trainer.strategy.optimizer
    assert isinstance(optimizer, MasterWeightAdamW)
    assert {float(s["step"]) for s in optimizer.state.values()} == {4.0}


def test_micro_batches_add_up_in_fp32_and_round_once() -> None:
    p = torch.nn.Parameter(torch.zeros(4))
    opt = MasterWeightAdamW([p], lr=1e-2, accumulation=3)
    tiny = torch.full((4,), 2.0**-9)  # below half a bf16 ulp of 1.0: lost if added up in bf16
    for i, g in enumerate((torch.ones(4), tiny, tiny)):
        (p * g.bfloat16()).sum().backward()
        if i < 2:
            assert p.grad is None  # folded into the fp32 sum
    assert torch.equal(p.grad, (1 + 2 * 2.0**-9) * torch.ones(4, dtype=torch.bfloat16))
    assert p.grad.dtype == torch.bfloat16
    # A step left unfinished (one micro-batch, then zero_grad) leaves nothing behind.
    opt.zero_grad()
    (p * torch.ones(4).bfloat16()).sum().backward()
    opt.zero_grad()
    for _ in range(3):
        (p * torch.ones(4).bfloat16()).sum().backward()
    assert torch.equal(p.grad, torch.full((4,), 3.0, dtype=torch.bfloat16))


def test_gradient_accumulation_with_master_weights_tracks_one_big_batch(tiny_config, tmp_path: Path) -> None:
    base = {**BF16, "train": {"max_steps": 4}}
    whole = Trainer(tiny_config(**base), run_dir=tmp_path / "whole").fit()
    split = Trainer(tiny_config(**{**base, "train": {"max_steps": 4, "grad_accum": 4}}), run_dir=tmp_path / "split").fit()
    assert split.losses[0] == pytest.approx(whole.losses[0], abs=1e-3)
    assert max(abs(a - b) for a, b in zip(split.losses, whole.losses, strict=True)) < 1e-2


@pytest.mark.parametrize(("sections", "message"), [
    ({"precision": {"dtype": "fp16", "master_weights": True}},
     "precision.master_weights: keeps bf16 parameters, but precision.dtype is 'fp16'"),
    ({**BF16, "optimizer": {"name": "sgd"}}, "precision.master_weights: optimizer 'sgd' does not keep fp32 master weights"),
])
def test_configs_it_cannot_run_are_refused_in_one_line(tiny_config, sections, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        tiny_config(**sections)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_auto_precision_that_resolves_to_fp32_is_refused_before_training(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(precision={"dtype": "auto", "master_weights": True})
    with pytest.raises(ConfigError, match=r"precision.master_weights: the compute dtype resolved to fp32 on cpu"):
        Trainer(config, run_dir=tmp_path / "run").fit()
    assert not (tmp_path / "run" / "checkpoints").exists()


class Plain(SingleDeviceStrategy):
    """A strategy that builds its optimizer its own way, so it does not offer master weights."""

    name = "plain-one"
    supports_master_weights = False


class PlainPlugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("plain-one", Plain, description="one device, no master weights")


def test_a_strategy_that_does_not_offer_master_weights_is_named(tmp_path: Path) -> None:
    from deepseek.config.load import config_from_dict

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(PlainPlugin(), dist="deepseek-plain").status == "ok"
    data = {"model": {"name": "tiny"}, **BF16, "strategy": {"name": "plain-one"},
            "logging": {"runs_dir": str(tmp_path / "runs")}}
    with pytest.raises(ConfigError, match="precision.master_weights: strategy 'plain-one' keeps its own parameter "
                                          "dtypes and does not offer fp32 master weights; use strategy 'single'"):
        config_from_dict(data, host=host)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton update runs on CUDA only")
def test_the_triton_cuda_step_equals_the_eager_one() -> None:
    params = {mode: [torch.nn.Parameter(w.cuda()) for w in _weights()] for mode in ("eager", "compiled")}
    opts = {mode: MasterWeightAdamW(ps, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1, fused=mode == "compiled")
            for mode, ps in params.items()}
    for step in range(4):
        for mode in opts:
            for p, g in zip(params[mode], _grads(step), strict=True):
                p.grad = g.cuda()
            opts[mode].grad_scale = torch.tensor(1.5, device="cuda")
            opts[mode].step()
            del opts[mode].grad_scale
    for a, b in zip(opts["eager"].master_weights(), opts["compiled"].master_weights(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


_INTERPRETED = """
import torch
from deepseek.training.master_kernel import BLOCK, fused_update
from deepseek.training.master_weights import _update

torch.manual_seed(0)
worst = 0.0
for n, scaled in ((1000, True), (BLOCK, False), (BLOCK + 5, True)):
    w = torch.randn(n); g = torch.randn(n).bfloat16(); m = torch.randn(n) * 0.1; v = torch.rand(n) * 0.01
    eager = [t.clone() for t in (w.bfloat16(), w, m, v)]
    fused = [t.clone() for t in (w.bfloat16(), w, m, v)]
    args = (1e-2, torch.tensor(1.7) if scaled else None, 1 - 0.9**3, (1 - 0.95**3) ** 0.5, 0.9, 0.95, 1e-8, 0.1)
    _update(eager[0], g, *eager[1:], *args)
    fused_update(fused[0], g, *fused[1:], *args)
    assert not torch.equal(eager[1], w)  # it did update
    for a, b in zip(eager[1:], fused[1:]):
        worst = max(worst, ((a - b).abs() / (a.abs() + 1e-3)).max().item())
    assert ((eager[0].float() - fused[0].float()).abs() <= 2 ** -7 * eager[1].abs() + 1e-30).all()
print(worst)
"""


def test_the_triton_kernel_computes_the_eager_update(tmp_path: Path) -> None:
    """The CUDA kernel's arithmetic, run by Triton's interpreter on the CPU (no GPU here)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton", reason="Triton is not installed (it comes with torch's CUDA builds)")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", _INTERPRETED], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5  # masters and moments: rounding order only


def test_a_model_with_frozen_parameters_is_refused_before_training(tiny_config, tmp_path: Path) -> None:
    from deepseek.training.engine import StepEngine

    engine = StepEngine(tiny_config(**BF16))
    engine.setup_environment()
    model = engine.build_model()
    model.wpe.weight.requires_grad_(False)
    with pytest.raises(ConfigError, match=r"precision.master_weights: the model has 1 frozen parameter\(s\) "
                                          r"\(first: 'wpe.weight'\)"):
        engine.setup_model(model)
    assert model.wpe.weight.dtype == torch.float32 and model.lm_head.weight.dtype == torch.float32  # untouched
