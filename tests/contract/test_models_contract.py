"""Contract every registered model and text encoder meets (timm's test_models idea).

Every model: its target carries an ``Options`` dataclass whose keys all have defaults, it builds
on the meta device (free, any size) as a ``torch.nn.Module``, and each optional capability of
``deepseek.models.capabilities`` is offered whole or not at all. Models of the GPT family also pass
the numerical checks on a small shape (``SHRINK``): logits, loss, gradients, pipeline stages,
KV-cache decoding. A model without capability ``generation`` keeps the default ``generate``,
which refuses with how to offer it. Any model with capability ``pipeline`` gives stages holding its
own parameter names and, with ``cached_decoding``, its decode window on every stage.

Every model is also called on a batch (:mod:`_pairing`): on the first training batch of each
registered dataset it takes, ``model(**batch)`` must return what the trainer accepts (a 0-dim
mean loss or a mapping with ``loss``, no metric named like a value the trainer logs itself) and
finite values, and a model that declares its metrics (``metric_names``) reports exactly those. A
model that no registered dataset fits is skipped, saying what to register; one that takes some but
refuses a dataset whose batches are of the kind it reads (a multimodal dataset, for
``multimodal.classifier``) is skipped naming that dataset and the refusal, not passed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import pytest
import torch
from _contract_data import OwnData
from _pairing import MODEL_SHRINK as SHRINK
from _pairing import FirstBatches, call_on_batches, qualified_names, tiny_model
from torch import nn

import deepseek
from deepseek.config.components import options_class
from deepseek.models import GPT
from deepseek.models.capabilities import CAPABILITIES, model_capabilities
from deepseek.models.checks import declared_metrics
from deepseek.models.declared import encoder_modules, generation_vocab_size, token_input_limits
from deepseek.models.encoder import EncoderOutput
from deepseek.models.gpt import GPTConfig
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import get_host

MODELS = qualified_names("model")
TEXT_ENCODERS = qualified_names("encoder", "text.*")


@functools.cache
def _gpt_family(name: str) -> bool:
    """Builds a GPT from GPT options (``d_model``, ``n_layers``...: ``SHRINK`` applies). A model
    that builds a GPT from other options (``quantized``: a base table) is not shrunk here.

    Asked inside the tests, never at collection: it loads the model's target, and one plugin's
    target that does not load must fail that model's tests, not stop the whole suite from being
    collected (docs/plugins.md section 9)."""
    target = get_host().resolve("model", name).load()
    if not issubclass(options_class(target, kind="model", name=name), GPTConfig):
        return False
    with torch.device("meta"):
        return isinstance(deepseek.create_model(name, device="meta"), GPT)


def _gpt_only(name: str) -> None:
    """Skip the GPT family's numerical checks for a model outside it."""
    if not _gpt_family(name):
        pytest.skip(f"{name}: not of the GPT family (its options are not GPTConfig's or it builds no GPT)")


def test_core_models_registered() -> None:
    core = {f"deepseek-core:{name}" for name in ("tiny", "small", "1.3b")}
    assert core <= set(MODELS)
    assert all(_gpt_family(n) for n in core)


@pytest.mark.parametrize("name", MODELS, ids=MODELS)
def test_options_and_meta_build(name: str) -> None:
    target = get_host().resolve("model", name).load()
    options = options_class(target, kind="model", name=name)
    assert all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(options)), f"{name}: every [model] key needs a default"
    model = deepseek.create_model(name, device="meta")
    assert isinstance(model, nn.Module)
    params = list(model.parameters())
    assert params and all(p.is_meta for p in params)


