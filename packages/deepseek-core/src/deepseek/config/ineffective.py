"""Settings that are valid but do nothing useful in a run: one warning line each.

:func:`ineffective_settings` names them; the trainer warns each as an
:class:`IneffectiveSettingWarning` at the end of a set-up that succeeded, on rank 0.
"""

from __future__ import annotations

from deepseek.config.no_validation import idle_settings
from deepseek.config.schema import Config

_DEFAULT = Config()


class IneffectiveSettingWarning(UserWarning):
    """A valid setting that does nothing useful in this run (the whole run is warm-up, a
    checkpoint interval past the last step...); the message names the fields, what happens and
    the fix. The trainer warns once per run, on rank 0 (:func:`ineffective_settings`);
    ``deepseek.export`` warns a ``batch`` or ``seq`` of 1 that a dynamic export traces at 2
    (:class:`deepseek.graph.export_trained.Note`)."""


def ineffective_settings(config: Config, *, device_type: str, compute_dtype: str) -> list[str]:
    """One line per setting of ``config`` that is valid but does nothing useful when the run
    trains on ``device_type`` (``cpu``, ``cuda``...) in ``compute_dtype`` (``precision.dtype``
    resolved: ``fp32``, ``bf16`` or ``fp16``): each names the field path(s), what will happen and
    how to fix it. The trainer warns them (:class:`IneffectiveSettingWarning`) at set-up; they are
    not errors. Only what the user set can be named: every default leaves them silent (the
    default ``warmup_steps``, ``max_steps // 10``, is below any ``max_steps``).

    Not named: ``train.eval_interval`` past ``max_steps`` alone, since the run evaluates at step 0
    and after its last step whatever the interval, as with ``eval_interval = 0``."""
    t, c, p = config.train, config.checkpoint, config.precision
    n = t.max_steps
    lines: list[str] = idle_settings(config)  # data.eval_batches = 0: train.eval_interval
    if t.warmup_steps >= n:
        reach = ("never reaches train.lr" if t.warmup_steps > n else "reaches train.lr only at the last step")
        lines.append(f"train.warmup_steps: {t.warmup_steps} >= train.max_steps {n}: the learning rate {reach} "
                     "(warm-up lasts the whole run); lower warmup_steps or raise max_steps")
    if compute_dtype == "fp16" and device_type == "cpu":
        lines.append("precision.dtype: \"fp16\" on the CPU: CPUs lack fast float16 kernels, so steps run much slower "
                     "than fp32 (12x for the default model on a 2-core EPYC) and round to fp16 for no gain; use "
                     "precision.dtype = \"fp32\" or \"auto\" on the CPU (fp16 is for GPUs)")
    # evaluations after step 0 and before the last step: the only ones that can pick a best
    # checkpoint other than the last, or stop the run early (the last step's ends it anyway)
    between = (n - 1) // t.eval_interval if t.eval_interval else 0
    evals = (f"train.eval_interval {t.eval_interval} >= train.max_steps {n}" if t.eval_interval
             else "train.eval_interval 0")
    if c.keep_best and not between:
        lines.append(f"checkpoint.keep_best: the run evaluates only before its first step and after its last "
                     f"({evals}), so the best checkpoint can only be the last one; set train.eval_interval "
                     "below train.max_steps, or keep_best = false")
    if t.early_stop_patience > between:
        where = (f"train.eval_interval {t.eval_interval}, train.max_steps {n}" if between else evals)
        lines.append(f"train.early_stop_patience: {t.early_stop_patience} evaluations without improvement, but the "
                     f"run evaluates {between} time(s) between step 0 and its last step ({where}): early stopping "
                     "never ends it early; lower early_stop_patience or train.eval_interval")
    if c.interval > n and not c.at_end and not c.keep_best:
        lines.append(f"checkpoint.interval: {c.interval} > train.max_steps {n} with checkpoint.at_end = false: the "
                     "run writes no checkpoint (only a stop signal makes one); lower checkpoint.interval, set "
                     "checkpoint.at_end = true, or set checkpoint.interval = 0 to write none on purpose")
    scaling = [f"precision.{k}" for k in ("init_scale", "growth_interval")
               if getattr(p, k) != getattr(_DEFAULT.precision, k)]
    if scaling and compute_dtype != "fp16":
        lines.append(f"{', '.join(scaling)}: only fp16 uses a loss scale, and this run computes in {compute_dtype}; "
                     f"remove {' and '.join(k.partition('.')[2] for k in scaling)} or set precision.dtype = \"fp16\"")
    # single's module imports torch: imported here, where a run is set up, not with the config
    from deepseek.training.single import SingleOptions

    options = config.strategy.options  # core's single by what the name resolved to, under any name for it
    if isinstance(options, SingleOptions) and options.sync_batchnorm:
        lines.append("strategy.sync_batchnorm: strategy \"single\" is one process, whose BatchNorm layers already see "
                     "the whole batch, so there is nothing to synchronise; remove sync_batchnorm, or use it with "
                     "ddp or fsdp over several processes")
    if t.compile_scope != _DEFAULT.train.compile_scope and not t.compile:
        lines.append(f"train.compile_scope: \"{t.compile_scope}\" has no effect without train.compile = true; "
                     "set compile = true, or remove compile_scope")
    return lines
