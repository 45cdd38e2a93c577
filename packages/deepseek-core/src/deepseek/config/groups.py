"""``[[optimizer.groups]]``: one rule of the optimizer's parameter groups, a table of the
``[optimizer]`` section (:class:`~deepseek.config.schema.OptimizerConfig`). What the rules do
with a model's parameters: :mod:`deepseek.training.param_groups`."""

from __future__ import annotations

from dataclasses import dataclass, field

from deepseek.config import field_checks as checks


def _patterns(value: str | tuple[str, ...]) -> str | None:
    items = (value,) if isinstance(value, str) else value
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        return "must be a name pattern or a list of them, e.g. \"wte.*\" or [\"*.bias\", \"*ln*\"]"
    return None


@dataclass(frozen=True)
class ParamGroupRule:
    """One ``[[optimizer.groups]]`` table: the parameters whose names ``match`` get their own
    learning-rate factor and, if given, their own weight decay. Rules are tried in order; the
    first that matches a parameter takes it; parameters no rule takes follow ``[optimizer]``'s
    own ``weight_decay`` (matrices decayed, biases and norms not). For example, a table with
    ``match = "wte.*"`` and ``lr_scale = 0.1`` trains the token embedding at a tenth of the
    schedule's rate, and one with ``match = ["*.bias", "*ln*"]`` and ``weight_decay = 0.0`` keeps
    decay off biases and norms whatever their shape. ``deepseek config params [CONFIG]`` prints
    every parameter with the rule that takes it. Every strategy trains the same groups (a pipeline
    stage's tied copy of a weight in its source's group). A resumed run must have the groups'
    members of the run it continues (else one line naming the checkpoint); a changed
    ``lr_scale`` applies from the resumed step, while weight decay and the optimizer's other settings
    are the checkpoint's under every strategy (as torch's ``load_state_dict`` restores them):
    where the config now gives others, the resumed run says so in one warning line. To train on
    with new ones, start a new run from the checkpoint's weights (``train.init_from``; its
    optimizer starts fresh)."""

    match: str | tuple[str, ...] = field(default=(), metadata={"check": _patterns})
    """Shell-style patterns (``fnmatch``, case-sensitive: ``*``, ``?``, ``[...]``) over the model's parameter names
    as ``deepseek config params`` lists them (``wte.weight``, ``blocks.0.attn.qkv.weight``); a string or a
    list. A rule that matches no parameter of the model is refused when the run starts."""
    lr_scale: float = field(default=1.0, metadata={"check": checks.lr_scale})
    """Multiplies the schedule's learning rate for these parameters every step (0: kept fixed), at most 100."""
    weight_decay: float | None = field(default=None, metadata={"check": checks.weight_decay})
    """Weight decay of these parameters, matrices and vectors alike (0 to 100); unset: ``[optimizer]``'s rule."""

    def __post_init__(self) -> None:
        if isinstance(self.match, str):  # one pattern: kept as a one-item tuple
            object.__setattr__(self, "match", (self.match,))
        if not self.match:  # the table left ``match`` out (a given value was checked already)
            raise ValueError('match is required: a name pattern or a list of them, e.g. match = "wte.*"')
