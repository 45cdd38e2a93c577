"""Core's optimizers beyond AdamW: lion's update by hand, exact resume of adafactor / lion /
sgd with nesterov, and the config refusals (one line, exit code 2)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepseek.errors import ConfigError
from deepseek.training.lion import Lion
from deepseek.training.trainer import Trainer


def test_lion_update_equals_the_hand_computed_one() -> None:
    lr, b1, b2, wd = 0.1, 0.9, 0.99, 0.5
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = Lion([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    grads = [torch.tensor([0.3, -0.2, 0.0]), torch.tensor([-0.1, -0.4, 0.2])]
    for g in grads:
        p.grad = g.clone()
        opt.step()
    # step 1, m = 0: sign((1 - b1) g1) = [+1, -1, 0]
    p1 = [1.0 * (1 - lr * wd) - lr, -2.0 * (1 - lr * wd) + lr, 0.5 * (1 - lr * wd)]
    m1 = [(1 - b2) * 0.3, (1 - b2) * -0.2, 0.0]
    # step 2: b1 m1 + (1 - b1) g2 = [0.0027 - 0.01, -0.0018 - 0.04, 0.02] -> [-1, -1, +1]
    p2 = [p1[0] * (1 - lr * wd) + lr, p1[1] * (1 - lr * wd) + lr, p1[2] * (1 - lr * wd) - lr]
    m2 = [b2 * m + (1 - b2) * g for m, g in zip(m1, [-0.1, -0.4, 0.2], strict=True)]
    assert p.detach().tolist() == pytest.approx(p2, abs=1e-6)  # float32; a wrong sign moves 0.1
    assert opt.state[p]["exp_avg"].tolist() == pytest.approx(m2, abs=1e-7)
    assert p2 == pytest.approx([0.9075, -1.61, 0.35125])


OPTIMIZERS = {
    "adafactor": {"name": "adafactor"},
    "lion": {"name": "lion", "betas": [0.9, 0.99]},
    "sgd_nesterov": {"name": "sgd", "nesterov": True, "momentum": 0.9},
}


@pytest.mark.parametrize("which", sorted(OPTIMIZERS))
def test_trains_and_resumes_bit_exact(which: str, tiny_config, tmp_path: Path) -> None:
    lr = {"adafactor": 3e-2, "lion": 3e-4, "sgd_nesterov": 3e-2}[which]
    config = tiny_config(optimizer=OPTIMIZERS[which], train={"max_steps": 5, "lr": lr},
                         checkpoint={"interval": 2, "keep_last": 5})
    straight = Trainer(config, run_dir=tmp_path / "straight").fit()
    assert straight.losses[-1] < straight.losses[0]
    resumed = Trainer(config, run_dir=tmp_path / "resumed",
                      resume=straight.run_dir / "checkpoints" / "step-2").fit()
    assert resumed.losses == straight.losses[2:]  # exact: optimizer state restored to the bit


@pytest.mark.parametrize("name", ["sgd", "adafactor", "lion"])
def test_master_weights_refused_for_optimizers_without_them(name: str, tiny_config) -> None:
    with pytest.raises(ConfigError, match=rf"precision.master_weights: optimizer '{name}' does not keep"):
        tiny_config(optimizer={"name": name}, precision={"dtype": "bf16", "master_weights": True})


@pytest.mark.parametrize(("sets", "message"), [
    (["optimizer.name=adafactor", "optimizer.beta2_deacy=-0.5"], "did you mean 'beta2_decay'"),
    (["optimizer.name=adafactor", "optimizer.beta2_decay=0.5"], "optimizer.beta2_decay: above 0, got 0.5"),
    (["optimizer.name=adafactor", "optimizer.d=0.5"], "optimizer.d: below 1, got 0.5"),
    (["optimizer.name=adafactor", "optimizer.eps=1e-6"], "optimizer.eps: adafactor does not read eps"),
    (["optimizer.name=lion", "optimizer.nesterov=true"], "optimizer.nesterov"),
    (["optimizer.name=lion", "optimizer.betas=[0.9,1.5]"], "optimizer.betas: must be two numbers"),
    (["optimizer.name=sgd", "optimizer.nesterov=true", "optimizer.momentum=0"], "needs optimizer.momentum > 0"),
])
def test_hostile_keys_one_line_exit_2(sets: list[str], message: str, tmp_path: Path) -> None:
    env = {**os.environ, "DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    args = [a for s in sets for a in ("--set", s)]
    proc = subprocess.run([sys.executable, "-m", "deepseek", "train", "--max-steps", "1", *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, err
    assert message in err
    assert not (tmp_path / "runs").exists()


def test_fused_sgd_takes_the_clip_inside_its_kernel_with_the_same_numbers() -> None:
    """optimizer.fused = true (the default on CUDA) gives torch's fused SGD, which applies the
    clipping coefficient as its grad_scale instead of a pass over the gradients: the same steps
    as the unfused SGD within float rounding."""
    import deepseek
    from deepseek.training.clip import clip_gradients, fusable, release

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 3))
    twin = copy.deepcopy(model)
    keys = {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}
    fused = deepseek.create_optimizer("sgd", model.parameters(), lr=0.1, fused=True, **keys)
    plain = deepseek.create_optimizer("sgd", twin.parameters(), lr=0.1, fused=False, **keys)
    assert fusable(fused) and not fusable(plain)
    for seed in range(3):
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(seed))
        for net, opt in ((model, fused), (twin, plain)):
            opt.zero_grad()
            (net(x).square().sum() * 100).backward()
            clip_gradients(net.parameters(), 1.0, optimizer=opt)
            opt.step()
            release(opt)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
