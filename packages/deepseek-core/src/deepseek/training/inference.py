"""Loading a trained model and its tokenizer for evaluation and sampling (no optimizer). A run
trained with ``data.tokenizer`` uses the run folder's copy (``RUN/tokenizer.json``) first, so eval
and generate work after the original file moved.

The model loads under core alone, whatever strategy trained it; :func:`load_placed` with a
strategy name then places it on the processes of ``deepseek launch`` through
:meth:`~deepseek.training.strategy.Strategy.setup_inference` (``tp``: split by heads)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepseek import api_args
from deepseek.config.schema import Config
from deepseek.data.tokenizer import (
    SEPARATOR_TOKEN,
    TOKENIZER_FILE,
    Tokenizer,
    check_run_tokenizer,
    check_setting_tokenizer,
    run_folder_of,
)
from deepseek.dtypes import torch_dtype
from deepseek.errors import CheckpointError, ConfigError, UsageError
from deepseek.training import checkpoint as ckpt
from deepseek.training.build import build_model
from deepseek.training.run_values import PERPLEXITY
from deepseek.training.weights_source import (
    DataChoice,
    Source,
    check_data_tokenizer,
    exported_file,
    model_only,
    read_source,
    refuse_hugging_face_folder,
    unreadable_config,
    with_data,
)

if TYPE_CHECKING:
    from deepseek.plugins.host import PluginHost
    from deepseek.training.step import StepSettings
    from deepseek.training.strategy import Strategy


def load_model(path: str | Path, *, model: nn.Module | None = None, device: str | torch.device = "cpu",
               host: PluginHost | None = None) -> nn.Module:
    """``deepseek.load_model``: the trained model of a run folder (its newest complete
    checkpoint), a checkpoint folder (any strategy's, full or sharded) or exported weights, built
    from the config it was trained with, on ``device`` in eval mode. ``model``: load the weights
    into this module instead (a model ``deepseek.fit`` trained, which only its script can build;
    names, shapes and kinds checked first). ``host``: the plugin host its model resolves on
    (default: the process's)."""
    path, device = api_args.path(path, "path"), api_args.device(device, "device")
    host = api_args.host(host)
    if model is None:
        return load_trained(path, device, host=host)[0]
    if not isinstance(model, nn.Module):
        raise UsageError(f"load_model(model=): expected the torch.nn.Module to load the weights into, got "
                         f"{type(model).__name__} (pass an instance: model=Net())")
    ckpt.load_into_model(model, read_source(path).origin.path, host)
    return model.to(device).eval()


def load_trained(
    path: str | Path | Source,
    device: str | torch.device = "cpu",
    *,
    need_data: bool = False,
    host: PluginHost | None = None,
    data: DataChoice | None = None,
) -> tuple[nn.Module, Config, dict[str, Any]]:
    """The model of a run folder, checkpoint folder or exported weights (a ``.safetensors`` file,
    or import-hf's folder: :mod:`deepseek.training.weights_source`), on ``device`` in eval mode;
    with its config and the checkpoint's trainer state (``{}`` for exported weights).
    ``need_data``: keep (and check) the data the weights come with, or ``data``'s choice (which
    implies it); without it the config's ``[data]`` is the default (the data's files need not
    exist where the model is used). Any strategy's checkpoint loads with core alone. ``path``
    may be a :class:`~deepseek.training.weights_source.Source` already read (a command that
    reports where its weights came from reads them once: a run folder's newest checkpoint
    cannot change in between)."""
    source = path if isinstance(path, Source) else read_source(path)
    config = model_only(source.config_data, source.config_where, host, source.state)
    if need_data or data is not None:
        config = with_data(source, config, data, host)
    try:  # a model checks its nested tables (a multimodal model's encoders) as it is built
        shapes = build_model(config, host=host, create_on=torch.device("meta"))
        ckpt.check_weights_fit(shapes, source.origin.path)  # before memory is taken for the real one
        model = build_model(config, host=host)
    except ConfigError as exc:
        raise unreadable_config(exc, source.config_where, source.state) from exc
    ckpt.load_into_model(model, source.origin.path, host)  # a folder: either layout, full or sharded
    model.to(device).eval()
    return model, config, source.state


def check_trained_weights(path: str | Path, weights: dict[str, torch.Tensor], *,
                          host: PluginHost | None = None) -> None:
    """That ``weights`` (name -> tensor, as read from the checkpoint or weights at ``path``) fit
    the model the config beside them describes: names, shapes and kinds of values, as
    :func:`load_trained` would find when loading them, checked on a ``meta``-device model (no
    memory). ``checkpoint export`` runs it so that it writes nothing that would not load. A model
    whose plugin is not installed here is not checked (the weights are, when they are loaded)."""
    from deepseek.errors import ComponentNotFoundError

    source = read_source(path)
    try:
        config = model_only(source.config_data, source.config_where, host, source.state)
        model = build_model(config, host=host, create_on=torch.device("meta"))
    except CheckpointError as exc:
        if isinstance(exc.__cause__, ComponentNotFoundError):
            return
        raise
    except ConfigError as exc:
        raise unreadable_config(exc, source.config_where, source.state) from exc
    ckpt.check_fits_module(weights, model, source.origin.path)


def load_placed(
    path: str | Path | Source,
    device: str | torch.device = "cpu",
    *,
    strategy: str | None = None,
    need_data: bool = False,
    host: PluginHost | None = None,
    command: str = "generate",
    dtype: str = "fp32",
    data: DataChoice | None = None,
) -> tuple[nn.Module, Config, dict[str, Any], Strategy | None]:
    """:func:`load_trained` with the weights (and so the KV cache) in ``dtype`` (``fp32``,
    ``bf16``, ``fp16``), and with ``strategy`` (the name of a registered strategy) that
    strategy's process group joined (default options; ``device`` is then the strategy's) and the
    model placed by its ``place_for_inference``, with the settings naming the model and blaming
    a plugin model's bugs as training does (:func:`inference_settings`). Returns the strategy too
    (``None`` without one): print from its ``is_global_zero`` process only, and ``teardown()`` it
    at the end; a model it placed is evaluated with its ``settings.model_calls`` (:func:`evaluate_validation`).
    ``command`` names the CLI command in the error of a launcher strategy started without one."""
    cast = torch_dtype(dtype)
    if strategy is None:
        model, config, state = load_trained(path, device, need_data=need_data, host=host, data=data)
        return model.to(cast), config, state, None
    from deepseek.config.components import load_checked
    from deepseek.plugins.host import get_host
    from deepseek.training.launcher_env import launcher_env
    from deepseek.training.mixed_precision import Precision
    from deepseek.training.strategy_rules import check_setup_inference

    component = (host or get_host()).resolve("strategy", strategy)
    cls = check_setup_inference(load_checked("strategy", component), component.label)
    if cls.needs_launcher:
        launcher_env(strategy, command=command)
    placer = cls(None, precision=Precision("fp32"), host=host)
    placer.setup_environment()
    try:
        model, config, state = load_trained(path, "cpu", need_data=need_data, host=host, data=data)
        settings = inference_settings(model, config, host)  # the model as built, not the strategy's wrapper
        return placer.place_for_inference(model.to(cast), settings), config, state, placer
    except BaseException:
        placer.teardown()
        raise


def inference_settings(model: nn.Module, config: Config, host: PluginHost | None = None) -> StepSettings:
    """What a strategy serving ``model`` (as built, before any strategy wraps it) needs to know of
    it: its registered name, and the block blaming what a plugin model's own code raises
    (:func:`~deepseek.plugins.calls.model_blame`, the rule of training)."""
    from deepseek.plugins.calls import model_blame
    from deepseek.training.build import run_host
    from deepseek.training.step import StepSettings

    component = run_host(config, host).resolve("model", config.model.name)
    return StepSettings(model_name=config.model.name, model_calls=model_blame(component, model))


def served_calls(model: nn.Module, config: Config, host: PluginHost | None = None,
                 placer: Strategy | None = None) -> Callable[[str], contextlib.AbstractContextManager[None]]:
    """The block around ``deepseek eval``'s and ``generate``'s calls of ``model`` (from
    :func:`load_placed`): the ``placer``'s ``settings.model_calls`` (blaming the model it was
    given, not the module it returned), without one :func:`inference_settings`' of ``model``."""
    return (placer.settings if placer is not None else inference_settings(model, config, host)).model_calls


@contextlib.contextmanager
def placed_run(placer: Strategy | None) -> Iterator[None]:
    """The span of work on a model from :func:`load_placed`: on success every rank meets at a
    barrier before any tears the process group down; the strategy is torn down either way."""
    try:
        yield
        if placer is not None:
            placer.barrier()
    finally:
        if placer is not None:
            placer.teardown()


def trained_tokenizer(path: str | Path | Source, host: PluginHost | None = None) -> Tokenizer:
    """The tokenizer a run folder's, checkpoint folder's or exported file's model was trained
    with: its dataset's text codec when the dataset declares one (:mod:`deepseek.training.run_codec`,
    the dataset resolved on ``host``, default the process's); the run's ``tokenizer.json`` copy
    (or, failing that, its ``data.tokenizer``) when it used one; a ``tokenizer.json`` beside an
    exported file; else bytes. From a :class:`Source` (:func:`read_source`), nothing is read again."""
    from deepseek.data.tokenizer import ByteTokenizer, open_tokenizer
    from deepseek.training.run_codec import recorded_codec

    source = path if isinstance(path, Source) else None
    p = source.origin.path if source is not None else exported_file(Path(path)) or Path(path)
    if p.is_file() and p.suffix == ".safetensors":
        beside = p.parent / TOKENIZER_FILE
        return open_tokenizer(str(beside), where=str(p)) if beside.is_file() else ByteTokenizer()
    if source is None:
        refuse_hugging_face_folder(p)
    directory = p if source is not None else ckpt.resolve_checkpoint(p)
    state = source.state if source is not None else ckpt.read_trainer_state(directory)
    codec = recorded_codec(directory, state, host)
    if codec is not None:
        return codec
    config = state.get("config")
    table = config.get("data") if isinstance(config, dict) else None
    table = table if isinstance(table, dict) else {}
    setting, separator = table.get("tokenizer", ""), table.get("separator_token", SEPARATOR_TOKEN)
    if not isinstance(setting, str) or not isinstance(separator, str):
        raise CheckpointError(f"{directory / ckpt.TRAINER_FILE}: data.tokenizer / data.separator_token are not "
                              "strings; the checkpoint is corrupt: use another checkpoint")
    if not setting:
        return ByteTokenizer()
    # the bytes checked are the bytes parsed, read once (a second read could be a file replaced since)
    copy = run_folder_of(directory) / TOKENIZER_FILE
    path, content = (source.config_data["data"]["tokenizer"], source.tokenizer) if source is not None else \
        (str(copy), check_run_tokenizer(copy, state)) if copy.is_file() else \
        (setting, check_setting_tokenizer(setting, copy, state))
    return open_tokenizer(path, separator or SEPARATOR_TOKEN, where=f"{directory} (data.tokenizer)", content=content)


def sample(
    model: nn.Module,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int = 0,
    tokenizer: Tokenizer | None = None,
    static: Any = None,
    top_p: float | None = None,
    stop: Sequence[str] = (),
    repetition_penalty: float = 1.0,
    model_calls: Callable[[str], contextlib.AbstractContextManager[None]] | None = None,
) -> str:
    """``prompt`` continued by the model (KV-cache ``generate``), encoded and decoded with
    ``tokenizer`` (default: UTF-8 bytes), up to the document separator the model writes or the
    first of the ``stop`` strings (decoding ends there: :mod:`deepseek.training.stopping`);
    ``top_p``: nucleus sampling (``None``: off); ``repetition_penalty``: Hugging Face's (1.0: off,
    :func:`~deepseek.models.decoding.penalize_repeats`); ``static``: the
    :class:`~deepseek.models.static_decoding.StaticDecoders` to decode with (``None``: eager);
    ``model_calls``: the block around ``model.generate`` (:func:`served_calls`; ``None``: nothing
    is blamed)."""
    from deepseek.models.sampling import sampling_arguments
    from deepseek.plugins.calls import blame_for
    from deepseek.training.stopping import Stopped, Stopping, check_stops, cut_at_stop

    tok = generating_tokenizer(model, tokenizer, model_calls=model_calls)
    extra = sampling_arguments(model, top_p=top_p, repetition_penalty=repetition_penalty)
    stops = check_stops(stop)
    if not isinstance(prompt, str):
        raise UsageError(f"prompt: expected the text to continue (a str), got {type(prompt).__name__}")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (bytes decoded with surrogateescape)
        raise UsageError(f"prompt: character {exc.object[exc.start]!r} at {exc.start} is not text (a lone "
                         "surrogate); decode the prompt's bytes as UTF-8 first") from None
    seed = api_args.whole(seed, "seed")
    if seed >= 2**64:
        raise UsageError(f"seed: must be below 2**64, got {seed}")
    ids = tok.prompt_ids(prompt)
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    stopping = Stopping(tok, stops)
    with (model_calls or blame_for(None, None))("generate"):  # Stopped, raised in the model's loop, is caught inside
        try:
            new = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=gen,
                                 static=static, on_token=stopping, **extra)[0, len(ids):]
        except Stopped:
            new = stopping.generated()[0]
    return cut_at_stop(tok.decode_continuation(ids, new.tolist()), stops)


def generating_tokenizer(model: nn.Module, tokenizer: Tokenizer | None, *,
                         model_calls: Callable[[str], contextlib.AbstractContextManager[None]] | None = None) -> Tokenizer:
    """``tokenizer`` (default: UTF-8 bytes) after checking that ``model`` generates text
    (capability ``generation``, :func:`~deepseek.models.capabilities.require_generation`) and that
    the two agree on the vocabulary the model declares
    (:meth:`~deepseek.models.protocol.TrainableModel.generation_vocab_size`, read in
    ``model_calls``: :func:`served_calls`; one line saying what to pass otherwise)."""
    from deepseek.data.tokenizer import ByteTokenizer
    from deepseek.errors import UsageError
    from deepseek.models.capabilities import require_generation
    from deepseek.models.declared import generation_vocab_size

    require_generation(model)
    if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
        raise UsageError(f"tokenizer: expected a deepseek.data.tokenizer.Tokenizer (e.g. "
                         f"trained_tokenizer(run_dir) of this module) or None for bytes, got {type(tokenizer).__name__}")
    tok = tokenizer or ByteTokenizer()
    vocab = generation_vocab_size(model, calls=model_calls)  # None: the model does not say, nothing to check
    if vocab is not None and tok.vocab_size > vocab:
        raise UsageError(
            f"generate: the tokenizer has {tok.vocab_size} tokens but the model's vocabulary only {vocab}; "
            "pass the run folder the model was trained in (its tokenizer.json)"
        )
    if vocab is not None and isinstance(tok, ByteTokenizer) and vocab > tok.vocab_size:
        raise UsageError(
            f"generate: the model has {vocab} token ids but no tokenizer.json was found with it, and byte "
            f"tokens cover only {tok.vocab_size}; put the tokenizer.json it was trained with in its run folder "
            "(or beside the exported weights file), or install the plugin of its dataset when that declares "
            "its tokens (Dataset.text_codec)"
        )
    return tok


@dataclass(frozen=True)
class Evaluated:
    """What :func:`evaluate_validation` measured and over how much data."""

    values: dict[str, float]
    """``val_loss``, ``val_<metric>``, ``val_bits_per_byte`` for text data, ``val_perplexity`` for tokens."""
    batches: int
    """Validation batches evaluated (fewer than asked when the validation data ends sooner)."""
    samples: int  # rows over those batches
    tokens: int | None  # tokens over those batches; None when the data has no tokens


def evaluate_validation(
    model: nn.Module, config: Config, batches: int | None = None, host: PluginHost | None = None,
    placer: Strategy | None = None, source: Source | None = None,
) -> Evaluated:
    """Mean loss and metrics of ``model`` on the run's fixed validation batches (at most ``batches``,
    default :func:`~deepseek.training.evaluation.eval_batch_count`; read and checked as the trainer
    reads them: :func:`~deepseek.training.evaluation.validation_set`), in fp32 on the model's device;
    a ``batches`` refused is named as given (``--batches N``, ``batches=N``). ``placer``
    (:func:`load_placed`) blames the model's bugs by the model it was given, not the module it
    returned; without it, by ``model``'s own class. ``source`` (:func:`read_source`): data reading
    the run's tokenizer is held to its check (``weights_source.check_data_tokenizer``)."""
    from deepseek.models.checks import check_model_data
    from deepseek.plugins.calls import blames
    from deepseek.training.build import build_dataset, run_host
    from deepseek.training.evaluation import (
        batches_named,
        eval_batch_count,
        evaluate_in_process,
        validation_set,
    )

    device = next(model.parameters()).device
    dataset = build_dataset(config, host)
    if source is not None:
        check_data_tokenizer(source, config, dataset)
    with batches_named(batches):  # a count refused (past memory) is the one the user gave: named as given
        val = validation_set(config, dataset, eval_batch_count(config, batches))
    component = run_host(config, host).resolve("model", config.model.name)
    label = component.label if blames(component) else None
    blamed = served_calls(model, config, host, placer)
    if val.batches:  # the model's own check of the data, as the trainer makes it (sequence length, vocabulary)
        check_model_data(model, val.batches[0], dataset, model_name=config.model.name, calls=blamed)
    from deepseek.training.evaluation import batch_weights
    from deepseek.training.loss_items import item_weights

    items = item_weights(model, label or f"model {config.model.name!r}")
    with blamed("forward"):  # what the model's own code raises: one line naming it
        weights = batch_weights(val.batches, items)
        values = evaluate_in_process(model, val.batches, device=device, model_name=config.model.name,
                                     texts=val.texts, weights=weights)
    if val.tokens is not None and "val_loss" in values:  # a language model: loss per token, in nats
        values[PERPLEXITY] = perplexity(values["val_loss"])
    return Evaluated(values, len(val.batches), val.samples, val.tokens)


def perplexity(loss: float) -> float:
    """``exp(loss)`` of a mean cross-entropy per token in nats (``inf`` past a float's range)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def evaluate_model(
    model: nn.Module, config: Config, batches: int | None = None, host: PluginHost | None = None
) -> dict[str, float]:
    """The values of :func:`evaluate_validation`: ``val_loss``, ``val_<metric>``, and
    ``val_bits_per_byte`` for text data."""
    return evaluate_validation(model, config, batches, host).values