@pytest.mark.parametrize("name", MODELS, ids=MODELS)
def test_capabilities_are_offered_whole(name: str) -> None:
    model = deepseek.create_model(name, device="meta")
    if not isinstance(model, TrainableModel):
        assert model_capabilities(model) == frozenset()
        return
    cls = type(model)
    for cap in CAPABILITIES.values():
        overridden = [m for m in cap.methods if getattr(cls, m) is not getattr(TrainableModel, m)]
        assert overridden in ([], list(cap.methods)), (
            f"{name}: capability {cap.name!r} needs all of {cap.methods}, overrides only {overridden}")
    if "blocks" in model_capabilities(model):
        blocks = model.block_modules()
        assert blocks and all(isinstance(b, nn.Module) for b in blocks)
    if "generation" not in model_capabilities(model):  # the default says how to offer it
        with pytest.raises(NotImplementedError, match=r"capability 'generation'\); give the model's class"):
            model.generate(torch.zeros(1, 1, dtype=torch.long), 1)
    else:  # the vocabulary of the tokenizer check: refused unless a positive int or None (unknown)
        vocab = generation_vocab_size(model)
        if isinstance(model, GPT):
            assert vocab == model.config.vocab_size
    ids, positions = token_input_limits(model)  # refused unless None or (positive int, positive int | None)
    encoder_modules(model)  # refused unless a mapping of [model] keys to Encoders
    if isinstance(model, GPT):
        assert (ids, positions) == (model.config.vocab_size, model.config.max_seq_len)


@pytest.fixture(scope="module")
def first_batches(tmp_path_factory: pytest.TempPathFactory, contract_data: OwnData) -> FirstBatches:
    """Every registered dataset made once for all the models of this module (with the author's
    ``--contract-data`` keys)."""
    return FirstBatches(get_host(), tmp_path_factory.mktemp("datasets"), contract_data)


@pytest.mark.parametrize("name", MODELS, ids=MODELS)
def test_model_output_on_a_batch(name: str, first_batches: FirstBatches, tmp_path: Path) -> None:
    calls = call_on_batches(get_host(), name, tmp_path, first_batches)
    if not calls.outputs:
        pytest.skip(calls.skip_reason(name))
    if _gpt_family(name):  # every model declaring its metrics reported exactly those (call_on_batches)
        assert "deepseek-core:text" in calls.outputs, calls.refused
        assert declared_metrics(tiny_model(get_host(), name)) == ()
    unchecked = calls.unchecked_reason(name)  # a dataset of the kind it reads, refused: not a silent pass
    if unchecked is not None:
        pytest.skip(unchecked)


@pytest.mark.parametrize("name", MODELS, ids=MODELS)
def test_gpt_counts_parameters_and_flops(name: str) -> None:
    _gpt_only(name)
    model = deepseek.create_model(name, device="meta")
    unique = {id(p): p.numel() for p in model.parameters()}
    assert model.num_parameters() == sum(unique.values())
    assert model.flops_per_token(model.config.max_seq_len) > 6 * model.num_parameters(non_embedding=True)


@pytest.mark.parametrize("name", MODELS, ids=MODELS)
def test_gpt_logits_loss_and_gradients(name: str) -> None:
    _gpt_only(name)
    torch.manual_seed(0)
    model = deepseek.create_model(name, **SHRINK)
    vocab = model.config.vocab_size
    batch = {"input_ids": torch.randint(0, vocab, (2, 32)), "targets": torch.randint(0, vocab, (2, 32))}
    assert model(batch["input_ids"]).shape == (2, 32, vocab)
    loss = model(**batch)
    assert loss.dim() == 0 and abs(loss.item() - math.log(vocab)) < 0.5
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS, ids=MODELS)
def test_gpt_pipeline_stages_compose(name: str) -> None:
    _gpt_only(name)
    model = deepseek.create_model(name, **SHRINK).eval()
    idx = torch.randint(0, model.config.vocab_size, (1, 16))
    (args, target) = model.pipeline_batch({"input_ids": idx, "targets": idx})
    h = args
    for stage in model.split_stages(2):
        h = (stage(*h),)
    torch.testing.assert_close(h[0], model(idx))
    torch.testing.assert_close(model.pipeline_loss(h[0], target), model(idx, idx))


@pytest.mark.parametrize("name", MODELS, ids=MODELS)
def test_gpt_generate_with_cache(name: str) -> None:
    _gpt_only(name)
    model = deepseek.create_model(name, **SHRINK)
    assert {"generation", "cached_decoding"} <= model_capabilities(model)
    out = model.generate(torch.zeros(1, 3, dtype=torch.long), 5, temperature=0)
    assert out.shape == (1, 8)


