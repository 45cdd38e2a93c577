"""Contract every registered graph pass meets, whoever registered it (timm's test_models idea):
it loads, is a GraphPass with a name and a description, and on the graph the optimizer captures,
in both forms (see deepseek.graph.capture), either does not apply or keeps the numbers within
the pass's own tolerance, without touching the model (its parameters and buffers, bit for bit)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _pairing import qualified_names
from torch import nn

import deepseek
from deepseek.graph.capture import capture
from deepseek.graph.guard import fingerprint
from deepseek.graph.passes import FP32_TOLERANCE, GraphPass, max_rel_error
from deepseek.plugins.host import get_host

PASSES = qualified_names("pass")


class Reference(nn.Module):
    """A little of everything the built-in passes and common plugin passes look for: consecutive
    Linear layers, BatchNorm after Linear, a convolution, LayerNorm, GELU, sibling Q/K/V
    projections, hand-written attention and ``F.scaled_dot_product_attention``, dropout,
    identity, constant sub-graphs and a position table."""

    def __init__(self, d: int = 16, heads: int = 2, t: int = 6) -> None:
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.inp = nn.Linear(d, d)
        self.bn = nn.BatchNorm1d(d)
        self.conv = nn.Conv1d(d, d, kernel_size=3, padding=1)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d, eps=1e-6)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.qkv = nn.Linear(d, 3 * d)
        self.a, self.b = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.act = nn.GELU()
        self.drop, self.ident = nn.Dropout(0.1), nn.Identity()
        self.pos = nn.Embedding(t, d)
        self.scale = nn.Parameter(torch.rand(d) + 0.5)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 1.5)
            for ln in (self.ln1, self.ln2):  # not the identity affine a pass could get away with ignoring
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.bn(self.inp(x.reshape(b * t, d))).reshape(b, t, d) + self.pos(torch.arange(t))
        h = h + self.act(self.conv(h.transpose(1, 2))).transpose(1, 2)
        n = self.ln1(h)
        q, k, v = (z.view(b, t, self.heads, self.hd).transpose(1, 2) for z in (self.q(n), self.k(n), self.v(n)))
        att = F.softmax((q @ k.transpose(-2, -1)) / math.sqrt(self.hd), dim=-1)
        h = h + self.drop(att @ v).transpose(1, 2).reshape(b, t, d)
        q, k, v = self.qkv(self.ln2(h)).view(b, t, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        h = h + F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        y = self.b(self.a(self.ident(h))) * (self.scale * 2).sigmoid()
        return y.to(torch.float32).contiguous()


class ShapeChecked(Reference):
    """The same model with Python control flow on a shape: symbolic tracing fails on it, so the
    optimizer captures it with torch.export (the aten form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] < 1:
            raise ValueError("empty batch")
        return super().forward(x)


FORMS = {"module-form": (Reference, "fx.symbolic_trace"), "aten-form": (ShapeChecked, "torch.export")}

CORE_ALONE = set(get_host().records) == {"deepseek-core"}
"""No distribution but deepseek-core is registered (the tests-core session)."""
COMPILED_WHERE_CORE_IS_ALONE = {"deepseek-core:inductor"}
"""Core's compiling pass, whose run is checked where core is alone: its output depends on core's
capture of this file's models and on torch (pinned by constraints.txt for every session), not on
which other distributions are registered, and each process that compiles first pays inductor's CPU
probes (ten subprocesses importing torch) and its C++ kernels (cached per environment: the key
holds the environment's torch include path). Elsewhere it meets the rest of the contract."""


def test_core_passes_registered() -> None:
    expected = {"drop-dropout", "fold-batchnorm", "fuse-linear", "merge-siblings", "attention-sdpa",
                "const-fold", "inductor", "bf16", "int8-dynamic"}
    assert {f"deepseek-core:{name}" for name in expected} <= set(PASSES)


