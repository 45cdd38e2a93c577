"""The enterprise edition's modality encoders (core's encoder contract:
:class:`deepseek.models.encoder.Encoder`, returning features and a padding mask).

- ``vision.swin``: timm's ``SwinTransformer`` configured for small images (image size, patch size,
  window size, depth and width are options), or any standard timm Swin shape by name
  (``swin_tiny_patch4_window7_224`` ...) for users with their own weights; never downloads,
  optionally loads a local safetensors file.
- ``audio.conv_transformer``: a torchaudio front end (``MFCC`` or ``MelSpectrogram`` from raw
  waveforms) or precomputed feature frames, a 1-D convolutional subsampling stack, then a
  Transformer or torchaudio's ``Conformer``, with padding masks for variable lengths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from deepseek.config.validate import positive, probability
from deepseek.errors import ConfigError
from deepseek.models.encoder import Encoder, EncoderOutput, narrowed_width
from deepseek.names import did_you_mean
from deepseek_enterprise.shape_rules import heads_problem, swin_problem
from deepseek_enterprise.weight_dtype import swin_masks_follow_weights


def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else "must be >= 1"


def _all_positive(values: tuple[int, ...]) -> str | None:
    return None if values and all(v >= 1 for v in values) else "must be a non-empty list of numbers >= 1"


@dataclass(frozen=True)
class SwinOptions:
    """Keys of ``vision.swin``."""

    timm_name: str = ""
    """A timm Swin model name (``swin_tiny_patch4_window7_224`` ...) built with its standard shape
    and random weights (no download); empty: the small shape below."""
    weights: str = ""
    """A local ``.safetensors`` file of the encoder's weights (timm's names); empty: random."""
    img_size: int = field(default=8, metadata={"check": _at_least_one})
    """Image height in pixels, and width unless ``img_width`` is set."""
    img_width: int | None = field(default=None, metadata={"check": lambda v: None if v is None else _at_least_one(v)})
    """Image width in pixels where it is not the height; unset: ``img_size`` (square images)."""
    in_chans: int = field(default=1, metadata={"check": _at_least_one})
    """Image channels."""
    patch_size: int = field(default=2, metadata={"check": _at_least_one})
    """Pixels per patch side."""
    window_size: int = field(default=2, metadata={"check": _at_least_one})
    """Attention window side, in patches."""
    embed_dim: int = field(default=32, metadata={"check": _at_least_one})
    """Width of the first stage (doubles at each later stage)."""
    depths: tuple[int, ...] = field(default=(2, 2), metadata={"check": _all_positive})
    """Blocks per stage."""
    num_heads: tuple[int, ...] = field(default=(2, 4), metadata={"check": _all_positive})
    """Attention heads per stage."""
    drop_path_rate: float = field(default=0.0, metadata={"check": probability})
    """Stochastic depth in training."""
    mlp_ratio: float | None = field(default=None, metadata={"check": lambda v: None if v is None or v > 0 else "must be > 0"})
    """Hidden width of each block's MLP as a multiple of the block's width (unset: timm's 4.0);
    a model whose MLPs were pruned by ``prune.mlp`` states its narrower ratio here."""

    def __post_init__(self) -> None:
        if self.timm_name:  # a standard timm shape: these keys are not used
            return
        problem = swin_problem(self.img_size, self.img_width, self.patch_size, self.embed_dim, self.depths, self.num_heads)
        if problem is not None:
            raise ConfigError(f"encoder.vision.swin.{problem}")


class SwinEncoder(Encoder):
    """timm's Swin Transformer as an encoder: the last stage's patch features, ``(B, H*W, C)``."""

    Options = SwinOptions

    def __init__(self, options: SwinOptions) -> None:
        super().__init__()
        self.options = options
        import timm
        from timm.models.swin_transformer import SwinTransformer

        if options.timm_name:
            if options.timm_name not in (known := timm.list_models("swin*")):  # with or without pretrained weights
                raise ConfigError(f"encoder.vision.swin.timm_name: {options.timm_name!r} is not a timm Swin model"
                                  f"{did_you_mean(options.timm_name, known)}; use a name such as "
                                  "'swin_tiny_patch4_window7_224' (timm.list_models('swin*') lists them)")
            try:
                extra = {} if options.mlp_ratio is None else {"mlp_ratio": options.mlp_ratio}
                self.swin = timm.create_model(options.timm_name, pretrained=False, num_classes=0, **extra)
            except RuntimeError as exc:
                raise ConfigError(f"encoder.vision.swin.timm_name: {exc}") from exc
        else:
            self.swin = SwinTransformer(
                img_size=(options.img_size, options.img_width or options.img_size), patch_size=options.patch_size,
                in_chans=options.in_chans, num_classes=0,
                embed_dim=options.embed_dim, depths=options.depths, num_heads=options.num_heads,
                window_size=options.window_size, drop_path_rate=options.drop_path_rate,
                mlp_ratio=4.0 if options.mlp_ratio is None else options.mlp_ratio,
            )
        if options.weights:
            _load_weights(self.swin, options.weights)
        self.output_dim = int(self.swin.num_features)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """timm's gradient checkpointing of the Swin stages."""
        self.swin.set_grad_checkpointing(bool(enabled))

    def check_inputs(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None) -> str | None:
        """Images ``(B, in_chans, H, W)`` of the size the model was built for."""
        want = (int(self.swin.patch_embed.proj.in_channels), *self.swin.patch_embed.img_size)
        if inputs.dim() != 4 or tuple(inputs.shape[1:]) != want:
            return f"images must be (batch, {want[0]}, {want[1]}, {want[2]}), got shape {tuple(inputs.shape)}"
        return None

    def keys_for_inputs(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None) -> dict[str, Any]:
        """``in_chans``, ``img_size`` (height) and ``img_width`` of images ``(B, C, H, W)`` of another shape,
        unless built from ``timm_name`` (whose standard shape those keys do not change)."""
        o = self.options
        if o.timm_name or inputs.dim() != 4:
            return {}
        channels, height, width = (int(n) for n in inputs.shape[1:])
        keys = {k: v for k, v in {"in_chans": channels, "img_size": height}.items() if v != getattr(o, k)}
        if width != (o.img_width or height):  # the width a model built with these keys takes
            keys["img_width"] = width
        return keys

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, None]:
        """Random images of the size the model was built for (no padding mask)."""
        c, h, w = int(self.swin.patch_embed.proj.in_channels), *self.swin.patch_embed.img_size
        gen = torch.Generator().manual_seed(0)
        return torch.randn(batch_size, c, h, w, generator=gen).to(self.swin.patch_embed.proj.weight.device), None

    def forward(self, pixels: torch.Tensor, padding_mask: torch.Tensor | None = None) -> EncoderOutput:
        """``pixels`` ``(B, C, H, W)``; an image has no padding (``padding_mask`` is ignored)."""
        swin_masks_follow_weights(self.swin)  # an engine may have cast the weights alone to 16 bits
        f = self.swin.forward_features(pixels)  # (B, H', W', C), channels last
        f = f.reshape(f.size(0), -1, f.size(-1))
        return EncoderOutput(f, torch.zeros(f.shape[:2], dtype=torch.bool, device=f.device))

    def block_modules(self) -> list[nn.Module]:
        """The Swin blocks of every stage."""
        return [block for stage in self.swin.layers for block in stage.blocks]

    def mlp_pairs(self) -> list[tuple[nn.Linear, nn.Linear]]:
        """Each Swin block's ``mlp.fc1`` / ``mlp.fc2``."""
        return [(b.mlp.fc1, b.mlp.fc2) for b in self.block_modules()]

    def narrowed_options(self, table: dict[str, Any], keep: float, multiple_of: int) -> tuple[dict[str, Any], list[int]]:
        """``mlp_ratio`` narrowed: timm sizes every block's MLP as ``int(width * mlp_ratio)``, so one
        ratio (a multiple of ``multiple_of`` / the first stage's width where possible) sets them all."""
        blocks = self.block_modules()
        first = int(blocks[0].mlp.fc1.in_features)
        ratio = float(blocks[0].mlp.fc1.out_features) / first
        hidden = narrowed_width(round(first * ratio), keep, multiple_of)
        new_ratio = hidden / first
        return {**table, "mlp_ratio": new_ratio}, [int(int(b.mlp.fc1.in_features) * new_ratio) for b in blocks]


