"""Datasets ``multimodal.digits``: one sample is an image, a recording and a text, each corrupted.

Two tasks (``task``), so that fusion is measured honestly:

- ``redundant``: every modality carries the sample's class ``c``: an image of ``c``, a recording of
  ``c``, a spelling of ``c``; each corrupted (image: Gaussian noise and an occluding square; audio:
  noise and a masked time span; text: with probability ``text_swap`` the spelling of another
  digit), so that no single modality is reliable.
- ``complementary``: the answer needs all three at once: the image shows ``a``, the recording
  says ``b``, the text names an operation (plus or minus, in several spellings and scripts) and
  the class is ``(a op b) mod 10``. For every ``a`` (or ``b``, or operation) all ten classes are
  equally likely, so each modality alone, and late fusion, are at chance.

Each sample also carries every modality's own label (``modality_labels``: what that modality
alone shows), which the classifier's per-modality heads learn from (its auxiliary losses): in the
redundant task the class for all three; in the complementary task the image's digit, the spoken
digit, and the operation's index in ``OPERATIONS`` (0 plus, 1 minus) for the text.

Samples are drawn from the split's images and recordings (see :mod:`.sources`: no image or
recording is in two splits) from ``(seed, batch index)``; the validation (``eval_split``) and test
batches are fixed. ``train_sources`` narrows the training samples to a part of the train split
(``fit`` or ``blend``, see :func:`.sources.blend_part`), for stacking: base models fitted on one
part, their combiner on the other; validation and test are the same whatever it is. Recordings are standardised with the training split's per-coefficient mean and
deviation and padded to ``max_frames``; text is UTF-8 bytes padded to ``text_bytes``. Batches:
``{"vision": {"inputs"}, "audio": {"inputs", "padding_mask"}, "text": {"inputs", "padding_mask"},
"present": {modality: (B,) bool}, "label", "modality_labels": {modality}}``; ``missing`` marks modalities absent from every batch (training, validation and test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch

from deepseek.data.dataset import Dataset
from deepseek.data.loader import refuse_over_memory
from deepseek.errors import ConfigError, UsageError
from deepseek.names import name_list_problem
from deepseek_enterprise.digits.sources import (
    SPLITS,
    blend_part,
    load_images,
    load_speech,
    spellings,
)

MODALITIES = ("vision", "audio", "text")
OPERATIONS = {
    "plus": (("plus", "+", "add", "sum", "und", "加", "足す", "mais"), lambda a, b: (a + b) % 10),
    "minus": (("minus", "-", "subtract", "less", "moins", "减", "引く", "menos"), lambda a, b: (a - b) % 10),
}
"""Complementary task: the spellings of each operation, and the operation modulo 10."""


def _fraction(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else "must be in [0, 1]"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0"


NUM_CLASSES = 10
"""Classes of both tasks: labels 0..9."""
MAX_FRAMES = 4096
MAX_TEXT_BYTES = 4096
MAX_EVAL_SIZE = 65536
"""Upper bounds of ``max_frames``, ``text_bytes`` and ``eval_size``: a validation set is built in
memory at the start (``eval_size`` samples of ``max_frames`` x 13 floats of audio each), so a
mistyped huge value would take the machine's memory or hours rather than fail."""


@dataclass(frozen=True)
class DigitsOptions:
    """``[data]`` keys of ``multimodal.digits``."""

    task: Literal["redundant", "complementary"] = "redundant"
    """``redundant``: every modality carries the class; ``complementary``: the class needs all three."""
    image_noise: float = field(default=0.5, metadata={"check": _non_negative})
    """Standard deviation of Gaussian noise added to the [0, 1] pixels."""
    image_occlusion: int = field(default=4, metadata={"check": lambda v: None if 0 <= v <= 8 else "must be in 0..8"})
    """Side of a square of pixels blanked at a random place (0: none)."""
    audio_noise: float = field(default=1.0, metadata={"check": _non_negative})
    """Standard deviation of Gaussian noise on the standardised MFCCs."""
    audio_time_mask: float = field(default=0.3, metadata={"check": _fraction})
    """Share of a recording's frames blanked as one span at a random place."""
    text_swap: float = field(default=0.4, metadata={"check": _fraction})
    """Redundant task: the probability that the text spells another digit."""
    max_frames: int = field(default=96, metadata={"check": lambda v: None if 92 <= v <= MAX_FRAMES else
                                                  f"must be in 92..{MAX_FRAMES} (the longest recording has 92 frames; "
                                                  "more is only padding)"})
    """Frames per recording after padding."""
    text_bytes: int = field(default=24, metadata={"check": lambda v: None if 12 <= v <= MAX_TEXT_BYTES else
                                                  f"must be in 12..{MAX_TEXT_BYTES} (the longest text has 12 bytes; "
                                                  "more is only padding)"})
    """UTF-8 bytes per text after padding."""
    eval_size: int = field(default=1024, metadata={"check": lambda v: None if 1 <= v <= MAX_EVAL_SIZE else
                                                   f"must be in 1..{MAX_EVAL_SIZE}"})
    """Samples in the validation set and in the test set."""
    eval_split: Literal["val", "test"] = "val"
    """What ``validation_batches`` serves: ``val`` while training, ``test`` only for final figures."""
    missing: tuple[str, ...] = ()
    """Modalities absent from every sample (their ``present`` flag False): robustness checks."""
    train_sources: Literal["all", "fit", "blend"] = "all"
    """Which training-split images and recordings training samples are drawn from: ``all``; ``blend``
    one training speaker cluster and about 25% of the training images (fixed: ``sources.blend_part``);
    ``fit`` the rest. For stacking: base models trained on ``fit``, their combiner on ``blend``, a
    speaker and images they never saw. Recordings are standardised with the whole training split's
    statistics, and validation and test are the same, whatever it is."""

    def __post_init__(self) -> None:
        problem = name_list_problem(self.missing, MODALITIES, "modality")
        if problem is None and len(self.missing) >= len(MODALITIES):
            problem = "names every modality"
        if problem:
            raise ConfigError(f"data.missing: {list(self.missing)} {problem}; name at most two of "
                              f"{', '.join(MODALITIES)}, each once")


