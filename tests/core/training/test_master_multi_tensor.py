"""``optimizer.master_update = "multi_tensor"``: the master-weight update as one Triton launch over
a group's parameters (deepseek.training.master_kernel.MultiTensorUpdate), bit-identical to one
launch per parameter. The kernels run under Triton's interpreter on the CPU (no GPU here)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from deepseek.training.master_weights import MasterWeightAdamW

triton = pytest.importorskip("triton", reason="Triton is not installed (it comes with torch's CUDA builds)")


def _interpret(script: str) -> str:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


_KERNELS = """
import torch

from deepseek.training.master_weights import MasterWeightAdamW
from deepseek.training.master_kernel import BLOCK, MultiTensorUpdate, fused_update
from deepseek.training.master_weights import _update

torch.manual_seed(0)
sizes = [1, 7, BLOCK, BLOCK + 5, 3 * BLOCK - 1, 1000]  # a one-element parameter, odd sizes, block edges
assert BLOCK == 2048
multi = MultiTensorUpdate()
for scaled in (True, False):
    ws = [torch.randn(n) for n in sizes]
    gs = [torch.randn(n).bfloat16() for n in sizes]
    ms = [torch.randn(n) * 0.1 for n in sizes]
    vs = [torch.rand(n) * 0.01 for n in sizes]
    forms = {k: [[w.bfloat16() for w in ws], *([t.clone() for t in ts] for ts in (ws, ms, vs))]
             for k in ("eager", "per_parameter", "multi_tensor")}
    for form in forms.values():  # the 7-element master a view 4 bytes into its storage: its own launch
        form[1][1] = torch.cat([torch.zeros(1), form[1][1]])[1:]
    args = (1e-2, torch.tensor(1.7) if scaled else None, 1 - 0.9**3, (1 - 0.95**3) ** 0.5, 0.9, 0.95, 1e-8, 0.1)
    for p, g, w, m, v in zip(*forms["eager"][:1], gs, *forms["eager"][1:]):
        _update(p, g, w, m, v, *args)
    for p, g, w, m, v in zip(*forms["per_parameter"][:1], gs, *forms["per_parameter"][1:]):
        fused_update(p, g, w, m, v, *args)
    p, w, m, v = forms["multi_tensor"]
    multi(p, gs, w, m, v, *args)
    for i, n in enumerate(sizes):
        assert not torch.equal(forms["multi_tensor"][1][i], ws[i]), (n, "not updated")
        for k in range(4):  # parameter, master, moments: every bit the same as one launch per parameter
            assert torch.equal(forms["multi_tensor"][k][i], forms["per_parameter"][k][i]), (n, k, scaled)
            a, b = forms["eager"][k][i].float(), forms["multi_tensor"][k][i].float()
            tol = 2 ** -7 * a.abs() + 1e-30 if k == 0 else 1e-5 * (a.abs() + 1e-3)  # bf16 rounding; fp32 order
            assert ((a - b).abs() <= tol).all(), (n, k, scaled)
print("ok")
"""


def test_one_launch_over_many_parameters_equals_one_launch_per_parameter_bit_for_bit() -> None:
    assert _interpret(_KERNELS).strip().endswith("ok")


_OPTIMIZER = """
import torch

from deepseek.training.master_weights import MasterWeightAdamW
from deepseek.training.master_weights import MasterWeightAdamW

def weights():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(40, 70, generator=gen), torch.randn(1, generator=gen), torch.randn(3000, generator=gen),
            torch.randn(5, 9, generator=gen)]

opts, params = {}, {}
for form in ("per_parameter", "multi_tensor"):
    ps = [torch.nn.Parameter(w) for w in weights()]
    groups = [{"params": [ps[0], ps[3]], "weight_decay": 0.1}, {"params": ps[1:3], "weight_decay": 0.0}]
    params[form] = ps
    opts[form] = MasterWeightAdamW(groups, lr=1e-2, betas=(0.9, 0.95), fused=True, update=form)