SWIN_FIX = "give the weights of a Swin with these options (timm_name or img_size/patch_size/embed_dim/depths/num_heads)"


def _load_weights(module: nn.Module, path: str) -> None:
    from pathlib import Path

    from deepseek.training.checkpoint import check_model_fit, load_model_state

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"encoder.vision.swin.weights: {path!r} is not a file; give a local .safetensors file")
    from deepseek.errors import UsageError

    live = module.state_dict()
    try:
        if any(v.is_meta for v in live.values()):  # built to be checked (deepseek tune): shapes from the header
            from deepseek_enterprise.pretrained import file_shapes

            check_model_fit({k: torch.empty(shape, device="meta") for k, shape in file_shapes(p).items()},
                            {k: tuple(v.shape) for k, v in live.items()}, p, fix=SWIN_FIX)
            return
        state = load_model_state(p)
        check_model_fit(state, {k: tuple(v.shape) for k, v in live.items()}, p, {k: v.dtype for k, v in live.items()},
                        fix=SWIN_FIX)
    except UsageError as exc:
        shown = str(exc)
        if "values where the model keeps" in shown:  # a float weight stored as integers: the file, not the options
            shown = shown.split("; the checkpoint is damaged")[0] + ("; the file is damaged or not a Swin's weights: give "
                                                                     "the floating-point weights of a Swin")
        raise ConfigError(f"encoder.vision.swin.weights: {shown}") from None
    module.load_state_dict(state)


