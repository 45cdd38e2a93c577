"""Built-in parallelism strategy: one device."""

from deepseek.hookspecs import RegisterFn, hookimpl


@hookimpl
def deepseek_register_strategies(register: RegisterFn) -> None:
    """``single``: one process, one device (CPU or CUDA)."""
    register(
        "single",
        "deepseek.training.single:SingleDeviceStrategy",
        description="one process on one device (CPU or CUDA)",
        declares={"memory_rows": ["single"]},
    )