for step in range(3):
    gen = torch.Generator().manual_seed(100 + step)
    grads = [torch.randn(p.shape, generator=gen).bfloat16() for p in params["per_parameter"]]
    for form, opt in opts.items():
        for i, (p, g) in enumerate(zip(params[form], grads)):
            p.grad = None if (step == 0 and i == 3) else g.clone()  # one parameter misses a step
        opt.grad_scale = torch.tensor(1.25)
        opt.step()
        del opt.grad_scale
a, b = opts["per_parameter"], opts["multi_tensor"]
assert [float(b.state[p]["step"]) for p in params["multi_tensor"]] == [3.0, 3.0, 3.0, 2.0]
for p, q in zip(params["per_parameter"], params["multi_tensor"]):
    assert torch.equal(p.detach(), q.detach())
    for key in ("master", "exp_avg", "exp_avg_sq"):
        assert torch.equal(a.state[p][key], b.state[q][key]), key
print("ok")
"""


def test_the_optimizer_steps_the_same_in_either_form_with_groups_and_a_missed_step() -> None:
    """Two groups (two weight decays) and a parameter one step behind the rest of its group (so
    its group takes two launches, at two bias corrections); a deferred clip coefficient."""
    assert _interpret(_OPTIMIZER).strip().endswith("ok")


_PTX = """
import re
from collections import Counter

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from deepseek.training import master_kernel as mk

def accesses(fn, signature, constexprs, attrs):
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    ptx = triton.compile(source, target=GPUTarget("cuda", 90, 32)).asm["ptx"]
    return Counter(re.findall(r"\\b(ld\\.global\\.v4\\.b32|st\\.global\\.v4\\.b32)", ptx))

scalars = ("decay_factor", "step_size", "bias_correction2_sqrt", "beta1", "beta2", "eps")
multi = accesses(mk._adamw_multi_kernel,
                 {"table_ptr": "*i64", "which_ptr": "*i32", "start_ptr": "*i64", "scale_ptr": "*fp32",
                  **dict.fromkeys(scalars, "fp32"), **dict.fromkeys(("PARAM", "GRAD", "HAS_SCALE", "BLOCK"), "constexpr")},
                 {"PARAM": tl.bfloat16, "GRAD": tl.bfloat16, "HAS_SCALE": True, "BLOCK": mk.BLOCK}, {})
# the per-parameter kernel as torch tensors launch it: every pointer and n divisible by 16
single = accesses(mk._adamw_master_kernel,
                  {**{k: t for k, t in zip(("p_ptr", "g_ptr", "w_ptr", "m_ptr", "v_ptr", "scale_ptr"),
                                           ("*bf16", "*bf16", "*fp32", "*fp32", "*fp32", "*fp32"))},
                   "n": "i64", "lr": "fp32", **dict.fromkeys(scalars, "fp32"), "HAS_SCALE": "constexpr",
                   "BLOCK": "constexpr"},
                  {"HAS_SCALE": True, "BLOCK": mk.BLOCK}, {(i,): [["tt.divisibility", 16]] for i in range(7)})