def refuse_batch_over_memory(options: DigitsOptions, batch_size: int, option: str, lower: str = "it") -> None:
    """UsageError ``"<option> N samples of B bytes ... a batch: more than this machine's ... memory;
    lower <lower>"`` when one batch of ``batch_size`` samples laid out as ``_batch`` lays them out
    (image, padded frames, text, the presence flags) cannot fit in this machine's memory."""
    sample = 64 * 4 + options.max_frames * (13 * 4 + 1) + options.text_bytes * (8 + 1) + 4 * 8
    refuse_over_memory(batch_size * sample, f"{option} {batch_size:,} samples of {sample:,} bytes "
                       f"(image, padded frames and text) = {batch_size * sample / 2**30:,.0f} GiB a batch", lower)


class MultimodalDigits(Dataset):
    """Image + speech + text digit samples (see the module docstring)."""

    Options = DigitsOptions
    written_files = ("splits.json", "confusion.json", "confusion.png")  # by the plugin's hooks (plugin.py)

    def __init__(self, options: DigitsOptions, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        refuse_batch_over_memory(options, batch_size, "data.batch_size")
        self.images = load_images()
        self.speech = load_speech()
        self.spell = spellings()
        train = np.concatenate(self.speech.frames["train"])
        self.mfcc_mean, self.mfcc_std = train.mean(0), train.std(0) + 1e-6
        self.index = 0

    # ------------------------------------------------------------------ samples

    @cached_property
    def _by_class(self) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
        """Per split: image indices and recording indices of each class (``train``: of the
        ``train_sources`` part)."""
        out = {}
        for s in SPLITS:
            out[s] = ([np.flatnonzero(self.images.labels[s] == c) for c in range(10)],
                      [np.flatnonzero(self.speech.labels[s] == c) for c in range(10)])
        part = self.options.train_sources
        if part != "all":
            keep = [m if part == "blend" else ~m for m in blend_part(self.images, self.speech)]
            out["train"] = tuple([np.flatnonzero((labels == c) & k) for c in range(10)]
                                 for labels, k in zip((self.images.labels["train"], self.speech.labels["train"]), keep, strict=True))
        return out

    def _sample(self, rng: np.random.Generator, split: str) -> dict[str, Any]:
        o = self.options
        images, recordings = self._by_class[split]
        if o.task == "redundant":
            a = b = label = int(rng.integers(10))
            wrong = rng.random() < o.text_swap
            said = int((label + rng.integers(1, 10)) % 10) if wrong else label
            forms = self.spell[said]
            text = forms[int(rng.integers(len(forms)))]
            said = label  # the text's own label is the class: its head learns how far to trust it
        else:
            a, b = int(rng.integers(10)), int(rng.integers(10))
            said = int(rng.integers(len(OPERATIONS)))  # the text's own label: the operation's index
            forms, fn = OPERATIONS[list(OPERATIONS)[said]]
            text, label = forms[int(rng.integers(len(forms)))], int(fn(a, b))
        image = self.images.pixels[split][images[a][int(rng.integers(len(images[a])))]].copy()
        frames = self.speech.frames[split][recordings[b][int(rng.integers(len(recordings[b])))]]
        return {"image": self._corrupt_image(image, rng), "frames": self._corrupt_audio(frames, rng),
                "text": text, "label": label,
                "own": (a, b, said)}

    def _corrupt_image(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        o = self.options
        image = image + rng.normal(0.0, o.image_noise, image.shape).astype(np.float32)
        if o.image_occlusion:
            r, c = rng.integers(0, 9 - o.image_occlusion, size=2)
            image[r:r + o.image_occlusion, c:c + o.image_occlusion] = 0.0
        return image

    def _corrupt_audio(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        o = self.options
        x = (frames - self.mfcc_mean) / self.mfcc_std
        x = x + rng.normal(0.0, o.audio_noise, x.shape).astype(np.float32)
        span = int(round(o.audio_time_mask * len(x)))
        if span:
            start = int(rng.integers(0, len(x) - span + 1))
            x[start:start + span] = 0.0
        return x.astype(np.float32)

    def _batch(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        o = self.options
        n = len(samples)
        audio = np.zeros((n, o.max_frames, 13), np.float32)
        audio_pad = np.ones((n, o.max_frames), bool)
        text = np.zeros((n, o.text_bytes), np.int64)
        text_pad = np.ones((n, o.text_bytes), bool)
        for i, s in enumerate(samples):
            audio[i, : len(s["frames"])] = s["frames"]
            audio_pad[i, : len(s["frames"])] = False
            data = list(s["text"].encode("utf-8"))[: o.text_bytes]
            text[i, : len(data)] = data
            text_pad[i, : len(data)] = False
        present = {m: torch.full((n,), m not in o.missing) for m in MODALITIES}
        return {
            "vision": {"inputs": torch.from_numpy(np.stack([s["image"] for s in samples])[:, None])},
            "audio": {"inputs": torch.from_numpy(audio), "padding_mask": torch.from_numpy(audio_pad)},
            "text": {"inputs": torch.from_numpy(text), "padding_mask": torch.from_numpy(text_pad)},
            "present": present,
            "label": torch.tensor([s["label"] for s in samples], dtype=torch.int64),
            "modality_labels": {m: torch.tensor([s["own"][i] for s in samples], dtype=torch.int64)
                                for i, m in enumerate(MODALITIES)},
        }

    # ------------------------------------------------------------------ the dataset contract

    @classmethod
    def model_num_classes(cls, options: DigitsOptions) -> int:
        """Ten: a digit (``redundant``) or a digit modulo 10 (``complementary``)."""
        return NUM_CLASSES

    def __next__(self) -> dict[str, Any]:
        self.index += 1
        rng = np.random.default_rng([self.seed, self.index])
        return self._batch([self._sample(rng, "train") for _ in range(self.batch_size)])

    def split_batches(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The fixed batches of ``split`` (``val`` or ``test``): ``eval_size`` samples, the same
        whatever the seed, in batches of ``data.batch_size`` and a last, shorter one with the rest;
        at most ``limit`` batches."""
        if split not in ("val", "test"):
            raise UsageError(f"data: split {split!r}; use 'val' or 'test'")
        rng = np.random.default_rng([12345, SPLITS.index(split)])
        samples = [self._sample(rng, split) for _ in range(self.options.eval_size)]
        bs = self.batch_size
        n = -(-len(samples) // bs) if limit is None else min(limit, -(-len(samples) // bs))
        return [self._batch(samples[i * bs:(i + 1) * bs]) for i in range(n)]

    def validation_batches(self, limit: int) -> list[dict[str, Any]]:
        return self.split_batches(self.options.eval_split, limit)

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "seed": self.seed, "task": self.options.task,
                "train_sources": self.options.train_sources}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = (state.get("seed"), state.get("task"), state.get("train_sources", "all"))  # older runs: all
        if isinstance(saved[0], bool) or saved != (self.seed, self.options.task, self.options.train_sources):
            raise UsageError("data position: saved for another train.seed, data.task or data.train_sources; use the "
                             "same settings or start a new run")
        index = state.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise UsageError(f"data position: index is {index!r:.40}, expected a whole number >= 0; the saved position "
                             "is corrupt: resume from an earlier checkpoint or start a new run")
        self.index = index

    def split_record(self) -> dict[str, Any]:
        """Which source images and recordings each split holds, which of the training split's form
        its blend part, and which part training draws from (written to the run folder)."""
        image, recording = blend_part(self.images, self.speech)
        return {
            "images": {s: self.images.index[s].tolist() for s in SPLITS},
            "recordings": {s: self.speech.index[s].tolist() for s in SPLITS},
            "speaker_clusters": self.speech.speaker.tolist(),
            "blend": {"images": self.images.index["train"][image].tolist(),
                      "recordings": self.speech.index["train"][recording].tolist()},
            "train_sources": self.options.train_sources,
        }
