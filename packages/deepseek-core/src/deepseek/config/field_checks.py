"""The value checks of the config schema's fields (``metadata["check"]``): each takes a field's
value and returns what is wrong with it (``"must be >= 1"``), or ``None``;
:func:`deepseek.config.validate.build_dataclass` puts the field path in front.

The fields that use them are :mod:`deepseek.config.schema`'s; the generic ``positive`` and
``non_negative`` are :mod:`deepseek.config.validate`'s.
"""

from __future__ import annotations


def positive_int(value: int) -> str | None:
    return None if value >= 1 else "must be >= 1"


FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: torch's loss scaler keeps its scale in a float32 tensor."""


def loss_scale(value: float) -> str | None:
    """An fp16 loss scale (``precision.init_scale``, and the scale a checkpoint's ``trainer.json``
    saved): above 0 and a float32 (a larger one failed the first step with an internal error)."""
    return None if 0 < value <= FLOAT32_MAX else f"must be > 0 and at most {FLOAT32_MAX:.8g} (the largest float32)"


GROWTH_INTERVAL_MAX = 2**31 - 1
"""The largest ``precision.growth_interval`` (and a checkpoint's saved one): torch's loss scaler
counts the steps toward it in a 32-bit integer tensor."""


def growth_interval(value: int) -> str | None:
    """``precision.growth_interval`` and the one a checkpoint's ``trainer.json`` saved."""
    return None if 1 <= value <= GROWTH_INTERVAL_MAX else f"must be a whole number from 1 to {GROWTH_INTERVAL_MAX}"


# The optimizer's numbers: generous bounds (far above what any run trains with), so a typo of an
# exponent (1e308 for 1e-3) is one line naming the key, not a run that diverges (or overflows to
# inf) at its first step. Saved parameter groups are held to the same bounds
# (deepseek.training.hyper_parameters declares them from these).
LR_MAX = 100.0
"""The largest ``train.lr`` (SGD with huge batches trains at a few units; 100 is far past it)."""
LR_SCALE_MAX = 100.0
"""The largest ``lr_scale`` of an ``[[optimizer.groups]]`` rule."""
GROUP_LR_MAX = LR_MAX * LR_SCALE_MAX
"""The largest learning rate a parameter group can hold (``train.lr`` times its ``lr_scale``): the
bound of a checkpoint's saved group ``lr`` / ``initial_lr``."""
WEIGHT_DECAY_MAX = 100.0
"""The largest ``optimizer.weight_decay`` (and a group rule's); runs use 0 to about 1."""
EPS_MAX = 1.0
"""The largest ``optimizer.eps``: a denominator floor of 1 already outweighs every gradient's RMS
of a usual model (runs use 1e-8 to 1e-3)."""


def learning_rate(value: float) -> str | None:
    """``train.lr``: above 0 and at most :data:`LR_MAX`."""
    return None if 0 < value <= LR_MAX else f"must be > 0 and at most {LR_MAX:g}"


def lr_scale(value: float) -> str | None:
    """An ``[[optimizer.groups]]`` rule's ``lr_scale``: 0 (the group kept fixed) to :data:`LR_SCALE_MAX`."""
    if value < 0:
        return "must be >= 0 (0 keeps the group's parameters fixed)"
    return None if value <= LR_SCALE_MAX else f"must be at most {LR_SCALE_MAX:g}"


def weight_decay(value: float | None) -> str | None:
    """``optimizer.weight_decay`` and a group rule's (``None``: unset): 0 to :data:`WEIGHT_DECAY_MAX`."""
    return None if value is None or 0 <= value <= WEIGHT_DECAY_MAX else f"must be >= 0 and at most {WEIGHT_DECAY_MAX:g}"


def eps(value: float) -> str | None:
    """``optimizer.eps``: above 0 and at most :data:`EPS_MAX`."""
    return None if 0 < value <= EPS_MAX else f"must be > 0 and at most {EPS_MAX:g}"


def fraction(value: float) -> str | None:
    """In [0, 1)."""
    return None if 0.0 <= value < 1.0 else "must be in [0, 1)"


def evaluation_value(value: str) -> str | None:
    return None if value.startswith("val_") and len(value) > 4 else "must name an evaluation value such as 'val_loss'"


def betas(value: tuple[float, ...]) -> str | None:
    if len(value) != 2 or not all(0.0 <= b < 1.0 for b in value):
        return "must be two numbers in [0, 1), e.g. [0.9, 0.95]"
    return None


SEED_MAX = 2**32 - 1
"""The largest ``train.seed``: the data order mixes it into 64-bit generator seeds
(``deepseek.data.loader``), and the command lines' ``--seed`` take the same range."""


def seed(value: int) -> str | None:
    return None if 0 <= value <= SEED_MAX else f"must be a whole number from 0 to {SEED_MAX}"


def not_empty_path(value: str) -> str | None:
    return None if value.strip() else "is an empty path; give a folder ('.' for the current folder)"


def folder_name(value: str) -> str | None:
    from deepseek.names import unprintable_in

    unprintable = unprintable_in(value)
    if unprintable is not None:  # a run folder named with a line break or an ESC sequence
        return f"{unprintable}; give the run folder a name of printable characters"
    if value and ("/" in value or "\\" in value or value.strip(" .") == "" or not value.strip()):
        return ("must be one folder name (no '/' or '\\', not '.' or '..'), the run folder under "
                "logging.runs_dir; set logging.runs_dir (or --run-dir) to put runs elsewhere")
    if len(value.encode("utf-8", "surrogateescape")) > 255:
        return (f"is {len(value.encode('utf-8', 'surrogateescape'))} bytes long, more than a folder name may be "
                "(255); give a shorter name")
    return None


def existing_path(value: str) -> str | None:
    if not value:
        return None
    import os

    return None if os.path.exists(value) else "no such run folder, checkpoint folder or .safetensors file"