print(dict(multi), dict(single))
assert single["ld.global.v4.b32"] > 0 and multi == single, (multi, single)
"""


def test_whole_blocks_compile_to_16_byte_loads_and_stores_as_the_per_parameter_kernel(tmp_path) -> None:  # noqa: ANN001
    """Compiled for an H100/H200 (sm_90, no GPU needed): the multi-tensor kernel's whole blocks
    read and write 16 bytes per access, as many as the per-parameter kernel does. Addresses read
    from a table carry no alignment the compiler knows of: without the kernel's hints every
    access would be 4 or 2 bytes wide, and the update slower."""
    env = {**os.environ, "TRITON_CACHE_DIR": str(tmp_path / "triton")}
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run([sys.executable, "-c", _PTX], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_block_offsets_past_2_31_stay_int64() -> None:
    from deepseek.training.master_kernel import block_table

    big = 2**31 + 5  # a tensor longer than int32 can index
    which, start = block_table([3, big, 2048], block=2048)
    assert which.dtype == torch.int32 and start.dtype == torch.int64
    blocks_big = -(-big // 2048)
    assert which.tolist()[:2] == [0, 1] and which.numel() == 1 + blocks_big + 1
    assert start[1 + blocks_big - 1].item() == (blocks_big - 1) * 2048 >= 2**31  # the big one's last block: past int32
    assert start[0].item() == 0 and start[-1].item() == 0 and which[-1].item() == 2
    assert torch.equal(start[1:4], torch.tensor([0, 2048, 4096]))


def test_an_unknown_update_form_is_refused() -> None:
    from deepseek.training.master_weights import MasterWeightAdamW

    with pytest.raises(ValueError, match="MasterWeightAdamW: update 'flat'; use 'per_parameter' or 'multi_tensor'"):
        MasterWeightAdamW([torch.nn.Parameter(torch.zeros(2))], update="flat")  # type: ignore[arg-type]


@pytest.mark.parametrize("form", ["per_parameter", "multi_tensor"])
def test_the_config_key_picks_the_form(form: str) -> None:
    from deepseek.config.load import load_config
    from deepseek.training.build import create_optimizer_builder

    config = load_config(overrides=[f"optimizer.master_update={form}"])
    builder = create_optimizer_builder(config)
    made = builder.create([{"params": [torch.nn.Parameter(torch.zeros(3))], "weight_decay": 0.0}], 1e-3,
                          master_weights=True)
    assert made.update_form == form


def test_an_unknown_config_value_is_one_line() -> None:
    from deepseek.config.load import load_config
    from deepseek.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^optimizer\.master_update: 'flat' \(str\) is not allowed; allowed values: "
                                          r"'per_parameter', 'multi_tensor'$"):
        load_config(overrides=["optimizer.master_update=flat"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled Triton update runs on CUDA only")
def test_on_cuda_both_forms_step_bit_for_bit_the_same() -> None:
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(n, generator=gen) for n in (1, 2047, 2049, 300_000)]
    params = {form: [torch.nn.Parameter(w.cuda()) for w in weights] for form in ("per_parameter", "multi_tensor")}
    opts = {form: MasterWeightAdamW(ps, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1, update=form)
            for form, ps in params.items()}
    for _step in range(3):
        grads = [torch.randn(w.shape, generator=gen).bfloat16().cuda() for w in weights]
        for form, opt in opts.items():
            for p, g in zip(params[form], grads, strict=True):
                p.grad = g.clone()
            opt.grad_scale = torch.tensor(1.5, device="cuda")
            opt.step()
            del opt.grad_scale
    a, b = opts["per_parameter"], opts["multi_tensor"]
    for p, q in zip(params["per_parameter"], params["multi_tensor"], strict=True):
        assert torch.equal(p, q)
        assert all(torch.equal(a.state[p][k], b.state[q][k]) for k in ("master", "exp_avg", "exp_avg_sq"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled Triton update runs on CUDA only")
def test_on_cuda_a_tensor_off_16_byte_alignment_gets_the_same_numbers() -> None:
    """The multi-tensor kernel tells the compiler every address is 16-byte aligned (vector access);
    a view 4 bytes into its storage must take its own launch, not a misaligned vector load."""
    from deepseek.training.master_kernel import MultiTensorUpdate, fused_update

    gen = torch.Generator().manual_seed(1)
    sizes = (4096, 4099, 1)
    state = [[torch.randn(n, generator=gen).cuda() for n in sizes] for _ in range(3)]
    grads = [torch.randn(n, generator=gen).bfloat16().cuda() for n in sizes]
    forms = []
    for _ in range(2):
        w, m, v = ([t.clone() for t in ts] for ts in state)
        v = [t.abs() for t in v]
        w[0] = torch.cat([torch.zeros(1, device="cuda"), w[0]])[1:]  # off alignment by one fp32
        forms.append(([t.bfloat16() for t in w], w, m, v))
    args = (1e-2, torch.tensor(1.5, device="cuda"), 0.19, 0.3, 0.9, 0.95, 1e-8, 0.1)
    for p, g, w, m, v in zip(forms[0][0], grads, *forms[0][1:], strict=True):
        fused_update(p, g, w, m, v, *args)
    MultiTensorUpdate()(forms[1][0], grads, *forms[1][1:], *args)
    torch.cuda.synchronize()
    for xs, ys in zip(*forms, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(xs, ys, strict=True))
