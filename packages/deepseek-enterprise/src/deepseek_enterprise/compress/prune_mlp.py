"""``prune.mlp``: structured pruning of the MLP hidden channels of a model built from encoders
(the tri-modal ``multimodal.classifier``: Swin, audio and text encoders), with Torch-Pruning.

Which layers may lose channels is the encoders' own declaration
(:meth:`deepseek.models.encoder.Encoder.mlp_pairs`: each MLP's expanding and contracting
``Linear``), and :meth:`~deepseek.models.encoder.Encoder.narrowed_options` says how the encoder's
options state the narrower widths (``mlp_ratio`` for ``vision.swin``, ``d_ff`` for
``audio.conv_transformer`` and ``text.transformer``), so the result is the same architecture with
smaller dense MLPs that the enterprise edition builds and loads like any other run: no masks.

Torch-Pruning (``torch_pruning.DependencyGraph``) traces each encoder that declares MLP pairs on
its own ``example_inputs()`` (an MLP's hidden channels do not leave its encoder, so the rest of the
model, a plugin's fusion method for one, is never traced; an encoder built of a layer Torch-Pruning
cannot follow, such as a bidirectional ``nn.GRU``, is refused in one line naming its ``[model]``
table) and gives, for each expanding layer, the group of everything coupled to its output
channels (the activation, the contracting layer's input channels); its group importance scores the
channels (``magnitude``: the L2 norm over the group's weights; ``taylor``: ``|w * dL/dw|`` over the
group, gradients accumulated over the calibration batches) and the lowest are removed from the
group as one. A GPT's MLP has its own compressor, ``prune.ffn`` (its channels, its config key).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from deepseek.errors import UsageError
from deepseek_enterprise.compress.compressor import (
    Compressed,
    Compressor,
    figures_record,
    refuse_quantized,
)


def _ratio(value: float) -> str | None:
    return None if 0 < value < 1 else "must be between 0 and 1 (the share of channels removed)"


@dataclass(frozen=True)
class PruneMLPOptions:
    """Options of ``prune.mlp``."""

    ratio: float = field(default=0.5, metadata={"check": _ratio})
    """Share of each MLP's hidden channels removed."""
    score: Literal["magnitude", "taylor"] = "magnitude"
    """Channel importance (Torch-Pruning's group magnitude, or group Taylor on calibration batches)."""
    multiple_of: int = field(default=8, metadata={"check": lambda v: None if v > 0 else "must be a positive whole number"})
    """Kept widths are rounded down to a multiple of this where the encoder's options allow."""


def _encoders(model: Any, config: Any, host: Any) -> dict[str, Any]:
    """The encoders ``model`` (of ``config``'s ``[model]``, registered on ``host``) declares, read
    in its block: a plugin model's broken declaration is its one line (``deepseek.models.declared``)."""
    from deepseek.models.declared import encoder_modules
    from deepseek.training.inference import served_calls

    return encoder_modules(model, calls=served_calls(model, config, host))


def mlp_prunable(model: Any, config: Any, host: Any) -> bool:
    """Whether ``prune.mlp`` applies to ``model``: an encoder it declares declares MLP pairs."""
    return any(enc.mlp_pairs() for enc in _encoders(model, config, host).values())


