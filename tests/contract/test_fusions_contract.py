"""Contract every registered fusion method meets, whoever registered it (kind ``fusion``, added by
deepseek-enterprise): a :class:`~deepseek_enterprise.fusion.Fusion` subclass whose ``Options``
extend ``FusionBaseOptions`` and build with their defaults; for any mix of present and missing
modalities per sample, finite fused logits ``(B, num_classes)``, per-modality logits and pooled
embeddings ``(B, d_model)``; a missing modality's features change nothing for the samples lacking
it; gradients reach every one of the fusion's parameters; with its parameters alone in bf16
(DeepSpeed's 16-bit engine) and bf16 encoder features, every output is bf16 and finite and every
attention mask is in the queries' dtype (:mod:`_sixteen_bit`). Skipped where no edition adds the
kind."""

from __future__ import annotations

import itertools

import pytest
import torch
from _gradients import check_every_parameter_trains
from _sixteen_bit import AttentionDtypes, as_weights, params_only

from deepseek.plugins.host import get_host

HOST = get_host()
FUSIONS = HOST.components("fusion") if "fusion" in HOST.known_kinds() else []
DIMS = {"vision": 8, "audio": 12, "text": 6}
TOKENS = {"vision": 4, "audio": 7, "text": 5}
CLASSES = 5
# Every subset of the modalities, one per sample; the empty one last: a batch may mark a sample as
# having none (modality dropout never does), and its prediction must stay finite (docs/multimodal.md
# section 3).
PATTERNS = [s for r in (1, 2, 3, 0) for s in itertools.combinations(DIMS, r)]

if not FUSIONS:
    pytest.skip("no fusion methods registered here (deepseek-enterprise adds the kind)", allow_module_level=True)


def _features(gen: torch.Generator, scale: float = 1.0):  # noqa: ANN202
    from deepseek.models.encoder import EncoderOutput

    batch = len(PATTERNS)
    out = {}
    for m, d in DIMS.items():
        padding = torch.zeros(batch, TOKENS[m], dtype=torch.bool)
        padding[::2, -1] = True  # some samples have a padded last token
        out[m] = EncoderOutput(torch.randn(batch, TOKENS[m], d, generator=gen) * scale, padding)
    return out


def _present() -> dict[str, torch.Tensor]:
    return {m: torch.tensor([m in p for p in PATTERNS]) for m in DIMS}


def _build(comp):  # noqa: ANN001, ANN202
    from deepseek_enterprise.fusion import Fusion

    cls = comp.load()
    Fusion.check_registered(cls, comp.name)
    torch.manual_seed(0)
    return cls(cls.Options(), dims=DIMS, num_classes=CLASSES).eval()


@pytest.mark.parametrize("comp", FUSIONS, ids=[c.qualified_name for c in FUSIONS])
def test_fusion_handles_every_subset_of_modalities(comp) -> None:  # noqa: ANN001
    fusion = _build(comp)
    gen = torch.Generator().manual_seed(0)
    features, present = _features(gen), _present()
    with torch.no_grad():
        out = fusion(features, present)
    batch, width = len(PATTERNS), fusion.options.d_model
    assert out.logits.shape == (batch, CLASSES), f"fused logits of shape {tuple(out.logits.shape)}"
    bad = [PATTERNS[i] for i in (~torch.isfinite(out.logits).all(-1)).nonzero().flatten().tolist()]
    assert not bad, f"non-finite fused logits for samples with modalities {bad}; keep every subset finite"
    assert set(out.modality_logits) == set(DIMS) and set(out.pooled) == set(DIMS)
    for m in DIMS:
        assert out.modality_logits[m].shape == (batch, CLASSES)
        assert out.pooled[m].shape == (batch, width)
    # A missing modality's features change nothing for the samples that lack it.
    changed = {m: type(f)(torch.where(present[m][:, None, None], f.features, f.features * -7.0 + 3.0), f.padding_mask)
               for m, f in features.items()}
    with torch.no_grad():
        again = fusion(changed, present)
    moved = ~torch.isclose(again.logits, out.logits, rtol=1e-5, atol=1e-6).all(-1)
    assert not moved.any(), (
        f"changing the features of modalities a sample lacks changed its fused logits (samples with "
        f"{[PATTERNS[i] for i in moved.nonzero().flatten().tolist()]}); mask missing modalities out, do not "
        "average them in (docs/multimodal.md section 3)")


