"""Core's optimizers and learning-rate schedules, registered like a plugin's."""

from deepseek.hookspecs import RegisterFn, hookimpl


@hookimpl
def deepseek_register_optimizers(register: RegisterFn) -> None:
    """``adamw``, ``sgd`` and ``adafactor``, torch's, and ``lion``, ours."""
    register("adamw", "deepseek.training.optimizers:AdamW",
             description="torch's AdamW, decoupled weight decay; fp32 master weights with precision.master_weights")
    register("sgd", "deepseek.training.optimizers:SGD", description="torch's SGD with momentum (and nesterov)")
    register("adafactor", "deepseek.training.adafactor:Adafactor",
             description="torch's Adafactor: factored second moment, relative step size, decoupled weight decay")
    register("lion", "deepseek.training.lion:LionBuilder",
             description="sign of the interpolated momentum (one state tensor), decoupled weight decay")


@hookimpl
def deepseek_register_lr_schedules(register: RegisterFn) -> None:
    """``cosine`` (the default), ``linear``, ``constant`` and ``wsd``."""
    register("cosine", "deepseek.training.schedule:Cosine",
             description="linear warm-up, then a half cosine from lr to min_lr at decay_steps")
    register("linear", "deepseek.training.schedule:Linear",
             description="linear warm-up, then a straight line from lr to min_lr at decay_steps")
    register("constant", "deepseek.training.schedule:Constant", description="linear warm-up, then lr")
    register("wsd", "deepseek.training.schedule:WSD",
             description="warmup-stable-decay: lr until the last decay_fraction before decay_steps, then to min_lr")