@dataclass(frozen=True)
class AudioOptions:
    """Keys of ``audio.conv_transformer``."""

    input: Literal["features", "waveform"] = "features"
    """``features``: precomputed frames ``(B, T, n_features)``; ``waveform``: raw audio
    ``(B, samples)`` turned into frames by the torchaudio front end below."""
    front_end: Literal["mfcc", "mel"] = "mfcc"
    """With ``waveform``: ``MFCC`` or log ``MelSpectrogram`` frames."""
    sample_rate: int = field(default=8000, metadata={"check": _at_least_one})
    """With ``waveform``: samples per second."""
    n_features: int = field(default=13, metadata={"check": _at_least_one})
    """Coefficients (or mel bands) per frame."""
    d_model: int = field(default=64, metadata={"check": _at_least_one})
    """Feature width (``output_dim``)."""
    conv_layers: int = field(default=1, metadata={"check": lambda v: None if v >= 0 else "must be >= 0"})
    """Stride-2 convolutions before the Transformer (each halves the frames)."""
    backbone: Literal["transformer", "conformer"] = "transformer"
    """``transformer`` (``torch.nn.TransformerEncoder``) or torchaudio's ``Conformer``."""
    n_layers: int = field(default=2, metadata={"check": _at_least_one})
    """Transformer (or Conformer) layers."""
    n_heads: int = field(default=4, metadata={"check": _at_least_one})
    """Attention heads."""
    max_frames: int = field(default=512, metadata={"check": _at_least_one})
    """Longest frame sequence after subsampling (learned positions)."""
    dropout: float = field(default=0.0, metadata={"check": lambda v: None if 0 <= v < 1 else "must be in [0, 1)"})
    """Dropout in training."""
    hop_length: int = field(default=80, metadata={"check": positive})
    """With ``waveform``: samples between frames (10 ms at 8 kHz)."""
    d_ff: int | None = field(default=None, metadata={"check": lambda v: None if v is None or v >= 1 else "must be >= 1"})
    """Hidden width of each layer's feed-forward (unset: ``4 * d_model``)."""

    def __post_init__(self) -> None:
        problem = heads_problem("d_model", self.d_model, "n_heads", self.n_heads)
        if problem is not None:
            raise ConfigError(f"encoder.audio.conv_transformer.n_heads: {problem}")


def _zero_beyond(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, T, D)`` with the steps at or past each sample's length set to zero."""
    beyond = torch.arange(x.size(1), device=x.device)[None, :] >= lengths[:, None]
    return x.masked_fill(beyond[..., None], 0.0)