@pytest.mark.parametrize("comp", FUSIONS, ids=[c.qualified_name for c in FUSIONS])
def test_fusion_trains(comp) -> None:  # noqa: ANN001
    fusion = _build(comp).train()
    gen = torch.Generator().manual_seed(1)
    out = fusion(_features(gen), _present())
    # Every output the model trains on: the fused logits, each modality's own logits (the auxiliary
    # losses) and the pooled embeddings (the contrastive loss).
    target = torch.arange(len(PATTERNS)) % CLASSES
    loss = torch.nn.functional.cross_entropy(out.logits, target)
    loss = loss + sum(torch.nn.functional.cross_entropy(out.modality_logits[m], target) for m in DIMS)
    loss = loss + sum(out.pooled[m].square().mean() for m in DIMS)
    loss.backward()
    check_every_parameter_trains(
        fusion, where=f"fusion {comp.qualified_name}",
        source="any output with every modality of the model present (fused logits, modality_logits, pooled)",
        doc="docs/multimodal.md section 3")


def check_fusion_in_bf16(name: str, fusion: torch.nn.Module) -> None:
    """Asserts that ``fusion`` (in eval mode) with its parameters alone in bf16, as DeepSpeed's
    ``bf16`` holds them (buffers as built, no autocast), fuses bf16 encoder features (what encoders
    give under that engine: test_encoders_contract.py) of every mix of modalities into bf16, finite
    outputs, with every attention mask in the queries' dtype (CUDA refuses any other)."""
    fusion = params_only(fusion, torch.bfloat16)
    features = {m: type(f)(as_weights(f.features, torch.bfloat16), f.padding_mask)
                for m, f in _features(torch.Generator().manual_seed(2)).items()}
    with torch.no_grad(), AttentionDtypes() as seen:
        out = fusion(features, _present())
    outputs = {"logits": out.logits, **{f"modality_logits[{m!r}]": t for m, t in out.modality_logits.items()},
               **{f"pooled[{m!r}]": t for m, t in out.pooled.items()}}
    wrong = {k: t.dtype for k, t in outputs.items() if t.dtype != torch.bfloat16}
    assert not wrong, (
        f"{name}: with its parameters alone in bf16 (DeepSpeed's bf16) it returns {wrong}, not bf16; compute in the "
        "weights' dtype: a float buffer follows weight.dtype where it is used (docs/multimodal.md section 3)")
    bad = [k for k, t in outputs.items() if not torch.isfinite(t.float()).all()]
    assert not bad, f"{name}: non-finite {bad} with its parameters alone in bf16 (docs/multimodal.md section 3)"
    assert not seen.mismatched(), (
        f"{name}: attention masks of another dtype than the queries' with bf16 parameters {seen.mismatched()}, "
        "which CUDA refuses; build float masks in the queries' dtype, or pass bool ones (docs/multimodal.md section 3)")


@pytest.mark.parametrize("comp", FUSIONS, ids=[c.qualified_name for c in FUSIONS])
def test_fusion_runs_with_its_parameters_alone_in_bf16(comp) -> None:  # noqa: ANN001
    check_fusion_in_bf16(comp.name, _build(comp))


def _broken(kind: str) -> torch.nn.Module:
    """Late fusion, broken for DeepSpeed's bf16 with an fp32 float buffer: ``"logits"`` adds it
    to the fused logits (which come out fp32); ``"mask"`` also runs its pooled text embedding
    through attention with it as the mask, ``"mha"`` through ``nn.MultiheadAttention`` with it as
    the ``key_padding_mask`` (fp32 beside bf16 queries: the CPU computes, CUDA refuses)."""
    from deepseek_enterprise.fusion import LateFusion

    class Broken(LateFusion):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, **kwargs)
            self.register_buffer("shift", torch.zeros(CLASSES))
            self.register_buffer("mask", torch.zeros(1, 1))
            self.attn = torch.nn.MultiheadAttention(4, 1, batch_first=True)

        def forward(self, features, present):  # noqa: ANN001, ANN201
            out = super().forward(features, present)
            if kind == "logits":
                return out._replace(logits=out.logits + self.shift)
            q = out.pooled["text"][:, None, :]
            if kind == "mha":
                attended = self.attn(q, q, q, key_padding_mask=self.mask.expand(q.size(0), 1), need_weights=False)[0]
                return out._replace(pooled={**out.pooled, "text": attended[:, 0]})
            attended = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=self.mask)
            return out._replace(pooled={**out.pooled, "text": attended[:, 0]})

    torch.manual_seed(0)
    return Broken(Broken.Options(d_model=4), dims=DIMS, num_classes=CLASSES).eval()


@pytest.mark.parametrize(("kind", "error"), [
    ("logits", r"^broken: with its parameters alone in bf16 \(DeepSpeed's bf16\) it returns \{'logits': torch\.float32\}"),
    ("mask", r"^broken: attention masks of another dtype than the queries' with bf16 parameters "
             r"\[\(torch\.bfloat16, torch\.float32\)\]"),
    ("mha", r"^broken: attention masks of another dtype than the queries' with bf16 parameters "
            r"\[\(torch\.bfloat16, torch\.float32\)\]"),
])
def test_a_fusion_with_an_fp32_buffer_fails_the_bf16_check(kind: str, error: str) -> None:
    with pytest.raises(AssertionError, match=error):
        check_fusion_in_bf16("broken", _broken(kind))
