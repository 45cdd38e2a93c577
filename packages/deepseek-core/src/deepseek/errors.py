"""Exceptions with one-line messages: what was wrong, where, and how to fix it.

The CLI turns every :class:`UsageError` into one line on stderr and exit code 2.
"""

from __future__ import annotations


class DeepseekError(Exception):
    """Base class of every error the framework raises on purpose."""


class UsageError(DeepseekError):
    """Bad input from the user (config, CLI argument, file). The CLI exits with code 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration value is unknown, of the wrong type or out of range."""


class PluginError(DeepseekError):
    """A plugin failed to load, registered something invalid, or conflicts with another."""


class ComponentNotFoundError(UsageError, LookupError):
    """No registered component has the requested kind and name."""


class ComponentConflictError(UsageError):
    """Several distributions registered the same component name and none was chosen."""


class TrainingDivergedError(DeepseekError):
    """Training produced a NaN or infinite loss, gradient norm or weight (``train.on_nonfinite``)."""


class RunComplete(UsageError):
    """``--resume`` of a run with nothing left to train: its checkpoint is at ``train.max_steps``,
    or it stopped early. The Python API raises it like any UsageError (nothing was written);
    ``deepseek train`` prints its line and exits 0, as Lightning's and Hugging Face's trainers
    return when resumed at their last step, so a requeued job that finds its run done ends cleanly."""


class CheckpointError(UsageError):
    """A checkpoint is missing, truncated, corrupt or incompatible."""