def contract_problem(gp: GraphPass, model: nn.Module, x: torch.Tensor, *, must_fire: bool = False) -> str | None:
    """What breaks the pass contract when ``gp`` runs on ``capture(model)``, or ``None``."""
    before = fingerprint(model)
    with torch.no_grad():
        expected = model(x)
        gm, _ = capture(model, (x,))
        out, report = gp.run(gm, (x,))
        if report.name != gp.name:
            return f"its report is named {report.name!r}"
        if fingerprint(model) != before:
            return "it modified the original model's parameters, buffers or modules"
        if out is None:
            if report.status != "no-op":
                return f"it returned None with status {report.status!r}"
            return "it does not fire on its own example" if must_fire else None
        if report.status != "applied" or not report.changes:
            return f"it applied with status {report.status!r} and changes {report.changes}"
        err = max_rel_error(out(x), expected)
    if not err <= (gp.tolerance or FP32_TOLERANCE):
        return f"max relative error {err:.3g} > {gp.tolerance or FP32_TOLERANCE:g}"
    return None


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", PASSES, ids=PASSES)
def test_pass_contract(name: str, form: str) -> None:
    gp = deepseek.create_pass(name)
    assert isinstance(gp, GraphPass), f"{name} created {type(gp).__name__}, not a GraphPass"
    component = get_host().resolve("pass", name)  # an alias creates the pass it names (docs/plugins.md section 3)
    assert gp.name == (component.alias_of or component.name), f"{name}: the pass is named {gp.name!r}"
    assert isinstance(gp.description, str) and gp.description.strip()
    assert gp.tolerance is None or 0 < gp.tolerance < 1
    if name in COMPILED_WHERE_CORE_IS_ALONE and not CORE_ALONE:
        pytest.skip(f"{name} compiles: its run is checked where deepseek-core is alone (tests-core)")

    torch.manual_seed(0)
    model_type, method = FORMS[form]
    model = model_type().eval()
    x = torch.randn(2, 6, 16)
    assert capture(model, (x,))[1] == method
    problem = contract_problem(gp, model, x)
    assert problem is None, f"{name}: {problem}"


@pytest.mark.parametrize("name", PASSES, ids=PASSES)
def test_pass_contract_on_its_own_example(name: str) -> None:
    """A pass that gives an example model (``GraphPass.example``) fires on it and keeps it."""
    gp = deepseek.create_pass(name)
    torch.manual_seed(0)
    example = gp.example()
    if example is None:
        pytest.skip(f"{name} gives no example model (GraphPass.example)")
    model, inputs = example
    problem = contract_problem(gp, model.eval(), *inputs, must_fire=True)
    assert problem is None, f"{name} on its own example: {problem}"


class LayerNormEps(GraphPass):
    """Sets every LayerNorm's eps to 0.5 (in the modules the graph shares with the model): wrong
    numbers, only where there is a LayerNorm."""

    name = "test.layernorm-eps"

    def apply(self, gm, example_inputs):  # type: ignore[no-untyped-def]
        norms = [m for m in gm.modules() if isinstance(m, nn.LayerNorm)]
        for m in norms:
            m.eps = 0.5
        return gm if norms else None


def test_the_reference_model_catches_a_layernorm_pass_that_changes_numbers() -> None:
    """The reference model has LayerNorm (and GELU, a convolution, SDPA), so a pass on them is
    checked, not left a no-op; a pass that changes its eps fails the contract on it."""
    import copy

    torch.manual_seed(0)
    model, x = Reference().eval(), torch.randn(2, 6, 16)

    class Copying(LayerNormEps):
        def apply(self, gm, example_inputs):  # type: ignore[no-untyped-def]
            return super().apply(copy.deepcopy(gm), example_inputs)

    problem = contract_problem(Copying(), model, x)
    assert problem is not None and problem.startswith("max relative error"), problem
    # Changing the shared module itself (not a copy) changes the user's model: caught too.
    assert contract_problem(LayerNormEps(), model, x) == "it modified the original model's parameters, buffers or modules"


def test_a_pass_must_fire_on_its_own_example() -> None:
    torch.manual_seed(0)
    no_norm = nn.Sequential(nn.Linear(4, 4)).eval()
    assert contract_problem(LayerNormEps(), no_norm, torch.randn(2, 4), must_fire=True) == (
        "it does not fire on its own example")
    assert contract_problem(LayerNormEps(), no_norm, torch.randn(2, 4)) is None