class AudioConvTransformer(Encoder):
    """Frames -> stride-2 convolutions -> Transformer/Conformer, with a padding mask."""

    Options = AudioOptions

    def __init__(self, options: AudioOptions) -> None:
        super().__init__()
        o = self.options = options
        self.front = None
        if o.input == "waveform":
            import torchaudio

            if o.front_end == "mfcc":
                self.front = torchaudio.transforms.MFCC(
                    sample_rate=o.sample_rate, n_mfcc=o.n_features,
                    melkwargs={"n_fft": 4 * o.hop_length, "hop_length": o.hop_length, "n_mels": max(2 * o.n_features, 23)})
            else:
                self.front = torchaudio.transforms.MelSpectrogram(
                    sample_rate=o.sample_rate, n_fft=4 * o.hop_length, hop_length=o.hop_length, n_mels=o.n_features)
        self.norm_in = nn.LayerNorm(o.n_features)
        convs: list[nn.Module] = []
        width = o.n_features
        for _ in range(o.conv_layers):
            convs += [nn.Conv1d(width, o.d_model, kernel_size=3, stride=2, padding=1), nn.GELU()]
            width = o.d_model
        self.convs = nn.Sequential(*convs)
        self.proj = nn.Linear(width, o.d_model)
        self.pos = nn.Embedding(o.max_frames, o.d_model)
        if o.backbone == "conformer":
            import torchaudio

            self.backbone = torchaudio.models.Conformer(
                input_dim=o.d_model, num_heads=o.n_heads, ffn_dim=o.d_ff or 4 * o.d_model, num_layers=o.n_layers,
                depthwise_conv_kernel_size=3, dropout=o.dropout)
            self._layers = list(self.backbone.conformer_layers)
        else:
            layer = nn.TransformerEncoderLayer(o.d_model, o.n_heads, o.d_ff or 4 * o.d_model, o.dropout, batch_first=True,
                                               norm_first=True, activation="gelu")
            self.backbone = nn.TransformerEncoder(layer, o.n_layers, enable_nested_tensor=False)
            self._layers = list(self.backbone.layers)
        self.norm_out = nn.LayerNorm(o.d_model)
        self.output_dim = o.d_model

    def check_inputs(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None) -> str | None:
        """Frames ``(B, T, n_features)`` (``input = "features"``) or waveforms ``(B, samples)``,
        giving at most ``max_frames`` frames after subsampling."""
        o = self.options
        if o.input == "features" and (inputs.dim() != 3 or inputs.shape[-1] != o.n_features):
            return (f"frames must be (batch, time, n_features={o.n_features}), got shape {tuple(inputs.shape)}; "
                    "set n_features to the data's width")
        if o.input == "waveform" and inputs.dim() != 2:
            return f"waveforms must be (batch, samples), got shape {tuple(inputs.shape)}; or set input = \"features\""
        frames = self._frames(inputs)
        if frames > o.max_frames:
            return f"the inputs give {frames} frames, more than max_frames={o.max_frames}; raise it or add conv_layers"
        if padding_mask is not None and padding_mask.dim() == 2 and padding_mask.size(1) > 1:
            left = (padding_mask[:, :-1].bool() & ~padding_mask[:, 1:].bool()).any(1)  # padding, then a real step
            if left.any():  # lengths are counted from the mask: padding must end each row
                return (f"padding_mask marks padding before real steps in row {int(left.nonzero()[0])}; this encoder "
                        "takes each recording from the start of its row, padding after it (pad on the right)")
        return None

    def _frames(self, inputs: torch.Tensor) -> int:
        """The frames ``inputs`` give after ``conv_layers`` subsampling: what ``max_frames`` must hold."""
        o = self.options
        frames = int(inputs.shape[1]) if o.input == "features" else int(inputs.shape[1]) // o.hop_length + 1
        for _ in range(o.conv_layers):
            frames = (frames + 1) // 2
        return frames

    def keys_for_inputs(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None) -> dict[str, Any]:
        """``n_features`` of frames ``(B, T, F)`` of another width (``input = "features"``), and
        ``max_frames`` of inputs longer than it holds (the frames they give after subsampling)."""
        o = self.options
        if inputs.dim() != (3 if o.input == "features" else 2):
            return {}
        keys = {"n_features": int(inputs.shape[-1])} if o.input == "features" and inputs.shape[-1] != o.n_features else {}
        return {**keys, "max_frames": self._frames(inputs)} if self._frames(inputs) > o.max_frames else keys

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """Random frames ``(batch_size, 20, n_features)`` (waveforms of 20 hops with ``input =
        "waveform"``), the last sample's second half padding."""
        o = self.options
        length = 20 if o.input == "features" else 20 * o.hop_length
        shape = (batch_size, length, o.n_features) if o.input == "features" else (batch_size, length)
        device = self.proj.weight.device
        inputs = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(device)
        mask = torch.zeros(batch_size, length, dtype=torch.bool, device=device)
        mask[-1, length // 2:] = True
        return inputs, mask

    def forward(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None = None) -> EncoderOutput:
        """Frames ``(B, T, n_features)`` or a waveform ``(B, samples)``, a mask of that shape True at padding."""
        lengths = self._lengths(inputs, padding_mask)
        x = inputs if padding_mask is None else inputs.masked_fill(self._unpadded(padding_mask, inputs), 0.0)
        if self.front is not None:
            x = self.front(x.float()).transpose(1, 2)  # (B, frames, n_features)
            if self.options.front_end == "mel":
                x = torch.log(x + 1e-6)
            x = x.to(self.proj.weight.dtype)  # computed in fp32; on in the weights' type (16-bit under DeepSpeed)
            lengths = torch.div(lengths, self.options.hop_length, rounding_mode="floor") + 1
        # What lies beyond a sample's length is zeroed before every convolution, so padding
        # never reaches the frames that are kept.
        x = _zero_beyond(self.norm_in(x), lengths)
        for i in range(self.options.conv_layers):
            conv, act = self.convs[2 * i], self.convs[2 * i + 1]
            x = act(conv(x.transpose(1, 2))).transpose(1, 2)
            lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
            x = _zero_beyond(x, lengths)
        if x.size(1) > self.options.max_frames:
            raise ConfigError(f"encoder.audio.conv_transformer.max_frames: the input gives {x.size(1)} frames, more "
                              f"than max_frames={self.options.max_frames}; raise it or add conv_layers")
        x = self.proj(x) + self.pos(torch.arange(x.size(1), device=x.device))
        mask = torch.arange(x.size(1), device=x.device)[None, :] >= lengths[:, None]
        # A sequence that is all padding attends everywhere (softmax over nothing is NaN); its
        # output is zeroed below.
        attend = mask & ~mask.all(1, keepdim=True)
        if self.options.backbone == "conformer":
            # The layers get this mask as it is: torchaudio's Conformer.forward makes one as long as
            # the longest length, which fails its attention when no sample fills the padded length.
            x = x.transpose(0, 1)
            for layer in self.backbone.conformer_layers:
                x = layer(x, attend)
            x = x.transpose(0, 1)
        else:
            x = self.backbone(x, src_key_padding_mask=attend)
        x = self.norm_out(x).masked_fill(mask[..., None], 0.0)
        return EncoderOutput(x, mask)

    @staticmethod
    def _unpadded(padding_mask: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        mask = padding_mask.bool()
        return mask.view(*mask.shape, *([1] * (inputs.dim() - mask.dim())))

    @staticmethod
    def _lengths(inputs: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        steps = inputs.size(1)
        if padding_mask is None:
            return torch.full((inputs.size(0),), steps, dtype=torch.long, device=inputs.device)
        return (~padding_mask.bool()).sum(1).long()

    def block_modules(self) -> list[nn.Module]:
        """The Transformer / Conformer layers."""
        return list(self._layers)

    def mlp_pairs(self) -> list[tuple[nn.Linear, nn.Linear]]:
        """Each Transformer layer's ``linear1`` / ``linear2`` (a Conformer's are not offered)."""
        if self.options.backbone != "transformer":
            return []
        return [(layer.linear1, layer.linear2) for layer in self._layers]

    def narrowed_options(self, table: dict[str, Any], keep: float, multiple_of: int) -> tuple[dict[str, Any], list[int]]:
        """``d_ff`` narrowed (every layer has the same width)."""
        pairs = self.mlp_pairs()
        if not pairs:
            return dict(table), []
        width = narrowed_width(int(pairs[0][0].out_features), keep, multiple_of)
        return {**table, "d_ff": width}, [width] * len(pairs)
