"""Each graph pass on small torch.fx graphs: same numbers, graph changed as intended, and no
change where the pass must not fire."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from deepseek.graph.attention import AttentionToSDPA
from deepseek.graph.const_fold import ConstantFolding
from deepseek.graph.eliminate import DropDropoutIdentity
from deepseek.graph.fold_bn import FoldBatchNorm
from deepseek.graph.fuse_linear import FuseConsecutiveLinear
from deepseek.graph.merge_siblings import MergeSiblingLinear
from deepseek.graph.passes import GraphPass, max_rel_error


def run(gp: GraphPass, model: nn.Module, *inputs: torch.Tensor):
    """Trace ``model``, apply ``gp``; return (result or None, report, eager output)."""
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():
        expected = model(*inputs)
        gm = fx.symbolic_trace(model)
        out, report = gp.run(gm, inputs)
        if out is not None:
            assert max_rel_error(out(*inputs), expected) <= 1e-5
    return out, report, expected


def count(gm: fx.GraphModule, kind: type | object) -> int:
    """Number of nodes calling a module of type ``kind`` or the function ``kind``."""
    n = 0
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(kind, type):
            n += isinstance(gm.get_submodule(str(node.target)), kind)
        elif node.op == "call_function" and node.target is kind:
            n += 1
    return n


# ------------------------------------------------------------------ fuse-linear


def test_fuse_linear_fuses_a_chain_into_one_matmul() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 12), nn.Linear(12, 4))
    before = model[0].weight.clone()
    out, report, _ = run(FuseConsecutiveLinear(), model, torch.randn(3, 5, 8))
    assert out is not None and report.status == "applied"
    assert count(out, nn.Linear) == 1
    assert len(report.changes) == 2
    assert torch.equal(model[0].weight, before), "the model's own weights must not change"


def test_fuse_linear_keeps_bias_free_layers_bias_free() -> None:
    model = nn.Sequential(nn.Linear(6, 6, bias=False), nn.Linear(6, 3, bias=False))
    out, _, _ = run(FuseConsecutiveLinear(), model, torch.randn(4, 6))
    assert out is not None
    (fused,) = [m for m in out.modules() if isinstance(m, nn.Linear)]
    assert fused.bias is None


def test_fuse_linear_does_not_fuse_across_a_nonlinearity() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    out, report, _ = run(FuseConsecutiveLinear(), model, torch.randn(2, 8))
    assert out is None and report.status == "no-op"


def test_fuse_linear_leaves_a_cheaper_bottleneck_alone() -> None:
    model = nn.Sequential(nn.Linear(64, 4), nn.Linear(4, 64))  # 512 MACs vs 4096 fused
    out, _, _ = run(FuseConsecutiveLinear(), model, torch.randn(2, 64))
    assert out is None


def test_fuse_linear_skips_a_layer_whose_output_is_used_twice() -> None:
    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            return self.b(h) + h

    out, _, _ = run(FuseConsecutiveLinear(), Branch(), torch.randn(2, 4))
    assert out is None


# ------------------------------------------------------------------ fold-batchnorm


def _trained_bn(bn: nn.Module) -> nn.Module:
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


def test_fold_batchnorm_into_conv2d() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), _trained_bn(nn.BatchNorm2d(8)), nn.ReLU())
    out, report, _ = run(FoldBatchNorm(), model, torch.randn(2, 3, 10, 10))
    assert out is not None and count(out, nn.BatchNorm2d) == 0 and count(out, nn.Conv2d) == 1
    assert "folded" in report.changes[0]


def test_fold_batchnorm_into_linear_with_2d_input() -> None:
    model = nn.Sequential(nn.Linear(5, 7), _trained_bn(nn.BatchNorm1d(7)))
    out, _, _ = run(FoldBatchNorm(), model, torch.randn(4, 5))
    assert out is not None and count(out, nn.BatchNorm1d) == 0


def test_fold_batchnorm_skips_linear_on_3d_input() -> None:
    # BatchNorm1d normalizes dim 1, which is not the Linear's feature dim for (N, L, C) inputs.
    model = nn.Sequential(nn.Linear(5, 7), _trained_bn(nn.BatchNorm1d(3)))
    out, _, _ = run(FoldBatchNorm(), model, torch.randn(4, 3, 5))
    assert out is None


def test_fold_batchnorm_skips_training_mode() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), _trained_bn(nn.BatchNorm2d(4)))
    gm = fx.symbolic_trace(model.train())
    with torch.no_grad():
        out, _ = FoldBatchNorm().run(gm, (torch.randn(2, 3, 4, 4),))
    assert out is None


# ------------------------------------------------------------------ merge-siblings


class QKV(nn.Module):
    def __init__(self, d: int = 16, bias: bool = True) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(d, d, bias=bias) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x) * 2 + self.k(x) - self.v(x).relu()


def test_merge_siblings_makes_one_qkv_matmul() -> None:
    out, report, _ = run(MergeSiblingLinear(), QKV(), torch.randn(2, 5, 16))
    assert out is not None and count(out, nn.Linear) == 1 and count(out, torch.split) == 1
    (merged,) = [m for m in out.modules() if isinstance(m, nn.Linear)]
    assert merged.weight.shape == (48, 16)
    assert "split [16, 16, 16]" in report.changes[0]


def test_merge_siblings_does_not_merge_different_inputs() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(y)

    out, _, _ = run(MergeSiblingLinear(), Two(), torch.randn(2, 4), torch.randn(2, 4))
    assert out is None


def test_merge_siblings_groups_by_bias() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x)

    out, _, _ = run(MergeSiblingLinear(), Mixed(), torch.randn(2, 4))
    assert out is None


# ------------------------------------------------------------------ drop-dropout


class Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.3)
        self.ident = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ident(self.drop(self.lin(x)))
        return F.dropout(x, 0.2, training=self.training)


def test_drop_dropout_removes_eval_dropout_and_identity() -> None:
    out, report, _ = run(DropDropoutIdentity(), Noisy(), torch.randn(3, 4))
    assert out is not None
    assert count(out, nn.Dropout) == 0 and count(out, nn.Identity) == 0 and count(out, F.dropout) == 0
    assert report.changes == ["removed 2 dropout", "removed 1 identity"]


def test_drop_dropout_keeps_training_dropout() -> None:
    class AlwaysDrop(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.dropout(x, 0.5)  # training=True by default: random even in eval

    out, _, _ = run(DropDropoutIdentity(), nn.Sequential(nn.Linear(4, 4), nn.ReLU()), torch.randn(2, 4))
    assert out is None
    gm = fx.symbolic_trace(AlwaysDrop())
    out, _ = DropDropoutIdentity().run(gm, (torch.randn(2, 4),))
    assert out is None


# ------------------------------------------------------------------ attention-sdpa


class HandAttention(nn.Module):
    """Hand-written multi-head attention: additive mask, causal masked_fill, or none."""

    def __init__(self, mask: str, d: int = 32, heads: int = 4, t: int = 8, return_weights: bool = False) -> None:
        super().__init__()
        self.mask, self.heads, self.hd = mask, heads, d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.register_buffer("causal", torch.tril(torch.ones(t, t)).view(1, 1, t, t))
        self.return_weights = return_weights

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, self.hd).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)
        if self.mask == "additive":
            att = att + bias
        elif self.mask == "causal":
            att = att.masked_fill(self.causal == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v
        out = y.transpose(1, 2).reshape(b, t, d)
        return (out, att) if self.return_weights else out  # type: ignore[return-value]


@pytest.mark.parametrize("mask", ["none", "additive", "causal"])
def test_attention_rewritten_to_sdpa(mask: str) -> None:
    x, bias = torch.randn(2, 8, 32), torch.randn(1, 1, 8, 8)
    out, report, _ = run(AttentionToSDPA(), HandAttention(mask), x, bias)
    assert out is not None
    assert count(out, F.scaled_dot_product_attention) == 1
    assert count(out, F.softmax) == 0
    assert "scale 0.353553" in report.changes[0]


def test_attention_not_rewritten_when_weights_are_returned() -> None:
    x, bias = torch.randn(2, 8, 32), torch.randn(1, 1, 8, 8)
    out, _, _ = run(AttentionToSDPA(), HandAttention("causal", return_weights=True), x, bias)
    assert out is None


# ------------------------------------------------------------------ const-fold


class Consts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(4, 4))
        self.register_buffer("b", torch.randn(4))
        self.pos = nn.Embedding(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.a * 2 + 1).softmax(-1)  # input-independent
        p = self.pos(torch.arange(x.size(1)))  # depends only on x's shape
        return x @ w + self.b + p


def test_const_fold_precomputes_weights_and_shape_dependent_tables() -> None:
    out, report, _ = run(ConstantFolding(), Consts(), torch.randn(2, 6, 4))
    assert out is not None
    assert count(out, nn.Embedding) == 0
    ops = [n.target for n in out.graph.nodes if n.op in ("call_function", "call_method")]
    assert "softmax" not in ops and torch.arange not in ops
    assert any("specialized" in c for c in report.changes)


def test_const_fold_leaves_random_ops_alone() -> None:
    class Rand(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.randn(4)

    gm = fx.symbolic_trace(Rand())
    out, _ = ConstantFolding().run(gm, (torch.randn(2, 4),))
    assert out is None


def test_const_fold_does_not_copy_views_of_parameters() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.w.t()

    out, _, _ = run(ConstantFolding(), Tied(), torch.randn(2, 3))
    assert out is None


# ------------------------------------------------------------------ onednn-linear


class ResidualMLP(nn.Module):
    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.fc, self.act, self.proj = nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d)
        self.head = nn.Linear(d, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.proj(self.act(self.fc(x)))
        return self.head(x)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")
def test_onednn_linear_packs_weights_and_fuses_epilogues() -> None:
    from deepseek.graph.onednn import OneDNNLinear

    out, report, _ = run(OneDNNLinear(), ResidualMLP(), torch.randn(2, 5, 16))
    assert out is not None
    assert count(out, nn.Linear) == 0 and count(out, nn.GELU) == 0
    ops = [n.target for n in out.graph.nodes if n.op == "call_function"]
    assert ops.count(torch.ops.mkldnn._linear_pointwise.default) == 2
    assert ops.count(torch.ops.mkldnn._linear_pointwise.binary) == 1
    assert report.changes == ["packed 3 Linear weight(s) for oneDNN",
                              "fused into GEMM epilogues: 1 activation, 1 residual add"]


def test_onednn_linear_is_a_no_op_without_linear_layers() -> None:
    from deepseek.graph.onednn import OneDNNLinear

    out, _, _ = run(OneDNNLinear(), nn.Sequential(nn.ReLU(), nn.Tanh()), torch.randn(2, 4))
    assert out is None


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")
def test_onednn_packed_weights_are_shared_and_never_confused() -> None:
    from deepseek.graph.onednn import packed_weight

    w = torch.randn(32, 16)
    a, b = packed_weight(w, 100), packed_weight(w, 120)  # same power-of-two bucket: shared
    assert a is b
    for _ in range(50):  # short-lived weights reuse ids; a stale entry must never be returned
        other = torch.randn(32, 16)
        p = packed_weight(other, 100)
        x = torch.randn(3, 16)
        torch.testing.assert_close(torch.ops.mkldnn._linear_pointwise(x, p, None, "none", [], ""), x @ other.t())
    with torch.no_grad():
        w.mul_(2)  # in-place change: packed again
    assert packed_weight(w, 100) is not a
