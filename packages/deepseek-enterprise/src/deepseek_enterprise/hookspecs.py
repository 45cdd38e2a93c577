"""Hook specifications added by the enterprise edition."""

from deepseek.hookspecs import RegisterFn, hookspec


@hookspec
def deepseek_register_compressors(register: RegisterFn) -> None:
    """Register model compressors (pruning, quantization, distillation).

    ``target`` is called as ``target(**options)`` and returns an object with
    ``compress(model) -> model``.
    """


@hookspec
def deepseek_register_tuners(register: RegisterFn) -> None:
    """Register automated tuners (hyper-parameter search back ends)."""