def _trace(name: str, encoder: Any, device: Any) -> Any:
    """Torch-Pruning's dependency graph of one encoder, traced on its ``example_inputs()``; a
    :class:`UsageError` naming the encoder's table when the library cannot follow its layers."""
    import torch
    import torch_pruning as tp

    given = encoder.example_inputs(2)
    if given is None:
        raise UsageError(f"prune.mlp: the encoder of [model.{name}] ({type(encoder).__name__}) declares "
                         "mlp_pairs() but gives no example_inputs() to trace them on; give one (docs/multimodal.md "
                         "section 2)")
    inputs, mask = given
    example = (inputs.to(device), None if mask is None else mask.to(device))
    with warnings.catch_warnings():
        # Torch-Pruning lists parameters outside Linear/Conv/Norm layers (Swin's relative
        # position tables, learned positions); no MLP group contains them.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        # Its shape inference gives up on a graph it cannot follow with this warning (whatever
        # verbose says); a trace that fails is the one line below, a trace that works needs none.
        warnings.filterwarnings("ignore", message="Maximum recursive depth reached")
        try:
            with torch.enable_grad():
                return tp.DependencyGraph().build_dependency(
                    encoder, example_inputs=example, forward_fn=lambda enc, xs: enc(*xs).features.sum())
        except (torch.OutOfMemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # the library's tracing, not the encoder's code, failed
            raise UsageError(
                f"prune.mlp: Torch-Pruning could not trace the encoder of [model.{name}] "
                f"({type(encoder).__module__}.{type(encoder).__name__}): {type(exc).__name__}: {exc}; it prunes "
                "encoders built of layers it follows (not a bidirectional nn.GRU or nn.LSTM, for one): use another "
                "method, or an encoder that declares no mlp_pairs()") from exc


def _loss(model: Any, batch: Any) -> Any:
    out = model(**batch)
    return out["loss"] if isinstance(out, dict) else out


class PruneMLP(Compressor):
    """``prune.mlp`` (see the module docstring)."""

    Options = PruneMLPOptions

    def check_model(self, model: Any, config: Any) -> None:
        from deepseek.models.gpt import GPT

        if isinstance(model, GPT):
            raise UsageError("prune.mlp: a GPT's MLP channels are pruned by prune.ffn; use prune.ffn")
        refuse_quantized(model, "prune.mlp")
        if not mlp_prunable(model, config, self.host):
            raise UsageError(
                f"prune.mlp: model {config.model.name!r} has no encoder declaring MLP pairs "
                "(Encoder.mlp_pairs) among those it declares (TrainableModel.encoder_modules); it applies to models "
                "built from encoders such as multimodal.classifier"
            )
        from deepseek.extras import check_version

        check_version("torch-pruning", where="prune.mlp", edition="deepseek-enterprise")
        try:
            import torch_pruning  # noqa: F401
        except ImportError:
            raise UsageError("prune.mlp: needs Torch-Pruning: pip install torch-pruning") from None

    def compress(self, model: Any, config: Any, calibration: list[Any]) -> Compressed:
        import torch
        import torch_pruning as tp

        o = self.options
        if not calibration:
            raise UsageError("prune.mlp: needs at least one calibration batch (--calibration-batches)")
        pruned = copy.deepcopy(model).eval()
        device = next(pruned.parameters()).device
        batches = [_to(b, device) for b in calibration]
        graphs = {name: _trace(name, enc, device) for name, enc in _encoders(pruned, config, self.host).items() if enc.mlp_pairs()}
        if o.score == "taylor":
            importance: Any = tp.importance.GroupTaylorImportance()
            pruned.zero_grad()
            for batch in batches:
                _loss(pruned, batch).backward()
        else:
            importance = tp.importance.GroupMagnitudeImportance(p=2)
        table = dict(config.to_dict()["model"])
        removed: dict[str, list[int]] = {}
        for name, graph in graphs.items():
            enc = _encoders(pruned, config, self.host)[name]
            pairs = list(enc.mlp_pairs())
            table[name], kept = enc.narrowed_options(dict(table.get(name) or {}), 1.0 - o.ratio, o.multiple_of)
            removed[name] = []
            for (expand, _), width in zip(pairs, kept, strict=True):
                channels = int(expand.out_features)
                if not 0 < width < channels:
                    raise UsageError(
                        f"prune.mlp: ratio={o.ratio} of the {name} encoder's MLP width {channels} keeps {width} channels "
                        f"(multiple_of={o.multiple_of}); choose a multiple_of and ratio that keep between 1 and "
                        f"{channels - 1}")
                group = graph.get_pruning_group(expand, tp.prune_linear_out_channels, idxs=list(range(channels)))
                with torch.no_grad():
                    scores = importance(group)
                drop = torch.argsort(scores)[: channels - width].tolist()
                graph.get_pruning_group(expand, tp.prune_linear_out_channels, idxs=sorted(drop)).prune()
                removed[name].append(channels - width)
        pruned.zero_grad(set_to_none=True)
        record = {"method": "prune.mlp", "library": "torch-pruning", "ratio": o.ratio, "score": o.score,
                  "channels_removed": removed, **figures_record(model, pruned),
                  "options": {name: {k: table[name][k] for k in ("mlp_ratio", "d_ff") if k in table[name]}
                              for name in removed}}
        return Compressed(pruned.eval(), table, record, loads_with="deepseek-enterprise")


def _to(batch: Any, device: Any) -> Any:
    from deepseek.data.batch import move_to

    return move_to(batch, device)
