"""Contract every registered fusion method meets, whoever registered it (kind ``fusion``, added by
deepseek-enterprise): a :class:`~deepseek_enterprise.fusion.Fusion` subclass whose ``Options``
extend ``FusionBaseOptions`` and build with their defaults; for any mix of present and missing
modalities per sample, finite fused logits ``(B, num_classes)``, per-modality logits and pooled
embeddings ``(B, d_model)``; a missing modality's features change nothing for the samples lacking
it; gradients reach every one of the fusion's parameters. Skipped where no edition adds the kind."""

from __future__ import annotations

import itertools

import pytest
import torch
from _gradients import check_every_parameter_trains

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
