"""Settings that need evaluations, in a config whose ``data.eval_batches = 0`` turns validation off.

Such a run never evaluates (:mod:`deepseek.training.run_validation`), so the settings that follow
its evaluations cannot work: best checkpoints (``checkpoint.keep_best``), early stopping
(``train.early_stop_patience``) and the monitored value they follow (``train.monitor``,
``monitor_mode``, ``early_stop_min_delta``) are refused when the config loads, one line naming
them and the fix (:func:`check_no_validation`). ``train.eval_interval`` only does nothing: set
to anything but its default or 0 it warns (:func:`idle_settings`, an ineffective setting).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepseek.errors import ConfigError

if TYPE_CHECKING:
    from deepseek.config.schema import Config

NEEDS_EVALUATIONS: tuple[tuple[str, str, str], ...] = (
    ("checkpoint", "keep_best", "false"),
    ("train", "early_stop_patience", "0"),
    ("train", "monitor", '"val_loss"'),
    ("train", "monitor_mode", '"min"'),
    ("train", "early_stop_min_delta", "0"),
)
"""``(section, field, its default as TOML)`` of the settings that follow evaluations."""

OFF = "data.eval_batches = 0 turns validation off (the run never evaluates)"


def check_no_validation(config: Config) -> None:
    """Refuse (one :class:`ConfigError`) settings that need evaluations when ``data.eval_batches``
    is 0: each field set to anything but its default is named, with the fix."""
    if config.data.eval_batches:
        return
    from deepseek.config.schema import Config

    default = Config()
    set_ = [(f"{section}.{name}", f"{section}.{name} = {plain}") for section, name, plain in NEEDS_EVALUATIONS
            if getattr(getattr(config, section), name) != getattr(getattr(default, section), name)]
    if set_:
        names, fixes = ", ".join(n for n, _ in set_), " and ".join(f for _, f in set_)
        raise ConfigError(f"{names}: need{'s' if len(set_) == 1 else ''} evaluations, but {OFF}; set "
                          f"data.eval_batches >= 1, or {fixes}")


def idle_settings(config: Config) -> list[str]:
    """Ineffective-setting lines (:func:`deepseek.config.ineffective.ineffective_settings`) of a run
    without validation: ``train.eval_interval`` set to anything but its default or 0 (no
    evaluation between the first and the last step, which is what such a run does)."""
    from deepseek.config.schema import TrainConfig

    t = config.train
    if config.data.eval_batches or t.eval_interval in (0, TrainConfig.eval_interval):
        return []
    return [f"train.eval_interval: {t.eval_interval} does nothing: {OFF}; remove eval_interval, or set "
            "data.eval_batches >= 1 to evaluate every eval_interval steps"]