@pytest.mark.parametrize("name", TEXT_ENCODERS, ids=TEXT_ENCODERS)
def test_text_encoder_contract(name: str) -> None:
    torch.manual_seed(0)
    enc = deepseek.create_encoder(name).eval()
    tokens = torch.randint(1, 256, (2, 12))
    out = enc(tokens)
    assert isinstance(out, EncoderOutput) and out.features.shape == (2, 12, enc.output_dim)
    assert torch.isfinite(out.features).all() and not out.padding_mask.any()
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[1, 8:] = True
    masked = enc(tokens, padding_mask=mask)
    assert masked.features.shape == out.features.shape and torch.isfinite(masked.features).all()
    assert torch.equal(masked.padding_mask, mask) and masked.features[1, 8:].abs().max() == 0
    torch.testing.assert_close(masked.features[0], out.features[0])


@pytest.mark.parametrize("name", MODELS, ids=MODELS)
def test_pipeline_stages_keep_the_models_names_and_decode_window(name: str) -> None:
    """Any model with capability ``pipeline`` (docs/plugins.md section 10): ``split_stages(2)``
    holds the model's own parameters under their names (a checkpoint is the union of the stages'
    state dicts), and when the model offers ``cached_decoding`` each stage that offers it too
    returns the whole model's ``decode_window`` (``generate --strategy pipeline`` refuses stages of
    different windows only once it runs on several processes; here one process finds it)."""
    from deepseek.errors import DeepseekError
    from deepseek.models.cache_checks import decode_window_of

    model = deepseek.create_model(name, device="meta")  # weightless: any size, and only names and windows are read
    if "pipeline" not in model_capabilities(model):
        pytest.skip(f"{name}: no capability 'pipeline'")
    try:
        stages = model.split_stages(2)
    except DeepseekError as exc:  # too few blocks at the contract's size: its own one line
        pytest.skip(f"{name}: split_stages(2) refused: {exc}")
    own = model.state_dict()
    held = {key: value for stage in stages for key, value in stage.state_dict().items()}
    assert set(held) == set(own), f"{name}: the stages hold {sorted(set(held) ^ set(own))} unlike the model"
    if "cached_decoding" in model_capabilities(model):
        window = decode_window_of(model)
        decoding = [stage for stage in stages if "cached_decoding" in model_capabilities(stage)]
        assert [decode_window_of(stage) for stage in decoding] == [window] * len(decoding), (
            f"{name}: every stage's decode_window must be the model's {window}")


@pytest.mark.parametrize("name", MODELS, ids=MODELS)
def test_cached_decoding_advances_the_length_and_agrees_with_one_prefill(name: str) -> None:
    """Any model with capability ``cached_decoding`` (docs/plugins.md section 10), small
    (``SHRINK``): a new cache holds no positions, each ``forward_cached`` adds the positions it was
    fed to ``cache.length`` (both checked as ``generate`` checks them:
    :mod:`deepseek.models.cache_checks`), and half the positions prefilled, then one token a step,
    give the outputs of one prefill of all of them on a fresh cache (nothing cached before); for a
    GPT also its uncached ``forward``. Within 5% of the largest output, as quantized arithmetic
    (``quantized``) differs a little with the shapes fed (0.6% measured); a cache read at the wrong
    positions is off by about half."""
    from deepseek.models.cache_checks import decode_window_of, fed_cached, fresh_cache

    if "cached_decoding" not in model_capabilities(deepseek.create_model(name, device="meta")):
        pytest.skip(f"{name}: no capability 'cached_decoding'")
    model = tiny_model(get_host(), name).eval()
    window = decode_window_of(model)
    ids = generation_vocab_size(model) or token_input_limits(model)[0]
    n = min(8, window)
    idx = torch.randint(0, ids, (2, n), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = fed_cached(model, idx, fresh_cache(model, 2, window))
        cache = fresh_cache(model, 2, window)
        parts = [fed_cached(model, idx[:, : n // 2], cache)]
        parts += [fed_cached(model, idx[:, i : i + 1], cache) for i in range(n // 2, n)]
        stepped = torch.cat(parts, dim=1)
    assert cache.length == n
    tolerance = 0.05 * float(whole.abs().max())  # quantized arithmetic differs a little with the shapes fed
    assert float((stepped - whole).abs().max()) <= tolerance, (
        f"{name}: one token a step after a prefill gives outputs unlike one prefill of the same positions")
    if isinstance(model, GPT):
        with torch.no_grad():
            assert float((model(idx) - whole).abs().max()) <= tolerance, f"{name}: forward_cached unlike forward"
